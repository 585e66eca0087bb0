"""The Python API (`benchmark.evaluate`, `benchmark.load_results`) and the one code path `run` / `grid` share.

A notebook wants numbers, not a terminal: `evaluate` runs cells exactly as the CLI does (same planning, cache,
keys and executors, through `run_cells`) and returns them as a long-format pandas DataFrame, one row per
cell × direction × metric — the rows `table --format csv` writes. Mistakes raise `UserError`, never `sys.exit`;
progress is off unless asked for. The CLI adds its progress display, summary lines and exit codes on top.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterable, Sequence

from . import executors, registry, runner, tracking
from . import bounds
from . import spec as specs
from .contracts import UserError
from .gridspec import PROFILES
from .results import CellResult
from .store import Store
from .world import NoWorld, WorldChoice, needs_world

EXECUTORS = ("local", "pool", "ray", "slurm")
COLUMNS = ("method", "task", "seed", "direction", "metric", "value", "main_metric", "key", "converged", "discrete",
           "world", "data_fingerprint", "status", "error")


# --------------------------------------------------------------------------- checks shared with the CLI
def world_choice(profile: str | None, data: str | Path | None, world_seed: int, results: str | Path,
                 profile_default: str = "default") -> WorldChoice:
    """The world a run reads (a synthetic profile or a `data` folder), after plain range checks."""
    if profile is not None and data is not None:
        raise UserError("give a profile or a data folder, not both")
    if profile is not None and profile not in PROFILES:
        raise UserError(f"unknown profile '{profile}' (expected {', '.join(PROFILES)})")
    if isinstance(world_seed, bool) or not isinstance(world_seed, int) or not 0 <= world_seed <= 2**32 - 1:
        raise UserError(f"--world-seed must be an integer in [0, {2**32 - 1}], got {world_seed!r}")
    if data is not None and not Path(data).is_dir():
        raise UserError(f"--data '{data}' is not a directory (expected a folder of native .h5 files)")
    root = Path(results)
    if root.exists() and not root.is_dir():
        raise UserError(f"--results '{root}' is not a directory")
    return WorldChoice(profile=None if data else (profile or profile_default),
                       data=str(data) if data is not None else None, world_seed=world_seed,
                       cache_root=str(root / "data"))


def check_threads(threads: int) -> None:
    top = bounds.limit("threads", bounds.CLI_BOUNDS)
    if isinstance(threads, bool) or not isinstance(threads, int) or not 0 <= threads <= top:
        raise UserError(f"--threads must be in [0, {top}] (0 = automatic), got {threads!r}")


def read_store(results: str | Path, world: str | None) -> list[CellResult]:
    """The valid results of a store (UserError when the folder or the named world does not exist)."""
    root = Path(results)
    if not root.is_dir():
        raise UserError(f"--results '{root}' is not a directory (run `python -m benchmark grid ...` first)")
    found = Store(root).results()
    if world is not None:
        worlds = sorted({str(r.world) for r in found if r.world is not None})
        if world not in worlds:
            import difflib
            close = difflib.get_close_matches(world, worlds, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise UserError(f"--world '{world}': no results of that world in {root}{hint} "
                            f"(worlds there: {', '.join(worlds) or 'none'})")
    return found


def all_tasks() -> list[str]:
    """What `--task all` means: every visible task whose card does not opt out (`in_all: false`)."""
    return [name for name, e in registry.entries("task").items() if not e.hidden and e.in_all]


# --------------------------------------------------------------------------- running cells
class Silent:
    """The progress interface of `ui.CellProgress` doing nothing (no rich display in a notebook unless asked)."""

    def __init__(self, total: int | None = None, title: str = "cells"):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def start(self, cell) -> None:
        pass

    def done(self, outcome) -> None:
        pass

    def advance(self, label: str = "") -> None:
        pass

    def log(self, message: str) -> None:
        pass

    def inner(self, iterable: Iterable, description: str = "", total: int | None = None):
        return iterable

    def expect(self, cells, pretrainings, workers: int = 1) -> None:
        pass

    def event(self, slot: int, kind: str, info: dict) -> None:
        pass


def run_cells(planner: Callable, options: runner.Options, results: str | Path, executor: str = "local",
              workers: int = 2, shard: str | None = None, progress: Callable = Silent, engine=None,
              title: str = "cells") -> list[runner.Outcome]:
    """Plan (`planner(world) -> cells`; world None = validate specs only), shard, run; the outcomes in order.

    Everything checkable is checked before a world is generated (a typo should not wait for a world, and a
    refused run writes nothing). `progress(total, title)` makes the UI (`Silent`, or the CLI's `CellProgress`);
    `engine`: the attributes the Ray / Slurm executors read (address, slurm_*), default just `workers`."""
    if executor not in EXECUTORS:
        raise UserError(f"unknown executor '{executor}' (expected {', '.join(EXECUTORS)})")
    bounds.check_count("workers", workers, "--workers")
    if options.overwrite not in runner.OVERWRITE:
        raise UserError(f"unknown overwrite mode '{options.overwrite}' (expected {', '.join(runner.OVERWRITE)})")
    check_threads(options.threads)
    store = Store(results)
    unkeyed = planner(None)             # planned and validated once; keyed below once the world is open
    device = runner.check_device(options.device, unkeyed)
    runner.shard([], shard)
    trackers = tracking.open_trackers(options, store.root)   # a missing tracker package: before any work
    store.ensure()
    store.sweep()
    if needs_world(unkeyed):
        with progress(None, title=title) as gen:
            world = options.world.open(generate=options.overwrite != "only-cache", progress=gen.inner)
    else:
        world = NoWorld()
    if world is None:
        raise UserError(f"world {options.world.label} is not generated yet and --overwrite only-cache computes nothing")
    cells = runner.shard(runner.key_cells(unkeyed, world), shard)
    with progress(len(cells), title=title) as shown:
        ui = tracking.Observed(shown, trackers, store)
        if executor == "local":
            return executors.run_local(cells, world, store, options, ui, device)
        if executor == "pool":
            return executors.run_pool(cells, world, store, options, workers, ui, device)
        return executors.run_remote(executor, cells, store, options, engine or SimpleNamespace(workers=workers), ui,
                                    device)


def _rich_progress(total: int | None, title: str = "cells"):
    from .ui import CellProgress  # rich, only when progress is asked for
    return CellProgress(total, title=title)


def _as_list(value, what: str) -> list:
    items = [value] if isinstance(value, (str, int, Path)) else list(value or [])
    if not items:
        raise UserError(f"{what}: give at least one")
    return items


def evaluate(methods: str | Sequence[str], tasks: str | Sequence[str], seeds: int | Sequence[int] = (0,), *,
             profile: str | None = None, data: str | Path | None = None, world_seed: int = 0,
             results: str | Path = "results", executor: str = "local", workers: int = 2, device: str = "cpu",
             overwrite: str = "only-missing", progress: bool = False,
             include_path: str | Path | Sequence[str | Path] | None = None, **options):
    """Run methods × tasks × seeds (cached cells are read, not recomputed) and return the long-format frame.

    `profile` (smoke | default | paper; default: default) or `data` (a folder of native feature files) picks the
    world; `tasks="all"` is `--task all`; `include_path` adds card folders for this call only; any other keyword
    is a `runner.Options` field (e.g. `threads=1`). Failed or missing cells are rows with `status` failed /
    missing, no value, and (failed) the `error`; a warning names them."""
    import pandas  # noqa: F401 - before any work: a missing pandas should not cost a run
    known = {f.name for f in dataclasses.fields(runner.Options)} - {"world", "overwrite", "device"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(f"evaluate: unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    dirs = [] if include_path is None else _as_list(include_path, "include_path")
    with registry.include_path(*dirs) if dirs else contextlib.nullcontext():
        methods = _as_list(methods, "methods")
        tasks = _as_list(tasks, "tasks")
        tasks = all_tasks() if tasks == ["all"] else tasks
        seeds = _as_list(seeds, "seeds")
        world = world_choice(profile, data, world_seed, results)
        run_options = runner.Options(**{"quiet": not progress, **options, "overwrite": overwrite, "device": device,
                                        "world": world})
        outcomes = run_cells(lambda w: runner.plan(methods, tasks, seeds, w), run_options, results, executor,
                             workers, progress=_rich_progress if progress else Silent)
    bad = [o for o in outcomes if o.status in ("failed", "missing")]
    if bad:
        warnings.warn(f"{len(bad)} of {len(outcomes)} cells {'/'.join(sorted({o.status for o in bad}))}: "
                      + "; ".join(f"{o.cell.label} ({o.error or o.status})" for o in bad[:5]), stacklevel=2)
    return frame([(o.result, o.status, o.cell, o.error, world.label) for o in outcomes])


# --------------------------------------------------------------------------- reading
def load_results(results: str | Path = "results", methods: str | Sequence[str] | None = None,
                 tasks: str | Sequence[str] | None = None, seeds: int | Sequence[int] | None = None,
                 world: str | None = None):
    """The store as the frame `evaluate` returns (status `cached`), without running anything.

    Methods and tasks match through their canonical spelling (`dcid@quantizer=vq` finds `dcid`); within one world
    a (method, task, seed) stored twice (e.g. after a task version bump) keeps the newest, as tables do."""
    from .tables import build_index, canonical_method, canonical_task
    found = read_store(results, world)
    method_set = None if methods is None else {canonical_method(m) for m in _as_list(methods, "methods")}
    task_set = None if tasks is None else {canonical_task(t) for t in _as_list(tasks, "tasks")}
    seed_set = None if seeds is None else set(specs.check_seeds(_as_list(seeds, "seeds")))
    held = found
    found = [r for r in found if (method_set is None or r.method in method_set)
             and (task_set is None or r.task in task_set) and (seed_set is None or r.seed in seed_set)]
    if not found:   # an empty frame alone reads like "no results yet": say what the store does hold
        warnings.warn(_nothing_matched(results, held, methods=method_set, tasks=task_set, seeds=seed_set),
                      stacklevel=2)
    worlds = [world] if world is not None else sorted({r.world for r in found}, key=str)
    rows = []
    for name in worlds:
        index = build_index([r for r in found if r.world == name], name)   # also a world-less (None) store
        for line in index.warnings:
            warnings.warn(line, stacklevel=2)
        rows += [(r, "cached", None, None, name) for r in index.cells.values()]
    return frame(rows)


def _nothing_matched(results, held: list[CellResult], **filters) -> str:
    """One line: which filters matched nothing, and what the store holds for each of them."""
    if not held:
        return f"load_results: {results} holds no result cells (run `python -m benchmark grid ...` first)"
    given = {k: v for k, v in filters.items() if v is not None}
    attr = {"methods": "method", "tasks": "task", "seeds": "seed"}
    holds = "; ".join(f"{k}: {', '.join(map(str, sorted({getattr(r, attr[k]) for r in held}, key=str)))}"
                      for k in (given or attr))
    asked = ", ".join(f"{k}={sorted(v, key=str)}" for k, v in given.items())
    return f"load_results: no stored cell matches {asked} in {results} (it holds {holds})"


def frame(rows: Iterable[tuple]):
    """(result or None, status, cell or None, error, world label) per cell -> the long-format DataFrame, sorted
    like the long CSV of `table` (task, method, seed, direction, metric)."""
    import pandas as pd
    records = []
    for result, status, cell, error, world in rows:
        if result is None:   # a failed or missing cell: one row saying so
            records.append({"method": cell.method.canonical(), "task": cell.task.canonical(), "seed": cell.seed,
                            "direction": None, "metric": None, "value": math.nan, "main_metric": False,
                            "key": cell.key, "converged": None, "discrete": cell.method.discrete, "world": world,
                            "data_fingerprint": cell.data_fingerprint, "status": status, "error": error})
            continue
        for direction, metric, value in result.scores():
            records.append({"method": result.method, "task": result.task, "seed": result.seed,
                            "direction": direction, "metric": metric, "value": value,
                            "main_metric": metric == result.main_metric, "key": result.key,
                            "converged": result.converged, "discrete": result.discrete, "world": result.world,
                            "data_fingerprint": result.data_fingerprint, "status": status, "error": None})
    records.sort(key=lambda r: (r["task"], r["method"], r["seed"], str(r["direction"]), str(r["metric"])))
    return pd.DataFrame.from_records(records, columns=list(COLUMNS))
