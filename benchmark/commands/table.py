"""`table NAME|FILE|all --format csv|latex|md|terminal|all`: rebuild paper tables from the result store only.

Never trains: cells the store lacks are listed in a warning block (and in `<name>.meta.json`), not dropped.
"""
from __future__ import annotations

import re
from pathlib import Path

from .. import budget, outputs, tables
from ..api import read_store
from ..atomic import atomic_write_csv, atomic_write_text
from ..contracts import UserError
from ..spec import check_seeds
from ..ui import console, err_console
from ._common import cli_int

SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")


def add_parser(sub) -> None:
    p = sub.add_parser("table", help="build a paper table from stored results (never trains)")
    p.add_argument("table", help="grid name (benchmark/grids/NAME.yaml with a table: section), a YAML file, "
                                 "'factors' (the ground-truth factor probes of every pretraining), or 'all'")
    p.add_argument("--format", default="terminal", metavar="FMT",
                   help="csv | latex | md | terminal, comma-separated for several (csv,latex), or all "
                        "(= csv, latex, md and terminal); default terminal")
    p.add_argument("--results", default="results", metavar="DIR", help="result store (default results/)")
    p.add_argument("--out", metavar="DIR", help="where files go (default <results>/tables)")
    p.add_argument("--world", help="world label to use when the store holds several (e.g. default-s0)")
    p.add_argument("--seeds", type=cli_int, nargs="+", metavar="S",
                   help="seeds to use (default: those at which every row has results, so rows share their seeds; "
                        "a warning names any seed left out)")
    p.add_argument("--no-paper", action="store_true", help="leave out the papers' numbers")
    p.add_argument("--no-ci", action="store_true", help="leave out the ± 95%% CI half-widths (means only)")
    p.add_argument("--strict", action="store_true", help="exit 1 when any cell is missing")
    p.set_defaults(func=main)


def check_registered(table) -> None:
    """Every method and task a table names is registered (the table library reads foreign stores by name; the
    command refuses a typo, which would otherwise show as a row of missing cells and exit 0)."""
    from .. import spec as specs_
    where = table.path or table.name
    try:
        for row in table.rows:
            specs_.parse_method(row.method)
            for task in ([row.task] if row.task else []) + sorted(row.exclude):
                specs_.parse_task(task)
        for column in table.columns:
            if column.task:
                specs_.parse_task(column.task)
    except UserError as exc:
        raise UserError(f"{where}: table: {exc}") from None


def main(args) -> int:
    wanted = [f.strip() for f in args.format.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in (*tables.FORMATS, "all")]
    if unknown or not wanted:
        raise UserError(f"--format: unknown format {', '.join(unknown) or '(empty)'}; "
                        f"expected {', '.join(tables.FORMATS)} or all")
    formats = list(tables.FORMATS) if "all" in wanted else list(dict.fromkeys(wanted))
    if args.table == "factors":
        return write_factors(args, formats, required=True)
    names = tables.table_names() if args.table == "all" else [args.table]
    if not names:
        raise UserError("no grid with a 'table:' section found in benchmark/grids")
    specs = [tables.load_table(n) for n in names]  # validate all before writing anything
    for spec in specs:   # the name becomes file names under --out: never a path
        if not SAFE_NAME.match(str(spec.name)) or spec.name in (".", ".."):
            raise UserError(f"table name {spec.name!r} must be letters, digits, '_', '-' or '.' (it names the "
                            f"files written under --out)"[:300])
    for spec in specs:
        check_registered(spec)
    if args.seeds is not None:
        check_seeds(args.seeds)
    results_dir = Path(args.results)
    results = read_store(args.results, args.world)
    out = outputs.check_dir(Path(args.out) if args.out else results_dir / "tables", "--out")
    any_missing = False
    display = tables.Display(paper=not args.no_paper, ci=not args.no_ci)
    recorded, unsettled = budget.recorded_studies(results_dir), budget.unsettled_heads(results_dir)
    for spec in specs:
        bt = tables.build(spec, results, world=args.world, seeds=args.seeds, display=display, recorded=recorded,
                          unsettled=unsettled)
        if "terminal" in formats:
            console.print(tables.to_rich(bt, width=console.width))
        for line in bt.warnings + tables.missing_lines(bt):
            err_console.print(f"[yellow]warning[/] {spec.name}: {line}", soft_wrap=True, markup=True, highlight=False)
        any_missing |= bool(bt.missing)
        for path in tables.write(bt, formats, out):
            err_console.print(f"wrote {path}", soft_wrap=True, highlight=False)
    if args.table == "all":
        write_factors(args, formats, required=False, results=results)
        write_budget_proofs(results_dir, out, formats, results)
    return 1 if args.strict and any_missing else 0


def write_budget_proofs(results_dir: Path, out: Path, formats, results) -> None:
    """`budget_proofs.md` / `.csv`: each studied method's card budget and the committed study that proves it
    converged (`budget.proofs`), judged on the pretrainings this store's cells used where it has them."""
    keys: dict[str, set[str]] = {}
    for r in results:
        if r.task_name == budget.PROBE_TASK and r.pretrain_key and "+" not in r.method and "@" not in r.method:
            keys.setdefault(r.method, set()).add(r.pretrain_key)
    rows = budget.proofs(results_dir, keys=keys)
    if not rows:
        return
    mark = {True: "✓", False: "✗", None: "not proven"}

    def pair(r, d):
        at, twice = r.get(f"{d} at"), r.get(f"{d} at 2x")
        return "—" if at is None else f"{at:.2f} / " + ("—" if twice is None else f"{twice:.2f}")

    lines = ["**Each method's pretraining budget and its proof**", "",
             "| Method | trains (epochs E) | AVE V→A at E / 2E | AVE A→A at E / 2E | converged at E | study |",
             "|:---|---:|---:|---:|:---:|:---|"]
    lines += [f"| {r['method']} | {r['epochs']} | {pair(r, 'V->A')} | {pair(r, 'A->A')} | {mark[r['converged']]} | "
              f"{r['study'] or '—'} |" for r in rows]
    lines += ["", f"E = the epochs the method's card trains at its default scale. Converged: the committed budget "
                  f"study (`tables/<study>.md`, its rule there) finds AVE V→A and A→A at E within "
                  f"{budget.TOLERANCE:g} point (or the seed CI) of 2E and every larger probed budget, with A→A ≥ "
                  f"{budget.LEARNED_FACTOR:g}× chance; not converged where any study disagrees; not proven where no "
                  f"study probed twice E on these pretrainings. Means over the study's seeds."]
    if "terminal" in formats:
        console.print("\n".join(lines), soft_wrap=True, highlight=False, markup=False)
    if "md" in formats:
        atomic_write_text(out / "budget_proofs.md", "\n".join(lines) + "\n")
        err_console.print(f"wrote {out / 'budget_proofs.md'}", soft_wrap=True, highlight=False)
    if "csv" in formats:
        atomic_write_csv(out / "budget_proofs.csv", rows)
        err_console.print(f"wrote {out / 'budget_proofs.csv'}", soft_wrap=True, highlight=False)


def write_factors(args, formats, required: bool, results=None) -> int:
    """`factors.md` / `.csv` from the pretrainings' stored factor probes (benchmark/factors.py); a store without
    any (real data, a version 2 world) gets one warning line, or an error when the factors table was asked for."""
    from .. import factors, outputs
    from ..report_plots import tabled_bases, table_labels
    out = outputs.check_dir(Path(args.out) if args.out else Path(args.results) / "tables", "--out")
    probes = factors.collect(read_store(args.results, args.world) if results is None else results, args.world,
                             factors.shown_as(sorted(tabled_bases())))
    if not probes:
        message = ("no pretraining in the store carries factor probes (they need a synthetic world that stores its "
                   "true factors: a synthetic world of generator version 3, the default)")
        if required:
            raise UserError(message)
        err_console.print(f"[yellow]warning[/] factors: {message}", soft_wrap=True, highlight=False)
        return 0
    label = table_labels()
    if "terminal" in formats:
        console.print(factors.to_markdown(probes, label), soft_wrap=True, highlight=False, markup=False)
    if {"md", "csv"} & set(formats):
        for path in factors.write(probes, out, label):
            err_console.print(f"wrote {path}", soft_wrap=True, highlight=False)
    return 0
