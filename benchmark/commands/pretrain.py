"""`pretrain --method SPEC...`: only the (cached) pretraining of methods on the corpus, no task.

Warms the pretraining cache (e.g. on a GPU node before task grids run elsewhere; cells then report
"pretrain: cached") and measures a pretraining on its own: wall time and the process's peak resident memory,
printed and, with `--json FILE`, written for scripts (the perf suite's paper-corpus epoch reads it).
"""
from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

from .. import pretraining, runner
from .. import outputs
from .. import spec as specs
from ..atomic import atomic_write_json
from ..contracts import UserError
from ..executors import Interrupted
from ..store import Store
from ..ui import CellProgress, console
from ._common import add_world_options, options_from


def add_parser(sub) -> None:
    p = sub.add_parser("pretrain", help="pretrain method(s) on the corpus (cached), without a task")
    p.add_argument("--method", required=True, nargs="+", help="method spec(s); refiners are ignored (never retrain)")
    p.add_argument("--json", metavar="FILE", help="also write the rows and the peak RSS as JSON")
    add_world_options(p)
    p.set_defaults(func=main, overwrite="only-missing")


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def main(args) -> int:
    if args.json:
        outputs.check_file(args.json, "--json")
    options = options_from(args)
    methods = [specs.parse_method(text) for text in args.method]
    seeds = specs.check_seeds(args.seeds or [0])
    for method in methods:
        specs.validate_method(method)
        only = method.base.entry.only_tasks
        if only:
            raise UserError(f"method '{method.base.name}' is trained inside task(s) {', '.join(only)}; "
                            f"it has no separate pretraining")
    cells = [runner.Cell(method, None, seed) for method in methods for seed in seeds]
    device = runner.check_device(options.device, cells)
    runner.set_threads(options.threads or runner.default_threads())
    store = Store(args.results)
    store.ensure()
    store.sweep()
    rows, failure = [], None
    with CellProgress(len(cells), quiet=options.quiet, title="pretrain") as ui:
        world = options.world.open(progress=ui.inner)
        ui.expect([], pretraining.pending(cells, world, store))
        ctx = runner.make_context(device, progress=ui.inner, log=ui.log,
                                  events=lambda kind, **info: ui.event(0, kind, info))
        for cell in cells:
            ctx.notes = {}
            t0 = time.perf_counter()
            try:
                _, key = pretraining.get_pretrained(cell, world, store, ctx)
            except UserError:
                raise
            except KeyboardInterrupt:
                raise Interrupted(f"interrupted: {len(rows)} of {len(cells)} pretrainings finished and kept in the "
                                  f"store; rerun to train the rest") from None
            except Exception as exc:  # noqa: BLE001 - a method that cannot train: one line, not a traceback
                failure = (f"pretraining {cell.method.pretrain_canonical()} (seed {cell.seed}) failed: "
                           f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
                break
            rows.append({"method": cell.method.pretrain_canonical(), "seed": cell.seed, "key": key,
                         "status": "trained" if "pretrain_s" in ctx.notes else "cached",
                         "seconds": round(time.perf_counter() - t0, 3), "clips": len(world.corpus())})
            ui.advance(f"{cell.method.pretrain_canonical()} seed {cell.seed}")
    if failure:
        sys.stderr.write(f"error: {failure}\n")
        return 1
    report = {"world": options.world.label, "device": device, "rows": rows, "peak_rss_mb": round(peak_rss_mb(), 1)}
    for row in rows:
        console.print(f"{row['method']} seed {row['seed']}: {row['status']} ({row['key']}) in {row['seconds']:.1f}s "
                      f"on {row['clips']} clips")
    console.print(f"peak RSS of this process: {report['peak_rss_mb']:.0f} MiB")
    if args.json:
        atomic_write_json(Path(args.json), report)
    return 0
