"""Cross methods × tasks × seeds into cells; compute each at most once; cache pretraining separately.

A cell's life: plan (resolve specs, fingerprint the data, key) -> skip if cached -> lock -> re-check ->
pretrain (or load the cached pretraining) -> refine (training-free) -> evaluate -> write atomically.
Any exception inside a cell becomes `error.json` and the grid goes on; the caller reports failures.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from . import bounds
from . import spec as specs
from .atomic import atomic_write_json
from .contracts import RunContext, UserError
from .results import SAMPLES, CellResult, write_samples
from .store import Store, environment, file_lock, sweep_tmp, torch_threads, warn

OVERWRITE = ("never", "only-missing", "always", "only-cache")


# --------------------------------------------------------------------------- world selection
@dataclass(frozen=True)
class WorldChoice:
    """Which feature files a run uses: a synthetic profile (generated once, cached) or a user directory."""

    profile: str | None = "default"
    data: str | None = None
    world_seed: int = 0
    cache_root: str = "results/data"

    @property
    def label(self) -> str:
        return f"data:{self.data}" if self.data else f"{self.profile}-s{self.world_seed}"

    def open(self, generate: bool = True, progress=None):
        from tasks.data import ensure_world, open_world  # heavy-ish; only when a world is needed
        if self.data:
            root = Path(self.data)
            if not root.is_dir():
                raise UserError(f"--data '{self.data}' is not a directory (expected a folder of native .h5 files)")
            return open_world(root, scan_cache=Path(self.cache_root) / ".scanned")
        root = Path(self.cache_root) / f"{self.profile}-s{self.world_seed}"
        if not generate and not (root / ".complete").exists():
            return None
        return open_world(ensure_world(self.profile, self.world_seed, self.cache_root, progress=progress),
                          scan_cache=Path(self.cache_root) / ".scanned")


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- cells
@dataclass
class Cell:
    method: specs.MethodSpec
    task: specs.TaskSpec
    seed: int
    key: str = ""
    data_fingerprint: str = ""

    @property
    def label(self) -> str:
        return f"{self.method.canonical()} × {self.task.canonical()} × seed {self.seed}"

    def sort_key(self):
        return (self.task.canonical(), self.method.canonical(), self.seed, self.key)


def task_datasets(task: specs.TaskSpec) -> tuple[tuple[str, ...], bool]:
    """(datasets the task reads, whether it needs a pretrained model), as its card states them."""
    entry = task.component.entry
    return entry.datasets, entry.needs_pretrained


def plan(method_specs: Iterable[str], task_specs: Iterable[str], seeds: Iterable[int], world) -> list[Cell]:
    """Resolve specs and key every cell. `world` may be None (not generated yet): keys are then left empty."""
    cells, seen = [], set()
    methods = [specs.parse_method(m) for m in method_specs]
    tasks = [specs.parse_task(t) for t in task_specs]
    seeds = specs.check_seeds(list(seeds))
    for spec_ in methods:   # the implementations' range checks, before any world or cell
        specs.validate_method(spec_)
    for spec_ in tasks:
        specs.validate_task(spec_)
    bounds.check_plan(methods, tasks, world)   # sizes, memory, and the checks that need the world
    for task in tasks:
        for method in methods:
            _check_pairing(method, task)
        datasets, needs_pretrained = task_datasets(task)
        names = (("pretrain",) if needs_pretrained else ()) + datasets
        fingerprint = world.fingerprint(names) if world is not None else ""
        for method in methods:
            for seed in seeds:
                cell = Cell(method, task, int(seed), data_fingerprint=fingerprint)
                if world is not None:
                    cell.key = specs.cell_key(method, task, fingerprint, seed)
                ident = (method.canonical(), task.canonical(), int(seed))
                if ident not in seen:
                    seen.add(ident)
                    cells.append(cell)
    return sorted(cells, key=Cell.sort_key)


def _check_pairing(method: specs.MethodSpec, task: specs.TaskSpec) -> None:
    """Some entries only make sense together (vqvae is trained inside toc_recon): refuse other pairings."""
    only_methods = task.component.entry.only_methods
    only_tasks = method.base.entry.only_tasks
    if only_methods and method.base.name not in only_methods:
        raise UserError(f"task '{task.name}' runs only with method(s) {', '.join(only_methods)}, "
                        f"not '{method.base.name}'")
    if only_tasks and task.name not in only_tasks:
        raise UserError(f"method '{method.base.name}' runs only with task(s) {', '.join(only_tasks)}, "
                        f"not '{task.name}'")


class NoWorld:
    """Stand-in world for grids whose tasks read no feature files (toc_recon): nothing to generate."""

    root = None

    def open(self, name):
        raise UserError(f"this run reads no feature files, yet '{name}' was requested")

    def fingerprint(self, names) -> str:
        if list(names):
            raise UserError("this run reads no feature files")
        return specs.stable_hash("no-data")

    def corpus(self):
        raise UserError("this run has no pretraining corpus")


def needs_world(cells: list[Cell]) -> bool:
    for cell in cells:
        datasets, needs_pretrained = task_datasets(cell.task)
        if datasets or needs_pretrained:
            return True
    return False


def shard(cells: list[Cell], spec: str | None) -> list[Cell]:
    if not spec:
        return cells
    try:
        i, n = (int(x) for x in spec.split("/"))
        assert 0 <= i < n
    except (ValueError, AssertionError):
        raise UserError(f"--shard expects i/n with 0 <= i < n, got '{spec}'") from None
    return cells[i::n]


# --------------------------------------------------------------------------- pretraining cache
_MEMORY: dict[str, Any] = {}  # pretrain key -> Pretrained, so N tasks in one process reuse one model


def _read_meta(directory: Path) -> dict | None:
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _trained_epochs(meta: dict | None) -> int | None:
    """Epochs a stored pretraining ran (the length of its loss history in `meta.json`), None when unknown. A legacy
    key hashes the options as written, so `dcid` under a 4- or 16-epoch preset has the same legacy key as under
    today's: only a run of the budget asked for may answer."""
    try:
        history = meta["diagnostics"]["training"]["loss_history"]
    except (KeyError, TypeError):
        return None
    return len(history) if isinstance(history, list) else None


def get_pretrained(cell: Cell, world, store: Store, ctx: RunContext, checkpoints: Path | None = None):
    """Load the cached pretraining for (method cfg, corpus, seed) or train it once (locked across processes).
    `checkpoints`: a checkpoint folder shared by several budgets of one run (the budget study); default: the
    entry's own."""
    corpus = world.corpus()
    key = specs.pretrain_key(cell.method, corpus.fingerprint, cell.seed)
    method = cell.method.base.entry.load()
    cfg = cell.method.base.cfg
    if key in _MEMORY:
        ctx.notes["pretrain"] = f"cached in memory ({key})"
        return _inference_view(method, _MEMORY[key], cfg), key
    directory = store.pretrain_dir(cell.method.base.name, key)
    legacy = specs.legacy_pretrain_key(cell.method, corpus.fingerprint, cell.seed)
    legacy_dir = store.pretrain_dir(cell.method.base.name, legacy)
    if legacy != key and not (directory / "complete.json").exists() and (legacy_dir / "complete.json").exists() \
            and _trained_epochs(_read_meta(legacy_dir)) == (specs.pretrain_settings(cell.method) or {}).get("epochs"):
        key, directory = legacy, legacy_dir   # a store from before 0.2, trained for the budget asked for
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
            ctx.log(f"pretraining {cell.method.pretrain_canonical()} (seed {cell.seed}) -> {directory}")
            seed_everything(cell.seed)
            ctx.pretrain_dir = checkpoints or directory / "checkpoints"
            t0 = time.perf_counter()
            pretrained = method.pretrain(corpus, cfg, cell.seed, ctx)
            seconds = time.perf_counter() - t0
            model_dir = directory / "model"
            if model_dir.exists():
                shutil.rmtree(model_dir)
            pretrained.save(model_dir)
            atomic_write_json(directory / "meta.json", {
                "method": cell.method.pretrain_resolved(), "corpus": corpus.fingerprint, "seed": cell.seed,
                "pretrain_s": seconds, "diagnostics": pretrained.diagnostics(), "env": environment()})
            atomic_write_json(done, {"key": key, "created": _now()})
            ctx.notes["pretrain"] = f"trained ({key}, {seconds:.1f}s)"
            ctx.notes["pretrain_s"] = round(seconds, 3)
    pretrained.to(ctx.device)
    _MEMORY.clear()  # keep at most one model resident
    _MEMORY[key] = pretrained
    return _inference_view(method, pretrained, cfg), key


def rekey_pretrainings(store: Store) -> int:
    """Move finished pretrainings stored under a legacy key (options as written) to their settings key, so
    `dcid@epochs=P` trained by a budget study serves `dcid` when P is the preset; an entry whose options leave the
    budget to the preset is keyed by the epochs it actually trained. Idempotent; returns the count."""
    moved = 0
    for done in sorted(Path(store.root).glob("pretrain/*/*/complete.json")):
        directory = done.parent
        try:
            meta = json.loads((directory / "meta.json").read_text())
            entry = specs.registry.get("method", meta["method"]["name"])
            if int(meta["method"]["version"]) != entry.version:
                continue
            cfg = dict(meta["method"]["cfg"])
            if "epochs" in entry.options and cfg.get("epochs") is None:
                # trained under the preset of its day (4, 16 epochs, ...): key it by what it ran, never by
                # today's preset, or `dcid` would load an older, shorter run
                cfg["epochs"] = _trained_epochs(meta)
                if cfg["epochs"] is None:
                    continue
            method = specs.MethodSpec(specs.Component(entry, entry.resolve(cfg)))
            key = specs.pretrain_key(method, meta["corpus"], int(meta["seed"]))
        except (OSError, ValueError, KeyError, TypeError, UserError):
            continue          # foreign or torn entries are healed where they are used
        target = directory.parent / key
        if key != directory.name and not target.exists():
            with file_lock(directory.parent / f".{directory.name}.lock"):
                os.replace(directory, target)
            moved += 1
    return moved


def _inference_view(method, pretrained, cfg):
    """Apply inference-only options (e.g. SRCID's only1) to a model shared by several specs."""
    view = getattr(method, "inference_view", None)
    return view(pretrained, cfg) if view is not None else pretrained


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def compute_cell(cell: Cell, world, store: Store, ctx: RunContext) -> CellResult:
    """Run one cell and return its result (not yet written)."""
    t0 = time.perf_counter()
    ctx.scratch = None
    task = cell.task.component.entry.load()
    task.validate(cell.task.component.cfg)
    pretrained, pkey = None, None
    if getattr(task, "needs_pretrained", True):
        pretrained, pkey = get_pretrained(cell, world, store, ctx)
        # keyed by the full method spec (refiners and inference-only options change the features), not the task
        ctx.scratch = store.root / "features" / pkey / specs.stable_hash([cell.method.resolved(),
                                                                          cell.data_fingerprint])
        ctx.scratch.mkdir(parents=True, exist_ok=True)
        for refiner in cell.method.refiners:
            pretrained = refiner.entry.load().refine(pretrained, refiner.cfg, ctx)
        ctx.notes.setdefault("refiners", [r.canonical() for r in cell.method.refiners])
    t1 = time.perf_counter()
    seed_everything(cell.seed)
    metrics = task.evaluate(pretrained, world, cell.task.component.cfg, cell.seed, ctx)
    t2 = time.perf_counter()
    _check_metrics(metrics, cell)
    return CellResult(
        key=cell.key, method=cell.method.canonical(), method_base=cell.method.base.name,
        refiners=[r.name for r in cell.method.refiners], discrete=cell.method.discrete,
        task=cell.task.canonical(), task_name=cell.task.name, task_version=cell.task.component.entry.version,
        seed=cell.seed, data_fingerprint=cell.data_fingerprint, world=ctx.notes.pop("world", None),
        pretrain_key=pkey, metrics=metrics, test_sizes=dict(ctx.test_sizes), main_metric=task.main_metric,
        higher_is_better=dict(task.higher_is_better),
        timings={"pretrain_and_refine_s": round(t1 - t0, 3), "evaluate_s": round(t2 - t1, 3),
                 "total_s": round(t2 - t0, 3)},
        diagnostics=pretrained.diagnostics() if pretrained is not None else dict(ctx.diagnostics),
        notes=dict(ctx.notes), created=_now())


def _check_metrics(metrics, cell: Cell) -> None:
    if not isinstance(metrics, dict) or not metrics:
        raise RuntimeError(f"task {cell.task.name} returned no metrics")
    for direction, values in metrics.items():
        if not isinstance(values, dict):
            raise RuntimeError(f"task {cell.task.name}: metrics['{direction}'] is not a dict")


# --------------------------------------------------------------------------- execution
@dataclass
class Outcome:
    cell: Cell
    status: str  # cached | ran | failed | missing
    result: CellResult | None = None
    error: str | None = None
    seconds: float = 0.0


@dataclass
class Options:
    threads: int = 0  # torch intra-op threads; 0 = all cores for local, cores // workers for pools
    overwrite: str = "only-missing"
    device: str = "cpu"
    quiet: bool = False
    world: WorldChoice = field(default_factory=WorldChoice)
    log_samples: bool = False    # write each computed cell's per-sample predictions (samples.npz)
    log: tuple[str, ...] = ()    # experiment trackers the parent mirrors every cell to (benchmark.tracking)
    mlflow_uri: str | None = None   # None: a file store <results>/mlruns


def _config_of(cell: Cell, options: Options) -> dict:
    return {"method": cell.method.resolved(), "task": cell.task.resolved(), "seed": cell.seed,
            "data_fingerprint": cell.data_fingerprint, "world": options.world.label,
            "spec": {"method": cell.method.canonical(), "task": cell.task.canonical()},
            "unhashed": {"device": options.device, "overwrite": options.overwrite, "torch_threads": torch_threads(),
                         "log_samples": options.log_samples}}


def cached_result(cell: Cell, store: Store, options: Options) -> CellResult | None:
    """The stored result that answers `cell`, or None: a cell without `samples.npz` does not answer a run that
    logs samples (it is recomputed; its pretraining stays cached)."""
    result = store.load_result(cell.task.canonical(), cell.method.canonical(), cell.key)
    if result is not None and options.log_samples and not (Path(result.directory) / SAMPLES).exists():
        return None
    return result


def execute_cell(cell: Cell, world, store: Store, options: Options, ctx: RunContext) -> Outcome:
    """Cached, computed or failed: the single place where one cell is decided and written."""
    cell_dir = store.cell_dir(cell.task.canonical(), cell.method.canonical(), cell.key)
    if options.overwrite != "always":
        cached = cached_result(cell, store, options)
        if cached is not None:
            return Outcome(cell, "cached", cached)
        if options.overwrite == "only-cache":
            return Outcome(cell, "missing")
        if options.overwrite == "never" and (cell_dir / "error.json").exists():
            return Outcome(cell, "failed", error="previous failure (overwrite=never)")
    t0 = time.perf_counter()
    with store.lock(cell_dir):
        if options.overwrite != "always":  # another process may have finished it while we waited
            cached = cached_result(cell, store, options)
            if cached is not None:
                return Outcome(cell, "cached", cached)
        ctx.artifacts = cell_dir
        ctx.notes = {"world": options.world.label}
        ctx.log_samples, ctx.test_sizes, ctx.samples, ctx.diagnostics = options.log_samples, {}, {}, {}
        sweep_tmp(cell_dir)  # temp files of a killed writer (every writer of this folder holds its lock)
        try:
            result = compute_cell(cell, world, store, ctx)
        except UserError:  # bad input, not a failed cell: one `error:` line, exit 2, no error.json
            raise
        except Exception as exc:  # noqa: BLE001 - a failing cell must not stop the grid
            message = f"{type(exc).__name__}: {exc}"
            store.write_error(cell_dir, {"key": cell.key, "method": cell.method.canonical(),
                                         "task": cell.task.canonical(), "seed": cell.seed, "error": message,
                                         "traceback": traceback.format_exc(), "created": _now()})
            return Outcome(cell, "failed", error=message, seconds=time.perf_counter() - t0)
        env = environment()
        env["device"] = options.device
        if options.log_samples:
            write_samples(cell_dir / SAMPLES, ctx.samples)
        else:   # a recomputed cell must not keep the samples of an earlier computation
            (cell_dir / SAMPLES).unlink(missing_ok=True)
        store.write_result(cell_dir, result, _config_of(cell, options), env)
    return Outcome(cell, "ran", result, seconds=time.perf_counter() - t0)


def make_context(options: Options, progress=None, log: Callable[[str], None] | None = None) -> RunContext:
    ctx = RunContext(device=resolve_device(options.device))
    if progress is not None:
        ctx.progress = progress
    if log is not None:
        ctx.log = log
    return ctx


def resolve_device(device: str) -> str:
    if device not in ("cpu", "cuda", "auto") and not device.startswith("cuda:"):
        raise UserError(f"--device must be cpu, cuda, cuda:N or auto, got '{device}'")
    if device == "cpu":
        return "cpu"
    import torch
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise UserError(f"--device {device} requested but torch sees no CUDA device (use --device cpu or auto)")
    return device


def check_precisions(cells: list[Cell], device: str) -> None:
    """UserError before anything runs when a method's precision (`dtype`) cannot run on the device."""
    from methods.precision import check_device
    for cell in cells:
        reason = check_device(cell.method.base.cfg.get("dtype", "float32"), device)
        if reason:
            raise UserError(f"{cell.method.canonical()}: {reason}")


def set_threads(n: int) -> None:
    """Small heads on 2 cores run far faster single-threaded when several processes share the machine."""
    import torch
    torch.set_num_threads(max(1, n))


def default_threads() -> int:
    """Small models on a 2-core machine: one thread (measured 10-40x faster than two when cores are shared)."""
    cores = os.cpu_count() or 1
    return 1 if cores <= 2 else cores // 2


def run_local(cells: list[Cell], world, store: Store, options: Options, ui) -> list[Outcome]:
    set_threads(options.threads or default_threads())
    outcomes = []
    ctx = make_context(options, progress=ui.inner, log=ui.log)
    for cell in cells:
        ui.start(cell)
        outcome = execute_cell(cell, world, store, options, ctx)
        ui.done(outcome)
        outcomes.append(outcome)
    return outcomes


def worker_threads(threads: int) -> None:
    """First thing a pool worker does: its intra-op thread count (OpenMP too)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    set_threads(threads)


def spawn_pool(workers: int):
    """The process pool every parallel step uses: spawned workers that die with their parent (no orphans)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from .executors import die_with_parent
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=die_with_parent,
                               initargs=(os.getpid(),))


def _pool_worker(payload: dict) -> dict:
    """Runs in a child process: rebuild everything from strings (specs, paths) and run one cell."""
    worker_threads(payload["threads"])
    options = Options(**{**payload["options"], "world": WorldChoice(**payload["world"])})
    world = options.world.open()
    cell = plan([payload["method"]], [payload["task"]], [payload["seed"]], world)[0]
    outcome = execute_cell(cell, world, Store(payload["store"]), options, make_context(options))
    return {"status": outcome.status, "error": outcome.error, "result": outcome.result, "seconds": outcome.seconds}


def answer_cached(cells: list[Cell], store: Store, options: Options, ui) -> tuple[list[Outcome], list[Cell]]:
    """Answer cached (or, with only-cache, missing) cells in the parent so no worker starts for them.
    Returns (their outcomes, the cells still to compute); workers re-check under the cell lock anyway."""
    if options.overwrite == "always":
        return [], cells
    outcomes, todo = [], []
    for cell in cells:
        cached = cached_result(cell, store, options)
        if cached is not None or options.overwrite == "only-cache":
            outcome = Outcome(cell, "cached" if cached is not None else "missing", cached)
            ui.done(outcome)
            outcomes.append(outcome)
        else:
            todo.append(cell)
    return outcomes, todo


def phases(cells: list[Cell]) -> tuple[list[Cell], list[Cell]]:
    """(first cell of every distinct pretraining, all remaining cells): the expensive node runs first, so workers
    never queue on one model's lock."""
    first, rest, seen = [], [], set()
    for cell in cells:
        group = (cell.method.pretrain_canonical(), cell.seed)
        (rest if group in seen else first).append(cell)
        seen.add(group)
    return first, rest


def world_payload(world: WorldChoice) -> dict:
    """A world choice as plain values with absolute paths (for `WorldChoice(**payload)` in a worker)."""
    return {"profile": world.profile, "data": str(Path(world.data).resolve()) if world.data else None,
            "world_seed": world.world_seed, "cache_root": str(Path(world.cache_root).resolve())}


def worker_payload(cell: Cell, store: Store, options: Options, threads: int) -> dict:
    """Everything `_pool_worker` needs, as plain strings and numbers (specs travel canonical, paths absolute)."""
    return {"method": cell.method.canonical(), "task": cell.task.canonical(), "seed": cell.seed,
            "store": str(Path(store.root).resolve()), "threads": threads,
            "options": {"overwrite": options.overwrite, "device": options.device, "quiet": True, "threads": threads,
                        "log_samples": options.log_samples},
            "world": world_payload(options.world)}


def outcome_of(cell: Cell, out: dict) -> Outcome:
    return Outcome(cell, out["status"], out["result"], out["error"], out["seconds"])


def run_pool(cells: list[Cell], store: Store, options: Options, workers: int, ui) -> list[Outcome]:
    """One process per worker; cells sharing a pretraining serialise on its lock, others run in parallel."""
    from concurrent.futures import as_completed
    threads = options.threads or max(1, (os.cpu_count() or 1) // workers)
    outcomes, cells = answer_cached(cells, store, options, ui)
    with spawn_pool(workers) as pool:
        for phase in phases(cells):
            futures = {pool.submit(_pool_worker, worker_payload(c, store, options, threads)): c for c in phase}
            for future in as_completed(futures):
                cell = futures[future]
                try:
                    outcome = outcome_of(cell, future.result())
                except UserError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a crashed worker is a failed cell
                    outcome = Outcome(cell, "failed", error=f"worker crashed: {exc}")
                ui.done(outcome)
                outcomes.append(outcome)
    return outcomes
