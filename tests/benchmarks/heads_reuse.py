"""The head phase of grids with encodings shared (as `grid` runs them) and per cell (each cell encodes the splits it
reads, nothing shared with other cells: how the head phase ran before `tasks/encodings.py`), on one store.

    python tests/benchmarks/heads_reuse.py --results results main t6            # both modes, per-cell first

(any other option goes to `grid`, e.g. `--profile smoke --seeds 0`).
Every pretraining of the grids must be cached: each mode removes the store's cells and encodings (`cells/`,
`features/`), then runs the grids in two shards, one process each (local executor, one thread: the pool's
layout on 2 cores), and prints wall seconds, the cells' summed `evaluate_s` and the encodings written. The numbers
of both modes are equal (tests/test_encodings.py); only the time differs.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def shard(results: str, grids: list[str], which: str, per_cell: bool, extra: list[str]) -> int:
    """One shard in this process; `per_cell` keeps encodings inside each cell (no disk file, no shared memory)."""
    sys.path.insert(0, str(ROOT))
    from benchmark.__main__ import main
    from tasks import encodings
    if per_cell:
        encodings.path_for = lambda *args, **kwargs: None
        encodings.MEMORY.limit = 0
    return main(["grid", *grids, "--results", results, "--executor", "local", "--threads", "1", "--shard", which,
                 "--overwrite", "only-missing", "-q", *extra])


def measure(results: Path, grids: list[str], per_cell: bool, extra: list[str]) -> dict:
    from benchmark.store import Store
    shutil.rmtree(results / "cells", ignore_errors=True)
    shutil.rmtree(results / "features", ignore_errors=True)
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "--results", str(results), "--shard", f"{i}/2",
                               *(["--per-cell"] if per_cell else []), *grids, *extra]) for i in (0, 1)]
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - start
    cells = list(Store(results).results())
    return {"mode": "per-cell" if per_cell else "shared", "exit": codes, "wall_s": round(wall, 1),
            "cells": len(cells), "evaluate_s": round(sum((r.timings or {}).get("evaluate_s", 0.0) for r in cells), 1),
            "encodings": len(list((results / "features").rglob("*.npz"))),
            "pretrain_and_refine_s": round(sum((r.timings or {}).get("pretrain_and_refine_s", 0.0) for r in cells), 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("grids", nargs="+")
    p.add_argument("--results", default="results")
    p.add_argument("--shard", help=argparse.SUPPRESS)
    p.add_argument("--per-cell", action="store_true", help=argparse.SUPPRESS)
    args, extra = p.parse_known_args()     # the rest goes to `grid` (e.g. --profile smoke --seeds 0)
    if args.shard:
        sys.exit(shard(args.results, args.grids, args.shard, args.per_cell, extra))
    sys.path.insert(0, str(ROOT))
    rows = [measure(Path(args.results), args.grids, per_cell, extra) for per_cell in (True, False)]
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
