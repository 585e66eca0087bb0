"""`--log mlflow`: every cell of a grid becomes one MLflow run, read back with MLflow's own client; reruns add none."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark import tracking
from benchmark.contracts import UserError
from benchmark.results import CellResult
from benchmark.runner import Options
from benchmark.store import Store

ROOT = Path(__file__).resolve().parent.parent.parent


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "benchmark", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=env)


def test_metric_names_are_ones_mlflow_accepts():
    assert tracking.metric_name("V->A", "acc") == "V-to-A.acc"
    assert tracking.metric_name("V<->T", "R@1") == "V-and-T.R_at_1"
    assert tracking.metric_name("mask37.5", "mse_toc") == "mask37.5.mse_toc"
    assert tracking.flatten({"task": {"cfg": {"lr": 0.0004, "hidden": None, "ms": [10, 20]}}, "seed": 0}) == {
        "task.cfg.lr": "0.0004", "task.cfg.hidden": "null", "task.cfg.ms": "[10, 20]", "seed": "0"}


def test_without_mlflow_the_option_is_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)          # import mlflow... -> ModuleNotFoundError
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(UserError, match=r"--log mlflow needs MLflow: pip install '.\[mlflow\]'"):
        tracking.open_trackers(Options(log=("mlflow",)), tmp_path)
    code = ("import sys; sys.modules['mlflow'] = sys.modules['mlflow.tracking'] = None; "
            "from benchmark.__main__ import main; sys.exit(main(sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", code, "run", "--method", "chance", "--task", "ave", "--profile",
                          "smoke", "--results", tmp_path / "store", "--log", "mlflow", "-q"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0, out.stderr
    assert out.stderr.startswith("error: --log mlflow needs MLflow")
    assert not (tmp_path / "store").exists()          # refused before any work


needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                  reason="MLflow is an optional extra: pip install '.[mlflow]' (make test installs it)")


@pytest.fixture(scope="module")
def smoke_world(tmp_path_factory):
    from tasks.data import synthesize
    out = tmp_path_factory.mktemp("world")
    synthesize("smoke", 0, out)
    return out


@pytest.fixture
def mlflow(monkeypatch):
    import mlflow
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")    # reading a file store, as the tracker writes it
    return mlflow


def read_runs(mlflow, uri: str):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[tracking.EXPERIMENT], output_format="list")


@needs_mlflow
def test_a_smoke_grid_logs_one_run_per_cell_and_reruns_add_none(mlflow, smoke_world, tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\nmethods: [chance, cca]\ntasks: [ave]\nseeds: [0, 1]\n")
    store = tmp_path / "store"
    args = ("grid", grid, "--data", smoke_world, "--results", store, "--log", "mlflow", "-q")
    first = cli(*args)
    assert first.returncode == 0 and "ran 4" in first.stderr, first.stderr
    uri = (store / "mlruns").resolve().as_uri()
    runs = read_runs(mlflow, uri)
    cells = {r.key: r for r in Store(store).results()}
    assert len(runs) == len(cells) == 4
    assert {run.data.tags["cell_key"] for run in runs} == set(cells)
    for run in runs:
        cell: CellResult = cells[run.data.tags["cell_key"]]
        assert (run.data.tags["method"], run.data.tags["task"], run.data.tags["seed"]) == \
            (cell.method, cell.task, str(cell.seed))
        expected = {tracking.metric_name(d, m): v for d, values in cell.metrics.items() for m, v in values.items()}
        assert run.data.metrics == pytest.approx(expected)
        config = json.loads((Path(cell.directory) / "config.json").read_text())
        assert run.data.params == tracking.flatten(config)
        assert run.data.params["task.cfg.lr"] == str(config["task"]["cfg"]["lr"])
        assert run.data.params["seed"] == str(cell.seed)
        files = {f.path for f in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
        assert {"result.json", "config.json", "env.json"} <= files
    second = cli(*args)                         # every cell cached: logged already, nothing added
    assert second.returncode == 0 and "cached 4" in second.stderr, second.stderr
    assert sorted(r.info.run_id for r in read_runs(mlflow, uri)) == sorted(r.info.run_id for r in runs)
    # a cell recomputed in a pool worker (with its samples) is logged by the parent and replaces its run
    third = cli("run", "--method", "cca", "--task", "ave", "--seeds", "0", "--data", smoke_world, "--results", store,
                "--overwrite", "always", "--executor", "pool", "--workers", "1", "--log-samples", "--log", "mlflow",
                "-q")
    assert third.returncode == 0, third.stderr
    again = read_runs(mlflow, uri)
    assert len(again) == 4 and len({r.data.tags["cell_key"] for r in again}) == 4
    (new,) = [r for r in again if r.info.run_id not in {old.info.run_id for old in runs}]
    assert new.data.tags["method"] == "cca" and new.data.tags["seed"] == "0"
    assert "samples.npz" in {f.path for f in mlflow.MlflowClient().list_artifacts(new.info.run_id)}


@needs_mlflow
def test_an_unusable_tracking_uri_is_one_user_error(tmp_path):
    with pytest.raises(UserError, match="--mlflow-uri 'bogus://x' cannot be used"):
        tracking.open_trackers(Options(log=("mlflow",), mlflow_uri="bogus://x"), tmp_path)


@needs_mlflow
def test_pretraining_losses_become_stepped_metrics(mlflow, tmp_path):
    cell = tmp_path / "cell"
    cell.mkdir()
    history = [{"total": 3.0, "recon": 2.0}, {"total": 2.0, "recon": 1.5}, {"total": 1.5, "recon": 1.0}]
    result = CellResult("dcid", "ave", 0, {"V->A": {"acc": 40.0}}, key="k1", created="2026-01-01T00:00:00+00:00",
                        diagnostics={"training": {"loss_history": history}})
    (cell / "result.json").write_text(json.dumps(result.to_json()))
    (cell / "config.json").write_text(json.dumps({"seed": 0}))
    uri = (tmp_path / "mlruns").resolve().as_uri()
    tracker = tracking.open_trackers(Options(log=("mlflow",), mlflow_uri=uri), tmp_path)[0]
    tracker.log_cell(result, cell)
    tracker.log_cell(result, cell)                         # the same result again: no second run
    (run,) = read_runs(mlflow, uri)
    client = mlflow.MlflowClient()
    steps = client.get_metric_history(run.info.run_id, "pretrain.total")
    assert [(m.step, m.value) for m in sorted(steps, key=lambda m: m.step)] == [(1, 3.0), (2, 2.0), (3, 1.5)]
    assert run.data.metrics["V-to-A.acc"] == 40.0 and run.data.params == {"seed": "0"}


README_READBACK = """\
import benchmark
runs = benchmark.mlflow_runs("results")          # one row per cell; sets what MLflow 3 needs for a file store
print(len(runs), runs["tags.cell_key"].iloc[0], runs["metrics.V-to-A.acc"].iloc[0])
"""
README_MLFLOW_ONLY = """\
import os, mlflow
os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"   # MLflow 3 reads a local file store only when told to
mlflow.set_tracking_uri("results/mlruns")
runs = mlflow.search_runs(experiment_names=["unibench"])
print(len(runs), runs["tags.cell_key"].iloc[0], runs["metrics.V-to-A.acc"].iloc[0])
"""


@needs_mlflow
def test_runs_read_back_exactly_as_the_readme_shows(tmp_path):
    """Both README snippets, verbatim, in a fresh interpreter without MLFLOW_ALLOW_FILE_STORE in its environment."""
    import os
    cell = tmp_path / "cell"
    cell.mkdir()
    result = CellResult("chance", "ave", 0, {"V->A": {"acc": 3.5}}, key="k9", created="2026-01-01T00:00:00+00:00")
    (cell / "config.json").write_text(json.dumps({"seed": 0}))
    code = ("import sys, json, pathlib; from benchmark import tracking; from benchmark.results import CellResult; "
            "from benchmark.runner import Options; r = CellResult.from_json(json.loads(sys.argv[1])); "
            "tracking.open_trackers(Options(log=('mlflow',)), 'results')[0].log_cell(r, pathlib.Path(sys.argv[2]))")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_ALLOW_FILE_STORE"}
    env["PYTHONPATH"] = str(ROOT)
    logged = subprocess.run([sys.executable, "-c", code, json.dumps(result.to_json()), str(cell)], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert logged.returncode == 0, logged.stderr
    for snippet in (README_READBACK, README_MLFLOW_ONLY):
        out = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["1", "k9", "3.5"], out.stdout


@needs_mlflow
def test_reading_runs_of_a_store_that_logged_none_is_one_user_error(tmp_path):
    with pytest.raises(UserError, match=r"mlruns does not exist \(cells are logged there by"):
        tracking.mlflow_runs(tmp_path)
