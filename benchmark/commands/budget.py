"""`budget --method SPEC... --epochs 2 4 8 16 32`: the learning-curve study that chooses the default budget.

Trains each (method, seed) once to the largest budget, caching the pretraining at every budget on the way
(`benchmark.budget`), probes each budget on AVE (all four directions, one cell each) and writes
`results/tables/budget.{md,csv,json}` and `results/figures/budget_curves.png`: mean ± CI per budget, whether
the score is within 1 point (or its seed CI) of twice the budget, each method's smallest converged budget (what
its card's `scale=default` preset should train) and the smallest budget at which every method is.
`--epochs-of METHOD=E,E,...` gives a method its own budgets (a fast method need not train to the slowest one's).
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import budget, executors, migrate, runner
from .. import bounds, outputs
from .. import spec as specs
from ..atomic import atomic_write_csv, atomic_write_text
from ..contracts import UserError
from ..store import Store
from ..ui import CellProgress, console
from ._common import add_world_options, options_from

DEFAULT_METHODS = ("codis", "turn", "cmcm", "simmmdg", "dcid", "fccid", "srcid")
DEFAULT_BUDGETS = (2, 4, 8, 16, 32)


def add_parser(sub) -> None:
    p = sub.add_parser("budget", help="learning-curve study: pretraining budgets probed on AVE; picks the default")
    p.add_argument("--method", nargs="+", default=list(DEFAULT_METHODS), help="method specs without 'epochs'")
    p.add_argument("--epochs", nargs="+", type=int, default=list(DEFAULT_BUDGETS), metavar="E",
                   help="budgets in epochs (one training run per method and seed serves all of them)")
    p.add_argument("--epochs-of", nargs="+", default=[], metavar="METHOD=E,E",
                   help="a method's own budgets instead of --epochs (e.g. turn=8,16,32,64)")
    p.add_argument("--workers", type=int, default=2, help="processes (chains and probe cells run in parallel)")
    p.add_argument("--out", default=None, metavar="DIR", help="where tables/ and figures/ go (default: --results)")
    p.add_argument("--name", default="budget", help="file stem of the table and figure (default budget)")
    add_world_options(p)
    p.set_defaults(func=main, overwrite="only-missing")


def _check_budgets(epochs: list[int], flag: str) -> None:
    if not epochs or any(e < 1 for e in epochs):
        raise UserError(f"{flag} must be positive integers, got {epochs}")
    if len(set(epochs)) < 2:
        raise UserError(f"{flag} needs at least two budgets (convergence compares a budget with twice it)")
    top = bounds.limit("epochs")
    if max(epochs) > top:
        raise UserError(f"{flag} {max(epochs)}: at most {top} ({bounds.OPTION_BOUNDS['epochs'].why})")


def _budget_plan(args) -> dict[str, list[int]]:
    """{method: its budgets}: --epochs, except where --epochs-of names the method."""
    methods = list(dict.fromkeys(args.method))
    plan = {m: sorted(set(args.epochs)) for m in methods}
    for item in args.epochs_of:
        method, eq, values = item.partition("=")
        try:
            epochs = [int(v) for v in values.split(",")] if eq else []
        except ValueError:
            epochs = []
        if not epochs:
            raise UserError(f"--epochs-of expects METHOD=E,E,... (e.g. turn=8,16,32), got '{item}'")
        if method not in plan:
            raise UserError(f"--epochs-of {item}: '{method}' is not one of --method ({', '.join(methods)})")
        _check_budgets(epochs, f"--epochs-of {method}")
        plan[method] = sorted(set(epochs))
    return plan


def _validate(args) -> None:
    _check_budgets(args.epochs, "--epochs")
    _budget_plan(args)
    bounds.check_count("workers", args.workers, "--workers")
    outputs.check_stem(args.name, "--name")
    flag = "--out" if args.out else "--results"
    for sub in ("tables", "figures"):      # where it writes (dead writers' temp files swept there)
        outputs.check_dir(Path(args.out or args.results) / sub, flag)
    specs.check_seeds(args.seeds or [0])
    for m in args.method:
        budget.with_epochs(m, 1)        # every spec parses and has a budget
        if specs.parse_method(m).refiners:
            raise UserError(f"budget study of '{m}': refiners never train; give the base method")


def main(args) -> int:
    _validate(args)
    options = options_from(args)
    seeds = args.seeds or [0]
    plan = _budget_plan(args)
    methods = list(plan)
    probe_specs = [budget.with_epochs(m, b) for m in methods for b in plan[m]]
    device = runner.check_device(options.device, [runner.Cell(specs.parse_method(s), None, 0) for s in probe_specs])
    store = Store(args.results)
    migrate.migrate(store)     # an older store's pretrainings to today's keys, once per store
    with CellProgress(None, quiet=options.quiet) as gen:
        world = options.world.open(progress=gen.inner)
    with CellProgress(len(methods) * len(seeds), quiet=options.quiet, title="budget chains") as ui:
        budget.run_chains(methods, plan, seeds, world, store, options, args.workers, ui, device)
    cells = runner.plan(probe_specs, [budget.PROBE_TASK], seeds, world)
    with CellProgress(len(cells), quiet=options.quiet, title="budget probes") as ui:
        if args.workers > 1:
            outcomes = executors.run_pool(cells, world, store, options, args.workers, ui, device)
        else:
            outcomes = executors.run_local(cells, world, store, options, ui, device)
    failed = [o for o in outcomes if o.status == "failed"]
    for o in failed:
        console.print(f"[red]FAILED[/] {o.cell.label}: {o.error}")
    classes = len(world.open(budget.PROBE_TASK).classes)
    chance = 100 / classes
    points = budget.collect([o.result for o in outcomes if o.result], methods, plan)
    rows = budget.table_rows(points, methods, plan, chance=chance)
    chosen = budget.choose_budget(points, methods, plan, chance=chance)
    per_method = budget.choose_budgets(points, methods, plan, chance=chance)
    out = Path(args.out or args.results)
    keys = budget.probe_keys([o.result for o in outcomes if o.result], methods, plan)
    write_outputs(out, args.name, rows, points, methods, plan, chosen, seeds, options.world.label, classes,
                  per_method, keys)
    return 1 if failed else 0


def _fmt(mean, ci) -> str:
    if mean is None:
        return "—"
    return f"{mean:.2f}" + (f" ± {ci:.2f}" if ci is not None else "")


def write_outputs(out: Path, name: str, rows, points, methods, budgets, chosen, seeds, world_label,
                  classes: int, per_method: dict[str, int | None] | None = None,
                  keys: dict[tuple[str, int], dict[int, str]] | None = None) -> None:
    """The table (md, csv), the figure and `<name>.json`, whose rows also carry the pretraining key of each probed
    seed: tables read the verdicts off it where the store holds no probes (`budget.recorded_verdicts`)."""
    chance = 100 / classes
    tables, figures = out / "tables", out / "figures"
    tables.mkdir(parents=True, exist_ok=True)
    dirs = ("V->A", "A->A")
    plan = budget.budgets_of(methods, budgets)
    every = sorted({b for bs in plan.values() for b in bs})
    atomic_write_csv(tables / f"{name}.csv", rows)
    presets = {m: budget.preset_epochs(m) for m in methods}
    verdict = (f"**Converged: {chosen} epochs** — the smallest budget at which, for every method of this study "
               f"({', '.join(methods)}), AVE V→A and "
               f"A→A agree (within {budget.TOLERANCE:g} point, or the seed CI of the difference) with twice that "
               f"budget and every larger one, and A→A is at least {budget.LEARNED_FACTOR:g}× chance." if chosen else
               f"**No budget of this study is converged for every method of it** ({', '.join(methods)}; see the ✗ "
               f"rows).")
    per_method = per_method or {}
    per = "; ".join(f"{m} {per_method.get(m) or 'none'}" + ("" if per_method.get(m) == presets[m]
                                                            else f" (its preset trains {presets[m]})")
                    for m in methods)
    verdict += (f"\n\nPer method, the smallest converged budget (what its `scale=default` preset trains unless "
                f"noted): {per}.")
    lines = [f"# Budget study — AVE accuracy (%) after E pretraining epochs", "",
             f"World {world_label}; seeds {', '.join(map(str, seeds))}; mean ± 95% CI over seeds (t-interval; "
             f"none with one seed); chance {chance:.2f} % ({classes} classes). One training run per method and "
             f"seed, probed at every budget. ✓ = within {budget.TOLERANCE:g} point (or CI) of 2E and every larger "
             f"budget on both directions, with A→A ≥ {budget.LEARNED_FACTOR:g}× chance (a flat curve on the floor "
             f"has not learned); ✗ = not; — = 2E not probed.", "", verdict, "",
             "Codes used: the share of the codebook each modality's clips use in the pretraining (audio / video / "
             "text, mean over seeds; — for a method without one).", "",
             "| Method | Epochs | AVE V→A | AVE A→A | codes used A / V / T (%) | converged |",
             "|:---|---:|---:|---:|---:|:---:|"]
    for r in rows:
        mark = {True: "✓", False: "✗", None: "—"}[r["converged"]]
        used = [v for k, v in r.items() if k.startswith("codes used ")]   # table_rows' modality order
        used_text = " / ".join("—" if u is None else f"{u:.0f}" for u in used) if any(u is not None for u in used) \
            else "—"
        lines.append(f"| {r['method']} | {r['epochs']} | {_fmt(r['V->A mean'], r['V->A ci95'])} | "
                     f"{_fmt(r['A->A mean'], r['A->A ci95'])} | {used_text} | {mark} |")
    markdown = "\n".join(lines) + "\n"
    atomic_write_text(tables / f"{name}.md", markdown)
    keyed = [{**r, "pretrain_keys": {str(seed): key for seed, key in
                                     sorted((keys or {}).get((r["method"], r["epochs"]), {}).items())}} for r in rows]
    atomic_write_text(tables / f"{name}.json", json.dumps({"chosen": chosen, "per_method": per_method,
                                                            "presets": presets, "budgets": plan, "seeds": seeds,
                                                            "world": world_label, "rows": keyed}, indent=1))
    from ..report_plots import plot_budget_curves
    plot_budget_curves(points, methods, every, dirs, figures / f"{name}_curves.png", chance, budget.LEARNED_FACTOR,
                       chosen)
    console.print(markdown)
