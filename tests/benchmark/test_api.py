"""The Python API (issue 17): `benchmark.evaluate` from a notebook gives the numbers the CLI's `table` reads, and
`benchmark.load_results` reads the same frame back from the store without running anything."""
from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

import benchmark

ROOT = Path(__file__).resolve().parent.parent.parent
TABLE = """\
name: apitable
methods: [chance, cca]
tasks: [ave]
seeds: [0, 1]
table:
  columns:
    - {task: ave, direction: V->A, group: AVE}
    - {task: ave, direction: A->V, group: AVE}
  rows:
    - {method: chance}
    - {method: cca}
"""
IDENT = ["method", "task", "seed", "direction", "metric"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """What a notebook does: one call, a temp store, the smoke world."""
    store = tmp_path_factory.mktemp("api") / "store"
    df = benchmark.evaluate(methods=["chance", "cca"], tasks=["ave"], seeds=[0, 1], profile="smoke", results=store)
    return store, df


def test_evaluate_equals_the_long_csv_of_table(evaluated, tmp_path):
    store, df = evaluated
    assert set(df.status) == {"ran"} and df.error.isna().all()
    assert set(df.method) == {"chance", "cca"} and set(df.seed) == {0, 1} and set(df.world) == {"smoke-s0"}
    assert df.main_metric.all() and set(df.metric) == {"acc"}     # ave reports accuracy per direction
    grid = tmp_path / "apitable.yaml"
    grid.write_text(TABLE)
    out = subprocess.run([sys.executable, "-m", "benchmark", "table", grid, "--format", "csv", "--results", store,
                          "--out", tmp_path / "tables"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    csv = pd.read_csv(tmp_path / "tables" / "apitable.csv", dtype={"key": str, "converged": str})
    assert len(csv) == len(df) == 2 * 2 * 4                       # 2 methods × 2 seeds × 4 directions × acc
    merged = df.merge(csv, on=IDENT, how="outer", suffixes=("", "_csv"), indicator=True)
    assert (merged["_merge"] == "both").all()                     # the same rows
    assert (merged.value == merged.value_csv).all()               # value by value, exactly (repr round-trips)
    assert (merged.key == merged.key_csv).all()
    assert merged.converged.isna().all() and merged.converged_csv.isna().all()   # training-free methods


def test_load_results_reads_the_same_frame_back(evaluated):
    store, df = evaluated
    loaded = benchmark.load_results(store)
    assert set(loaded.status) == {"cached"}
    pd.testing.assert_frame_equal(loaded.drop(columns="status"), df.drop(columns="status"))
    again = benchmark.evaluate(methods=["chance", "cca"], tasks="ave", seeds=[0, 1], profile="smoke", results=store,
                               progress=True)                     # the optional rich display changes nothing
    pd.testing.assert_frame_equal(again, loaded)                  # a rerun is all cached: the stored frame
    only = benchmark.load_results(store, methods="cca", seeds=1)
    assert set(only.method) == {"cca"} and set(only.seed) == {1} and len(only) == 4
    assert benchmark.load_results(store, tasks="ave@protocol=clean").equals(loaded)   # canonical spelling


def test_failed_cells_are_rows_and_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="1 of 2 cells failed"):
        df = benchmark.evaluate("tinymethod", ["tinytask", "tinytask@fail=true"], profile="smoke",
                                results=tmp_path / "s")
    failed = df[df.status == "failed"]
    assert len(failed) == 1 and failed.value.isna().all() and failed.error.iloc[0]
    assert (df[df.status == "ran"].value.notna()).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"methods": "chanse"}, "did you mean 'chance'"),
    ({"profile": "smok"}, "unknown profile 'smok'"),
    ({"executor": "dask"}, "unknown executor 'dask'"),
    ({"overwrite": "sometimes"}, "unknown overwrite mode"),
    ({"workers": 0}, "--workers must be in"),
    ({"threads": -1}, "--threads must be in"),
    ({"seeds": [-1]}, "seed"),
    ({"no_such_option": 1}, "unknown option"),
    ({"include_path": "/no/such/dir"}, "is not a directory"),
])
def test_user_mistakes_raise_user_error_and_write_nothing(kwargs, message, tmp_path):
    call = {"methods": "chance", "tasks": "ave", "profile": "smoke", "results": tmp_path / "s", **kwargs}
    with pytest.raises(benchmark.UserError, match=message):
        benchmark.evaluate(**call)
    assert not (tmp_path / "s").exists()


def test_load_results_user_errors(tmp_path, evaluated):
    with pytest.raises(benchmark.UserError, match="is not a directory"):
        benchmark.load_results(tmp_path / "none")
    with pytest.raises(benchmark.UserError, match="did you mean 'smoke-s0'"):
        benchmark.load_results(evaluated[0], world="smoke-s9")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert benchmark.load_results(evaluated[0], world="smoke-s0").shape[0] == 16


def test_import_benchmark_is_cheap():
    """`import benchmark` (every CLI start) imports neither pandas nor torch; the API names are there."""
    code = ("import sys, benchmark; benchmark.UserError; assert callable(benchmark.evaluate); "
            "assert 'pandas' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_no_module_outside_the_cli_imports_it():
    """The layering the API relies on: `benchmark.commands` is a leaf; the harness never imports it."""
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "benchmark").rglob("*.py")
                 if "commands" not in p.relative_to(ROOT / "benchmark").parts and p.name != "__main__.py"
                 and ("from .commands" in p.read_text() or "benchmark.commands" in p.read_text())]
    assert offenders == []


def test_load_results_keeps_cells_of_a_store_without_world_labels(tmp_path):
    """A hand-made result.json (layout version 0: no world) is read, not dropped for lack of a world."""
    cell = tmp_path / "cells" / "ave" / "mine" / "k0"
    cell.mkdir(parents=True)
    (cell / "result.json").write_text('{"method": "mine", "task": "ave", "seed": 3, "metrics": {"V->A": {"acc": 7}}}')
    df = benchmark.load_results(tmp_path)
    assert df[["method", "seed", "direction", "metric", "value"]].values.tolist() == [["mine", 3, "V->A", "acc", 7.0]]
    assert df.world.isna().all() and not df.main_metric.any()


def test_load_results_names_what_the_store_holds_when_nothing_matches(evaluated, tmp_path):
    store = evaluated[0]
    with pytest.warns(UserWarning, match=r"no stored cell matches methods=\['dcid'\] .*\(it holds methods: cca, "
                                         r"chance\)"):
        assert benchmark.load_results(store, methods="dcid").empty
    with pytest.warns(UserWarning, match=r"tasks=\['ave'\], seeds=\[7\].*holds tasks: ave; seeds: 0, 1"):
        assert benchmark.load_results(store, tasks="ave", seeds=7).empty
    (tmp_path / "empty").mkdir()
    with pytest.warns(UserWarning, match="holds no result cells"):
        assert benchmark.load_results(tmp_path / "empty").empty
