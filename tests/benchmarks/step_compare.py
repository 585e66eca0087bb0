"""Per-step cost of every trained method, an old revision against this tree, timed alternately in one run.

    git worktree add /tmp/perf-old <sha>
    python tests/benchmarks/step_compare.py --old /tmp/perf-old --world results/data/default-s0 [--rounds 8]

Two long-lived workers, one importing each tree, build every method's model (`scale=default`, one thread) on the
same corpus batch (batch 128, so the text repeats class prompts as in pretraining) and take turns on one pinned
core: each round times `--steps` steps of one method in one worker, then in the other (the order flips every round),
so load on a shared machine hits both alike. Prints the median ms per step (wall and CPU time) per method and tree, and the ratio.
On an AVX-512 CPU, `--isa avx2` (the default) caps oneDNN, MKL and ATen kernels at AVX2.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
METHODS = ["codis", "turn", "cmcm", "simmmdg", "dcid", "fccid", "srcid"]
# SimMMDG as it pretrains on a corpus with clip classes; SRCID with its second layer on (it joins after warm-up)
OPTIONS = {"simmmdg": {"labels": "clip"}, "srcid": {"warm_epoch": 0}}
ISA_ENV = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
           "native": {}}


def worker(tree: str, world: str, batch_size: int, cpu: int) -> None:
    """Serve `<method> <steps>` lines on stdin with a JSON line of per-step (wall, cpu) seconds."""
    if cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    sys.path.insert(0, tree)
    import numpy as np
    import torch
    torch.set_num_threads(1)
    from tasks.data import open_world
    spec = importlib.util.spec_from_file_location("bench_method_steps", HERE.parent / "bench_method_steps.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    corpus = open_world(world).corpus()
    names = ("audio", "video", "text")
    raw = next(corpus.iter_batches(batch_size, seed=1, shuffle=True, modalities=names))
    batch = {m: torch.as_tensor(np.asarray(raw[m]), dtype=torch.float32) for m in names}
    batch["labels"] = torch.as_tensor(corpus.labels("clip")[raw["index"]])
    steps = {}
    print(json.dumps({"ready": tree}), flush=True)
    for line in sys.stdin:
        name, count = line.split()
        if name not in steps:
            steps[name] = bench.step_runner(name, batch=batch, options=OPTIONS.get(name))
            for _ in range(3):
                steps[name]()
        times = []
        for _ in range(int(count)):
            wall, cpu = time.perf_counter(), time.process_time()
            steps[name]()
            times.append((time.perf_counter() - wall, time.process_time() - cpu))
        print(json.dumps(times), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="the old revision's tree (a git worktree)")
    ap.add_argument("--new", default=str(HERE.parents[2]), help="the new tree (default: this one)")
    ap.add_argument("--world", required=True, help="a world folder with pretrain.h5 (e.g. the default world)")
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per method, tree and round")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--isa", choices=sorted(ISA_ENV), default="avx2")
    ap.add_argument("--cpu", type=int, default=0, help="the core both workers are pinned to (-1: not pinned), so "
                    "neither sits on a busier core than the other")
    ap.add_argument("--worker", nargs=4, metavar=("TREE", "WORLD", "BATCH", "CPU"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker[0], args.worker[1], int(args.worker[2]), int(args.worker[3]))
    problems = [f"--old/--new {tree} is not a unibench tree (no methods/trainer.py)" for tree in (args.old, args.new)
                if not (Path(tree) / "methods" / "trainer.py").is_file()]
    if not (Path(args.world) / "pretrain.h5").is_file():
        problems.append(f"--world {args.world} has no pretrain.h5 (e.g. results/data/default-s0)")
    if problems:
        print(f"error: {problems[0]}", file=sys.stderr)
        sys.exit(2)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **ISA_ENV[args.isa]}
    trees = {"old": args.old, "new": args.new}
    procs = {k: subprocess.Popen([sys.executable, str(HERE), "--old", "-", "--world", args.world,
                                  "--worker", str(Path(v).resolve()), args.world, str(args.batch), str(args.cpu)],
                                 cwd=v, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for k, v in trees.items()}
    for p in procs.values():
        json.loads(p.stdout.readline())
    times = {(m, k): [] for m in args.methods for k in trees}
    for r in range(args.rounds):
        for m in args.methods:
            for k in (("old", "new") if r % 2 == 0 else ("new", "old")):
                procs[k].stdin.write(f"{m} {args.steps}\n")
                procs[k].stdin.flush()
                times[(m, k)] += json.loads(procs[k].stdout.readline())
    for p in procs.values():
        p.stdin.close()
        p.wait()
    print(f"median ms per step, batch {args.batch}, {args.rounds} rounds x {args.steps} steps, isa {args.isa}; "
          f"old {args.old}, new {args.new}")
    print(f"{'method':8s} {'old wall':>9s} {'new wall':>9s} {'speed-up':>8s} {'old cpu':>9s} {'new cpu':>9s} "
          f"{'speed-up':>8s}")
    for m in args.methods:
        med = {(k, i): 1000 * statistics.median(t[i] for t in times[(m, k)]) for k in trees for i in (0, 1)}
        print(f"{m:8s} {med['old', 0]:9.1f} {med['new', 0]:9.1f} {med['old', 0] / med['new', 0]:7.2f}x "
              f"{med['old', 1]:9.1f} {med['new', 1]:9.1f} {med['old', 1] / med['new', 1]:7.2f}x")


if __name__ == "__main__":
    main()
