"""`run --method SPEC [SPEC ...] --task SPEC|all`: methods on one or all tasks. One method prints each cell as
directions × metrics; several print one methods × directions table per task (as `grid` ends). `--profile smoke`
runs every method with presets at its `smoke` scale (seconds per pretraining) and says the numbers are for
plumbing only."""
from __future__ import annotations

from .. import runner
from .. import spec as specs
from ..api import all_tasks
from ..tables.text import SMOKE_BANNER
from ..ui import console, grid_tables
from ._common import add_run_options, execute, print_results, unconverged_rule


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run methods on one task (or all tasks)")
    p.add_argument("--method", required=True, nargs="+",
                   help="method spec(s), e.g. fccid+toc or dcid@quantizer=rvq,levels=3; several give one table")
    p.add_argument("--task", required=True, nargs="+", help="task spec(s) or 'all'")
    add_run_options(p)
    p.set_defaults(func=main)


def main(args) -> int:
    tasks = all_tasks() if args.task == ["all"] else args.task
    methods = list(dict.fromkeys(args.method))
    if args.profile == "smoke":   # the toy world at the seconds budget, unless a spec names its scale or budget
        methods = list(dict.fromkeys(specs.at_smoke_scale(m) for m in methods))
    outcomes, code = execute(lambda world: runner.plan(methods, tasks, args.seeds or [0], world), args)
    if len(methods) == 1:
        print_results(outcomes)
    else:   # side by side, in the order given: a table per cell would scatter the comparison over the screen
        order = {specs.parse_method(m).canonical(): i for i, m in enumerate(methods)}
        ranked = sorted(outcomes, key=lambda o: order.get(o.cell.method.canonical(), len(order)))
        shown = [o.result for o in ranked if o.result is not None]
        for table in grid_tables(shown, unconverged_rule(shown, args.results)):
            console.print(table)
    if args.profile == "smoke":
        console.print(f"[bold yellow]{SMOKE_BANNER}[/]", soft_wrap=True, highlight=False)
    return code
