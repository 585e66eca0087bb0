"""Encoded splits shared by every cell, task and direction that reads them: each (representation, feature file,
modality, split) is encoded once.

Why: a frozen representation gives the same features to every task that reads a split (AVE's train split feeds
`ave` and `ave_avvp`; the UCF and VGG splits feed `ucf_vgg` only; a TOC row reads the same model as its base row),
so keying the encodings by what they are computed from, not by the cell, lets the whole head phase of a grid
encode each split of each pretraining once.

What a key holds (content, never the cell or the task):
- the representation: the cell's scratch folder, which the runner keys by the pretraining and the base method spec
  (the spec carries inference-only options such as `srcid@only1`); a refinement that only keeps columns of its base
  (`sliced_from()`: TOC and its random control) reads the base's encoding and slices it, any other refinement is
  keyed by the refiners, task and seed it ran under (what such a refiner may read);
- the data: the feature file's fingerprint and the split's clip indices.
Arrays live on disk (one `.npz` per key, reused by later processes and resumed cells) and in a process-wide LRU of
up to `MEMORY_BYTES`, so the cells of one grid process share them without reading them back.
"""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MEMORY_BYTES = 1 << 30


@dataclass
class Encoded:
    x: np.ndarray       # [N, T, D] float32: the frozen representation
    valid: np.ndarray   # [N, T] bool: the raw frame was not all-zero padding (used by mean pooling)

    @property
    def nbytes(self) -> int:
        return int(self.x.nbytes + self.valid.nbytes)

    def columns(self, index) -> "Encoded":
        index = np.asarray(index, dtype=np.int64)
        if np.array_equal(index, np.arange(self.x.shape[-1])):
            return self
        return Encoded(np.ascontiguousarray(self.x[..., index]), self.valid)


class _Memory:
    """A least-recently-used map of `Encoded` bounded by their bytes."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0
        self.items: OrderedDict[tuple, Encoded] = OrderedDict()

    def get(self, key: tuple) -> Encoded | None:
        if key in self.items:
            self.items.move_to_end(key)
        return self.items.get(key)

    def put(self, key: tuple, value: Encoded) -> None:
        if key in self.items or value.nbytes > self.limit:
            return
        self.items[key] = value
        self.used += value.nbytes
        while self.used > self.limit:
            _, old = self.items.popitem(last=False)
            self.used -= old.nbytes

    def clear(self) -> None:
        self.items.clear()
        self.used = 0


MEMORY = _Memory(MEMORY_BYTES)


def unslice(pretrained) -> tuple[object, np.ndarray | None]:
    """(the representation whose encoding is computed, the columns kept of it or None): follows `sliced_from()`."""
    index = None
    while hasattr(pretrained, "sliced_from"):
        pretrained, kept = pretrained.sliced_from()
        kept = np.asarray(kept.cpu() if hasattr(kept, "cpu") else kept, dtype=np.int64)
        index = kept if index is None else kept[index]
    return pretrained, index


def refinement_tag(ctx) -> str:
    """'' for a base representation; else a hash of the refiners, task and seed of a refinement that is no slice."""
    refiners = list(ctx.notes.get("refiners") or [])
    if not refiners:
        return ""
    text = json.dumps([refiners, getattr(ctx, "task", None), getattr(ctx, "seed", None)], default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def split_tag(idx: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(idx, dtype=np.int64).tobytes()).hexdigest()[:12]


def path_for(scratch: Path | None, ff, file: str, modality: str, split: str, tag: str) -> Path | None:
    """The `.npz` of one key inside the scratch folder, or None (no scratch, or a file without a fingerprint)."""
    fingerprint = getattr(ff, "fingerprint", None)
    if scratch is None or not isinstance(fingerprint, str):
        return None
    return Path(scratch) / f"features-{file}-{modality}-{split}-{fingerprint}{'-' + tag if tag else ''}.npz"
