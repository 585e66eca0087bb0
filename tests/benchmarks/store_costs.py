"""Where a store's compute went: the breakdown `make bench` reports (docs/SCALING.md).

    python tests/benchmarks/store_costs.py --results results main t6 t5 t7 srcid_t1 srcid_fig3

Core-seconds of every pretraining the grids read (`pretrain_s` in each cache entry), per method and budget, and
of their cells' heads (`timings.evaluate_s`), per grid; a cell shared by two grids counts in the first.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("grids", nargs="+")
    p.add_argument("--results", default="results")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from benchmark.commands.grid import expand_all
    from benchmark.gridspec import find_grid, load_grid
    from benchmark.store import Store
    from benchmark.world import WorldChoice
    world = WorldChoice(cache_root=str(Path(args.results) / "data")).open(generate=False)
    store = Store(args.results)
    results = {r.key: r for r in store.results()}
    seen_cells, seen_pretrain = set(), set()
    pretrain = defaultdict(lambda: [0, 0.0])
    heads = defaultdict(lambda: [0, 0.0])
    for name in args.grids:
        for cell in expand_all([load_grid(find_grid(name))], None, world):
            r = results.get(cell.key)
            if r is None or cell.key in seen_cells:
                continue
            seen_cells.add(cell.key)
            heads[name][0] += 1
            heads[name][1] += float((r.timings or {}).get("evaluate_s", 0.0))
            if r.pretrain_key and r.pretrain_key not in seen_pretrain:
                seen_pretrain.add(r.pretrain_key)
                base = cell.method.base
                meta = store.root / "pretrain" / base.name / r.pretrain_key / "meta.json"
                if meta.exists():
                    seconds = json.loads(meta.read_text()).get("pretrain_s") or 0.0
                    epochs = ((r.diagnostics or {}).get("training") or {}).get("epochs")
                    row = pretrain[f"{base.name} @ {epochs} epochs" if epochs else base.name]
                    row[0] += 1
                    row[1] += float(seconds)
    total_p = sum(v[1] for v in pretrain.values())
    total_h = sum(v[1] for v in heads.values())
    print("| pretraining | runs | core-s | per run |\n|:---|---:|---:|---:|")
    for k, (n, s) in sorted(pretrain.items(), key=lambda kv: -kv[1][1]):
        print(f"| {k} | {n} | {s:.0f} | {s / n:.0f} |")
    print(f"| **all** | {sum(v[0] for v in pretrain.values())} | {total_p:.0f} | |\n")
    print("| grid | cells | heads core-s |\n|:---|---:|---:|")
    for k, (n, s) in heads.items():
        print(f"| {k} | {n} | {s:.0f} |")
    print(f"| **all** | {sum(v[0] for v in heads.values())} | {total_h:.0f} |")


if __name__ == "__main__":
    main()
