"""Reliability (issue 15): every bad input ends in one `error:` line and exit 2 before anything is written; caches
heal; no leaks, orphans or code execution.

Families: spec, grid YAML, table name / read commands, store corruption, data, pickle, kill/resume & leaks.
Most cases call the CLI's `main` in-process (exit code + captured stderr); the pool-orphan case needs a real
process tree. One smoke world (module fixture) serves every case that needs data.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from benchmark import pretraining, runner, spec, store as store_mod
from benchmark.__main__ import main as cli_main
from benchmark.contracts import UserError
from benchmark.world import WorldChoice

ROOT = Path(__file__).resolve().parent.parent.parent
BIG = "9" * 5000


def cli(capsys, *args) -> tuple[int, str]:
    store_mod.forget_warnings()
    pretraining._MEMORY.clear()   # in-process runs must go through the store as a fresh process would
    try:
        code = cli_main([str(a) for a in args])
    except SystemExit as exc:   # argparse's own errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.err


def assert_one_error(code: int, err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert [ln for ln in lines if ln.startswith("error:")] == lines[-1:] and len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def files_under(path: Path, skip_data: bool = True) -> list[Path]:
    if not path.exists():
        return []
    return sorted(p for p in path.rglob("*") if p.is_file() and not (skip_data and "data" in p.relative_to(path).parts))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from tasks.data import synthesize
    out = tmp_path_factory.mktemp("rel_world")
    synthesize("smoke", 0, out)
    return out


def copy_world(world: Path, dest: Path) -> Path:
    shutil.copytree(world, dest)
    return dest


# --------------------------------------------------------------------------- spec family
SPEC_CASES = [
    (["--method", "dcid@epochs=-1"], "'epochs' must be a positive integer"),
    (["--method", "dcid@quantizer=rvq,levels=0"], "quantizer=rvq needs 'levels'"),
    (["--method", "dcid@beta=null"], "'beta' cannot be null"),
    (["--method", "tinymethod@dim=null"], "'dim' cannot be null"),
    (["--method", f"dcid@epochs={BIG}"], "characters (at most"),
    (["--method", f"tinymethod@dim={BIG[:150]}"], "out of range"),
    (["--method", "tinymethod@dim=" + "x" * 300], "at most 200"),
    (["--method", "dcid@lr=.nan"], "finite"),
    (["--method", "tinymethod+toc@lam=2"], "lam must be in [0, 1]"),
    (["--method", "tinymethod@dim=4\x00"], "control character"),
    (["--task", "ave@directions=X->Y"], "directions"),
    (["--task", "ave@directions=" + "V->A;" * 60], "at most 200"),
    (["--seeds", "-1"], "seeds must be in"),
    (["--seeds", BIG], "invalid int value"),
    (["--seeds", "1.5"], "invalid int value"),
    (["--shard", "3/2"], "--shard expects i/n"),
    (["--workers", "0", "--executor", "pool"], "--workers"),
    (["--world-seed", "-3"], "--world-seed"),
]


@pytest.mark.parametrize("extra, needle", SPEC_CASES, ids=[f"spec{i}" for i in range(len(SPEC_CASES))])
def test_bad_specs_and_options_end_in_one_line_before_anything_runs(extra, needle, tmp_path, capsys):
    args = {"--method": "tinymethod", "--task": "tinytask"}
    rest = []
    for i in range(0, len(extra), 2):
        if extra[i] in args:
            args[extra[i]] = extra[i + 1]
        else:
            rest += extra[i:i + 2]
    store = tmp_path / "store"
    code, err = cli(capsys, "run", "--method", args["--method"], "--task", args["--task"], "--profile", "smoke",
                    "--results", store, "-q", *rest)
    assert_one_error(code, err, needle)
    assert not store.exists(), files_under(store, skip_data=False)   # not even the world was generated


def test_unwritable_results_is_one_line(capsys):
    code, err = cli(capsys, "run", "--method", "tinymethod", "--task", "tinytask", "--profile", "smoke",
                    "--results", "/proc/x", "-q")
    assert_one_error(code, err, "/proc/x")


def test_long_spec_folder_names_are_hashed_but_normal_ones_unchanged():
    assert store_mod._safe("dcid@quantizer=rvq,levels=3+toc@q=128") == "dcid@quantizer=rvq,levels=3+toc@q=128"
    long = "dcid@" + ",".join(f"k{i}=" + "v" * 150 for i in range(5))
    safe = store_mod._safe(long)
    assert len(safe.encode()) <= 160 and safe != store_mod._safe(long + "x")
    assert spec.check_seeds([0, 1, np.int64(2)]) == [0, 1, 2]
    for bad in ([True], [1.5], ["a"], 5, [], [-1], [2**32]):
        with pytest.raises(UserError):
            spec.check_seeds(bad)


# --------------------------------------------------------------------------- grid YAML family
GRID_CASES = {
    "methods_int": ("methods: [1]\ntasks: [tinytask]\n", "spec strings"),
    "methods_null": ("methods: [null]\ntasks: [tinytask]\n", "spec strings"),
    "seeds_word": ("methods: [tinymethod]\ntasks: [tinytask]\nseeds: [a]\n", "seeds must be integers"),
    "seeds_scalar": ("methods: [tinymethod]\ntasks: [tinytask]\nseeds: 5\n", "list of integer seeds"),
    "seeds_float": ("methods: [tinymethod]\ntasks: [tinytask]\nseeds: [1.5]\n", "seeds must be integers"),
    "seeds_bool": ("methods: [tinymethod]\ntasks: [tinytask]\nseeds: [true]\n", "seeds must be integers"),
    "seeds_huge": (f"methods: [tinymethod]\ntasks: [tinytask]\nseeds: [{BIG}]\n", "bad YAML"),
    "no_methods": ("tasks: [tinytask]\n", "missing 'methods'"),
    "no_tasks": ("methods: [tinymethod]\n", "missing 'tasks'"),
    "nothing": ("name: empty\n", "no cells"),
    "unknown_key": ("methods: [tinymethod]\ntasks: [tinytask]\nseed: [0]\n", "unknown key 'seed'"),
    "not_mapping": ("- tinymethod\n", "must be a mapping"),
    "nul_in_spec": ('methods: ["tinymethod\\0"]\ntasks: [tinytask]\n', "control character"),
    "bad_option": ("methods: ['tinymethod@dim=-1x']\ntasks: [tinytask]\n", "expects int"),
    "range_in_grid": ("methods: ['dcid@epochs=0']\ntasks: [tinytask]\n", "positive integer"),
    "bad_name": ("name: ../../x\nmethods: [tinymethod]\ntasks: [tinytask]\n", "name '../../x'"),
}


@pytest.mark.parametrize("case", list(GRID_CASES) + ["non_utf8"])
def test_bad_grid_yaml_ends_in_one_line(case, tmp_path, capsys):
    path = tmp_path / "g.yaml"
    if case == "non_utf8":
        path.write_bytes(b"methods: [tinymethod]\ntasks: [tiny\xff\xfetask]\n")
        needle = "not UTF-8"
    else:
        text, needle = GRID_CASES[case]
        path.write_text(text)
    store = tmp_path / "store"
    code, err = cli(capsys, "grid", path, "--profile", "smoke", "--results", store, "-q")
    assert_one_error(code, err, needle)
    assert not store.exists()


# --------------------------------------------------------------------------- table name and read commands
def test_table_name_cannot_leave_out_dir(tmp_path, capsys):
    grid = tmp_path / "evil.yaml"
    grid.write_text("name: ../../escaped\nmethods: [tinymethod]\ntasks: [tinytask]\n"
                    "table:\n  columns: [{task: tinytask, direction: V->A}]\n  rows: [{method: tinymethod}]\n")
    store = tmp_path / "a" / "b" / "store"
    store.mkdir(parents=True)
    code, err = cli(capsys, "table", grid, "--results", store, "--format", "csv")
    assert_one_error(code, err, "../../escaped")
    assert not list(tmp_path.rglob("escaped*"))


@pytest.mark.parametrize("args, needle", [
    (["table", "t1", "--world", "bogus-s9"], "--world 'bogus-s9'"),
    (["claims", "--world", "bogus"], "--world 'bogus'"),
    (["plot", "report", "--world", "bogus"], "--world 'bogus'"),
])
def test_read_commands_refuse_unknown_worlds(args, needle, tmp_path, capsys):
    (tmp_path / "store").mkdir()
    code, err = cli(capsys, *args, "--results", tmp_path / "store")
    assert_one_error(code, err, needle)
    assert files_under(tmp_path / "store") == []


@pytest.mark.parametrize("command", [["table", "t1"], ["claims"], ["plot", "report"]])
def test_read_commands_refuse_missing_store(command, tmp_path, capsys):
    code, err = cli(capsys, *command, "--results", tmp_path / "nonexistent")
    assert_one_error(code, err, "nonexistent")
    assert not (tmp_path / "nonexistent").exists()


# --------------------------------------------------------------------------- store corruption family
@pytest.fixture(scope="module")
def computed(world, tmp_path_factory):
    """A store holding one computed tinymethod × tinytask cell."""
    store = tmp_path_factory.mktemp("rel_store") / "store"
    assert cli_main(["run", "--method", "tinymethod", "--task", "tinytask", "--data", str(world), "--results",
                     str(store), "-q"]) == 0
    return store


def _result(store: Path) -> Path:
    (path,) = store.glob("cells/*/*/*/result.json")
    return path


@pytest.mark.parametrize("content", ['{"metrics": {"V->A": {"ac', "[1, 2, 3]", "{}", "\xff\xfe"])
def test_corrupt_result_is_recomputed_with_one_warning(content, world, computed, capsys):
    path = _result(computed)
    good = json.loads(path.read_text())
    path.write_bytes(content.encode("latin-1"))
    code, err = cli(capsys, "run", "--method", "tinymethod", "--task", "tinytask", "--data", world,
                    "--results", computed, "-q")
    assert code == 0, err
    assert sum("warning" in ln and str(path) in ln for ln in err.splitlines()) == 1, err
    assert "ran 1" in err and "Traceback" not in err
    healed = json.loads(path.read_text())
    assert healed["metrics"] == good["metrics"] and healed["key"] == good["key"]


@pytest.mark.parametrize("command", [["table", "t1", "--format", "csv"], ["claims"]])
def test_table_and_claims_skip_a_foreign_result_with_a_warning(command, computed, tmp_path, capsys):
    path = _result(computed)
    good = path.read_text()
    path.write_text("[1, 2, 3]")
    try:
        code, err = cli(capsys, *command, "--results", computed, "--out", tmp_path / "out")
    finally:
        path.write_text(good)
    assert code == 0, err
    assert any(ln.startswith("warning skipping") and str(path) in ln for ln in err.splitlines()), err
    assert "Traceback" not in err


def test_corrupt_pretrained_model_is_retrained(world, computed, capsys):
    (model,) = computed.glob("pretrain/tinymethod/*/model/tiny.npz")
    model.write_bytes(b"PK\x03\x04 truncated")
    pretraining._MEMORY.clear()
    code, err = cli(capsys, "run", "--method", "tinymethod", "--task", "tinytask", "--data", world,
                    "--results", computed, "-q", "--overwrite", "always")
    assert code == 0, err
    assert "cached pretraining does not load" in err and "retraining" in err and "Traceback" not in err
    np.load(model)   # rewritten


def test_truncated_feature_cache_is_rebuilt(tmp_path, capsys):
    from tasks.common import FeatureCache
    path = tmp_path / "features-ave-audio-train.npz"
    np.savez(path, idx=np.arange(3), x=np.zeros((3, 2, 2), np.float32), valid=np.ones((3, 2), bool))
    path.write_bytes(path.read_bytes()[:40])
    store_mod.forget_warnings()
    assert FeatureCache._load(path, np.arange(3)) is None
    assert str(path) in capsys.readouterr().err


# --------------------------------------------------------------------------- data family
def _edit(path: Path, fn) -> None:
    with h5py.File(path, "r+") as f:
        fn(f)


def _drop_video(f):
    del f["video"]
    if "latent/video" in f:               # a version 3 file's true factors of video go with it
        del f["latent/video"]


def _nan_in_unsampled_clip(f):
    from tasks.data.native import sample_rows
    n = f["audio"].shape[0]
    clip = next(i for i in range(n) if i not in set(sample_rows(n).tolist()))
    row = f["audio"][clip]
    row[3, 1] = np.nan
    f["audio"][clip] = row
    f.attrs["nan_clip"] = clip


def _empty_split(f):
    del f["split/test"]
    f.create_dataset("split/test", data=np.zeros(0, np.int64))


DATA_CASES = {
    "no_ave_file": (lambda root: (root / "ave.h5").unlink(), "has no ave.h5"),
    "nan_unsampled_clip": (lambda root: _edit(root / "ave.h5", _nan_in_unsampled_clip), "NaN/Inf in clip"),
    "nan_in_pretrain": (lambda root: _edit(root / "pretrain.h5", _nan_in_unsampled_clip), "NaN/Inf in clip"),
    "empty_split": (lambda root: _edit(root / "ave.h5", _empty_split), "split/test"),
    "no_labels_clip": (lambda root: _edit(root / "ave.h5", lambda f: f.__delitem__("labels/clip")), "labels/clip"),
    "no_split_test": (lambda root: _edit(root / "ave.h5", lambda f: f.__delitem__("split/test")), "split/test"),
    "not_a_dir": (lambda root: shutil.rmtree(root), "is not a directory"),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data_folder_ends_in_one_line_before_work(case, world, tmp_path, capsys):
    root = copy_world(world, tmp_path / "w")
    breaker, needle = DATA_CASES[case]
    breaker(root)
    store = tmp_path / "store"
    code, err = cli(capsys, "run", "--method", "tinymethod", "--task", "tinytask", "--data", root,
                    "--results", store, "-q")
    assert_one_error(code, err, needle)
    assert not list(store.glob("cells/**/*")) and not list(store.glob("pretrain/**/*"))


def test_user_error_inside_a_cell_is_one_line_exit_2_without_error_json(world, tmp_path, capsys):
    root = copy_world(world, tmp_path / "w")
    _edit(root / "ave.h5", _drop_video)   # tinytask reads ave video: found inside the cell
    store = tmp_path / "store"
    code, err = cli(capsys, "run", "--method", "tinymethod", "--task", "tinytask", "--data", root,
                    "--results", store, "-q")
    assert_one_error(code, err, "no 'video' features")
    assert not (store / "cells").exists()      # no error.json, no lock file, no empty folders


def test_pretrain_with_nan_corpus_is_one_line(world, tmp_path, capsys):
    root = copy_world(world, tmp_path / "w")
    _edit(root / "pretrain.h5", _nan_in_unsampled_clip)
    with h5py.File(root / "pretrain.h5", "r") as f:
        clip = int(f.attrs["nan_clip"])
    code, err = cli(capsys, "pretrain", "--method", "tinymethod", "--data", root, "--results", tmp_path / "s", "-q")
    assert_one_error(code, err, f"NaN/Inf in clip {clip}", "pretrain.h5")
    assert not list((tmp_path / "s").glob("pretrain/**/*"))


# --------------------------------------------------------------------------- pickle family (data import cmg)
class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _cmg(tmp_path: Path, arrays: dict, csv_bytes: bytes | None = None) -> list[str]:
    (tmp_path / "audio").mkdir()
    ids = list(arrays)
    for key, value in arrays.items():
        with zipfile.ZipFile(tmp_path / "audio" / f"{key}.zip", "w") as z:
            z.writestr(f"{key}.pkl", value if isinstance(value, bytes) else pickle.dumps(value))
    text = "category,video_id\n" + "".join(f"c{i % 2},{k}\n" for i, k in enumerate(ids))
    (tmp_path / "meta.csv").write_bytes(csv_bytes if csv_bytes is not None else text.encode())
    return ["data", "import", "cmg", "--csv", tmp_path / "meta.csv", "--audio", tmp_path / "audio",
            "--out", tmp_path / "out.h5", "-q"]


def _clips(n=4):
    rng = np.random.default_rng(0)
    return {f"vid{i}": rng.random((10, 4)).astype(np.float32) for i in range(n)}


def test_crafted_pickle_does_not_execute(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    arrays = _clips()
    arrays["vid0"] = pickle.dumps(_Evil(marker))
    code, err = cli(capsys, *_cmg(tmp_path, arrays))
    assert_one_error(code, err, "refused to load", "vid0")
    assert not marker.exists() and not (tmp_path / "out.h5").exists()


def test_numpy_pickles_still_import(tmp_path, capsys):
    arrays = _clips()
    arrays["vid1"] = pickle.dumps(arrays["vid1"], protocol=5)
    arrays["vid2"] = arrays["vid2"].astype(np.float64).tolist()
    code, err = cli(capsys, *_cmg(tmp_path, arrays))
    assert code == 0, err


@pytest.mark.parametrize("case", ["non_utf8_csv", "zero_length", "seconds_0", "object_array", "nul_csv"])
def test_bad_cmg_inputs_are_one_line(case, tmp_path, capsys):
    arrays, csv_bytes, extra, needle = _clips(), None, [], ""
    if case == "non_utf8_csv":
        csv_bytes, needle = b"category,video_id\n\xe9t\xe9,vid0\nx,vid1\n", "not UTF-8"
    elif case == "zero_length":
        arrays["vid2"], needle = np.zeros((0, 4), np.float32), "non-empty"
    elif case == "seconds_0":
        extra, needle = ["--seconds", "0"], "--seconds"
    elif case == "object_array":
        arrays["vid1"], needle = np.array([{"a": 1}], dtype=object), "expected a numeric array"
    elif case == "nul_csv":
        csv_bytes, needle = b"category,video_id\nc0,vid\x000\n", "NUL"
    code, err = cli(capsys, *_cmg(tmp_path, arrays, csv_bytes), *extra)
    assert_one_error(code, err, needle)
    assert not (tmp_path / "out.h5").exists() and not list(tmp_path.glob(".out.h5*"))


# --------------------------------------------------------------------------- kill/resume & leaks family
def test_stale_temp_files_of_dead_writers_are_swept(world, tmp_path, capsys):
    store = tmp_path / "store"
    dead = 4_999_999   # above Linux's pid_max: no such process
    # what kill -9 leaves: a half-generated world, a config write, a checkpoint save, a feature cache write
    half = store / "data" / ".smoke-s0.x1y2.tmp"
    half.mkdir(parents=True)
    (half / "pretrain.h5").write_bytes(b"partial")
    w = WorldChoice(profile=None, data=str(world)).open()
    (cell,) = runner.plan(["tinymethod"], ["tinytask"], [0], w)
    cell_dir = store_mod.Store(store).cell_dir(cell.task.canonical(), cell.method.canonical(), cell.key)
    cell_dir.mkdir(parents=True)
    stale_cfg = cell_dir / ".config.json.abc123.tmp"
    stale_res = cell_dir / f".result.json.q.{dead}.tmp"
    for p in (stale_cfg, stale_res):
        p.write_text("{")
    key = spec.pretrain_key(cell.method, w.corpus().fingerprint, 0)
    ckpt = store / "pretrain" / "tinymethod" / key / "checkpoints"
    ckpt.mkdir(parents=True)
    stale_ckpt = ckpt / f"epoch-0001.tmp{dead}"
    stale_ckpt.write_bytes(b"x")
    feats = store / "features" / "k" / "h"
    feats.mkdir(parents=True)
    stale_feat, live_feat = feats / f"f.npz.{dead}.tmp.npz", feats / f"f.npz.{os.getppid()}.tmp.npz"
    stale_feat.write_bytes(b"x")
    live_feat.write_bytes(b"x")
    code, err = cli(capsys, "run", "--method", "tinymethod", "--task", "tinytask", "--data", world,
                    "--results", store, "-q")
    assert code == 0, err
    for p in (half, stale_cfg, stale_res, stale_ckpt, stale_feat):
        assert not p.exists(), p
    assert live_feat.exists()          # a live writer's temp file is left alone
    assert (cell_dir / "result.json").exists()


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_pool_workers_die_with_a_killed_parent(world, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "run", "--method", "tinymethod@sleep=60", "--task",
                             "tinytask", "--seeds", "0", "1", "--executor", "pool", "--workers", "2", "--data",
                             str(world), "--results", str(tmp_path / "store"), "-q"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, workers = time.time() + 120, []
        while time.time() < deadline:   # wait until both workers have started their cell (pretrain lock files)
            if len(list((tmp_path / "store").glob("pretrain/tinymethod/.*.lock"))) >= 2:
                workers = [c for c in _children(proc.pid) if _alive(c)]
                if len(workers) >= 2:
                    break
            time.sleep(0.5)
        assert workers, "pool workers never started"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        time.sleep(5)
        assert [w for w in workers if _alive(w)] == []
        assert _group(proc.pid) == []      # nor anything else of its process group (the resource tracker)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _group(pgid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out
