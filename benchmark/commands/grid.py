"""`grid NAME|FILE`: expand a YAML grid (methods × tasks × seeds, plus extra blocks) and run it."""
from __future__ import annotations

from .. import migrate, runner
from ..gridspec import find_grid, load_grid, rewrite_methods
from ..spec import at_smoke_scale
from ..store import Store
from ..tables.text import SMOKE_BANNER
from ..ui import console, grid_tables
from ._common import add_run_options, execute, options_from, unconverged_rule


def add_parser(sub) -> None:
    p = sub.add_parser("grid", help="run a YAML grid (benchmark/grids/NAME.yaml or a path)")
    p.add_argument("grid", nargs="+", help="grid name(s) or YAML file(s); several run as one cell list")
    p.add_argument("--dry-run", action="store_true", help="print the cell count and how many are cached")
    add_run_options(p)
    p.set_defaults(func=main)


def main(args) -> int:
    paths = [find_grid(name) for name in args.grid]
    grids = [load_grid(path) for path in paths]
    name = "+".join(path.stem for path in paths)
    profile = grids[0].get("profile", "default")
    smoke = getattr(args, "data", None) is None and (args.profile or profile) == "smoke"
    if smoke:   # the toy world at the seconds budget (as `run --profile smoke`) unless a spec names scale or epochs
        for grid in grids:
            rewrite_methods(grid, at_smoke_scale)
    if args.dry_run:
        options = options_from(args, profile)
        expand_all(grids, args.seeds, None)  # validates every spec
        world = options.world.open(generate=False)
        cells = runner.shard(expand_all(grids, args.seeds, world), args.shard)
        store = Store(args.results)
        if world is None:
            console.print(f"{name}: {len(cells)} cells; world {options.world.label} not generated yet, 0 cached")
            return 0
        cached = sum(runner.cached_result(c, store, options) is not None for c in cells)
        pretrain = {(c.method.pretrain_canonical(), c.seed) for c in cells}
        console.print(f"{name}: {len(cells)} cells, {cached} cached, {len(cells) - cached} to run "
                      f"({len(pretrain)} distinct pretrainings) on world {options.world.label}")
        return 0
    migrate.migrate(Store(args.results))     # an older store's pretrainings to today's keys, once per store
    outcomes, code = execute(lambda world: expand_all(grids, args.seeds, world), args, profile, title=name)
    if not args.quiet:
        shown = [o.result for o in sorted(outcomes, key=lambda o: o.cell.sort_key()) if o.result is not None]
        for table in grid_tables(shown, unconverged_rule(shown, args.results)):
            console.print(table)
    if smoke:
        console.print(f"[bold yellow]{SMOKE_BANNER}[/]", soft_wrap=True, highlight=False)
    return code


def expand_all(grids: list[dict], seeds: list[int] | None, world) -> list:
    """The union of the cells of every block of every grid (each grid with its own seeds unless --seeds is given),
    deduplicated and sorted."""
    cells, seen = [], set()
    for grid in grids:
        for block in grid["_blocks"]:
            for cell in runner.plan(block["methods"], block["tasks"], seeds or grid.get("seeds") or [0], world):
                ident = (cell.method.canonical(), cell.task.canonical(), cell.seed)
                if ident not in seen:
                    seen.add(ident)
                    cells.append(cell)
    return sorted(cells, key=runner.Cell.sort_key)
