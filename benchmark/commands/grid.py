"""`grid NAME|FILE`: expand a YAML grid (methods × tasks × seeds, plus extra blocks) and run it."""
from __future__ import annotations

from pathlib import Path

import yaml

from .. import runner
from ..contracts import UserError
from ..store import Store
from ..ui import console
from ._common import add_run_options, execute, options_from

GRID_DIR = Path(__file__).resolve().parent.parent / "grids"


def add_parser(sub) -> None:
    p = sub.add_parser("grid", help="run a YAML grid (benchmark/grids/NAME.yaml or a path)")
    p.add_argument("grid", nargs="+", help="grid name(s) or YAML file(s); several run as one cell list")
    p.add_argument("--dry-run", action="store_true", help="print the cell count and how many are cached")
    add_run_options(p)
    p.set_defaults(func=main)


def find_grid(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise UserError(f"grid file '{name}' does not exist")
        return path
    candidate = GRID_DIR / f"{name}.yaml"
    if not candidate.is_file():
        import difflib
        known = sorted(p.stem for p in GRID_DIR.glob("*.yaml"))
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UserError(f"unknown grid '{name}'{hint} (known: {', '.join(known) or 'none'})")
    return candidate


def load_grid(path: Path) -> dict:
    try:
        grid = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"bad YAML in {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(grid, dict):
        raise UserError(f"{path}: a grid must be a mapping with 'methods', 'tasks' (and optional 'seeds', 'blocks')")
    blocks = []
    if grid.get("methods") or grid.get("tasks"):
        blocks.append({"methods": grid.get("methods"), "tasks": grid.get("tasks")})
    blocks += grid.get("blocks") or []
    for i, block in enumerate(blocks):
        if not isinstance(block, dict) or not block.get("methods") or not block.get("tasks"):
            raise UserError(f"{path}: block {i} needs non-empty 'methods' and 'tasks' lists")
    grid["_blocks"] = blocks
    return grid


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


def main(args) -> int:
    paths = [find_grid(name) for name in args.grid]
    grids = [load_grid(path) for path in paths]
    name = "+".join(path.stem for path in paths)
    profile = grids[0].get("profile", "default")
    if args.dry_run:
        options = options_from(args, profile)
        expand_all(grids, args.seeds, None)  # validates every spec
        world = options.world.open(generate=False)
        cells = runner.shard(expand_all(grids, args.seeds, world), args.shard)
        store = Store(args.results)
        if world is None:
            console.print(f"{name}: {len(cells)} cells; world {options.world.label} not generated yet, 0 cached")
            return 0
        cached = sum(store.load_result(c.task.canonical(), c.method.canonical(), c.key) is not None for c in cells)
        pretrain = {(c.method.pretrain_canonical(), c.seed) for c in cells}
        console.print(f"{name}: {len(cells)} cells, {cached} cached, {len(cells) - cached} to run "
                      f"({len(pretrain)} distinct pretrainings) on world {options.world.label}")
        return 0
    _, code = execute(lambda world: expand_all(grids, args.seeds, world), args, profile, title=name)
    return code
