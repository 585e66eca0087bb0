"""Reference points every table needs to place a number: training-free linear representations.

- `chance`: every clip maps to the zero vector. A head on it can only learn the label prior, so its score *is* the
  task's floor measured by the task's own protocol (majority-class accuracy, the all-positive F1 of detection).
- `cca`: canonical correlation analysis between the per-second audio and video features of the pretraining corpus
  (closed form: whitening + SVD of the cross-covariance, ridge `reg`), the top `dim` directions. A linear,
  label-free, training-free aligned baseline: a learned method that does not beat it has not learned alignment.
- `raw`: the raw per-second features (spatial video mean-pooled), zero-padded to the widest modality: a linear
  probe of the features themselves, read m->m only (different sensors share no coordinates, so its cross-modal
  numbers mean nothing). It is not a ceiling: an encoder that undoes a sensor's non-linearity beats it.
- `oracle`: each clip encoded as its true per-second semantic latent, which synthetic files store in their
  `latent/` group; the same vector whatever the modality, so it is the ceiling of every direction. Real data has
  no latents: there the oracle's cells are `n/a` (`NotApplicable`), not failures.

The first three are a per-modality affine map per second, `x -> (x - mean_m) W_m`, saved as one `.npz`.
The CCA is written out (20 lines of linear algebra) instead of scikit-learn's `CCA`, which is an iterative NIPALS
fit that takes minutes for 64 components on 20k x 640 and gives the same subspace.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from benchmark.contracts import Method, NotApplicable, Pretrained, RunContext, UserError

from tasks.data.factors import factor_probes

from .base import canonical_modalities

FORMAT = 1


def per_second(x: np.ndarray) -> np.ndarray:
    """`[N, T, ...]` -> `[N, T, C]`: spatial video cells mean-pooled; other features unchanged."""
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(*x.shape[:2], -1, x.shape[-1]).mean(2) if x.ndim > 3 else x


class LinearPretrained(Pretrained):
    """A frozen per-modality affine map applied to every second."""

    discrete = False

    def __init__(self, method: str, means: Mapping[str, np.ndarray], maps: Mapping[str, np.ndarray],
                 info: dict | None = None):
        self.method = method
        self.means = {m: np.asarray(v, dtype=np.float64) for m, v in means.items()}
        self.maps = {m: np.asarray(v, dtype=np.float64) for m, v in maps.items()}
        self.info = dict(info or {})

    @property
    def dim(self) -> int:
        return int(next(iter(self.maps.values())).shape[1])

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.maps)

    def encode(self, modality: str, x) -> torch.Tensor:
        if modality not in self.maps:
            raise UserError(f"{self.method} covers {list(self.maps)}; it cannot encode '{modality}'")
        x = x.detach().cpu().numpy() if torch.is_tensor(x) else x
        h = per_second(x)
        if h.shape[-1] != self.means[modality].shape[0]:
            raise UserError(f"{self.method}: {modality} features have width {h.shape[-1]}, but it was fitted on "
                            f"{self.means[modality].shape[0]}")
        return torch.from_numpy(((h - self.means[modality]) @ self.maps[modality]).astype(np.float32))

    def diagnostics(self) -> dict:
        return dict(self.info)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {f"mean/{m}": v for m, v in self.means.items()} | {f"map/{m}": v for m, v in self.maps.items()}
        np.savez(directory / "linear.npz", **arrays)
        (directory / "meta.json").write_text(json.dumps({"format": FORMAT, "method": self.method,
                                                          "modalities": list(self.maps), "info": self.info}))

    @classmethod
    def load(cls, directory: Path, device: str = "cpu") -> "LinearPretrained":
        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text())
        with np.load(directory / "linear.npz") as z:
            means = {m: z[f"mean/{m}"] for m in meta["modalities"]}
            maps = {m: z[f"map/{m}"] for m in meta["modalities"]}
        return cls(meta["method"], means, maps, meta.get("info"))


def sample_seconds(corpus, modalities, max_seconds: int, seed: int) -> dict[str, np.ndarray]:
    """Up to `max_seconds` paired per-second rows `{m: [S, C]}` from the corpus (whole clips, seeded order)."""
    rows: dict[str, list] = {m: [] for m in modalities}
    for batch in corpus.iter_batches(256, seed=seed, shuffle=True, modalities=modalities):
        for m in modalities:
            h = per_second(batch[m])
            rows[m].append(h.reshape(-1, h.shape[-1]))
        if sum(len(r) for r in rows[modalities[0]]) >= max_seconds:
            break
    return {m: np.concatenate(v)[:max_seconds] for m, v in rows.items()}


def _inv_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    return (v / np.sqrt(np.clip(w, 1e-12, None))) @ v.T


def cca(x: np.ndarray, y: np.ndarray, dim: int, reg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Regularised CCA of centred `x [S, p]`, `y [S, q]`: maps `[p, dim]`, `[q, dim]` and the canonical
    correlations. `reg` is added to each covariance's diagonal relative to its mean variance."""
    n = len(x)
    cxx, cyy, cxy = x.T @ x / n, y.T @ y / n, x.T @ y / n
    cxx += reg * np.trace(cxx) / len(cxx) * np.eye(len(cxx))
    cyy += reg * np.trace(cyy) / len(cyy) * np.eye(len(cyy))
    wx, wy = _inv_sqrt(cxx), _inv_sqrt(cyy)
    u, s, vt = np.linalg.svd(wx @ cxy @ wy)
    return wx @ u[:, :dim], wy @ vt.T[:, :dim], s[:dim]


class LinearBaseline(Method):
    """Fits (or fixes) the per-modality maps; nothing is trained by gradient descent."""

    kind = ""          # chance | raw | cca
    encodes = ("audio", "video")   # what the fitted maps cover (planning refuses directions that read text)

    def validate(self, cfg: Mapping[str, Any]) -> None:
        if "dim" in cfg and (not isinstance(cfg["dim"], int) or cfg["dim"] < 1):
            raise UserError(f"method '{self.name}': option 'dim' must be a positive integer, got {cfg['dim']!r}")
        if "reg" in cfg and not cfg["reg"] >= 0:
            raise UserError(f"method '{self.name}': option 'reg' must be >= 0, got {cfg['reg']!r}")

    def pretrain(self, corpus, cfg: Mapping[str, Any], seed: int, ctx: RunContext) -> LinearPretrained:
        self.validate(cfg)
        pretrained = self._fit(corpus, cfg, seed)
        probes = factor_probes(pretrained, corpus)   # None unless the corpus stores its clips' true factors
        if probes is not None:
            pretrained.info["factors"] = probes
        return pretrained

    def _fit(self, corpus, cfg: Mapping[str, Any], seed: int) -> LinearPretrained:
        names = canonical_modalities(m for m in corpus.modalities if m in ("audio", "video"))
        widths = {m: int(corpus.feature_shape(m)[-1]) for m in names}
        if self.kind == "cca":
            if len(names) < 2:
                raise UserError(f"{self.name} needs paired audio and video in the corpus; it has {list(names)}")
            rows = sample_seconds(corpus, names, int(cfg["max_seconds"]), seed)
            means = {m: rows[m].mean(0) for m in names}
            dim = min(int(cfg["dim"]), *widths.values())
            wa, wv, corr = cca(rows[names[0]] - means[names[0]], rows[names[1]] - means[names[1]], dim,
                               float(cfg["reg"]))
            info = {"canonical_correlations": [round(float(c), 4) for c in corr], "seconds": len(rows[names[0]])}
            return LinearPretrained(self.name, means, {names[0]: wa, names[1]: wv}, info)
        width = max(widths.values()) if self.kind == "raw" else int(cfg["dim"])
        means = {m: np.zeros(widths[m]) for m in names}
        maps = {m: (np.eye(widths[m], width) if self.kind == "raw" else np.zeros((widths[m], width))) for m in names}
        return LinearPretrained(self.name, means, maps, {"kind": self.kind})

    def load(self, directory: Path, cfg: Mapping[str, Any], ctx: RunContext) -> LinearPretrained:
        return LinearPretrained.load(directory)


class Chance(LinearBaseline):
    kind = "chance"


class Raw(LinearBaseline):
    kind = "raw"


class CCA(LinearBaseline):
    kind = "cca"


# --------------------------------------------------------------------------- the oracle
def _no_latents(path, factor: str) -> NotApplicable:
    return NotApplicable(f"oracle: n/a on {path} (no latent/*/{factor}: only synthetic worlds of generator "
                         f"version 3 store their clips' true factors; real and imported data never do)")


class OraclePretrained(Pretrained):
    """Reads each clip's stored true `factor` per second; it has no function of the features to apply."""

    discrete = False

    def __init__(self, method: str, factor: str, widths: Mapping[str, int], info: dict | None = None):
        self.method, self.factor, self.widths = method, factor, dict(widths)
        self.info = dict(info or {})

    @property
    def dim(self) -> int:
        return int(next(iter(self.widths.values())))

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.widths)

    def encode(self, modality: str, x) -> torch.Tensor:
        raise UserError(f"{self.method} encodes stored clips (encode_clips), not features: a clip's true latent is "
                        f"not a function of its features")

    def encode_clips(self, ff, modality: str, idx) -> torch.Tensor:
        if self.factor not in ff.latent_names.get(modality, ()):
            raise _no_latents(ff.path, self.factor)
        return torch.from_numpy(ff.latent(modality, self.factor, idx))

    def diagnostics(self) -> dict:
        return {"factor": self.factor, "widths": self.widths, **self.info}

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "meta.json").write_text(json.dumps({"format": FORMAT, "method": self.method, "factor": self.factor,
                                                          "widths": self.widths, "info": self.info}))

    @classmethod
    def load(cls, directory: Path, device: str = "cpu") -> "OraclePretrained":
        meta = json.loads((Path(directory) / "meta.json").read_text())
        return cls(meta["method"], meta["factor"], meta["widths"], meta.get("info"))


class Oracle(Method):
    """The ceiling row: a head on the true semantics is as good as any representation of this world can be."""

    encodes = ("audio", "video", "text")

    def pretrain(self, corpus, cfg: Mapping[str, Any], seed: int, ctx: RunContext) -> OraclePretrained:
        factor = cfg.get("factor", "semantic")      # the card's choices: semantic, scene, nuisance
        ff = getattr(corpus, "file", None)
        names = ff.latent_names if ff is not None else {}
        widths = {m: int(ff.h5[f"latent/{m}/{factor}"].shape[-1]) for m in canonical_modalities(names)
                  if factor in names[m]}
        if not widths:
            raise _no_latents(getattr(ff, "path", "this corpus"), factor)
        pretrained = OraclePretrained(self.name, factor, widths)
        pretrained.info["factors"] = factor_probes(pretrained, corpus)   # the reference row: R² 1 for its factor
        return pretrained

    def load(self, directory: Path, cfg: Mapping[str, Any], ctx: RunContext) -> OraclePretrained:
        return OraclePretrained.load(directory)
