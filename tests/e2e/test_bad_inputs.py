"""Bad inputs through the CLI, as a table of cases (issue 25): each ends in exactly one `error:` line with exit code 2,
no traceback, and writes nothing (no store, no output file; a `--data` world's scan markers aside). Families:
bounds, files, paths, late checks (now at planning), synth knobs, imports, table YAML, the CLI itself. Then the
cases that must succeed (exponent floats), the cache cases (a checkpoint that is not one, a garbled world marker,
dead writers' temp files, one warning) and the symlink case: links planted inside a store never let `gc --delete`,
`grid` or `run` write, lock or delete outside it. Runs in-process (each case is the CLI's `main`); < 60 s.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from benchmark import store as store_mod
from benchmark.__main__ import main as cli_main


def _forget_models() -> None:
    """In-process runs must go through the store as a fresh process would (the model memory of the runner)."""
    for name in ("benchmark.pretraining", "benchmark.runner"):
        getattr(sys.modules.get(name), "_MEMORY", {}).clear()


def cli(capsys, *args) -> tuple[int, str]:
    store_mod.forget_warnings()
    _forget_models()
    try:
        code = cli_main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def one_error(code: int, err: str, needle: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (code, err)
    assert "Traceback" not in err and needle in err, err


def files(path: Path) -> list[Path]:
    """Files under `path`, leaving out the scan markers and worlds under data/."""
    if not path.exists():
        return []
    return sorted(p for p in path.rglob("*") if p.is_file() and "data" not in p.relative_to(path).parts)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from tasks.data import synthesize
    out = tmp_path_factory.mktemp("bad_inputs_world")
    synthesize("smoke", 0, out)
    return out


def _variant(world: Path, dest: Path, name: str, damage) -> Path:
    shutil.copytree(world, dest)
    with h5py.File(dest / f"{name}.h5", "a") as f:
        damage(f)
    return dest


def _replace(key, **kwargs):
    def damage(f):
        del f[key]
        f.create_dataset(key, **kwargs)
    return damage


def _external(f):
    raw = Path(f.filename).parent.parent / "secret.bin"
    raw.write_bytes(bytes(300 * 10 * 32 * 4))
    del f["audio"]
    f.create_dataset("audio", shape=(300, 10, 32), dtype="f4", external=[(str(raw), 0, 300 * 10 * 32 * 4)])


def _virtual(f):
    layout = h5py.VirtualLayout(shape=(300, 10, 32), dtype="f4")
    layout[:] = h5py.VirtualSource(f.filename, "video", shape=(300, 10, 32))
    del f["audio"]
    f.create_virtual_dataset("audio", layout)


def _audio_only(f):
    del f["video"], f["text"]
    for m in ("video", "text"):           # a version 3 file's true factors of the removed modalities go too
        if f"latent/{m}" in f:
            del f[f"latent/{m}"]


FILES = {   # pretrain.h5 (or ave.h5) damaged: name -> (file, damage, needle)
    "N_1e9": ("pretrain", _replace("audio", shape=(10**9, 10, 32), dtype="f4", chunks=(1, 10, 32)), "at most"),
    "T_1e8": ("pretrain", _replace("audio", shape=(300, 10**8, 32), dtype="f4", chunks=(1, 1000, 32)), "at most"),
    "N_unwritten": ("pretrain", _replace("audio", shape=(10**7, 10, 32), dtype="f4", chunks=(1, 10, 32)),
                    "never written"),
    "labels_N_1e9": ("ave", _replace("labels/all", shape=(10**9, 10, 29), dtype="u1", chunks=(1, 10, 29)),
                     "at most"),
    "external": ("pretrain", _external, "external storage"),
    "virtual": ("pretrain", _virtual, "virtual storage"),
}


@pytest.mark.parametrize("case", sorted(FILES))
@pytest.mark.parametrize("command", ["run", "info"])
def test_bad_feature_files(case, command, world, tmp_path, capsys):
    name, damage, needle = FILES[case]
    data = _variant(world, tmp_path / "w", name, damage)
    store = tmp_path / "store"
    if command == "info":
        code, err = cli(capsys, "data", "info", data / f"{name}.h5")
    else:
        code, err = cli(capsys, "run", "--method", "tinymethod", "--task", "tinytask", "--data", data,
                        "--results", store, "-q")
    one_error(code, err, needle)
    assert files(store) == []


RUN = ["run", "--task", "tinytask", "-q"]
CASES = {   # family -> {case: (args, needle)}; {O}: an output folder to be, {F}: a file, {D}: a folder
    "bounds": {
        "codebook_size": (["run", "--method", "dcid@codebook_size=2000000", "--task", "ave"], "at most 1048576"),
        "memory": (["run", "--method", f"dcid@codebook_size={2**20},code_dim=60000", "--task", "ave"],
                   "GiB of memory"),
        "epochs": (["run", "--method", "dcid@epochs=1000000000", "--task", "ave"], "'epochs' is 1000000000"),
        "head_epochs": (["run", "--method", "chance", "--task", "ave@epochs=1000000000"], "'epochs' is"),
        "head_patience": (["run", "--method", "chance", "--task", "ave@patience=1000000000"], "'patience' is"),
        "head_hidden": (["run", "--method", "chance", "--task", "ave@hidden=1000000000"], "'hidden' is"),
        "chance_dim": (["run", "--method", "chance@dim=1000000000", "--task", "ave"], "'dim' is"),
        "code_dim": (["run", "--method", "dcid@code_dim=1000000", "--task", "ave"], "'code_dim' is"),
        "workers": (["run", "--method", "tinymethod", "--task", "tinytask", "--executor", "pool", "--workers",
                     "100000"], "--workers"),
        "threads": (["run", "--method", "tinymethod", "--task", "tinytask", "--threads", "5000"], "--threads"),
    },
    "late_checks": {
        "toc_q0": ([*RUN, "--method", "tinymethod+toc@q=0"], "q must be in 1..8"),
        "toc_q_wide": ([*RUN, "--method", "tinymethod+toc@q=9"], "q must be in 1..8"),
        "cca_task_all": (["run", "--method", "cca", "--task", "all", "--seeds", "0", "1"], "has no text encoder"),
        "cpc_horizon": (["run", "--method", "dcid@cpc_horizon=9", "--task", "ave"], "cpc_horizon=9"),
        "pretrain_json_dir": (["pretrain", "--method", "tinymethod", "--json", "{D}"], "is a directory"),
        "table_out_file": (["table", "t1", "--out", "{F}"], "not a directory"),
        "claims_out_file": (["claims", "--out", "{F}"], "not a directory"),
        "plot_report_out_file": (["plot", "report", "--out", "{F}"], "not a directory"),
    },
    "paths": {
        "budget_name": (["budget", "--method", "cmcm", "--epochs", "1", "2", "--name", "../../ESCAPED/pwn",
                         "--out", "{O}"], "plain file name"),
        "budget_out_file": (["budget", "--method", "cmcm", "--epochs", "1", "2", "--out", "{F}"],
                            "not a directory"),
        "budget_workers": (["budget", "--method", "cmcm", "--epochs", "1", "2", "--workers", "100000"],
                           "--workers"),
        "budget_epochs": (["budget", "--method", "cmcm", "--epochs", "1", "1000000000000"], "at most 10000"),
    },
    "cli": {
        "no_command": ([], "choose a command: run"),
        "plot_no_figure": (["plot"], "choose a figure: toc-heatmap"),
    },
}
SYNTH = {   # --set KNOB=VALUE -> needle
    "ave_split=5": "a list of 3 numbers", "object_side=ab": "a list of 2 numbers", "block_clips=0": "at least 1",
    "audio_dim=0": "at least 1", "tokens=0": "at least 1", "n_retrieval_vt=0": "at least 1",
    "scene_sigma=-1": "at least 0", "video_pooled=maybe": "true or false", "n_pretrain=1e9": "at most",
    "scene_sigm=1": "did you mean 'scene_sigma'", "lag_prob=2": "at most 1", "n_pretrain=1.5": "an integer",
    "object_side=[0.9,0.4]": "(smallest, largest)",
}
TABLES = {   # table YAML -> needle
    "decimals": ("  decimals: abc\n", "tinymethod", "tinytask", "decimals must be an integer"),
    "unknown_method": ("", "tinymethd", "tinytask", "unknown method 'tinymethd'"),
    "unknown_task": ("", "tinymethod", "tinytsk", "unknown task 'tinytsk'"),
}
COUNTS = {family: len(cases) for family, cases in CASES.items()}


def _args(args, world, store, out, file) -> list[str]:
    filled = [str(a).replace("{O}", str(out)).replace("{F}", str(file)).replace("{D}", str(file.parent / "adir"))
              for a in args]
    if filled and filled[0] in ("run", "pretrain", "budget"):
        filled += ["--data", str(world)]
    if filled and filled[0] in ("run", "pretrain", "budget", "table", "claims") or filled[:2] == ["plot", "report"]:
        filled += ["--results", str(store)]
    return filled


@pytest.mark.parametrize("family, case", [(f, c) for f, cases in CASES.items() for c in cases])
def test_bad_cli_inputs(family, case, world, tmp_path, capsys):
    args, needle = CASES[family][case]
    store, out, file = tmp_path / "store", tmp_path / "out", tmp_path / "a_file"
    if args and args[0] in ("table", "claims", "plot"):
        store.mkdir()
    file.write_text("x")
    (tmp_path / "adir").mkdir()
    code, err = cli(capsys, *_args(args, world, store, out, file))
    one_error(code, err, needle)
    assert files(store) == [] and not out.exists() and file.read_text() == "x"
    assert not list(tmp_path.rglob("*pwn*"))


@pytest.mark.parametrize("knob", sorted(SYNTH))
def test_bad_synth_knobs_write_nothing(knob, tmp_path, capsys):
    out = tmp_path / "w"
    code, err = cli(capsys, "data", "synth", "--profile", "smoke", "--out", out, "-q", "--set", knob)
    one_error(code, err, SYNTH[knob])
    assert not out.exists()


def test_synth_only_empty_list_writes_nothing(tmp_path, capsys):
    code, err = cli(capsys, "data", "synth", "--profile", "smoke", "--out", tmp_path / "w", "-q", "--only", ",")
    one_error(code, err, "names no dataset")
    assert not (tmp_path / "w").exists()


def test_import_ave_with_a_zero_width_array(tmp_path, capsys):
    root, n, t = tmp_path / "ave", 4, 10
    root.mkdir()
    for name, array in (("audio_feature", np.zeros((n, t, 0), "f4")), ("visual_feature", np.zeros((n, t, 8), "f4")),
                        ("labels", np.eye(3, dtype="f4")[np.zeros((n, t), int)])):
        with h5py.File(root / f"{name}.h5", "w") as f:
            f["avadataset"] = array
    for split in ("train", "val", "test"):
        with h5py.File(root / f"{split}_order.h5", "w") as f:
            f["order"] = np.arange(n)
    (tmp_path / "classes.txt").write_text("a\nb\n")
    code, err = cli(capsys, "data", "import", "ave", root, "--out", tmp_path / "ave.h5", "--classes",
                    tmp_path / "classes.txt", "-q")
    one_error(code, err, "non-empty features")
    assert not (tmp_path / "ave.h5").exists()


def test_import_refuses_a_zip_member_larger_than_a_clip_before_decompressing(tmp_path, capsys, monkeypatch):
    import pickle
    import zipfile

    from benchmark import bounds
    monkeypatch.setitem(bounds.FILE_BOUNDS, "values_per_clip", bounds.Bound("values_per_clip", 1000, "test"))
    (tmp_path / "audio").mkdir()
    for i, size in enumerate((400, 2**21)):   # the second clip: 2 MB of zeros, a few KB compressed
        with zipfile.ZipFile(tmp_path / "audio" / f"v{i}.zip", "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(f"v{i}.pkl", pickle.dumps(np.zeros((size // 40, 10), np.float32)))
    (tmp_path / "meta.csv").write_text("category,video_id\na,v0\nb,v1\n")
    code, err = cli(capsys, "data", "import", "cmg", "--csv", tmp_path / "meta.csv", "--audio", tmp_path / "audio",
                    "--out", tmp_path / "out.h5", "-q")
    one_error(code, err, "bytes uncompressed, at most")
    assert not (tmp_path / "out.h5").exists()


def test_import_refuses_a_source_with_external_storage(tmp_path, capsys):
    raw = tmp_path / "secret.bin"
    raw.write_bytes(bytes(4 * 10 * 8 * 4))
    with h5py.File(tmp_path / "audio_feature.h5", "w") as f:
        f.create_dataset("avadataset", shape=(4, 10, 8), dtype="f4", external=[(str(raw), 0, 4 * 10 * 8 * 4)])
    for name in ("visual_feature", "labels"):
        with h5py.File(tmp_path / f"{name}.h5", "w") as f:
            f["avadataset"] = np.zeros((4, 10, 8), "f4")
    code, err = cli(capsys, "data", "import", "ave", tmp_path, "--out", tmp_path / "ave.h5", "-q")
    one_error(code, err, "external storage")
    assert not (tmp_path / "ave.h5").exists()


@pytest.mark.parametrize("case", sorted(TABLES))
def test_bad_table_yaml(case, tmp_path, capsys):
    extra, method, task, needle = TABLES[case]
    grid = tmp_path / "tab.yaml"
    grid.write_text(f"name: tab\nmethods: [tinymethod]\ntasks: [tinytask]\ntable:\n{extra}"
                    f"  columns: [{{task: {task}, direction: V->A}}]\n  rows: [{{method: {method}}}]\n")
    (tmp_path / "store").mkdir()
    code, err = cli(capsys, "table", grid, "--results", tmp_path / "store", "--format", "csv")
    one_error(code, err, needle)
    assert files(tmp_path / "store") == []


def test_a_corpus_without_the_modalities_a_method_pairs(world, tmp_path, capsys):
    data = _variant(world, tmp_path / "w", "pretrain", _audio_only)
    code, err = cli(capsys, "run", "--method", "dcid", "--task", "ave", "--data", data, "--results",
                    tmp_path / "store", "-q")
    one_error(code, err, "needs at least 2 paired modalities")
    assert files(tmp_path / "store") == []


# --------------------------------------------------------------------------- what must succeed
def test_exponent_floats_are_floats(world, tmp_path, capsys):
    from benchmark import runner, spec
    assert spec.parse_method("tinymethod+toc@lam=3e-1").canonical() == "tinymethod+toc"   # = the default 0.3
    assert spec.parse_method("tinymethod@sleep=1e-3").base.cfg["sleep"] == 0.001
    assert runner.plan(["tinymethod+toc@lam=2.5e-1"], ["tinytask"], [0], None)
    from benchmark.registry import load_yaml
    assert load_yaml("a: 3e-1\nb: 1e3\nc: '3e-1'\n") == {"a": 0.3, "b": 1000.0, "c": "3e-1"}
    code, err = cli(capsys, "data", "synth", "--profile", "smoke", "--out", tmp_path / "w", "-q", "--only",
                    "pretrain", "--set", "scene_sigma=5e-1")
    assert code == 0, err


def test_the_nan_scan_reads_bounded_slabs_and_shows_progress(world, monkeypatch):
    from tasks.data import FeatureFile, native
    monkeypatch.setattr(native, "READ_BLOCK_BYTES", 64 * 10 * 32 * 4)     # 64 clips of pretrain audio per slab
    shown, reads = [], []
    original = native.FeatureFile.read

    def read(self, modality, idx=None):
        reads.append(len(idx))
        return original(self, modality, idx)
    monkeypatch.setattr(native.FeatureFile, "read", read)

    def progress(iterable, description="", total=None):
        shown.append((description, total))
        return iterable
    with FeatureFile(world / "pretrain.h5") as ff:
        ff.scan(progress)
        assert shown[0] == ("checking pretrain.h5 audio", -(-ff.n("audio") // 64))
    assert max(reads) <= 64       # no slab larger than READ_BLOCK_BYTES, whatever the modality


# --------------------------------------------------------------------------- caches
def test_a_checkpoint_that_is_not_one_is_ignored_with_one_warning(tmp_path, capsys):
    import torch

    from methods.trainer import find_checkpoint
    torch.save([1, 2, 3], tmp_path / "epoch-0007.pt")
    store_mod.forget_warnings()
    assert find_checkpoint(tmp_path, "tag", 10) is None
    assert find_checkpoint(tmp_path, "tag", 10) is None
    assert capsys.readouterr().err.count("epoch-0007.pt: not a checkpoint") == 1


def test_a_garbled_world_marker_regenerates_the_world(tmp_path, capsys):
    from tasks.data.world import COMPLETE, ensure_world
    root = ensure_world("smoke", 0, tmp_path)
    (root / COMPLETE).write_bytes(b"\x00garbage{")
    store_mod.forget_warnings()
    assert ensure_world("smoke", 0, tmp_path) == root
    assert "marker changed since generation; regenerating" in capsys.readouterr().err
    assert (root / COMPLETE).read_text().startswith("{")


def test_a_world_file_garbled_with_size_and_mtime_kept_is_seen_by_a_new_process(tmp_path, capsys):
    """The stat shortcut is trusted only after a process has fingerprinted the world once."""
    from tasks.data import world as world_mod
    root = world_mod.ensure_world("smoke", 0, tmp_path)
    path = root / "ave.h5"
    before = path.stat()
    with h5py.File(path, "r") as f:
        offset, size = f["labels/clip"].id.get_offset(), f["labels/clip"].id.get_storage_size()
    with open(path, "r+b") as fh:     # finite garbage where the labels are: no NaN check would see it
        fh.seek(offset)
        fh.write(bytes(range(256)) * (size // 256) + bytes(size % 256))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert [path.stat().st_size, path.stat().st_mtime_ns] == [before.st_size, before.st_mtime_ns]
    world_mod._VERIFIED.clear()        # what a new process starts with
    store_mod.forget_warnings()
    world_mod.ensure_world("smoke", 0, tmp_path)
    assert "ave.h5 changed since generation; regenerating" in capsys.readouterr().err


def test_dead_writers_temp_files_are_swept_from_table_folders(tmp_path, capsys):
    out = tmp_path / "tables"
    out.mkdir()
    dead = out / ".t1.md.abc123.999999999.tmp"    # a PID that cannot be alive
    dead.write_text("half")
    (tmp_path / "store").mkdir()
    cli(capsys, "table", "t1", "--results", tmp_path / "store", "--out", out, "--format", "csv")
    assert not dead.exists()


def test_dead_writers_temp_files_are_swept_from_a_synth_out_folder(tmp_path, capsys):
    out = tmp_path / "w"
    out.mkdir()
    dead, alive = out / ".ave.h5.abc123.999999999.tmp", out / f".ave.h5.abc123.{os.getpid()}.tmp"
    dead.write_text("half")
    alive.write_text("being written")
    code, err = cli(capsys, "data", "synth", "--profile", "smoke", "--out", out, "-q", "--only", "ave")
    assert code == 0, err
    assert not dead.exists() and alive.exists()


def test_import_out_must_be_a_file(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    code, err = cli(capsys, "data", "import", "ave", tmp_path, "--out", tmp_path / "d", "-q")
    one_error(code, err, "is a directory")


def test_a_corrupt_result_is_warned_about_once_under_the_pool(world, tmp_path, capfd):
    """The parent finds it (not cached), the worker re-checks it under the cell lock: one warning line."""
    run = ["run", "--method", "tinymethod", "--task", "tinytask", "--data", world, "--results", tmp_path, "-q",
           "--threads", "1"]
    assert cli_main([str(a) for a in run]) == 0
    next(tmp_path.glob("cells/tinytask/tinymethod/*/result.json")).write_text("[1, 2, 3]")
    capfd.readouterr()
    store_mod.forget_warnings()
    assert cli_main([str(a) for a in run + ["--executor", "pool", "--workers", "1"]]) == 0
    assert capfd.readouterr().err.count("treated as missing (recomputed)") == 1


def test_a_warning_is_printed_once_also_in_spawned_workers(monkeypatch, capsys):
    store_mod.forget_warnings()
    store_mod.warn("same thing")
    inherited = os.environ[store_mod.WARNED_ENV]
    store_mod._WARNED.clear()                       # a worker: a new process with the parent's environment
    monkeypatch.setenv(store_mod.WARNED_ENV, inherited)
    store_mod.warn("same thing")
    store_mod.warn("another thing")
    err = capsys.readouterr().err
    assert err.count("same thing") == 1 and err.count("another thing") == 1
    store_mod.forget_warnings()


def test_a_folder_that_cannot_be_removed_is_named(tmp_path, monkeypatch):
    import errno

    from benchmark.store import remove_tree

    def refuse(path, *args, **kwargs):
        raise OSError(errno.EBUSY, "Device or resource busy")
    folder = tmp_path / "model"
    folder.mkdir()
    monkeypatch.setattr(shutil, "rmtree", refuse)
    with pytest.raises(OSError, match=f"cannot remove {folder}"):
        remove_tree(folder)


# --------------------------------------------------------------------------- symlinks never lead out of the store
def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() + str(p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_links_planted_in_the_store_never_lead_outside(world, tmp_path, capsys):
    """cells/<task>, a lock, a world folder and a model folder, each a link to a folder outside the store:
    `gc --delete` skips (warns), `run` and `grid` refuse or replace the link; nothing outside changes."""
    store, outside = tmp_path / "store", tmp_path / "outside"
    run = ["run", "--method", "tinymethod", "--task", "tinytask", "--results", store, "-q", "--profile", "smoke"]
    assert cli(capsys, *run)[0] == 0
    cell = next((store / "cells").glob("tinytask/tinymethod/*/result.json")).parent
    model = next((store / "pretrain").glob("tinymethod/*/model"))
    # outside: a stale-looking cell, a file a lock would create, a world and a model
    shutil.copytree(store / "cells" / "tinytask", outside / "cells_task")
    stale = next((outside / "cells_task").glob("tinymethod/*/result.json"))
    stale.write_text(stale.read_text().replace('"key": "', '"key": "0'))    # its key no longer matches: gc's prey
    shutil.copytree(model, outside / "model")
    shutil.copytree(store / "data" / "smoke-s0", outside / "world")
    (outside / "lock_target").write_text("")
    before = _snapshot(outside)

    # 1. cells/<task2> -> outside: gc --delete leaves it alone
    (store / "cells" / "tinytask2").symlink_to(outside / "cells_task")
    code, err = cli(capsys, "gc", "--results", store, "--delete")
    assert code == 0 and "symbolic link out of the store" in err, err
    # 2. the cell's lock -> outside: run refuses before touching it
    lock = cell.parent / f".{cell.name}.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(outside / "lock_target")
    code, err = cli(capsys, *run, "--overwrite", "always")
    one_error(code, err, "is a symbolic link")
    lock.unlink()
    # 3. the model folder -> outside: refused, never loaded from or deleted
    shutil.rmtree(model)
    model.symlink_to(outside / "model")
    code, err = cli(capsys, *run, "--overwrite", "always")
    one_error(code, err, "symbolic link out of the store")
    model.unlink()
    # 4. a grid writing into cells/<task> that is a link -> refused
    shutil.rmtree(store / "cells" / "tinytask")
    (store / "cells" / "tinytask").symlink_to(outside / "cells_task")
    grid = tmp_path / "g.yaml"
    grid.write_text("methods: [tinymethod]\ntasks: [tinytask]\n")
    code, err = cli(capsys, "grid", grid, "--results", store, "-q", "--profile", "smoke")
    one_error(code, err, "symbolic link out of the store")
    (store / "cells" / "tinytask").unlink()
    # 5. the world folder -> outside: the link is replaced by a generated world, the outside one untouched
    shutil.rmtree(store / "data" / "smoke-s0")
    (store / "data" / "smoke-s0").symlink_to(outside / "world")
    code, err = cli(capsys, "grid", grid, "--results", store, "--profile", "smoke", "--dry-run")
    assert code == 0 and (store / "data" / "smoke-s0").is_symlink(), err     # a dry run generates nothing
    code, err = cli(capsys, *run)
    assert code == 0, err
    assert not (store / "data" / "smoke-s0").is_symlink()
    assert _snapshot(outside) == before
