"""The head-budget study: how long the task heads must train before the rows they score stop moving.

    python tests/benchmarks/head_budget.py --results results --scales 1 2 4 8 \
        --scales-of avvp=1,2,4,8,16,32 ave_avvp=1,2,4,8,16,32 --rows-at 32=raw,cca --exempt avvp=raw

(`--collect` judges the cells already in the store and runs nothing.)

Each head task (AVE, AVE->AVVP, AVVP, UCF<->VGG) trains a small head per source modality, selected on the source's
val split. The released scripts train it 30 epochs (AVVP and AVE->AVVP: 50) with the learning rate halved at
epochs 10, 20 and 30 -- on splits two to twelve times larger than the synthetic world's, so at the release's epoch
counts a head here takes a fraction of the release's optimizer steps. Scale `s` stretches the release's schedule
by s (epochs 30s, milestones 10s / 20s / 30s, patience 10s): the release's trajectory on a split s times larger.

Per task, the budget is the smallest probed scale at which every row's *val* score (the selection metric; test
scores are never used to choose) agrees with its score at every larger probed scale, by the pretraining budget's
rule (`benchmark.budget.converged`: within 1 point, or within the 95 % CI of the paired seed differences); a head
converged at s has settled at every budget >= s (`benchmark.budget.settled`: its score there agrees with s's) and
a row when every head of it has, so `--rows-at` probes the largest scale only for the rows still moving, and `--exempt` names a row the budget does not wait for. Rows:
the reference rows (oracle, raw features, CCA) and trained methods (cached pretrainings). Writes
`<results>/tables/head_budget.md` and `.json` (the record `tests/benchmark/test_instrument.py` checks the task
cards against).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TASKS = ("ave", "ave_avvp", "avvp", "ucf_vgg")
ROWS = ("oracle", "raw", "cca", "codis", "turn", "cmcm", "simmmdg", "dcid", "fccid", "srcid")
RELEASE = {"epochs": 30, "milestones": (10, 20, 30), "patience": 10}


def schedule(scale: int) -> dict:
    return {"epochs": RELEASE["epochs"] * scale, "lr_milestones": [m * scale for m in RELEASE["milestones"]],
            "patience": RELEASE["patience"] * scale}


def task_spec(task: str, scale: int) -> str:
    s = schedule(scale)
    milestones = ",".join(str(m) for m in s["lr_milestones"])
    return f"{task}@epochs={s['epochs']},lr_milestones=[{milestones}],patience={s['patience']}"


def pairs(items) -> list[tuple[str, str]]:
    """`KEY=VALUE` arguments (`--scales-of`, `--rows-at`, `--exempt`) as (key, value)."""
    return [tuple(item.split("=", 1)) for item in items]


def collect(results: Path, tasks, rows, scales_of, seeds):
    """Every stored cell of `rows` x `tasks` whose head ran a probed schedule, read from its own config.json (the
    schedule it ran, whatever the card's defaults or the task's version are today; the same cell computed twice,
    e.g. across a version bump, counts once)."""
    values = defaultdict(dict)      # (task, row, scale, head) -> {seed: val score}
    tests = defaultdict(dict)       # (task, row, scale, direction) -> {seed: test score}
    epochs = defaultdict(dict)      # (task, row, scale) -> {(seed, head): (best epoch + 1, epochs run)}
    data = defaultdict(set)         # task -> fingerprints of the feature files its cells read (what was studied)
    for config_path in sorted(results.glob("cells/*/*/*/config.json")):
        config = json.loads(config_path.read_text())
        task, cfg, row, seed = config["task"]["name"], config["task"]["cfg"], config["spec"]["method"], config["seed"]
        if task not in tasks or row not in rows or seed not in seeds or cfg["protocol"] != "clean":
            continue
        scale = next((s for s in scales_of[task] if {k: cfg[k] for k in ("epochs", "lr_milestones", "patience")}
                      == schedule(s)), None)
        result_path = config_path.with_name("result.json")
        if scale is None or not result_path.exists():
            continue
        r = json.loads(result_path.read_text())
        data[task].add(r["data_fingerprint"])
        for name, head in r["notes"]["heads"].items():
            val = next(v for k, v in head.items() if k.startswith("val_"))
            values[(task, row, scale, name.split("/")[-1])].setdefault(seed, float(val))
            epochs[(task, row, scale)].setdefault((seed, name), (head["best_epoch"] + 1, head["epochs_run"]))
        for direction, metrics in r["metrics"].items():
            tests[(task, row, scale, direction)].setdefault(seed, float(metrics[r["main_metric"]]))
    return values, tests, {k: list(v.values()) for k, v in epochs.items()}, data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results")
    p.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--scales-of", nargs="*", default=[], metavar="TASK=S,S",
                   help="a task's own scales, e.g. avvp=1,2,4,8,16 (the others probe --scales)")
    p.add_argument("--rows-at", nargs="*", default=[], metavar="S=ROW,ROW",
                   help="probe only these rows at scale S (the rows still moving at the scale below it)")
    p.add_argument("--exempt", nargs="*", default=[], metavar="TASK=ROW",
                   help="a row the task's budget does not wait for (reported as still moving, with why in the docs)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rows", nargs="+", default=list(ROWS))
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--collect", action="store_true", help="run nothing: judge the cells already in the store")
    p.add_argument("--out", default=None, help="folder of head_budget.md/.json (default <results>/tables)")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from benchmark import api, runner
    from benchmark.atomic import atomic_write_text
    from benchmark.budget import Point, converged, settled

    own = {t: [int(x) for x in v.split(",")] for t, v in pairs(args.scales_of)}
    scales_of = {t: own.get(t, args.scales) for t in args.tasks}
    if not args.collect:
        options = runner.Options(world=api.world_choice(None, None, 0, args.results), quiet=True, threads=1)
        specs = {(t, s): task_spec(t, s) for t in args.tasks for s in scales_of[t]}
        rows_at = {int(k): v.split(",") for k, v in pairs(args.rows_at)}

        def plan(world):
            return [cell for (task, scale), spec in specs.items()
                    for cell in runner.plan(rows_at.get(scale, args.rows), [spec], args.seeds, world)]
        failed = [o for o in api.run_cells(plan, options, args.results, "pool", args.workers)
                  if o.result is None and o.status != "n/a"]
        if failed:
            sys.exit(f"error: {len(failed)} cells did not run, e.g. {failed[0].cell.label}: {failed[0].error}")
    values, tests, epochs, data = collect(Path(args.results), args.tasks, args.rows, scales_of, args.seeds)

    points = {((task, row), scale, head): Point(row, scale, head, v)
              for (task, row, scale, head), v in values.items()}
    record = {"seeds": args.seeds, "release": RELEASE, "tasks": {}}
    lines = ["# Head budget: the release's head schedule stretched by s, val score per source head",
             "", "`python tests/benchmarks/head_budget.py " + " ".join(a for a in sys.argv[1:] if a != "--collect")
             + "` (its docstring has the rule). Val score = the selection "
             "metric on the source's val split (AVE, UCF<->VGG: accuracy %; AVVP, AVE->AVVP: micro F1 % at the val-tuned "
             "threshold), mean over seeds " + " ".join(map(str, args.seeds)) + "; ✓ = agrees with every larger "
             "scale (a budget at or above a ✓ sits on that row's plateau); — = not probed; best = "
             "latest best epoch / epochs run over seeds and heads.", ""]
    for task in args.tasks:
        rows = [r for r in args.rows if any(k[0] == task and k[1] == r for k in values)]
        heads = sorted({k[3] for k in values if k[0] == task})
        probed = scales_of[task]
        verdict = {(row, s): all(converged(points, (task, row), s, h) for h in heads)
                   if (task, row, 2 * s, heads[0]) in values else None for row in rows for s in probed}
        # a row has settled at b when each of its heads has (`settled`: converged at some probed s <= b)
        on_plateau = {(row, b): all(settled(points, (task, row), b, h) for h in heads) for row in rows for b in probed}
        exempt = {r for t, r in pairs(args.exempt) if t == task}
        chosen = next((b for b in probed if all(on_plateau[(row, b)] for row in rows if row not in exempt)), None)
        record["tasks"][task] = {"scale": chosen, "scales": scales_of[task],
                                 "settled": {row: bool(chosen) and on_plateau[(row, chosen)] for row in rows},
                                 "exempt": sorted(exempt), "data_fingerprints": sorted(data[task]),
                                 "schedule": schedule(chosen) if chosen else None, "rows": {
            row: {str(s): {"val": {h: values[(task, row, s, h)] for h in heads},
                           "test": {d: tests[(task, row, s, d)] for d in ("V->A", "A->V")
                                    if (task, row, s, d) in tests},
                           "converged": verdict[(row, s)], "settled": on_plateau[(row, s)]}
                       for s in scales_of[task] if (task, row, s, heads[0]) in values} for row in rows}}
        lines += [f"## {task}: budget s = {chosen}" + (f" ({schedule(chosen)['epochs']} epochs)" if chosen else
                                                      " (none probed converges every row)"), "",
                  "| row | " + " | ".join(f"s={s} ({30 * s} ep.)" for s in scales_of[task]) + " |",
                  "|:---|" + "---:|" * len(scales_of[task])]
        for row in rows:
            cells = []
            for s in scales_of[task]:
                if (task, row, s, heads[0]) not in values:
                    cells.append("—")
                    continue
                mean = " / ".join(f"{sum(values[(task, row, s, h)].values()) / len(values[(task, row, s, h)]):.1f}"
                                  for h in heads)
                best = max(e[0] for e in epochs[(task, row, s)])
                run = max(e[1] for e in epochs[(task, row, s)])
                mark = {True: " ✓", False: "", None: ""}[verdict[(row, s)]]
                cells.append(f"{mean}{mark} (best {best}/{run})")
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        moving = [row for row in rows if chosen and not on_plateau[(row, chosen)]]
        lines += ["", f"Heads: {' / '.join(heads)}." + (f" Still moving at the budget (exempt, see docs/INSTRUMENT.md): "
                                                        f"{', '.join(moving)}." if moving else ""), ""]
    out = Path(args.out) if args.out else Path(args.results) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "head_budget.json", json.dumps(record, indent=1, sort_keys=True) + "\n")
    atomic_write_text(out / "head_budget.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
