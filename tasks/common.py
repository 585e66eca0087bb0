"""Plumbing the downstream tasks share: direction labels and the frozen encoder's per-split feature cache.

The encoder is frozen, so each (representation, file, modality, split) is encoded once and shared by every cell,
task and direction that reads it (`tasks.encodings`: keyed by content, in `ctx.scratch` and in memory); heads then
train on cached arrays.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from benchmark.atomic import atomic_open
from benchmark.contracts import Pretrained, RunContext, UserError

from . import encodings
from .encodings import Encoded

SHORT = {"audio": "A", "video": "V", "text": "T"}
LONG = {v: k for k, v in SHORT.items()}
ENCODE_BATCH = 256   # clips per encode call: bounds memory for [N,10,7,7,512] video, does not change numbers


@dataclass(frozen=True)
class Direction:
    label: str    # "V->A"
    source: str   # "video"
    target: str   # "audio"


def parse_directions(text: str, allowed: Sequence[str], task: str) -> list[Direction]:
    """`all`, `cross`, `same` or labels joined by ';' (e.g. `V->A;A->V`) -> directions, in the order given."""
    text = str(text).strip()
    groups = {"all": list(allowed),
              "cross": [d for d in allowed if d[0] != d[-1]],
              "same": [d for d in allowed if d[0] == d[-1]]}
    labels = groups.get(text) or [part.strip() for part in text.replace(",", ";").split(";") if part.strip()]
    unknown = [d for d in labels if d not in allowed]
    if unknown or not labels:
        raise UserError(f"task '{task}': option 'directions' got {text!r}; expected all, cross, same or "
                        f"';'-separated labels from {', '.join(allowed)}")
    out = []
    for label in dict.fromkeys(labels):
        src, _, tgt = label.partition("->")
        out.append(Direction(label, LONG[src], LONG[tgt]))
    return out


def direction_modalities(text: str, allowed: Sequence[str], task: str) -> set[str]:
    """Every modality the directions read, as a source or a target (what `Task.modalities` reports)."""
    return {m for d in parse_directions(text, allowed, task) for m in (d.source, d.target)}


def sources(directions: Sequence[Direction]) -> dict[str, list[Direction]]:
    """Group directions by source modality: one head per source serves all its targets."""
    grouped: dict[str, list[Direction]] = {}
    for d in directions:
        grouped.setdefault(d.source, []).append(d)
    return grouped


class FeatureCache:
    """`pretrained.encode` of whole splits, batched, each computed once (`tasks.encodings`: shared across cells)."""

    def __init__(self, pretrained: Pretrained, ctx: RunContext):
        if pretrained is None:
            raise UserError("this task needs a pretrained method (got none)")
        self.pretrained, self.ctx = pretrained, ctx
        self.memory: dict[tuple[str, str, str], Encoded] = {}
        self.encode_calls = 0

    def get(self, ff, file: str, modality: str, split: str) -> Encoded:
        """Encoded features of `file`'s `split` ("train" | "val" | "test" | "all") for one modality, in split order."""
        key = (file, modality, split)
        if key in self.memory:
            return self.memory[key]
        if modality not in ff.modalities:
            raise UserError(f"{file}.h5 has no '{modality}' features (has {', '.join(ff.modalities)})")
        try:
            supported = tuple(self.pretrained.modalities)
        except NotImplementedError:
            supported = (modality,)
        if modality not in supported:
            raise UserError(f"method '{self.pretrained.method}' has no {modality} encoder "
                            f"(it encodes {', '.join(supported)}); choose other directions")
        idx = np.arange(ff.n(modality), dtype=np.int64) if split == "all" else np.asarray(ff.split(split), np.int64)
        source, columns = encodings.unslice(self.pretrained)
        tag = encodings.refinement_tag(self.ctx) if columns is None else ""
        path = encodings.path_for(self.ctx.scratch, ff, file, modality, split, tag)
        shared = (str(path), encodings.split_tag(idx)) if path is not None else None
        encoded = encodings.MEMORY.get(shared) if shared else None
        if encoded is None:
            encoded = self._load(path, idx) if path is not None else None
            if encoded is None:
                encoded = self._encode(source, ff, file, modality, split, idx)
                if path is not None:
                    self._save(path, idx, encoded)
            if shared:
                encodings.MEMORY.put(shared, encoded)
        if columns is not None:
            encoded = encoded.columns(columns)
        self.memory[key] = encoded
        return encoded

    def _encode(self, pretrained, ff, file, modality, split, idx) -> Encoded:
        xs, valids = [], []
        starts = range(0, len(idx), ENCODE_BATCH)
        for start in self.ctx.progress(starts, description=f"encode {file}/{modality}/{split}", total=len(starts)):
            chunk = idx[start:start + ENCODE_BATCH]
            raw = ff.read(modality, chunk)
            by_clip = getattr(pretrained, "encode_clips", None)   # the oracle reads the clips' stored latents
            out = by_clip(ff, modality, chunk) if by_clip is not None else pretrained.encode(modality, raw)
            self.encode_calls += 1
            out = out.detach().cpu().float().numpy() if hasattr(out, "detach") else np.asarray(out, np.float32)
            if out.ndim != 3 or out.shape[0] != len(raw):
                raise RuntimeError(f"{pretrained.method}.encode({modality}) returned shape {out.shape}, "
                                   f"expected [{len(raw)}, T, D]")
            valid = np.abs(raw.reshape(raw.shape[0], raw.shape[1], -1)).max(-1) > 0
            xs.append(out)
            valids.append(valid if valid.shape == out.shape[:2] else np.ones(out.shape[:2], bool))
        if not xs:
            raise UserError(f"{file}.h5: split '{split}' is empty")
        return Encoded(np.concatenate(xs).astype(np.float32, copy=False), np.concatenate(valids))

    @staticmethod
    def _load(path, idx) -> Encoded | None:
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                if not np.array_equal(data["idx"], idx):   # written for another split definition: recompute
                    return None
                return Encoded(data["x"], data["valid"])
        except Exception as exc:  # noqa: BLE001 - a truncated or foreign cache file: rebuild it
            from benchmark.notice import warn
            warn(f"{path}: unreadable feature cache ({type(exc).__name__}: {str(exc)[:100]}); rebuilt")
            return None

    @staticmethod
    def _save(path, idx, encoded: Encoded) -> None:
        with atomic_open(path) as fh:
            np.savez(fh, idx=idx, x=encoded.x, valid=encoded.valid)


def masked_mean(encoded: Encoded) -> np.ndarray:
    """Mean over T of the non-padding frames `[N, T, D] -> [N, D]` (all frames when a clip is all padding)."""
    valid = encoded.valid.copy()
    valid[~valid.any(1)] = True
    w = valid[..., None].astype(np.float32)
    return (encoded.x * w).sum(1) / w.sum(1)
