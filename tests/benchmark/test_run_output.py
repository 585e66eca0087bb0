"""What `run` prints and records beyond the numbers (issue 17): the mean ± CI table of a multi-seed run and the
hardware / threads in every cell's `env.json`."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from benchmark import store as store_module
from benchmark.results import CellResult
from benchmark.ui import seeds_table

ROOT = Path(__file__).resolve().parent.parent.parent


def render(table) -> str:
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


def test_seeds_table_shows_mean_and_t_interval_and_n():
    """acc 1, 2, 3 over three seeds: mean 2, s = 1, t_{0.975,2} = 4.303 -> ± 4.303 / √3 = 2.48; a direction only
    one seed reports shows its mean alone (n = 1: no interval)."""
    results = [CellResult(method="m", task="t", seed=s, main_metric="acc",
                          metrics={"V->A": {"acc": float(s + 1)}, **({"A->V": {"acc": 5.0}} if s == 0 else {})})
               for s in (0, 1, 2)]
    text = render(seeds_table(results))
    assert "m × t · mean ± 95% CI over seeds 0 1 2" in text
    row = next(line for line in text.splitlines() if "V->A" in line)
    assert row.split("│")[2].strip() == "3" and row.split("│")[3].strip() == "2.00 ± 2.48"
    row = next(line for line in text.splitlines() if "A->V" in line)
    assert row.split("│")[2].strip() == "1" and row.split("│")[3].strip() == "5.00"


def run(store: Path, **env) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "benchmark", "run", "--method", "tinymethod", "--task", "tinytask",
                          "--seeds", "0", "1", "--profile", "smoke", "--results", store, "-q"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "COLUMNS": "150", **env})
    assert out.returncode == 0, out.stderr
    return out


def test_multi_seed_run_prints_the_aggregate_and_env_json_records_the_hardware(tmp_path):
    out = run(tmp_path / "s", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    assert out.stdout.count("· seed ") == 2                                  # the per-seed tables
    tail = out.stdout.split("mean ± 95% CI over seeds 0 1")[1]               # then the summary, last
    assert "V->A" in tail and "±" in tail
    envs = [json.loads(p.read_text()) for p in sorted((tmp_path / "s").glob("cells/*/*/*/env.json"))]
    assert len(envs) == 2
    for env in envs:
        assert env["thread_env"] == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        assert isinstance(env["torch_threads"], int) and env["torch_threads"] >= 1
        assert env["cpu"] == store_module.cpu_info() and env["cpu"]["cores"] == os.cpu_count()
        assert isinstance(env["cuda_available"], bool) and isinstance(env["gpus"], list)
        assert env["cuda_available"] == bool(env["gpus"])
    again = run(tmp_path / "s", OMP_NUM_THREADS="2")                       # never hashed: the same cells
    assert "cached 2 · ran 0" in again.stderr


def test_cpu_info_reads_the_isa_flags_of_proc_cpuinfo():
    info = store_module.cpu_info()
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        assert info["isa"] is None
        return
    flags = next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split(":")[1].split()
    assert info["isa"] == [f for f in store_module.ISA_FLAGS if f in flags] and info["model"]


def test_environment_does_not_import_torch():
    """Provenance is cheap: read commands may record it without loading torch (then cuda_available is null)."""
    code = ("import sys; from benchmark.store import environment; env = environment(); "
            "assert 'torch' not in sys.modules and env['cuda_available'] is None and env['torch']")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
