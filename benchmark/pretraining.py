"""The pretraining cache: one trained model per (method settings, corpus, seed), shared by every task and refiner.

A pretraining is the expensive node of a grid, so it is cached apart from cells (`<store>/pretrain/<method>/<key>`),
trained at most once across processes (a file lock per key) and kept resident for the next cell of the same
process. Its start, end and epochs are reported through `ctx.events` so progress and the ETA can follow it in
any executor. An older store's pretrainings are re-keyed once by `benchmark.migrate`, not looked up here.
"""
from __future__ import annotations

import random
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import spec as specs
from .atomic import atomic_write_json
from .contracts import RunContext
from .store import Store, environment, file_lock, remove_tree, sweep_tmp, warn
from .world import task_datasets

_MEMORY: dict[str, Any] = {}  # pretrain key -> Pretrained, so N tasks in one process reuse one model


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def epochs_of(method: specs.MethodSpec) -> int | None:
    """The epochs a method's pretraining runs (its resolved budget), None for entries without an epoch budget."""
    epochs = (specs.pretrain_settings(method) or {}).get("epochs")
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None


def _location(cell, corpus, store: Store) -> tuple[str, Path]:
    """(key, folder) of a cell's pretraining (an older store is re-keyed once by `benchmark.migrate`)."""
    key = specs.pretrain_key(cell.method, corpus.fingerprint, cell.seed)
    return key, store.pretrain_dir(cell.method.base.name, key)


def get_pretrained(cell, world, store: Store, ctx: RunContext, checkpoints: Path | None = None):
    """Load the cached pretraining for (method cfg, corpus, seed) or train it once (locked across processes).
    `cell` needs `.method` and `.seed`; `checkpoints`: a checkpoint folder shared by several budgets of one run
    (the budget study); default: the entry's own."""
    corpus = world.corpus()
    method = cell.method.base.entry.load()
    cfg = cell.method.base.cfg
    key = specs.pretrain_key(cell.method, corpus.fingerprint, cell.seed)
    if key in _MEMORY:
        ctx.notes["pretrain"] = f"cached in memory ({key})"
        return _inference_view(method, _MEMORY[key], cfg), key
    key, directory = _location(cell, corpus, store)
    with file_lock(directory.parent / f".{key}.lock"):
        done = directory / "complete.json"
        sweep_tmp(directory, directory / "model", directory / "checkpoints")  # dead writers' temp files
        pretrained = None
        if done.exists():
            t0 = time.perf_counter()
            try:
                pretrained = method.load(directory / "model", cfg, ctx)
                ctx.notes["pretrain"] = f"cached ({key}, loaded in {time.perf_counter() - t0:.1f}s)"
            except Exception as exc:  # noqa: BLE001 - a torn or foreign model: heal by retraining
                warn(f"{directory}: cached pretraining does not load ({type(exc).__name__}: {exc}); retraining")
                done.unlink(missing_ok=True)
        if pretrained is None:
            pretrained = _train(cell, corpus, method, cfg, key, directory, ctx, checkpoints)
    pretrained.to(ctx.device)
    _MEMORY.clear()  # keep at most one model resident
    _MEMORY[key] = pretrained
    return _inference_view(method, pretrained, cfg), key


def _train(cell, corpus, method, cfg, key: str, directory: Path, ctx: RunContext, checkpoints: Path | None):
    """Train, save the model, then `meta.json`, then `complete.json` (its presence marks the entry usable)."""
    ctx.log(f"pretraining {cell.method.pretrain_canonical()} (seed {cell.seed}) -> {directory}")
    seed_everything(cell.seed)
    ctx.pretrain_dir = checkpoints or directory / "checkpoints"
    ctx.events("pretrain_start", key=key, label=f"{cell.method.pretrain_canonical()} seed {cell.seed}",
               method=cell.method.base.name, epochs=epochs_of(cell.method))
    t0 = time.perf_counter()
    try:
        pretrained = method.pretrain(corpus, cfg, cell.seed, ctx)
    finally:
        ctx.events("pretrain_end", key=key)
    seconds = time.perf_counter() - t0
    model_dir = directory / "model"
    remove_tree(model_dir)          # a link is removed, never followed; an error names the folder
    pretrained.save(model_dir)
    atomic_write_json(directory / "meta.json", {
        "method": cell.method.pretrain_resolved(), "corpus": corpus.fingerprint, "seed": cell.seed,
        "pretrain_s": seconds, "diagnostics": pretrained.diagnostics(), "env": environment()})
    atomic_write_json(directory / "complete.json", {"key": key, "created": now()})
    ctx.notes["pretrain"] = f"trained ({key}, {seconds:.1f}s)"
    ctx.notes["pretrain_s"] = round(seconds, 3)
    return pretrained


def pending(cells, world, store: Store) -> dict[str, dict]:
    """The pretrainings these cells (task None: a bare pretraining) will train, not in the store yet, by key:
    {"method", "label", "epochs"}.
    What the ETA counts epochs of; entries without an epoch budget are left to the per-cell cost."""
    out: dict[str, dict] = {}
    corpus = None
    for cell in cells:
        epochs = epochs_of(cell.method)
        if epochs is None or (cell.task is not None and not task_datasets(cell.task)[1]):
            continue
        corpus = corpus or world.corpus()
        key, directory = _location(cell, corpus, store)
        if key not in out and not (directory / "complete.json").exists():
            out[key] = {"method": cell.method.base.name, "epochs": epochs,
                        "label": f"{cell.method.pretrain_canonical()} seed {cell.seed}"}
    return out


def _inference_view(method, pretrained, cfg):
    """Apply inference-only options (e.g. SRCID's only1) to a model shared by several specs."""
    view = getattr(method, "inference_view", None)
    return view(pretrained, cfg) if view is not None else pretrained
