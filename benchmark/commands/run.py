"""`run --method SPEC --task SPEC|all`: one method on one or all tasks, printed as directions × metrics."""
from __future__ import annotations

from .. import runner
from ..api import all_tasks
from ._common import add_run_options, execute, print_results


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run one method on one task (or all tasks)")
    p.add_argument("--method", required=True, help="method spec, e.g. fccid+toc or dcid@quantizer=rvq,levels=3")
    p.add_argument("--task", required=True, nargs="+", help="task spec(s) or 'all'")
    add_run_options(p)
    p.set_defaults(func=main)


def main(args) -> int:
    tasks = all_tasks() if args.task == ["all"] else args.task
    outcomes, code = execute(lambda world: runner.plan([args.method], tasks, args.seeds or [0], world), args)
    print_results(outcomes)
    return code
