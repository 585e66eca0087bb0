"""Ground-truth factor probes: how much of a representation is the clip's semantics, its scene, its nuisance.

A synthetic corpus stores each clip's true per-second factors (`latent/<modality>/<factor>`, tasks/data/synth.py).
For every audio and video second of the corpus, a ridge regression maps the representation to each factor; it is
fit on the corpus' train split, its ridge chosen on the val split, and scored on the test split (R², held out: a
probe scored on its own fit would credit memorisation). Per modality it probes what the heads see, `codes` for
a codebook method (its quantized vectors) and `features` for a continuous one, and for a codebook method also its
general `features` before quantization. A disentangling method
should keep semantics and drop nuisance in its codes; a scene that survives says alignment kept the shared-but-
irrelevant factor. Text is left out: the corpus' text is one prompt per class, so its wording is a function of
the class and the factors cannot be told apart.

R² is the variance-weighted mean over a factor's dimensions, 1 − ΣSSE/ΣSST on the test seconds.
"""
from __future__ import annotations

from typing import Any

import numpy as np

MODALITIES = ("audio", "video")
FACTORS = ("semantic", "scene", "nuisance")
ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)   # ridge, relative to the mean eigenvalue of the standardized X'X / n
VERSION = 1
# clips per split: 12000 train seconds for a ridge on <= a few hundred dims, 4000 test seconds put R² to about
# +-0.01; more only costs encoding time in every pretraining (and the paper corpus has 40000 clips)
SPLIT_CLIPS = {"train": 1200, "val": 400, "test": 400}
CHUNK = 256


def representations(pretrained, ff, modality: str, idx: np.ndarray) -> dict[str, np.ndarray]:
    """{"codes": quantized [N, T, D], "features": general [N, T, D']} of clips `idx` of `ff` for a codebook
    method; {"features": [N, T, D]} (what it encodes) for a continuous one."""
    by_clip = getattr(pretrained, "encode_clips", None)
    general = getattr(pretrained, "features", None) if pretrained.discrete else None
    seen = "codes" if pretrained.discrete else "features"
    out: dict[str, list] = {seen: []} | ({"features": []} if general is not None else {})
    for start in range(0, len(idx), CHUNK):
        rows = idx[start:start + CHUNK]
        x = None if by_clip is not None else ff.read(modality, rows)
        out[seen].append(np.asarray(by_clip(ff, modality, rows) if by_clip is not None
                                    else pretrained.encode(modality, x), dtype=np.float64))
        if general is not None:
            out["features"].append(np.asarray(general(modality, x), dtype=np.float64))
    return {k: np.concatenate(v) for k, v in out.items()}


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, x.shape[-1])


def ridge_r2(x: dict[str, np.ndarray], y: dict[str, np.ndarray]) -> tuple[float | None, float | None]:
    """(test R², chosen ridge) of `y` on `x` (each {"train", "val", "test"} -> [rows, d]); the ridge with the best
    val R² among ALPHAS. None when the test target has no variance (e.g. a factor that is constant here)."""
    mu, sd = x["train"].mean(0), x["train"].std(0)
    sd[sd == 0] = 1.0
    z = {s: (v - mu) / sd for s, v in x.items()}
    ym = y["train"].mean(0)
    gram = z["train"].T @ z["train"] / len(z["train"])
    cross = z["train"].T @ (y["train"] - ym) / len(z["train"])
    scale = max(np.trace(gram) / len(gram), 1e-12)

    def r2(split, w):
        err = y[split] - (z[split] @ w + ym)
        total = ((y[split] - y[split].mean(0)) ** 2).sum()
        return None if total <= 1e-12 * max(1.0, len(err)) else float(1.0 - (err ** 2).sum() / total)

    best = None
    for alpha in ALPHAS:
        w = np.linalg.solve(gram + alpha * scale * np.eye(len(gram)), cross)
        val = r2("val", w)
        if best is None or (val is not None and (best[0] is None or val > best[0])):
            best = (val, alpha, w)
    return r2("test", best[2]), best[1]


def factor_probes(pretrained, corpus) -> dict[str, Any] | None:
    """{modality: {representation: {factor: test R²}}} with the splits and ridges used, for a pretraining on a
    corpus whose file stores true latents; None otherwise (real data, version 2 worlds)."""
    ff = getattr(corpus, "file", None)
    if ff is None or not ff.latent_names or not set(ff.split_names) >= {"train", "val", "test"}:
        return None
    splits = {s: ff.split(s)[:n] for s, n in SPLIT_CLIPS.items()}
    out: dict[str, Any] = {"version": VERSION, "fit": "train", "select": "val", "score": "test",
                           "clips": {s: int(len(v)) for s, v in splits.items()}, "r2": {}, "ridge": {}}
    try:
        encodes = set(pretrained.modalities)
    except NotImplementedError:
        encodes = set(MODALITIES)
    for m in MODALITIES:
        if m not in encodes or not set(FACTORS) <= set(ff.latent_names.get(m, ())):
            continue
        reps = {s: representations(pretrained, ff, m, idx) for s, idx in splits.items()}
        truth = {f: {s: _flat(ff.latent(m, f, idx)).astype(np.float64) for s, idx in splits.items()}
                 for f in FACTORS}
        for rep in reps["train"]:
            x = {s: _flat(reps[s][rep]) for s in splits}
            for f in FACTORS:
                score, alpha = ridge_r2(x, truth[f])
                out["r2"].setdefault(m, {}).setdefault(rep, {})[f] = None if score is None else round(score, 4)
                out["ridge"].setdefault(m, {}).setdefault(rep, {})[f] = alpha
    return out if out["r2"] else None
