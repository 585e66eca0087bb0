"""Distributed executors (issue 9): Ray and submitit run the same cells as `local`, with the same keys and numbers."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmark import spec
from benchmark.store import Store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from tasks.data import synthesize
    out = tmp_path_factory.mktemp("world")
    synthesize("smoke", 0, out)
    return out


def _grid(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("methods: [tinymethod, 'tinymethod@dim=4']\ntasks: [tinytask]\nseeds: [0, 1]\n")
    return grid


def _metrics(store):
    return {r.key: r.metrics for r in Store(store).results()}


def _run(grid, world, store, *extra):
    out = subprocess.run([sys.executable, "-m", "benchmark", "grid", str(grid), "--data", str(world),
                          "--results", str(store), "-q", *extra], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    return out


def test_ray_executor_matches_local(world, tmp_path):
    pytest.importorskip("ray")
    grid = _grid(tmp_path)
    _run(grid, world, tmp_path / "local")
    _run(grid, world, tmp_path / "ray", "--executor", "ray", "--workers", "2")
    local, ray = _metrics(tmp_path / "local"), _metrics(tmp_path / "ray")
    assert len(local) == 4 and local == ray


def test_submitit_debug_executor_matches_local(world, tmp_path):
    pytest.importorskip("submitit")
    grid = _grid(tmp_path)
    _run(grid, world, tmp_path / "local")
    _run(grid, world, tmp_path / "slurm", "--executor", "slurm", "--slurm-cluster", "debug")
    assert _metrics(tmp_path / "local") == _metrics(tmp_path / "slurm")


def test_pretraining_first_then_dependents():
    from benchmark.runner import phases, plan

    class FakeWorld:
        def fingerprint(self, names):
            return "fp"
    cells = plan(["tinymethod", "tinymethod@dim=4"], ["tinytask", "tinytask@sleep=0"], [0, 1], FakeWorld())
    first, rest = phases(cells)
    groups = {(c.method.pretrain_canonical(), c.seed) for c in first}
    assert len(first) == len(groups) == 4 and len(rest) == len(cells) - 4


def test_inference_only_options_share_the_pretraining_but_not_the_cell():
    a, b = spec.parse_method("srcid"), spec.parse_method("srcid@only1=true")
    task = spec.parse_task("ave")
    assert spec.pretrain_key(a, "corpus", 0) == spec.pretrain_key(b, "corpus", 0)
    assert spec.cell_key(a, task, "d", 0) != spec.cell_key(b, task, "d", 0)
    assert spec.pretrain_key(spec.parse_method("srcid@club_l2=false"), "corpus", 0) != spec.pretrain_key(a, "corpus", 0)
