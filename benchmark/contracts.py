"""The small contracts every method, refiner and task plugs into.

Kept free of torch imports so that `python -m benchmark ls` and `--help` stay fast; implementations
import torch themselves. Shapes are batch first: `[N, T, ...]`.

Flow (docs/ARCHITECTURE.md):
    Method.pretrain(corpus, cfg, seed, ctx) -> Pretrained          (cached by the runner)
    Refiner.refine(pretrained, cfg, ctx)     -> Pretrained          (training-free, never cached on disk)
    Task.evaluate(pretrained, world, cfg, seed, ctx) -> {direction: {metric: value}}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, runtime_checkable


class UserError(Exception):
    """A mistake in user input (bad name, spec, file, key). The CLI prints `error: <msg>` and exits 2."""


class NotApplicable(Exception):
    """A cell that cannot exist on this data, e.g. the oracle on files without true latents (real data): the
    runner reports it as `n/a`, writes neither a result nor an error, and the grid does not fail."""


# --------------------------------------------------------------------------- run context
@dataclass
class RunContext:
    """Everything a cell needs that must NOT change its numbers (so it is never hashed).

    `progress(iterable, description, total)` wraps a loop in a rich progress bar (a no-op when quiet or in a
    worker process); `log(msg)` prints one line above the bars. `scratch` is a cache directory shared by every
    cell that uses the same frozen representation on the same data (so `ave` and `ave@protocol=reference`
    encode once; write into it atomically); `artifacts` is the cell's own directory for extra outputs;
    `pretrain_dir` is where a method may keep resumable epoch checkpoints for the pretraining it is running.
    A task calls `record(direction, sizes, **arrays)` once per reported direction: `sizes` (how many clips,
    seconds, queries the metric was computed on) go into the result; the per-sample arrays are kept only when
    `log_samples` asks for them (the runner then writes them to `samples.npz`).
    """

    device: str = "cpu"
    scratch: Path | None = None      # reusable per (pretrained model, refiners, data): e.g. encoded splits
    artifacts: Path | None = None    # files kept beside the cell's result.json (e.g. a PNG the task draws)
    pretrain_dir: Path | None = None
    progress: Callable[..., Iterable] = lambda it, description="", total=None: it
    log: Callable[[str], None] = lambda msg: None
    notes: dict = field(default_factory=dict)  # free-form facts reported back into the cell (e.g. "pretrain: cached")
    log_samples: bool = False
    test_sizes: dict = field(default_factory=dict)  # direction -> {"clips": N, ...}
    samples: dict = field(default_factory=dict)     # direction -> {name: ndarray}, only with log_samples
    diagnostics: dict = field(default_factory=dict)  # a self-contained task's own model (toc_recon's VQ-VAE)
    task: str | None = None   # the cell's task name (already in its key): TOC's released Q differs per task
    seed: int | None = None   # the cell's seed (already in its key): seeds the random-dims TOC control
    events: Callable[..., None] = lambda kind, **info: None   # the harness's progress sink (any executor)

    def epoch_done(self, done: int, total: int, seconds: float) -> None:
        """A training loop calls this after each epoch, so progress and the ETA follow it (also in pool workers)."""
        self.events("epoch", done=int(done), total=int(total), seconds=float(seconds))

    def record(self, direction: str, sizes: Mapping[str, int], **arrays) -> None:
        self.test_sizes[direction] = {k: int(v) for k, v in sizes.items()}
        if self.log_samples:
            self.samples[direction] = arrays


# --------------------------------------------------------------------------- data
MODALITY_ORDER = ("audio", "video", "text")   # canonical modality order (the released sequential MM-EMA order)


@runtime_checkable
class Corpus(Protocol):
    """A pretraining corpus (paired clips, several modalities), streamed in batches.

    Implemented by `tasks.data` (HDF5 reader). `iter_batches` must hold at most one batch (plus an HDF5
    chunk) in memory so a corpus larger than RAM can pretrain.
    """

    modalities: tuple[str, ...]          # e.g. ("audio", "video", "text")
    fingerprint: str                     # content hash; part of every cache key

    def __len__(self) -> int: ...
    def feature_shape(self, modality: str) -> tuple[int, ...]:   # per clip, e.g. (10, 128) or (10, 7, 7, 512)
        ...
    def iter_batches(self, batch_size: int, seed: int, shuffle: bool = True,
                     modalities: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        """Yield dicts {modality: float32 ndarray [B, T, ...], "index": int ndarray [B]} (last batch may be short)."""
        ...


# --------------------------------------------------------------------------- methods
class Pretrained:
    """A frozen, pretrained representation. Subclasses implement `encode` (and `codes` when discrete).

    `encode(modality, x)` maps raw features `[N, T, ...]` (numpy or torch) to the representation the
    downstream heads see, a float tensor `[N, T, D]` (for discrete methods: the quantized vectors, i.e.
    codebook rows). `codes(modality, x)` gives code indices `[N, T]` (or `[N, T, levels]`).
    `codebooks` is the list of codebooks `[L, D]` that refiners operate on (one per layer/level).
    A representation that reads what the file stores about each clip instead of its features (the oracle) also
    defines `encode_clips(feature_file, modality, idx) -> [len(idx), T, D]`; the tasks' encoder cache prefers it.
    """

    discrete: bool = True
    method: str = ""

    @property
    def dim(self) -> int:
        raise NotImplementedError

    @property
    def modalities(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def codebooks(self) -> list:
        raise NotImplementedError(f"{self.method} has no codebook")

    def encode(self, modality: str, x):
        raise NotImplementedError

    def codes(self, modality: str, x):
        raise NotImplementedError(f"{self.method} is not discrete")

    def to(self, device: str) -> "Pretrained":
        return self

    def diagnostics(self) -> dict:
        """JSON-serialisable facts about the model (codebook usage, perplexity, ...)."""
        return {}

    # persistence (the runner's pretraining cache) -------------------------------------------------
    def save(self, directory: Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, directory: Path, device: str = "cpu") -> "Pretrained":
        raise NotImplementedError


class Method:
    """A registered pretraining method. `cfg` is the resolved config (YAML defaults merged with overrides)."""

    name: str = ""       # name, entry and discrete are set by the registry from the card (`Entry.load`)
    entry: str = ""
    discrete: bool = True

    def validate(self, cfg: Mapping[str, Any]) -> None:
        """Raise UserError for values the method cannot run with (beyond the registry's type checks)."""

    def pretrain(self, corpus: Corpus, cfg: Mapping[str, Any], seed: int, ctx: RunContext) -> Pretrained:
        raise NotImplementedError

    def load(self, directory: Path, cfg: Mapping[str, Any], ctx: RunContext) -> Pretrained:
        """Rebuild a Pretrained saved by `Pretrained.save` in `directory`."""
        raise NotImplementedError

    def device_problem(self, cfg: Mapping[str, Any], device: str) -> str | None:
        """Why this configuration cannot run on `device` (a precision the hardware lacks), None when it can: the
        harness asks before anything runs."""
        return None


class Refiner:
    """Training-free transformation of a Pretrained (e.g. TOC). Must not retrain anything."""

    name: str = ""

    def refine(self, pretrained: Pretrained, cfg: Mapping[str, Any], ctx: RunContext) -> Pretrained:
        raise NotImplementedError


# --------------------------------------------------------------------------- tasks
class World(Protocol):
    """The set of native feature files a run uses (synthetic world or a user's `--data DIR`).

    `open(name)` returns the validated reader for `<dir>/<name>.h5` (e.g. "pretrain", "ave", "avvp"),
    raising UserError when it is missing. `fingerprint(names)` hashes the named files' fingerprints.
    """

    root: Path

    def open(self, name: str) -> Any: ...
    def fingerprint(self, names: Iterable[str]) -> str: ...
    def corpus(self) -> Corpus: ...


class Task:
    """A registered downstream task. `datasets` names the files of the world it reads (for the fingerprint);
    it, `name`, `entry` and `needs_pretrained` are set by the registry from the card (`Entry.load`).

    `evaluate` trains heads on the source modality's train split, selects on its val split, and reports on the
    target modality's test split. Returns `{direction: {metric: value}}`, directions like "V->A", "A->V", "V->V".
    `main_metric` names the metric tables average; `higher_is_better` maps metric -> bool.
    """

    name: str = ""
    entry: str = ""
    datasets: tuple[str, ...] = ()
    main_metric: str = ""
    higher_is_better: Mapping[str, bool] = {}
    needs_pretrained: bool = True   # card `needs_pretrained: false`: self-contained (toc_recon trains its own VQ-VAE)

    def validate(self, cfg: Mapping[str, Any]) -> None:
        """Raise UserError for config values the task cannot run with."""

    def modalities(self, cfg: Mapping[str, Any]) -> set[str] | None:
        """The modalities the configured task reads (its directions' sources and targets), None when it does not
        say: planning checks them against the method and the corpus before any cell runs."""
        return None

    def evaluate(self, pretrained: Pretrained | None, world: World, cfg: Mapping[str, Any], seed: int,
                 ctx: RunContext) -> dict[str, dict[str, float]]:
        raise NotImplementedError
