"""Test-only toys that exercise the harness end to end in well under a second per cell.

`tinymethod`: a seeded random projection per modality followed by nearest-code quantization onto a codebook
of k-means-free random corpus samples. `tinytask`: nearest-centroid classification on mean-pooled codes of an
AVE-like file, train split of one modality -> test split of the other. Options `fail` and `sleep` let tests
exercise failing and slow cells.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_open
from ..contracts import Method, Pretrained, Task, UserError


class TinyPretrained(Pretrained):
    method = "tinymethod"

    def __init__(self, projections: dict[str, np.ndarray], codebook: np.ndarray):
        self.projections = projections
        self.codebook = codebook

    @property
    def dim(self) -> int:
        return self.codebook.shape[1]

    @property
    def modalities(self):
        return tuple(self.projections)

    @property
    def codebooks(self):
        return [torch.from_numpy(self.codebook)]

    def _project(self, modality, x):
        x = np.asarray(x, dtype=np.float32)
        x = x.reshape(x.shape[0], x.shape[1], -1)
        return x @ self.projections[modality]

    def codes(self, modality, x):
        z = self._project(modality, x)
        d = ((z[..., None, :] - self.codebook) ** 2).sum(-1)
        return torch.from_numpy(d.argmin(-1))

    def encode(self, modality, x):
        return torch.from_numpy(self.codebook[self.codes(modality, x).numpy()])

    def diagnostics(self):
        return {"codebook_size": int(self.codebook.shape[0])}

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / "tiny.npz", codebook=self.codebook, **{f"p_{k}": v for k, v in self.projections.items()})

    @classmethod
    def load(cls, directory: Path, device: str = "cpu"):
        data = np.load(Path(directory) / "tiny.npz")
        return cls({k[2:]: data[k] for k in data.files if k.startswith("p_")}, data["codebook"])


class TinyMethod(Method):
    def pretrain(self, corpus, cfg, seed, ctx):
        if cfg["fail"]:
            raise RuntimeError("tinymethod asked to fail (fail=true)")
        rng = np.random.default_rng(seed)
        projections = {}
        for m in corpus.modalities:
            width = int(np.prod(corpus.feature_shape(m)[1:]))
            projections[m] = (rng.standard_normal((width, cfg["dim"])) / np.sqrt(width)).astype(np.float32)
        batch = next(corpus.iter_batches(cfg["codes"] * 4, seed=seed))
        m0 = corpus.modalities[0]
        z = TinyPretrained(projections, np.zeros((1, cfg["dim"]), np.float32))._project(m0, batch[m0])
        flat = z.reshape(-1, cfg["dim"])
        codebook = flat[rng.choice(len(flat), size=min(cfg["codes"], len(flat)), replace=False)]
        for step in ctx.progress(range(3), description="tiny pretraining", total=3):
            t0 = time.perf_counter()
            time.sleep(cfg["sleep"] / 3)
            ctx.epoch_done(step + 1, 3, time.perf_counter() - t0)   # three "epochs", so progress tests see some
        return TinyPretrained(projections, codebook.astype(np.float32))

    def load(self, directory, cfg, ctx):
        return TinyPretrained.load(directory)

    def inference_view(self, pretrained, cfg):
        """`blind=true` (inference-only) encodes zeros from the same trained model."""
        if not cfg["blind"]:
            return pretrained
        return TinyPretrained(pretrained.projections, np.zeros_like(pretrained.codebook))


class TinyTask(Task):
    main_metric = "acc"
    higher_is_better = {"acc": True}

    def validate(self, cfg):
        if cfg["sleep"] < 0:
            raise UserError("tinytask: sleep must be >= 0")

    def evaluate(self, pretrained, world, cfg, seed, ctx):
        if cfg["fail"]:
            raise RuntimeError("tinytask asked to fail (fail=true)")
        ff = world.open("ave")
        labels = ff.labels("clip")
        train, test = ff.split("train"), ff.split("test")
        short = {"audio": "A", "video": "V"}
        out = {}
        def encoded(modality, split, idx):
            """Pooled codes, cached in ctx.scratch like the real tasks do (so the harness's cache key is tested)."""
            path = ctx.scratch / f"{modality}-{split}.npy" if ctx.scratch else None
            if path is not None and path.exists():
                return np.load(path)
            value = pretrained.encode(modality, ff.read(modality, idx)).numpy().mean(1)
            if path is not None:    # atomically, as the real tasks do: a kill -9 mid-write leaves no half file
                with atomic_open(path) as fh:
                    np.save(fh, value)
            return value

        for src, tgt in (("video", "audio"), ("audio", "video"), ("video", "video"), ("audio", "audio")):
            f_train, f_test = encoded(src, "train", train), encoded(tgt, "test", test)
            classes = np.unique(labels[train])
            centroids = np.stack([f_train[labels[train] == c].mean(0) for c in classes])
            pred = classes[((f_test[:, None, :] - centroids) ** 2).sum(-1).argmin(1)]
            out[f"{short[src]}->{short[tgt]}"] = {"acc": float((pred == labels[test]).mean() * 100)}
        time.sleep(cfg["sleep"])
        return out
