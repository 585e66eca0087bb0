"""Distributed executors (issue 9): Ray and submitit run the same cells as `local`, with the same keys and numbers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark import spec
from benchmark.store import Store

ROOT = Path(__file__).resolve().parent.parent.parent


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
    from benchmark.executors import phases
    from benchmark.runner import plan

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


# --------------------------------------------------------------------------- the pool: worker death, Ctrl-C, events
def _default_sigint() -> None:
    """A terminal's shell starts the command with Ctrl-C at its default; a suite launched in the background
    (`pytest ... &`, nohup) inherits SIGINT ignored, which Python then keeps ignoring."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args: list, world, store) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "benchmark", *args, "--data", str(world), "--results", str(store),
                             "-q", "--threads", "1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env={**os.environ, "COLUMNS": "250"},
                            preexec_fn=_default_sigint)


def _workers_of(pid: int) -> list[int]:
    """The live pool workers among a process's children (spawned interpreters running `spawn_main`)."""
    out = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes() and \
                    "\nState:\tZ" not in Path(f"/proc/{child}/status").read_text():
                out.append(int(child))
        except OSError:
            pass
    return out


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def _lock_of(store: Path, method: str) -> Path:
    """The pretraining lock file of `method` (seed 0) on the smoke world's corpus."""
    from benchmark.world import WorldChoice
    key = spec.pretrain_key(spec.parse_method(method), WorldChoice(profile=None, data=str(WORLD[0])).open()
                            .corpus().fingerprint, 0)
    return store / "pretrain" / "tinymethod" / f".{key}.lock"


WORLD: list = []


def _cells(store: Path, name: str) -> list[Path]:
    return sorted(store.glob(f"cells/*/*/*/{name}"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_a_worker_killed_mid_cell_costs_only_its_cell(world, tmp_path):
    """SIGKILL (what the OOM killer sends) to the one pool worker while it sleeps in the first cell's pretraining:
    that cell is recorded failed (error.json names the signal), a new worker computes every other cell, the run
    ends with exit 1 and a summary naming the cell — no traceback."""
    WORLD[:] = [world]
    store = tmp_path / "store"
    slow = "tinymethod@codes=4,sleep=60"       # sorts first: killed before the others ran
    proc = _start(["run", "--method", slow, "tinymethod@dim=4", "tinymethod@dim=5", "--task", "tinytask",
                   "--executor", "pool", "--workers", "1"], world, store)
    try:
        lock = _lock_of(store, slow)
        _wait_for(lambda: lock.exists() and _workers_of(proc.pid), proc)
        (victim,) = _workers_of(proc.pid)
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    failed = [line for line in err.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "codes=4" in failed[0] and "SIGKILL" in failed[0] and "out of memory" in failed[0]
    (error,) = _cells(store, "error.json")
    assert "SIGKILL" in json.loads(error.read_text())["error"] and "codes=4" in str(error)
    assert len(_cells(store, "result.json")) == 2
    assert "cells: cached 0 · ran 2 · failed 1" in err


def _budget_started(store: Path):
    """The budget chain below has cached its 1-epoch pretraining and is training towards 300."""
    return list(store.glob("pretrain/cmcm/*/complete.json")) and list(store.glob("pretrain/cmcm/chain-*/checkpoints"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
@pytest.mark.parametrize("command, said", [
    (["run", "--method", "tinymethod@dim=4", "tinymethod@sleep=60", "--task", "tinytask", "--executor", "pool",
      "--workers", "2"], "1 of 2 cells"),
    (["run", "--method", "tinymethod@dim=4", "tinymethod@sleep=60", "--task", "tinytask"], "1 of 2 cells"),
    (["pretrain", "--method", "tinymethod@dim=4", "tinymethod@sleep=60"], "1 of 2 pretrainings"),
    (["budget", "--method", "cmcm", "--epochs", "1", "300", "--workers", "2", "--out", "OUT"], "0 of 1 budget chains"),
], ids=["run-pool", "run-local", "pretrain", "budget-pool"])
def test_one_ctrl_c_stops_at_once_and_keeps_finished_work(command, said, world, tmp_path):
    """SIGINT to the foreground process group (a terminal's Ctrl-C) once the fast cell (pretraining, budget) is
    done and the slow one is training: exit 130 within 5 s, one `error: interrupted ...` line, no traceback, no
    live worker, the finished work kept in the store."""
    WORLD[:] = [world]
    store = tmp_path / "store"
    proc = _start([str(tmp_path / "out") if a == "OUT" else a for a in command], world, store)
    try:
        lock = _lock_of(store, "tinymethod@sleep=60")
        done = (lambda: _cells(store, "result.json")) if command[0] == "run" else \
            (lambda: list(store.glob("pretrain/*/*/complete.json")))
        started = (lambda: _budget_started(store)) if command[0] == "budget" else (lambda: done() and lock.exists())
        _wait_for(started, proc)
        time.sleep(1.0)          # well inside the slow pretraining
        workers = _workers_of(proc.pid)
        t0 = time.time()
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        seconds = time.time() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert seconds < 5, seconds
    assert "Traceback" not in err and "Exception ignored" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: interrupted: {said}"), err
    assert all(not Path(f"/proc/{w}").exists() or "\nState:\tZ" in Path(f"/proc/{w}/status").read_text()
               for w in workers)
    assert len(done()) == 1          # the finished cell (or pretraining) is kept


def test_pool_workers_report_pretraining_epochs_to_the_parent(world, tmp_path):
    """Progress under the pool: the events of a worker's pretraining (start, each epoch, end) reach the parent's
    UI, tagged with the worker."""
    from benchmark import api, runner
    from benchmark.world import WorldChoice
    seen = []

    class Recorder(api.Silent):
        def event(self, slot, kind, info):
            seen.append((slot, kind, info))

    options = runner.Options(threads=1, world=WorldChoice(profile=None, data=str(world)))
    outcomes = api.run_cells(lambda w: runner.plan(["tinymethod"], ["tinytask"], [0], w), options, tmp_path / "s",
                             executor="pool", workers=1, progress=Recorder)
    assert [o.status for o in outcomes] == ["ran"]
    kinds = [kind for _, kind, _ in seen]
    assert kinds == ["pretrain_start", "epoch", "epoch", "epoch", "pretrain_end"]
    assert {slot for slot, _, _ in seen} != {0}           # a worker's slot, not this process's
    assert [info["done"] for _, kind, info in seen if kind == "epoch"] == [1, 2, 3]
    assert seen[0][2]["label"] == "tinymethod seed 0"


def test_budget_chains_run_in_the_executors_pool(world, tmp_path):
    """The budget study's chains go through `executors.Pool` (no submission loop of their own): each chain's
    budgets come back as rows and its epochs reach the parent's UI."""
    from benchmark import api, budget, runner
    from benchmark.world import WorldChoice
    seen = []

    class Recorder(api.Silent):
        def event(self, slot, kind, info):
            seen.append((slot, kind, info))
    choice = WorldChoice(profile=None, data=str(world))
    options = runner.Options(threads=1, world=choice)
    rows = budget.run_chains(["cmcm"], [1, 2], [0], choice.open(), Store(tmp_path / "s"), options, 2, Recorder(),
                             "cpu")
    assert [(r["epochs"], r["status"]) for r in rows] == [(1, "trained"), (2, "trained")]
    assert [(info["done"], info["total"]) for _, kind, info in seen if kind == "epoch"] == [(1, 1), (2, 2)]
    assert {slot for slot, _, _ in seen} != {0}
