"""Options shared by `run` and `grid`, and the one function that executes a list of cells."""
from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from .. import api, runner, tracking
from .. import spec as specs
from ..gridspec import PROFILES
from ..ui import CellProgress, console, err_console, metrics_table, seeds_table
from ..world import WorldChoice


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


def check_world_args(args, profile_default: str = "default") -> WorldChoice:
    """Plain range checks of the shared options (before anything is generated or planned); the world they name."""
    api.check_threads(args.threads)
    if args.seeds is not None:
        specs.check_seeds(args.seeds)
    return api.world_choice(args.profile, getattr(args, "data", None), args.world_seed, args.results,
                            profile_default)


def options_from(args, profile_default: str = "default") -> runner.Options:
    world = check_world_args(args, profile_default)
    return runner.Options(threads=args.threads, overwrite=args.overwrite, device=args.device, quiet=args.quiet, world=world,
                          log_samples=getattr(args, "log_samples", False), log=tuple(getattr(args, "log", ())),
                          mlflow_uri=getattr(args, "mlflow_uri", None))


def execute(planner, args, profile_default: str = "default", title: str = "cells"):
    """`api.run_cells` with the progress display; returns (outcomes, exit code) and prints a summary naming every
    failed or missing cell."""
    options = options_from(args, profile_default)
    outcomes = api.run_cells(planner, options, args.results, args.executor, args.workers, args.shard,
                             progress=partial(CellProgress, quiet=options.quiet), engine=args, title=title)
    failed = [o for o in outcomes if o.status == "failed"]
    missing = [o for o in outcomes if o.status == "missing"]
    counts = {s: sum(o.status == s for o in outcomes) for s in ("cached", "ran", "failed", "missing", "n/a")}
    summary = " · ".join(f"{k} {v}" for k, v in counts.items() if v or k not in ("missing", "n/a"))
    err_console.print(f"{len(outcomes)} cells: {summary}  (store: {Path(args.results)})")
    for o in failed:
        err_console.print(f"[red]FAILED[/] {o.cell.label}: {o.error}")
    for o in missing:
        err_console.print(f"[yellow]missing[/] {o.cell.label}")
    for reason in dict.fromkeys(o.error for o in outcomes if o.status == "n/a"):   # not a failure: the exit stays 0
        err_console.print(f"[dim]n/a[/] {reason}")
    code = 1 if failed or missing else 0
    return outcomes, code


def unconverged_rule(results, results_dir):
    """What marks † after a run, as tables mark it: the budget study (the run's own probes, else the study recorded
    under `results_dir`), else the loss diagnostic."""
    from .. import budget
    from ..tables.build import unconverged
    study = budget.store_verdicts(results, Path(results_dir))
    return lambda result: unconverged(result, study)


def print_results(outcomes) -> None:
    """One directions × metrics table per cell; with several seeds, then one mean ± CI table per (method, task)."""
    by_pair: dict[tuple[str, str], list] = {}
    for o in sorted(outcomes, key=lambda o: o.cell.sort_key()):
        if o.result is not None:
            console.print(metrics_table(o.result, o.status))
            note = o.result.notes.get("pretrain")
            if note:
                console.print(f"  [dim]pretrain: {note}[/]" if o.status == "ran" else
                              "  [dim]pretrain: (cell served from cache)[/]")
        by_pair.setdefault((o.cell.task.canonical(), o.cell.method.canonical()), []).append(o)
    if len({o.cell.seed for o in outcomes}) > 1:
        for group in by_pair.values():
            found = [o.result for o in group if o.result is not None]
            if found:
                console.print(seeds_table(found))
