"""`table NAME|FILE|all --format csv|latex|md|terminal|all`: rebuild paper tables from the result store only.

Never trains: cells the store lacks are listed in a warning block (and in `<name>.meta.json`), not dropped.
"""
from __future__ import annotations

from pathlib import Path

from .. import tables
from ..contracts import UserError
from ..store import Store
from ..ui import console, err_console


def add_parser(sub) -> None:
    p = sub.add_parser("table", help="build a paper table from stored results (never trains)")
    p.add_argument("table", help="grid name (benchmark/grids/NAME.yaml with a table: section), a YAML file, or 'all'")
    p.add_argument("--format", default="terminal", metavar="FMT",
                   help="csv | latex | md | terminal, comma-separated for several (csv,latex), or all "
                        "(= csv, latex, md and terminal); default terminal")
    p.add_argument("--results", default="results", metavar="DIR", help="result store (default results/)")
    p.add_argument("--out", metavar="DIR", help="where files go (default <results>/tables)")
    p.add_argument("--world", help="world label to use when the store holds several (e.g. default-s0)")
    p.add_argument("--seeds", type=int, nargs="+", metavar="S", help="seeds to use (default: the grid's seeds)")
    p.add_argument("--strict", action="store_true", help="exit 1 when any cell is missing")
    p.set_defaults(func=main)


def main(args) -> int:
    wanted = [f.strip() for f in args.format.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in (*tables.FORMATS, "all")]
    if unknown or not wanted:
        raise UserError(f"--format: unknown format {', '.join(unknown) or '(empty)'}; "
                        f"expected {', '.join(tables.FORMATS)} or all")
    formats = list(tables.FORMATS) if "all" in wanted else list(dict.fromkeys(wanted))
    names = tables.table_names() if args.table == "all" else [args.table]
    if not names:
        raise UserError("no grid with a 'table:' section found in benchmark/grids")
    specs = [tables.load_table(n) for n in names]  # validate all before writing anything
    results_dir = Path(args.results)
    if not results_dir.is_dir():
        raise UserError(f"--results '{results_dir}' is not a directory (run `python -m benchmark grid ...` first)")
    results = Store(results_dir).results()
    out = Path(args.out) if args.out else results_dir / "tables"
    any_missing = False
    for spec in specs:
        bt = tables.build(spec, results, world=args.world, seeds=args.seeds)
        if "terminal" in formats:
            console.print(tables.to_rich(bt))
        for line in bt.warnings + tables.missing_lines(bt):
            err_console.print(f"[yellow]warning[/] {spec.name}: {line}", soft_wrap=True, markup=True, highlight=False)
        any_missing |= bool(bt.missing)
        for path in tables.write(bt, formats, out):
            err_console.print(f"wrote {path}", soft_wrap=True, highlight=False)
    return 1 if args.strict and any_missing else 0
