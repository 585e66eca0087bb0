"""One cell: plan it (resolve specs, fingerprint the data, key), compute it, and decide and write it.

A cell's life: plan -> skip if cached -> lock -> re-check -> pretrain (or load the cached pretraining,
`benchmark.pretraining`) -> refine (training-free) -> evaluate -> write atomically. Any exception inside a cell
becomes `error.json` and the grid goes on; the caller reports failures. Running many cells (in this process, a
pool, Ray, Slurm) is `benchmark.executors`; the world a run reads is `benchmark.world`.
"""
from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from . import spec as specs
from .contracts import NotApplicable, RunContext, UserError
from .planning import check_against_world
from .pretraining import get_pretrained, now, seed_everything
from .results import SAMPLES, CellResult, write_samples
from .store import Store, environment, sweep_tmp, torch_threads
from .world import WorldChoice, task_datasets

OVERWRITE = ("never", "only-missing", "always", "only-cache")


# --------------------------------------------------------------------------- planning
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


def plan(method_specs: Iterable[str], task_specs: Iterable[str], seeds: Iterable[int], world) -> list[Cell]:
    """Resolve and validate specs into cells, keyed on `world` (None: not generated yet; `key_cells` keys them
    once it is, so a run plans and validates once)."""
    cells, seen = [], set()
    methods = [specs.parse_method(m) for m in method_specs]
    tasks = [specs.parse_task(t) for t in task_specs]
    seeds = specs.check_seeds(list(seeds))
    for spec_ in methods:   # the implementations' range checks, before any world or cell
        specs.validate_method(spec_)
    for spec_ in tasks:
        specs.validate_task(spec_)
    check_against_world(methods, tasks, world)   # the checks between specs and against the world
    for task in tasks:
        for method in methods:
            _check_pairing(method, task)
            for seed in seeds:
                ident = (method.canonical(), task.canonical(), int(seed))
                if ident not in seen:
                    seen.add(ident)
                    cells.append(Cell(method, task, int(seed)))
    if world is not None:
        _key(cells, world)
    return sorted(cells, key=Cell.sort_key)


def key_cells(cells: list[Cell], world) -> list[Cell]:
    """Cells planned without a world (`plan(..., None)`), keyed now that it is open: the checks that need the
    world first, then the data each cell reads fingerprinted (once per task). Returns the cells, sorted."""
    by_task: dict[str, tuple] = {}       # only the pairs the cells hold (a grid's blocks are not a cross product)
    for c in cells:
        by_task.setdefault(c.task.canonical(), (c.task, {}))[1].setdefault(c.method.canonical(), c.method)
    for task, methods in by_task.values():
        check_against_world(list(methods.values()), [task], world)
    _key(cells, world)
    return sorted(cells, key=Cell.sort_key)


def _key(cells: list[Cell], world) -> None:
    fingerprints: dict[str, str] = {}
    for cell in cells:
        name = cell.task.canonical()
        if name not in fingerprints:
            datasets, needs_pretrained = task_datasets(cell.task)
            fingerprints[name] = world.fingerprint((("pretrain",) if needs_pretrained else ()) + datasets)
        cell.data_fingerprint = fingerprints[name]
        cell.key = specs.cell_key(cell.method, cell.task, cell.data_fingerprint, cell.seed)


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


def shard(cells: list[Cell], spec: str | None) -> list[Cell]:
    if not spec:
        return cells
    try:
        i, n = (int(x) for x in spec.split("/"))
        assert 0 <= i < n
    except (ValueError, AssertionError):
        raise UserError(f"--shard expects i/n with 0 <= i < n, got '{spec}'") from None
    return cells[i::n]


# --------------------------------------------------------------------------- computing
def compute_cell(cell: Cell, world, store: Store, ctx: RunContext) -> CellResult:
    """Run one cell and return its result (not yet written)."""
    t0 = time.perf_counter()
    ctx.scratch = None
    ctx.task, ctx.seed = cell.task.name, cell.seed   # what TOC's per-task Q and its random control read
    task = cell.task.component.entry.load()
    task.validate(cell.task.component.cfg)
    pretrained, pkey = None, None
    if getattr(task, "needs_pretrained", True):
        pretrained, pkey = get_pretrained(cell, world, store, ctx)
        # the base spec (inference-only options change the features); files, refiners: tasks.encodings keys
        ctx.scratch = store.root / "features" / pkey / specs.stable_hash([cell.method.base.resolved()])
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
        notes=dict(ctx.notes), created=now())


def _check_metrics(metrics, cell: Cell) -> None:
    if not isinstance(metrics, dict) or not metrics:
        raise RuntimeError(f"task {cell.task.name} returned no metrics")
    for direction, values in metrics.items():
        if not isinstance(values, dict):
            raise RuntimeError(f"task {cell.task.name}: metrics['{direction}'] is not a dict")


# --------------------------------------------------------------------------- deciding and writing
@dataclass
class Outcome:
    cell: Cell
    status: str  # cached | ran | failed | missing | n/a
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


def error_record(cell: Cell, message: str, trace: str = "") -> dict:
    """What `error.json` holds for a failed cell (also written by an executor whose worker died)."""
    return {"key": cell.key, "method": cell.method.canonical(), "task": cell.task.canonical(), "seed": cell.seed,
            "error": message, "traceback": trace, "created": now()}


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
        except NotApplicable as exc:  # e.g. the oracle on real data: no result, no error, the grid goes on
            return Outcome(cell, "n/a", error=str(exc), seconds=time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - a failing cell must not stop the grid
            message = f"{type(exc).__name__}: {exc}"
            store.write_error(cell_dir, error_record(cell, message, traceback.format_exc()))
            return Outcome(cell, "failed", error=message, seconds=time.perf_counter() - t0)
        env = environment()
        env["device"] = options.device
        if options.log_samples:
            write_samples(cell_dir / SAMPLES, ctx.samples)
        else:   # a recomputed cell must not keep the samples of an earlier computation
            (cell_dir / SAMPLES).unlink(missing_ok=True)
        store.write_result(cell_dir, result, _config_of(cell, options), env)
    return Outcome(cell, "ran", result, seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------- device and threads
def check_device(device: str, cells: Iterable[Cell] = ()) -> str:
    """The one device check: `device` resolved (cpu | cuda[:N]) and every cell's precision (`dtype`) able to run
    on it; UserError before anything runs otherwise. Workers receive the resolved name and never re-check."""
    if device not in ("cpu", "cuda", "auto") and not device.startswith("cuda:"):
        raise UserError(f"--device must be cpu, cuda, cuda:N or auto, got '{device}'")
    resolved = "cpu"
    if device != "cpu":
        import torch
        if device == "auto":
            resolved = "cuda" if torch.cuda.is_available() else "cpu"
        elif not torch.cuda.is_available():
            raise UserError(f"--device {device} requested but torch sees no CUDA device (use --device cpu or auto)")
        else:
            resolved = device
    for cell in cells:     # asked of the method (a precision its hardware lacks): the harness imports no method
        problem = getattr(cell.method.base.entry.load(), "device_problem", None)
        reason = problem(cell.method.base.cfg, resolved) if problem is not None else None
        if reason:
            raise UserError(f"{cell.method.canonical()}: {reason}")
    return resolved


def make_context(device: str, progress=None, log: Callable[[str], None] | None = None, events=None) -> RunContext:
    """A cell's context on an already checked device (`check_device`); progress, log and events default to
    no-ops (quiet, or a worker without a parent display)."""
    ctx = RunContext(device=device)
    if progress is not None:
        ctx.progress = progress
    if log is not None:
        ctx.log = log
    if events is not None:
        ctx.events = events
    return ctx


def set_threads(n: int) -> None:
    """Small heads on 2 cores run far faster single-threaded when several processes share the machine."""
    import torch
    torch.set_num_threads(max(1, n))


def default_threads() -> int:
    """Small models on a 2-core machine: one thread (several processes share few cores)."""
    cores = os.cpu_count() or 1
    return 1 if cores <= 2 else cores // 2
