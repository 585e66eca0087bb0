"""Harness behaviours (issue 2): spec grammar, cache keys, cells, resume after kill -9, concurrency, errors."""
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
from benchmark.contracts import UserError
from benchmark.store import Store

ROOT = Path(__file__).resolve().parent.parent.parent


def cli(*args, cwd=ROOT, timeout=300):
    return subprocess.run([sys.executable, "-m", "benchmark", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from tasks.data import synthesize
    out = tmp_path_factory.mktemp("world")
    synthesize("smoke", 0, out)
    return out


def result_files(store: Path):
    return sorted(store.glob("cells/*/*/*/result.json"))


# --------------------------------------------------------------------------- spec grammar and keys
def test_two_spellings_of_one_config_share_a_key():
    a = spec.parse_method("tinymethod")
    b = spec.parse_method("tinymethod@dim=8")          # the default, spelled out
    c = spec.parse_method("tinymethod@codes=16,dim=8")  # order and defaults do not matter
    t = spec.parse_task("tinytask")
    keys = {spec.cell_key(m, t, "fp", 0) for m in (a, b, c)}
    assert len(keys) == 1 and a.canonical() == b.canonical() == "tinymethod"


def test_overrides_change_key_and_canonical_form():
    t = spec.parse_task("tinytask")
    a, b = spec.parse_method("tinymethod"), spec.parse_method("tinymethod@dim=4,codes=8")
    assert b.canonical() == "tinymethod@codes=8,dim=4"
    assert spec.cell_key(a, t, "fp", 0) != spec.cell_key(b, t, "fp", 0)
    assert spec.cell_key(a, t, "fp", 0) != spec.cell_key(a, t, "fp", 1)      # seed is part of the key
    assert spec.cell_key(a, t, "fp", 0) != spec.cell_key(a, t, "fp2", 0)     # so is the data
    assert spec.parse_method("tinymethod@sleep=1").base.cfg["sleep"] == 1.0  # int coerced to the float option


@pytest.mark.parametrize("text, message", [
    ("fcid", "unknown method 'fcid'"),
    ("tinymethod@", "empty override list"),
    ("tinymethod@dim", "expected key=value"),
    ("tinymethod@dim=x", "expects int"),
    ("tinymethod@dimm=3", "did you mean 'dim'"),
    ("tinymethod+", "empty component"),
    ("tinymethod+nosuchrefiner", "unknown refiner 'nosuchrefiner'"),
])
def test_malformed_specs_raise_user_errors(text, message):
    with pytest.raises(UserError, match=message):
        spec.parse_method(text)


# --------------------------------------------------------------------------- CLI end to end
def test_run_writes_cells_and_rerun_is_cached(world, tmp_path):
    store = tmp_path / "store"
    first = cli("run", "--method", "tinymethod", "--task", "tinytask", "--seeds", "0", "1", "--data", world,
                "--results", store, "-q")
    assert first.returncode == 0, first.stderr
    assert "2 cells: cached 0 · ran 2 · failed 0" in first.stderr
    files = result_files(store)
    assert len(files) == 2
    for f in files:
        assert {"config.json", "env.json"} <= {p.name for p in f.parent.iterdir()}
        env = json.loads((f.parent / "env.json").read_text())
        assert {"python", "torch", "git_sha", "git_dirty", "unibench"} <= set(env)
    before = {f: f.read_text() for f in files}
    second = cli("run", "--method", "tinymethod", "--task", "tinytask", "--seeds", "0", "1", "--data", world,
                 "--results", store, "-q")
    assert second.returncode == 0, second.stderr
    assert "cached 2 · ran 0" in second.stderr
    assert {f: f.read_text() for f in result_files(store)} == before  # nothing recomputed or rewritten
    assert "V->A" in second.stdout  # the directions table is printed


def test_failing_cell_writes_error_and_grid_continues(world, tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("methods: [tinymethod]\ntasks: [tinytask, 'tinytask@fail=true']\nseeds: [0]\n")
    out = cli("grid", grid, "--data", world, "--results", tmp_path / "s", "-q")
    assert out.returncode == 1
    assert "ran 1 · failed 1" in out.stderr and "FAILED" in out.stderr
    errors = list((tmp_path / "s").glob("cells/*/*/*/error.json"))
    assert len(errors) == 1 and "asked to fail" in json.loads(errors[0].read_text())["error"]
    assert len(result_files(tmp_path / "s")) == 1


def test_kill_9_leaves_no_partial_result_and_rerun_completes_missing_only(world, tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("methods: [tinymethod]\ntasks: ['tinytask@sleep=0.6']\nseeds: [0, 1, 2, 3, 4, 5]\n")
    store = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "grid", str(grid), "--data", str(world),
                             "--results", str(store), "-q"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while len(result_files(store)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = result_files(store)
    assert 2 <= len(done) < 6
    for f in done:  # every result.json that exists is complete
        assert json.loads(f.read_text())["metrics"]
    stamps = {f: f.stat().st_mtime_ns for f in done}
    rerun = cli("grid", grid, "--data", world, "--results", store, "-q")
    assert rerun.returncode == 0, rerun.stderr
    assert f"cached {len(done)} · ran {6 - len(done)}" in rerun.stderr
    assert len(result_files(store)) == 6
    assert all(f.stat().st_mtime_ns == t for f, t in stamps.items())


def test_two_concurrent_grids_compute_every_cell_exactly_once(world, tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("methods: [tinymethod, 'tinymethod@dim=4']\ntasks: ['tinytask@sleep=0.2']\nseeds: [0, 1, 2]\n")
    store = tmp_path / "s"
    cmd = [sys.executable, "-m", "benchmark", "grid", str(grid), "--data", str(world), "--results", str(store), "-q"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    ran = sum(int(err.split("ran ")[1].split()[0]) for _, err in outs)
    assert ran == 6  # each of the 6 cells computed by exactly one process
    assert len(result_files(store)) == 6
    assert len({json.loads(f.read_text())["key"] for f in result_files(store)}) == 6


def test_pool_executor_and_shards_match_local(world, tmp_path):
    args = ["--method", "tinymethod", "--task", "tinytask", "--seeds", "0", "1", "2", "--data", world, "-q"]
    local = cli("run", *args, "--results", tmp_path / "local")
    pool = cli("run", *args, "--results", tmp_path / "pool", "--executor", "pool", "--workers", "2")
    assert local.returncode == 0 and pool.returncode == 0, pool.stderr

    def metrics(store):
        return {r.key: r.metrics for r in Store(store).results()}
    assert metrics(tmp_path / "local") == metrics(tmp_path / "pool")
    for i in range(2):
        assert cli("run", *args, "--results", tmp_path / "shard", "--shard", f"{i}/2").returncode == 0
    assert metrics(tmp_path / "shard") == metrics(tmp_path / "local")


@pytest.mark.parametrize("argv, message", [
    (["run", "--method", "fcid", "--task", "tinytask"], "unknown method 'fcid'"),
    (["run", "--method", "tinymethod@dim", "--task", "tinytask"], "malformed spec"),
    (["run", "--method", "tinymethod@bogus=1", "--task", "tinytask"], "unknown option 'bogus'"),
    (["run", "--method", "tinymethod", "--task", "nosuchtask"], "unknown task 'nosuchtask'"),
    (["run", "--method", "tinymethod", "--task", "tinytask", "--data", "/nonexistent/dir"], "is not a directory"),
    (["grid", "/nonexistent/grid.yaml"], "does not exist"),
    (["grid", "nosuchgrid"], "unknown grid 'nosuchgrid'"),
    (["run", "--method", "tinymethod", "--task", "tinytask", "--shard", "3/2"], "--shard expects"),
    (["ls", "widgets"], "invalid choice"),
])
def test_user_errors_exit_2_with_one_line(argv, message, tmp_path):
    out = cli(*argv, "--results", tmp_path) if argv[0] != "ls" else cli(*argv)
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_bad_yaml_grid_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods: [tinymethod\ntasks: ]\n")
    out = cli("grid", bad, "--results", tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("error: bad YAML")


def test_ls_does_not_import_torch():
    """`ls` reads cards only; `ls methods -v` alone imports the methods to print what null defaults resolve to."""
    code = ("import sys; from benchmark.__main__ import main; main(['ls', 'methods']); "
            "main(['ls', 'tasks', '-v']); assert 'torch' not in sys.modules, 'ls imported torch'")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_inference_only_option_reuses_pretraining_but_not_features(world, tmp_path):
    store = tmp_path / "s"
    base = ["--task", "tinytask", "--data", world, "--results", store, "-q"]
    assert cli("run", "--method", "tinymethod", *base).returncode == 0
    out = cli("run", "--method", "tinymethod@blind=true", *base)
    assert out.returncode == 0, out.stderr
    results = {r.method: r for r in Store(store).results()}
    assert results["tinymethod"].pretrain_key == results["tinymethod@blind=true"].pretrain_key
    assert results["tinymethod@blind=true"].notes["pretrain"].startswith("cached")
    assert results["tinymethod"].metrics != results["tinymethod@blind=true"].metrics


def test_several_grids_run_as_one_cell_list(world, tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("methods: [tinymethod]\ntasks: [tinytask]\nseeds: [0, 1]\n")
    b.write_text("methods: [tinymethod, 'tinymethod@dim=4']\ntasks: [tinytask]\nseeds: [1]\n")  # overlaps a on seed 1
    out = cli("grid", a, b, "--data", world, "--results", tmp_path / "s", "-q")
    assert out.returncode == 0, out.stderr
    assert "3 cells: cached 0 · ran 3" in out.stderr  # one progress display over the union, duplicates dropped


def test_grid_prints_one_mean_ci_table_per_task(world, tmp_path):
    """Users read a grid's outcome in the terminal: per task, methods × directions, mean ± CI over the seeds."""
    grid = tmp_path / "g.yaml"
    grid.write_text("methods: [tinymethod, 'tinymethod@dim=4']\ntasks: [tinytask]\nseeds: [0, 1]\n")
    out = cli("grid", grid, "--data", world, "--results", tmp_path / "s")
    assert out.returncode == 0, out.stderr
    assert "mean ± 95% CI over seeds 0 1" in out.stdout
    from benchmark.ui import mean_ci
    results = [r for r in Store(tmp_path / "s").results() if r.method == "tinymethod"]
    direction = next(iter(results[0].metrics))
    expected = mean_ci([r.score(direction) for r in results])
    row = next(line for line in out.stdout.splitlines() if line.strip("│ ").startswith("tinymethod "))
    assert expected in row, (expected, row)


def test_pretrain_command_warms_the_cache_that_run_then_uses(world, tmp_path):
    store, report = tmp_path / "s", tmp_path / "pretrain.json"
    out = cli("pretrain", "--method", "tinymethod", "--data", world, "--results", store, "--json", report, "-q")
    assert out.returncode == 0, out.stderr
    rows = json.loads(report.read_text())["rows"]
    assert [r["status"] for r in rows] == ["trained"] and rows[0]["clips"] > 0
    assert json.loads(report.read_text())["peak_rss_mb"] > 0
    assert not list(store.glob("cells/*/*/*/result.json"))          # no task ran
    out = cli("run", "--method", "tinymethod", "--task", "tinytask", "--data", world, "--results", store, "-q")
    assert out.returncode == 0, out.stderr
    (result,) = Store(store).results()
    assert result.pretrain_key == rows[0]["key"] and result.notes["pretrain"].startswith("cached")
    again = cli("pretrain", "--method", "tinymethod", "--data", world, "--results", store, "--json", report, "-q")
    assert again.returncode == 0 and json.loads(report.read_text())["rows"][0]["status"] == "cached"
    refused = cli("pretrain", "--method", "vqvae", "--data", world, "--results", store)
    assert refused.returncode == 2 and refused.stderr.startswith("error: method 'vqvae' is trained inside")


def test_budget_command_writes_table_and_figure_with_the_probe_tasks_chance(world, tmp_path):
    """The chance line and the "has learned" bar come from the probe task's classes, not from the default world."""
    from tasks.data.native import FeatureFile
    classes = len(FeatureFile(world / "ave.h5").classes)
    out = cli("budget", "--method", "cmcm@code_dim=16", "--epochs", "1", "2", "--workers", "1", "--data", world,
              "--results", tmp_path / "s", "--out", tmp_path / "o", "-q", timeout=600)
    assert out.returncode == 0, out.stderr
    md = (tmp_path / "o/tables/budget.md").read_text()
    assert f"chance {100 / classes:.2f} % ({classes} classes)" in md
    rows = json.loads((tmp_path / "o/tables/budget.json").read_text())["rows"]
    assert [r["epochs"] for r in rows] == [1, 2] and all("learned" in r for r in rows)
    assert all(0 < r[f"codes used {m} %"] <= 100 for r in rows for m in ("audio", "video", "text"))
    assert "codes used A / V / T (%)" in md
    assert (tmp_path / "o/figures/budget_curves.png").stat().st_size > 0
    seeds = json.loads((tmp_path / "o/tables/budget.json").read_text())["seeds"]
    for r in rows:     # what tables read as the study's proof: the key of each seed's pretraining, as stored
        assert sorted(map(int, r["pretrain_keys"])) == seeds
        assert all((tmp_path / "s/pretrain/cmcm" / k).is_dir() for k in r["pretrain_keys"].values())
    assert len({k for r in rows for k in r["pretrain_keys"].values()}) == 2 * len(seeds)


def test_grid_method_options_pin_every_spec_once(tmp_path):
    """`method_options` gives every row the option its base method has and does not set: the specs (hence keys)
    are those of writing it on every line; a spec's own value wins; methods without it are left alone."""
    from benchmark import gridspec
    grid = tmp_path / "g.yaml"
    grid.write_text("method_options: {epochs: 16}\n"
                    "methods: [fccid, 'fccid@codebook_size=256', 'dcid@epochs=8+toc', cca]\ntasks: [ave]\n"
                    "table:\n  task: ave\n  columns: [{direction: V->A}]\n"
                    "  rows: [{method: fccid}, {method: 'dcid@epochs=8+toc'}, {method: cca}]\n")
    g = gridspec.load_grid(grid)
    assert g["_blocks"][0]["methods"] == ["fccid@epochs=16", "fccid@codebook_size=256,epochs=16",
                                          "dcid@epochs=8+toc", "cca"]
    assert [r["method"] for r in g["table"]["rows"]] == ["fccid@epochs=16", "dcid@epochs=8+toc", "cca"]
    assert spec.parse_method(g["_blocks"][0]["methods"][1]).canonical() == \
        spec.parse_method("fccid@epochs=16,codebook_size=256").canonical()
    grid.write_text("method_options: [epochs]\nmethods: [fccid]\ntasks: [ave]\n")
    with pytest.raises(UserError, match="method_options"):
        gridspec.load_grid(grid)


def test_ablation_grids_state_their_budget_once():
    """The ablation grids pin 16 epochs in `method_options`, not on each spec (a fact stated once)."""
    from benchmark import gridspec
    for name in ("t5", "t7", "srcid_t1", "srcid_fig3"):
        path = gridspec.find_grid(name)
        assert "epochs=" not in path.read_text(), name
        g = gridspec.load_grid(path)
        assert g["method_options"] == {"epochs": 16}
        assert all("epochs=16" in m for b in g["_blocks"] for m in b["methods"]), name
