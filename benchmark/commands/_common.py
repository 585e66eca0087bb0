"""Options shared by `run` and `grid`, and the one function that executes a list of cells."""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import runner, tracking
from .. import spec as specs
from ..contracts import UserError
from ..gridspec import PROFILES
from ..store import Store
from ..ui import CellProgress, console, err_console, metrics_table


def cli_int(text: str) -> int:
    """argparse type for integers: at most 30 digits (int() of a 5000-digit string raises inside argparse)."""
    text = text.strip()
    if len(text) > 30:
        raise argparse.ArgumentTypeError(f"invalid int value: '{text[:12]}...' ({len(text)} characters)")
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None


def add_world_options(p: argparse.ArgumentParser) -> None:
    """Where the data and the store are, seeds, device, threads, quiet: what every computing command takes."""
    world = p.add_mutually_exclusive_group()
    world.add_argument("--profile", choices=PROFILES, default=None,
                       help="synthetic world (generated once and cached; default: default)")
    world.add_argument("--data", metavar="DIR", help="folder of native feature files (pretrain.h5, ave.h5, ...)")
    p.add_argument("--world-seed", type=cli_int, default=0, help="seed of the synthetic world generator")
    p.add_argument("--results", default="results", metavar="DIR", help="result store (default results/)")
    p.add_argument("--seeds", type=cli_int, nargs="+", default=None, metavar="S", help="seeds (a grid axis)")
    p.add_argument("--threads", type=cli_int, default=0,
                   help="torch threads per process (0 = cores for local, cores/workers for pool/ray)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto (never hashed)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def add_run_options(p: argparse.ArgumentParser) -> None:
    add_world_options(p)
    p.add_argument("--overwrite", choices=runner.OVERWRITE, default="only-missing")
    p.add_argument("--executor", choices=("local", "pool", "ray", "slurm"), default="local")
    p.add_argument("--workers", type=cli_int, default=2, help="processes for --executor pool")
    p.add_argument("--address", help="Ray cluster address for --executor ray (default: start a local one)")
    p.add_argument("--slurm-partition", help="Slurm partition for --executor slurm")
    p.add_argument("--slurm-time", type=int, default=60, help="minutes per Slurm job")
    p.add_argument("--slurm-gpus", type=int, default=0, help="GPUs per Slurm job")
    p.add_argument("--slurm-cluster", default=None, choices=(None, "slurm", "local", "debug"),
                   help="submitit backend (default: auto-detect; local/debug run without Slurm)")
    p.add_argument("--shard", metavar="i/n", help="run only every n-th cell starting at i (sorted cell list)")
    p.add_argument("--log-samples", action="store_true",
                   help="write each computed cell's per-sample predictions and targets (samples.npz in its folder); "
                        "a cached cell without that file is recomputed (its pretraining stays cached)")
    p.add_argument("--log", action="append", default=[], metavar="TRACKER", choices=tuple(tracking.TRACKERS),
                   help="mirror every cell (config, metrics, loss curves, files) to an experiment tracker: mlflow "
                        "(pip install '.[mlflow]'); cached cells are logged once")
    p.add_argument("--mlflow-uri", metavar="URI", help="MLflow tracking URI (default: a file store <results>/mlruns)")


def check_world_args(args) -> None:
    """Plain range checks of the shared options (before anything is generated or planned)."""
    if args.world_seed is not None and not 0 <= args.world_seed <= 2**32 - 1:
        raise UserError(f"--world-seed must be in [0, {2**32 - 1}], got {args.world_seed}")
    if args.threads is not None and not 0 <= args.threads <= 1024:
        raise UserError(f"--threads must be in [0, 1024] (0 = automatic), got {args.threads}")
    if args.seeds is not None:
        specs.check_seeds(args.seeds)
    if getattr(args, "data", None):
        data = Path(args.data)
        if not data.is_dir():
            raise UserError(f"--data '{data}' is not a directory (expected a folder of native .h5 files)")
    results = Path(args.results)
    if results.exists() and not results.is_dir():
        raise UserError(f"--results '{results}' is not a directory")


def options_from(args, profile_default: str = "default") -> runner.Options:
    check_world_args(args)
    results = Path(args.results)
    world = runner.WorldChoice(profile=None if args.data else (args.profile or profile_default), data=args.data,
                               world_seed=args.world_seed, cache_root=str(results / "data"))
    return runner.Options(threads=args.threads, overwrite=args.overwrite, device=args.device, quiet=args.quiet, world=world,
                          log_samples=getattr(args, "log_samples", False), log=tuple(getattr(args, "log", ())),
                          mlflow_uri=getattr(args, "mlflow_uri", None))


def execute(planner, args, profile_default: str = "default", title: str = "cells"):
    """Plan (`planner(world) -> cells`; world None = validate specs only), shard, run.

    Returns (outcomes, exit code) and prints a summary naming every failed or missing cell."""
    options = options_from(args, profile_default)
    store = Store(args.results)
    if not 1 <= args.workers <= 256:
        raise UserError(f"--workers must be in [1, 256], got {args.workers}")
    # validate every spec, option range, seed and the shard before generating data (a typo should not wait for a
    # world, and a refused run writes nothing)
    unkeyed = planner(None)
    runner.check_precisions(unkeyed, runner.resolve_device(options.device))
    runner.shard([], args.shard)
    trackers = tracking.open_trackers(options, store.root)   # a missing tracker package: before any work
    store.ensure()
    store.sweep()
    if runner.needs_world(unkeyed):
        with CellProgress(None, quiet=options.quiet) as gen:
            world = options.world.open(generate=options.overwrite != "only-cache", progress=gen.inner)
    else:
        world = runner.NoWorld()
    if world is None:
        raise UserError(f"world {options.world.label} is not generated yet and --overwrite only-cache computes nothing")
    cells = runner.shard(planner(world), args.shard)
    with CellProgress(len(cells), quiet=options.quiet, title=title) as progress:
        ui = tracking.Observed(progress, trackers, store)
        if args.executor == "local":
            outcomes = runner.run_local(cells, world, store, options, ui)
        elif args.executor == "pool":
            outcomes = runner.run_pool(cells, store, options, args.workers, ui)
        else:
            from .. import executors  # optional engines (Ray, Slurm via submitit)
            outcomes = executors.run(args.executor, cells, store, options, args, ui)
    failed = [o for o in outcomes if o.status == "failed"]
    missing = [o for o in outcomes if o.status == "missing"]
    counts = {s: sum(o.status == s for o in outcomes) for s in ("cached", "ran", "failed", "missing")}
    summary = " · ".join(f"{k} {v}" for k, v in counts.items() if v or k != "missing")
    err_console.print(f"{len(outcomes)} cells: {summary}  (store: {store.root})")
    for o in failed:
        err_console.print(f"[red]FAILED[/] {o.cell.label}: {o.error}")
    for o in missing:
        err_console.print(f"[yellow]missing[/] {o.cell.label}")
    code = 1 if failed or missing else 0
    return outcomes, code


def print_results(outcomes) -> None:
    for o in sorted(outcomes, key=lambda o: o.cell.sort_key()):
        if o.result is not None:
            console.print(metrics_table(o.result, o.status))
            note = o.result.notes.get("pretrain")
            if note:
                console.print(f"  [dim]pretrain: {note}[/]" if o.status == "ran" else
                              "  [dim]pretrain: (cell served from cache)[/]")


def read_store(results: str, world: str | None, what: str = "results"):
    """The valid results of a store a read command uses (UserError when the folder or the world does not exist)."""
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
