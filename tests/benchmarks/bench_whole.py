"""pytest-benchmark: the two whole jobs users wait for. Both are `slow` (never part of `make test`).

- `make bench` from an empty result store (world generation, every grid, tables, claims, figures), once.
- One pretraining epoch on the paper-profile corpus (40k clips, video `[10,7,7,512]`, 20 GB float16 on disk),
  streamed from HDF5 through `python -m benchmark pretrain`, with the process's peak RSS recorded (bound: 4 GiB).
  It needs the paper world (generate it once: `python -m benchmark data synth --profile paper --out DIR`, ~4 min)
  named by `UNIBENCH_PAPER_WORLD=DIR`; `make perf-paper` runs it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAPER_EPOCH_METHOD = os.environ.get("UNIBENCH_PAPER_METHOD", "dcid@epochs=1")
RSS_BOUND_MIB = 4096


def _record(benchmark, **info) -> None:
    if benchmark.stats is not None:          # None under --benchmark-disable
        benchmark.extra_info.update(info)


@pytest.mark.slow
def test_make_bench_wall_time(benchmark, tmp_path):
    store = tmp_path / "results"

    def bench():
        subprocess.run(["make", "-s", "bench", f"RESULTS={store}", f"PY={sys.executable}"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        return len(list(store.glob("cells/*/*/*/result.json")))
    cells = benchmark.pedantic(bench, rounds=1, iterations=1)
    _record(benchmark, cells=cells)
    assert cells > 0 and (store / "tables" / "t1.csv").exists()


@pytest.mark.slow
def test_paper_scale_corpus_epoch_peak_rss(benchmark, tmp_path):
    world = os.environ.get("UNIBENCH_PAPER_WORLD")
    if not world or not (Path(world) / "pretrain.h5").exists():
        pytest.skip("set UNIBENCH_PAPER_WORLD to a generated paper-profile world")
    report = tmp_path / "pretrain.json"

    def epoch():
        subprocess.run([sys.executable, "-m", "benchmark", "pretrain", "--method", PAPER_EPOCH_METHOD, "--data", world,
                        "--results", str(tmp_path / "results"), "--json", str(report), "--threads",
                        str(os.cpu_count() or 1), "-q"], cwd=ROOT, check=True)   # one process: every core
        return json.loads(report.read_text())
    out = benchmark.pedantic(epoch, rounds=1, iterations=1)
    row = out["rows"][0]
    _record(benchmark, peak_rss_mib=out["peak_rss_mb"], clips=row["clips"], method=row["method"],
            clips_per_s=round(row["clips"] / row["seconds"], 1))
    assert row["status"] == "trained" and row["clips"] >= 40_000
    assert out["peak_rss_mb"] < RSS_BOUND_MIB, f"peak RSS {out['peak_rss_mb']} MiB"
