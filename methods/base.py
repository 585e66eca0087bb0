"""Shared pieces of every codebook method: scale presets (read from the cards), a `Method` base that builds →
trains → diagnoses, and `CodebookPretrained`, the frozen representation (encode / codes / codebooks / save / load / diagnostics).

A codebook method subclasses `CodebookMethod` and supplies `build_model(shapes, settings)`: an `nn.Module` with
`modalities`, `quantizer` (see `quantizers.py`), `general(modality, x) -> z [N, T, D]` (raw features to the
quantizer's input, including front-ends and a shape check) and the trainer protocol (`losses`, ...). Everything else
— presets, validation, the loop, checkpoints, diagnostics, persistence — lives here once.
"""
from __future__ import annotations

import copy
import functools
import importlib
import json
import math
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from benchmark.atomic import atomic_write
from benchmark.contracts import MODALITY_ORDER, Method, Pretrained, RunContext, UserError
from benchmark.hashing import stable_hash

from tasks.data.factors import factor_probes

from .quantizers import parse_fsq_levels
from .precision import DTYPES, autocast, check_device
from .trainer import TrainConfig, TrainResult, train, training_summary


_PRESETS_CARD = Path(__file__).with_name("_pretrained.yaml")


@functools.lru_cache(maxsize=1)
def _card_presets() -> dict[str, dict[str, Any]]:
    import yaml
    return yaml.safe_load(_PRESETS_CARD.read_text())["scales"]


def base_presets() -> dict[str, dict[str, Any]]:
    """The `scales:` presets of methods/_pretrained.yaml: what a method built without the registry (which sets a
    family's merged presets on each method it loads) and `resolve_settings` resolve null options from."""
    return {name: dict(values) for name, values in _card_presets().items()}


_POSITIVE_INTS = ("code_dim", "codebook_size", "epochs", "batch_size", "dead_after", "cpc_horizon")


def canonical_modalities(names: Iterable[str]) -> tuple[str, ...]:
    names = list(names)
    return tuple(sorted(names, key=lambda m: (MODALITY_ORDER.index(m) if m in MODALITY_ORDER else 99, m)))


def resolve_settings(cfg: Mapping[str, Any], scales: Mapping[str, dict] | None = None) -> dict[str, Any]:
    """The scale preset (`scales`, default the base card's) overlaid with every non-null option; `levels`
    resolved for the chosen quantizer."""
    scales = scales or base_presets()
    scale = cfg.get("scale") or "default"
    if scale not in scales:
        raise UserError(f"option 'scale' must be one of {sorted(scales)}, got {scale!r}")
    s = dict(scales[scale])
    if "extends" in s:   # a preset stated as another one plus a few values (smoke = default at a tiny budget)
        s = {**scales[s.pop("extends")], **s}
    s.update({k: v for k, v in cfg.items() if v is not None})
    kind = s.get("quantizer", "vq")
    if s.get("levels") is None:
        s["levels"] = {"rvq": s["rvq_levels"], "fsq": s["fsq_levels"]}.get(kind)
    if kind == "rvq":       # only RVQ settings carry (and are keyed by) the RVQ mode
        s["rvq_mode"] = s.get("rvq_mode") or "release"
    else:
        s.pop("rvq_mode", None)
    return s


def validate_settings(s: Mapping[str, Any], owner: str) -> None:
    """UserError (one line) for settings the models cannot be built with."""
    for key in _POSITIVE_INTS:
        if key in s and (not isinstance(s[key], int) or s[key] < 1):
            raise UserError(f"{owner}: option '{key}' must be a positive integer, got {s[key]!r}")
    if s["code_dim"] % s["heads"]:
        raise UserError(f"{owner}: code_dim {s['code_dim']} must be divisible by the {s['heads']} attention heads")
    for key in ("lr", "mi_lr"):
        if key in s and not s[key] > 0:
            raise UserError(f"{owner}: option '{key}' must be > 0, got {s[key]!r}")
    if "decay" in s and not 0 < s["decay"] < 1:
        raise UserError(f"{owner}: option 'decay' must be in (0, 1), got {s['decay']!r}")
    if "mi_steps" in s and (not isinstance(s["mi_steps"], int) or s["mi_steps"] < 0):
        raise UserError(f"{owner}: option 'mi_steps' must be an integer >= 0, got {s['mi_steps']!r}")
    if s.get("dtype", "float32") not in DTYPES:
        raise UserError(f"{owner}: option 'dtype' must be one of {list(DTYPES)}, got {s.get('dtype')!r}")
    kind = s.get("quantizer", "vq")
    if kind == "rvq" and (not isinstance(s["levels"], int) or isinstance(s["levels"], bool) or s["levels"] < 1):
        raise UserError(f"{owner}: quantizer=rvq needs 'levels' = number of residual levels (e.g. 2, 3, 4), "
                        f"got {s['levels']!r}")
    if kind == "fsq":
        try:
            parse_fsq_levels(s["levels"])
        except ValueError:
            raise UserError(f"{owner}: quantizer=fsq needs 'levels' = per-dim level counts, e.g. 8x5x5x5, "
                            f"got {s['levels']!r}") from None
    if kind == "rvq" and s["rvq_mode"] not in ("release", "per_level"):
        raise UserError(f"{owner}: option 'rvq_mode' must be release or per_level, got {s['rvq_mode']!r}")
    if kind == "vq" and s.get("levels") not in (None, 1):
        raise UserError(f"{owner}: 'levels' applies to quantizer=rvq or fsq, not vq (got levels={s['levels']!r})")


# --------------------------------------------------------------------------- an in-memory corpus
class ArrayCorpus:
    """`contracts.Corpus` over in-memory arrays `{modality: [N, T, ...]}` (tests, small experiments)."""

    def __init__(self, arrays: Mapping[str, np.ndarray], fingerprint: str = "arrays"):
        sizes = {len(v) for v in arrays.values()}
        if len(sizes) != 1:
            raise ValueError(f"ArrayCorpus: modalities differ in N: { {k: len(v) for k, v in arrays.items()} }")
        self.arrays = {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
        self.modalities = tuple(self.arrays)
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def feature_shape(self, modality: str) -> tuple[int, ...]:
        return tuple(self.arrays[modality].shape[1:])

    def iter_batches(self, batch_size: int, seed: int, shuffle: bool = True,
                     modalities: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        order = np.random.default_rng(seed).permutation(len(self)) if shuffle else np.arange(len(self))
        names = tuple(modalities) if modalities is not None else self.modalities
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            yield {**{m: self.arrays[m][idx] for m in names}, "index": idx}


# --------------------------------------------------------------------------- diagnostics
def _perplexity(counts: np.ndarray) -> float:
    """exp(entropy) of the code distribution: 1 = one code used, L = all codes used equally."""
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(math.exp(-(p * np.log(p)).sum()))


def _clip_modes(codes: np.ndarray, num_codes: int) -> np.ndarray:
    """Most frequent code over T per clip, ties to the smaller index: `[N, T]` -> `[N]`."""
    hits = np.zeros((codes.shape[0], num_codes), dtype=np.int64)
    np.add.at(hits, (np.repeat(np.arange(codes.shape[0]), codes.shape[1]), codes.reshape(-1)), 1)
    return hits.argmax(1)


def summarize_codes(counts: Mapping[str, np.ndarray], modes: Mapping[str, np.ndarray]) -> dict:
    """Codebook diagnostics from per-modality code counts `[levels, L]` and clip modes `[N]` (level 0).

    usage: share of codes any modality picks; dead_fraction: share no modality picks; shared_fraction: share of the
    used codes that every modality picks; perplexity: exp(entropy) of the pooled (and per-modality) counts;
    agreement: share of clips whose modal code (mode over T) is the same in every modality (the release's
    `equal_num`), and per modality pair.
    """
    names = list(counts)
    levels = []
    for k in range(next(iter(counts.values())).shape[0]):
        per = {m: counts[m][k] for m in names}
        pooled = sum(per.values())
        used = pooled > 0
        everyone = np.all([per[m] > 0 for m in names], axis=0)
        levels.append({
            "codebook_size": int(pooled.shape[0]),
            "usage": float(used.mean()),
            "dead_fraction": float(1.0 - used.mean()),
            "shared_fraction": float(everyone.sum() / max(used.sum(), 1)),
            "perplexity": _perplexity(pooled),
            "usage_per_modality": {m: float((per[m] > 0).mean()) for m in names},
            "perplexity_per_modality": {m: _perplexity(per[m]) for m in names},
        })
    out = dict(levels[0])
    if len(levels) > 1:
        out["levels"] = levels
    stacked = np.stack([modes[m] for m in names])
    out["clips"] = int(stacked.shape[1])
    out["agreement"] = float(np.all(stacked == stacked[:1], axis=0).mean()) if len(names) > 1 else 1.0
    out["agreement_pairs"] = {f"{a}-{b}": float((modes[a] == modes[b]).mean())
                              for i, a in enumerate(names) for b in names[i + 1:]}
    out["code_counts"] = {m: (counts[m][0].tolist() if counts[m].shape[0] == 1 else counts[m].tolist())
                          for m in names}
    return out


# --------------------------------------------------------------------------- the frozen representation
class CodebookPretrained(Pretrained):
    """A frozen codebook model: raw features -> Φ -> nearest code(s). Stores its diagnostics and history."""

    discrete = True
    ENCODE_CHUNK = 256     # clips per forward inside encode/codes, to bound memory on large task arrays

    def __init__(self, model: nn.Module, *, method: str, entry: str, settings: Mapping[str, Any],
                 shapes: Mapping[str, tuple], diagnostics: dict | None = None, history: list | None = None,
                 device: str = "cpu"):
        self.model = model.eval()
        self.method, self.entry = method, entry
        self.settings = dict(settings)
        self.shapes = {m: tuple(v) for m, v in shapes.items()}
        self._diagnostics = dict(diagnostics or {})
        self.history = list(history or [])
        self.device = device
        self.precision = self.settings.get("dtype", "float32")
        self.dtype = DTYPES[self.precision]

    # --- representation ---------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.codebooks[0].shape[1])

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.shapes)

    @property
    def codebooks(self) -> list[torch.Tensor]:
        with torch.no_grad():
            return [c.detach().float().cpu().clone() for c in self.model.quantizer.codebooks]

    def _chunks(self, modality: str, x) -> Iterator[torch.Tensor]:
        if modality not in self.shapes:
            raise UserError(f"{self.method} was pretrained on {list(self.shapes)}; it cannot encode '{modality}'")
        x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
        if tuple(x.shape[2:]) != self.shapes[modality][1:]:
            raise UserError(f"{self.method}: {modality} features have per-step shape {tuple(x.shape[2:])}, "
                            f"but the model was pretrained on {self.shapes[modality][1:]}")
        for start in range(0, x.shape[0], self.ENCODE_CHUNK):
            yield x[start:start + self.ENCODE_CHUNK].to(device=self.device, dtype=self.dtype)

    def _forward(self, modality: str, x, fn) -> list:
        """`fn(general features of a chunk)` for every chunk of `x`, in eval mode without gradients."""
        self.model.eval()
        with torch.no_grad(), autocast(self.precision, self.device):
            out = [fn(self.model.general(modality, chunk)) for chunk in self._chunks(modality, x)]
        if not out:
            raise UserError(f"{self.method}: nothing to encode (0 clips of {modality})")
        return out

    def _quantize(self, modality: str, x) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = self._forward(modality, x, lambda z: [t.cpu() for t in self.model.quantizer.quantize(z)])
        return torch.cat([q.float() for q, _ in pairs]), torch.cat([i for _, i in pairs])

    def features(self, modality: str, x) -> torch.Tensor:
        """The general features `[N, T, D]` the codes are picked from (before quantization; float32, CPU)."""
        return torch.cat(self._forward(modality, x, lambda z: z.float().cpu()))

    def encode(self, modality: str, x) -> torch.Tensor:
        """Quantized code vectors `[N, T, D]` (float32, CPU)."""
        return self._quantize(modality, x)[0]

    def codes(self, modality: str, x) -> torch.Tensor:
        """Code indices `[N, T]` (`[N, T, levels]` for RVQ)."""
        return self._quantize(modality, x)[1]

    def variant(self, **attrs) -> "CodebookPretrained":
        """The same frozen model with other inference-only attributes (SRCID's `layers`, SimMMDG's `readout`)."""
        other = copy.copy(self)
        for name, value in attrs.items():
            setattr(other, name, value)
        return other

    def to(self, device: str) -> "CodebookPretrained":
        self.model.to(device)
        self.device = device
        return self

    # --- diagnostics -------------------------------------------------------------------------------------
    def diagnostics(self) -> dict:
        return dict(self._diagnostics)

    def compute_diagnostics(self, corpus, batch_size: int, ctx: RunContext | None = None) -> dict:
        """One pass over the corpus (no shuffling): code counts per modality and level, clip modes (level 0)."""
        ctx = ctx or RunContext()
        sizes = self.model.quantizer.num_codes
        counts = {m: np.zeros((len(sizes), sizes[0]), dtype=np.int64) for m in self.modalities}
        modes: dict[str, list] = {m: [] for m in self.modalities}
        n_batches = -(-len(corpus) // batch_size)
        batches = corpus.iter_batches(batch_size, seed=0, shuffle=False, modalities=self.modalities)
        for batch in ctx.progress(batches, description=f"{self.method} codebook diagnostics", total=n_batches):
            for m in self.modalities:
                idx = self.codes(m, batch[m]).numpy()
                idx = idx.reshape(idx.shape[0], idx.shape[1], -1)
                for k in range(idx.shape[2]):
                    counts[m][k] += np.bincount(idx[..., k].reshape(-1), minlength=sizes[k])
                modes[m].append(_clip_modes(idx[..., 0], sizes[0]))
        summary = summarize_codes(counts, {m: np.concatenate(v) for m, v in modes.items()})
        if self.history:     # losses only: wall time differs between identical runs
            summary["training"] = training_summary(self.history)
        self._diagnostics = summary
        return summary

    # --- persistence -------------------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """`model.pt` (state dict) then `meta.json` (how to rebuild it), each written atomically; meta last."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        atomic_write(directory / "model.pt", lambda p: torch.save(state, p))
        meta = {"format": 1, "method": self.method, "entry": self.entry, "settings": self.settings,
                "shapes": {m: list(v) for m, v in self.shapes.items()}, "diagnostics": self._diagnostics,
                "history": self.history}
        atomic_write(directory / "meta.json", lambda p: p.write_text(json.dumps(meta, indent=1)))

    @classmethod
    def load(cls, directory: Path, device: str = "cpu", builder=None) -> "CodebookPretrained":
        """Rebuild from `save`; `builder(shapes, settings)` defaults to the saved entry's `build_model`."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / "meta.json").read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read pretrained model meta {directory / 'meta.json'}: {exc}") from None
        if builder is None:
            module, _, attr = meta["entry"].partition(":")
            builder = getattr(importlib.import_module(module), attr)().build_model
        shapes = {m: tuple(v) for m, v in meta["shapes"].items()}
        model = builder(shapes, meta["settings"]).to(DTYPES[meta["settings"].get("dtype", "float32")])
        state = torch.load(directory / "model.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        model.to(device)
        return cls(model, method=meta["method"], entry=meta["entry"], settings=meta["settings"], shapes=shapes,
                   diagnostics=meta.get("diagnostics"), history=meta.get("history"), device=device)


# --------------------------------------------------------------------------- the method base
class CodebookMethod(Method):
    """Build → train (shared loop) → diagnose → `CodebookPretrained`. Subclasses implement `build_model`."""

    scales: Mapping[str, dict] | None = None   # the card's `scales:` (family over base), set by the registry
    inference_only: tuple[str, ...] = ()       # the card's inference-only options, set by the registry
    min_modalities = 2
    pretrained_class: type = CodebookPretrained   # a subclass where encode/codebooks differ (concat, continuous)

    def settings(self, cfg: Mapping[str, Any]) -> dict[str, Any]:
        return resolve_settings(cfg, self.scales)

    def validate(self, cfg: Mapping[str, Any]) -> None:
        validate_settings(self.settings(cfg), f"method '{self.name}'")

    def device_problem(self, cfg: Mapping[str, Any], device: str) -> str | None:
        return check_device(self.settings(cfg)["dtype"], device)

    def build_model(self, shapes: Mapping[str, tuple], settings: Mapping[str, Any]) -> nn.Module:
        raise NotImplementedError

    def modalities_of(self, corpus) -> tuple[str, ...]:
        names = canonical_modalities(corpus.modalities)
        if len(names) < self.min_modalities:
            raise UserError(f"{self.name} needs at least {self.min_modalities} paired modalities; the corpus has "
                            f"{list(names)}")
        steps = {m: corpus.feature_shape(m)[0] for m in names}
        if len(set(steps.values())) != 1:
            raise UserError(f"{self.name} pairs modalities step by step, so every modality needs the same T; "
                            f"the corpus has {steps}")
        return names

    def check_shapes(self, shapes: Mapping[str, tuple], settings: Mapping[str, Any]) -> None:
        """Raise UserError for corpus shapes the model cannot train on (beyond `modalities_of`)."""

    def resume_tag(self, settings: Mapping[str, Any], shapes, corpus, seed: int) -> str:
        """Checkpoints continue only a run of the same identity: the budget and inference-only options left out."""
        skip = {"epochs", *self.inference_only}
        return stable_hash({"method": self.name, "settings": {k: v for k, v in settings.items() if k not in skip},
                            "shapes": {m: list(v) for m, v in shapes.items()}, "corpus": corpus.fingerprint,
                            "seed": int(seed)})

    def pretrain(self, corpus, cfg: Mapping[str, Any], seed: int, ctx: RunContext) -> CodebookPretrained:
        self.validate(cfg)
        s = self.settings(cfg)
        device = ctx.device or "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"--device {device} asked for, but torch sees no CUDA device")
        reason = check_device(s["dtype"], device)
        if reason:
            raise UserError(f"method '{self.name}': {reason}")
        shapes = {m: tuple(corpus.feature_shape(m)) for m in self.modalities_of(corpus)}
        self.check_shapes(shapes, s)
        torch.manual_seed(seed)
        model = self.build_model(shapes, s).to(dtype=DTYPES[s["dtype"]]).to(device)
        config = TrainConfig(epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"], clip=s["clip"],
                             seed=seed, dtype=s["dtype"], mi_steps=s.get("mi_steps", 5), mi_lr=s.get("mi_lr", 1e-3),
                             resume_tag=self.resume_tag(s, shapes, corpus, seed), name=self.name)
        result: TrainResult = train(model, corpus, config, ctx)
        if result.start_epoch:
            ctx.notes["resumed_from_epoch"] = result.start_epoch
        pretrained = self.pretrained_class(model, method=self.name, entry=self.entry, settings=s, shapes=shapes,
                                           history=result.history, device=device)
        pretrained.compute_diagnostics(corpus, s["batch_size"], ctx)
        probes = factor_probes(pretrained, corpus)   # None unless the corpus stores its clips' true factors
        if probes is not None:
            pretrained._diagnostics["factors"] = probes
        return pretrained

    def load(self, directory: Path, cfg: Mapping[str, Any], ctx: RunContext) -> CodebookPretrained:
        return self.pretrained_class.load(directory, ctx.device or "cpu", builder=self.build_model)
