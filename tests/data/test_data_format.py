"""Native format (issue 3): reading, streaming, fingerprints, and one-line errors for corrupt files."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from benchmark.__main__ import main as cli_main
from benchmark.contracts import Corpus, UserError
from tasks.data import FeatureFile, NativeWriter, open_world, synthesize
from tasks.data import native

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return synthesize("smoke", 0, tmp_path_factory.mktemp("world"))


def cli(capsys, *args) -> tuple[int, str, str]:
    code = cli_main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_tiny(path: Path, n=6, t=4, classes=("a", "b", "c"), **edit) -> Path:
    """A small valid native file; `edit` entries overwrite arrays (e.g. audio=..., split_test=...)."""
    rng = np.random.default_rng(0)
    arrays = {"audio": rng.random((n, t, 5)).astype(np.float32), "video": rng.random((n, t, 2, 2, 3)),
              "labels/all": np.eye(len(classes) + 1, dtype=np.uint8)[rng.integers(0, len(classes) + 1, (n, t))],
              "labels/clip": rng.integers(0, len(classes), n), "split/train": np.arange(n - 2),
              "split/test": np.arange(n - 2, n)}
    arrays.update({k.replace("_", "/", 1) if k.startswith(("labels_", "split_")) else k: v for k, v in edit.items()})
    with h5py.File(path, "w") as f:
        f.attrs["format_version"] = native.FORMAT_VERSION
        f.attrs["dataset"] = "tiny"
        f.attrs["classes"] = np.array(classes, dtype=h5py.string_dtype())
        for key, value in arrays.items():
            if value is not None:
                f.create_dataset(key, data=value)
    return path


# --------------------------------------------------------------------------- reading
def test_read_returns_float32_rows_in_the_order_asked(world):
    ff = open_world(world).open("ave")
    full = ff.read("video")
    assert full.dtype == np.float32 and full.shape == (200, 10, 3, 3, 16)
    idx = np.array([17, 3, 199, 3, 0, 150])          # unsorted, with a duplicate
    np.testing.assert_array_equal(ff.read("video", idx), full[idx])
    assert ff.read("audio", []).shape == (0, 10, 32)
    with pytest.raises(IndexError, match="out of range"):
        ff.read("audio", [200])


def test_index_runs_group_close_indices_and_cap_the_slab():
    idx = np.array([0, 1, 2, 10, 11, 30, 31, 32, 33, 34])
    assert list(native.index_runs(idx, max_rows=100, gap=4)) == [(0, 3), (3, 5), (5, 10)]
    assert list(native.index_runs(idx, max_rows=3, gap=4)) == [(0, 3), (3, 5), (5, 8), (8, 10)]
    assert list(native.index_runs(idx, max_rows=100, gap=10)) == [(0, 5), (5, 10)]


def test_float16_storage_reads_back_as_float32(tmp_path):
    x = np.random.default_rng(1).random((3, 2, 4)).astype(np.float16)
    with NativeWriter(tmp_path / "f.h5", dataset="f", classes=["a"]) as w:
        w.features("video", x.shape, "float16")
        w.write("video", 0, x)
    ff = FeatureFile(tmp_path / "f.h5")
    assert ff.stored_dtype("video") == "float16"
    out = ff.read("video")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x.astype(np.float32))


def test_corpus_streams_each_clip_once_in_seeded_order(world):
    corpus = open_world(world).corpus()
    assert isinstance(corpus, Corpus) and len(corpus) == 300
    assert corpus.feature_shape("video") == (10, 3, 3, 16)
    np.testing.assert_array_equal(corpus.labels("clip"), corpus.file.labels("clip"))
    batches = list(corpus.iter_batches(64, seed=3))
    assert [len(b["index"]) for b in batches] == [64, 64, 64, 64, 44]
    seen = np.concatenate([b["index"] for b in batches])
    assert sorted(seen) == list(range(300))
    first = batches[0]
    assert all(np.all(np.diff(b["index"]) > 0) for b in batches)        # sorted within a batch
    np.testing.assert_array_equal(first["text"], corpus.file.read("text", first["index"]))
    again = next(corpus.iter_batches(64, seed=3, modalities=["audio"]))
    np.testing.assert_array_equal(again["index"], first["index"])
    assert set(again) == {"audio", "index"}
    other = next(corpus.iter_batches(64, seed=4))
    assert not np.array_equal(other["index"], first["index"])
    ordered = next(corpus.iter_batches(10, seed=0, shuffle=False))
    np.testing.assert_array_equal(ordered["index"], np.arange(10))


def test_reads_touch_only_a_bounded_slab(world, monkeypatch):
    """`read` never pulls more than READ_BLOCK_BYTES of rows at once, whatever the request."""
    ff = open_world(world).open("pretrain")
    sizes = []
    real = h5py.Dataset.__getitem__

    def spy(self, key):
        out = real(self, key)
        if self.name == "/video":
            sizes.append(out.nbytes)
        return out
    monkeypatch.setattr(native, "READ_BLOCK_BYTES", 10 * 10 * 3 * 3 * 16 * 4)   # 10 clips of video
    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    x = ff.read("video")
    monkeypatch.undo()
    assert max(sizes) <= 10 * 10 * 3 * 3 * 16 * 4 and len(sizes) == 30
    np.testing.assert_array_equal(x, ff.read("video"))


# --------------------------------------------------------------------------- fingerprint and world
def test_fingerprint_is_stable_and_tracks_content_and_attrs(tmp_path):
    path = write_tiny(tmp_path / "t.h5")
    fp = FeatureFile(path).fingerprint
    assert FeatureFile(path).fingerprint == fp and len(fp) == 16
    with h5py.File(path, "a") as f:
        f["audio"][2, 1, 3] += 1.0
    changed = FeatureFile(path).fingerprint
    assert changed != fp
    with h5py.File(path, "a") as f:
        f.attrs["dataset"] = "renamed"
    assert FeatureFile(path).fingerprint not in (fp, changed)


def test_world_open_fingerprint_and_missing_file(world):
    w = open_world(world)
    assert w.names() == ["ave", "avvp", "pretrain", "retrieval_at", "retrieval_av", "retrieval_vt", "ucf", "vgg"]
    assert w.open("ave") is w.open("ave")
    assert w.fingerprint(["ave", "pretrain"]) == w.fingerprint(["pretrain", "ave"])
    assert w.fingerprint(["ave"]) != w.fingerprint(["ave", "pretrain"])
    with pytest.raises(UserError, match=r"has no nope\.h5 \(has: ave, avvp"):
        w.open("nope")
    with pytest.raises(UserError, match="is not a directory"):
        open_world(world / "ave.h5")


def test_retrieval_pairs_may_join_modalities_of_different_size(world):
    ff = open_world(world).open("retrieval_at")
    assert ff.n("audio") == 40 and ff.n("text") == 200
    pairs = ff.pairs("audio_text")
    assert pairs.shape == (200, 2)
    assert np.array_equal(np.bincount(pairs[:, 0]), np.full(40, 5))       # 5 captions per audio
    assert np.array_equal(np.sort(pairs[:, 1]), np.arange(200))
    np.testing.assert_array_equal(ff.split("test"), np.arange(40))


# --------------------------------------------------------------------------- corrupt files: one line, exit 2
def _truncate(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)


CORRUPT = {
    "missing key": (dict(), lambda f: f.attrs.__delitem__("classes"), "attrs/classes: missing"),
    "missing modality": (dict(audio=None, video=None), None, "no feature dataset"),
    "shape mismatch between modalities": (dict(video=np.zeros((5, 4, 2, 2, 3))), None,
                                          "same number of clips N, found audio N=6, video N=5"),
    "wrong rank": (dict(audio=np.zeros((6, 4))), None, "audio: expected shape [N,T,D], found [6, 4]"),
    "labels length != N": (dict(labels_clip=np.zeros(5, int)), None, "labels/clip: expected shape [6]"),
    "label matrix shape": (dict(labels_all=np.zeros((6, 4, 3), np.uint8)), None,
                           "labels/all: expected shape [6,4,4]"),
    "NaN features": (dict(audio=np.where(np.arange(6)[:, None, None] == 4, np.nan, 1.0) * np.ones((6, 4, 5))),
                     None, "audio: expected finite values, found NaN/Inf in clip 4"),
    "split index out of range": (dict(split_test=np.array([4, 6])), None,
                                 "split/test: index 6 out of range, expected 0 <= i < 6"),
    "class index out of range": (dict(labels_clip=np.array([0, 1, 2, 3, 0, 0])), None,
                                 "labels/clip: index 3 out of range"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_native_file_gives_one_line_and_exit_2(case, tmp_path, capsys):
    edit, mutate, message = CORRUPT[case]
    path = write_tiny(tmp_path / "bad.h5", **edit)
    if mutate:
        with h5py.File(path, "a") as f:
            mutate(f)
    code, out, err = cli(capsys, "data", "info", path)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert str(path) in err and message in err


def test_truncated_file_gives_one_line_and_exit_2_from_a_real_process(tmp_path):
    path = write_tiny(tmp_path / "t.h5", n=400)
    _truncate(path)
    proc = subprocess.run([sys.executable, "-m", "benchmark", "data", "info", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"error: {path}: not a readable HDF5 file (truncated or corrupt?)")
    assert proc.stderr.count("\n") == 1


def test_info_describes_a_file_and_a_world(world, capsys):
    code, out, _ = cli(capsys, "data", "info", world / "avvp.h5")
    assert code == 0
    for text in ("avvp", "labels/audio", "[120, 10, 26]", "split/train", "fingerprint", "scene_sigma=1.0",
                 open_world(world).open("avvp").fingerprint):
        assert text in out
    code, out, _ = cli(capsys, "data", "info", world)
    assert code == 0 and "world fingerprint" in out and "retrieval_at" in out


def test_writer_publishes_nothing_when_interrupted(tmp_path):
    with pytest.raises(RuntimeError):
        with NativeWriter(tmp_path / "x.h5", dataset="x", classes=["a"]) as w:
            w.features("audio", (2, 3, 4))
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match=r"x\.h5: no feature dataset"):   # invalid content is never published
        with NativeWriter(tmp_path / "x.h5", dataset="x", classes=["a"]):
            pass
    assert list(tmp_path.iterdir()) == []


def test_full_scan_finds_nan_that_the_sampled_check_skips(tmp_path, capsys):
    n = 100
    hidden = next(i for i in range(n) if i not in set(native.sample_rows(n)))
    audio = np.ones((n, 4, 5), np.float32)
    audio[hidden, 2, 1] = np.inf
    path = write_tiny(tmp_path / "t.h5", n=n, audio=audio, labels_all=None, labels_clip=None)
    assert cli(capsys, "data", "info", path)[0] == 0
    code, out, err = cli(capsys, "data", "info", "--full", path)
    assert code == 2 and out == ""
    assert err == f"error: {path}: audio: expected finite values, found NaN/Inf in clip {hidden}\n"
