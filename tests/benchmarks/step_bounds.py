"""What bounds a pretraining step on one CPU core (docs/SCALING.md, "Why ≥ 3× is out of reach"):

    python tests/benchmarks/step_bounds.py --world results/data/default-s0 dcid cmcm turn

Per method, on one corpus batch, one pinned thread (AVX2-capped unless `--isa native`), medians of CPU time:
the step at batch 128; per-sample at batch 384 (the best case of training 3 seeds as one model: the same ops on
3× the rows); the step at half width (`code_dim`, `specific_dim`, `ffn` 32); the GEMM FLOPs of a step
(`torch.profiler`, `with_flops`). Then the core's GEMM rate on the step's shapes: FLOPs / rate is the floor no
rewrite that keeps the losses can go under.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ISA_AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
OPTIONS = {"simmmdg": {"labels": "clip"}, "srcid": {"warm_epoch": 0}}   # as step_compare.py
HALF = {"code_dim": 32, "specific_dim": 32, "ffn": 64}
SHAPES = [(1280, 64, 64), (1280, 64, 400), (1280, 512, 64), (790, 768, 256)]


def cpu_median(fn, reps: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(reps):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def measure(world: str, methods: list[str], reps: int) -> dict:
    sys.path.insert(0, str(HERE.parents[2]))
    sys.path.insert(0, str(HERE.parent))
    import numpy as np
    import torch
    from torch.profiler import ProfilerActivity, profile

    import bench_method_steps as bench
    from tasks.data import open_world
    torch.set_num_threads(1)
    corpus = open_world(world).corpus()
    names = ("audio", "video", "text")

    def batch_of(size: int) -> dict:
        raw = next(corpus.iter_batches(size, seed=1, shuffle=True, modalities=names))
        batch = {m: torch.as_tensor(np.asarray(raw[m]), dtype=torch.float32) for m in names}
        batch["labels"] = torch.as_tensor(corpus.labels("clip")[raw["index"]])
        return batch
    b128, b384 = batch_of(128), batch_of(384)
    out: dict = {"methods": {}, "gemm_gflops": {}}
    for name in methods:
        options = OPTIONS.get(name, {})
        runs = {"128": bench.step_runner(name, batch=b128, options=options),
                "384": bench.step_runner(name, batch=b384, options=options),
                "half": bench.step_runner(name, batch=b128, options={**options, **HALF})}
        times: dict[str, list[float]] = {k: [] for k in runs}
        for fn in runs.values():
            cpu_median(fn, 1)                    # warm-up
        for _ in range(reps):                    # alternating, so load on a shared machine hits each alike
            for k, fn in runs.items():
                times[k].append(cpu_median(fn, 1))
        ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            runs["128"]()
        row = {"ms_128": ms["128"], "gemm_gflop": sum(e.flops for e in prof.key_averages()
                                                     if e.key in ("aten::mm", "aten::addmm", "aten::bmm")) / 1e9,
               "us_per_sample_384": 1e3 * ms["384"] / 384, "per_sample_gain_384": ms["128"] / 128 / (ms["384"] / 384),
               "ms_half_width": ms["half"], "half_width_gain": ms["128"] / ms["half"]}
        out["methods"][name] = {k: round(v, 3) for k, v in row.items()}
        print(name, out["methods"][name], flush=True)
    for m, k, n in SHAPES:
        a, b = torch.randn(m, k), torch.randn(k, n)
        out["gemm_gflops"][f"{m}x{k}x{n}"] = round(2 * m * k * n / cpu_median(lambda: a @ b, 200) / 1e9, 1)
    rate = statistics.median(out["gemm_gflops"].values())
    for row in out["methods"].values():
        row["gemm_floor_ms"] = round(1e3 * row["gemm_gflop"] / rate, 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("methods", nargs="*", default=["dcid", "cmcm", "turn"])
    p.add_argument("--world", default="results/data/default-s0")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--cpu", type=int, default=0, help="core to pin to (-1: none)")
    p.add_argument("--isa", choices=["avx2", "native"], default="avx2")
    args = p.parse_args()
    if args.isa == "avx2" and os.environ.get("ONEDNN_MAX_CPU_ISA") != "AVX2":   # caps are read at import: re-exec
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **ISA_AVX2})
    if args.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    print(json.dumps(measure(args.world, args.methods, args.reps), indent=1))


if __name__ == "__main__":
    main()
