"""Importers (issue 3): tiny files in the AVE-ECCV18, CMG-repo and AVVP layouts, and corrupt inputs."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from benchmark.__main__ import main as cli_main
from tasks.data import FeatureFile

N, T, C = 12, 10, 3
NAMES = ["Church bell", "Dog barking", "Violin"]


def cli(capsys, *args) -> tuple[int, str]:
    code = cli_main([str(a) for a in args])
    return code, capsys.readouterr().err


def one_error_line(err: str) -> bool:
    return err.startswith("error: ") and err.count("\n") == 1


# --------------------------------------------------------------------------- AVE-ECCV18
def make_ave(root: Path) -> dict:
    """N clips: clip i has class i % C over seconds [i % 4, 10 - i % 3); background elsewhere."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    audio = rng.random((N, T, 8)).astype(np.float32)
    video = rng.random((N, T, 2, 2, 4)).astype(np.float32)
    labels = np.zeros((N, T, C + 1), np.float32)
    labels[..., C] = 1
    for i in range(N):
        labels[i, i % 4:10 - i % 3] = np.eye(C + 1)[i % C]
    orders = {"train": np.array([5, 0, 7, 2, 9, 11, 1, 3]), "val": np.array([4, 10]), "test": np.array([8, 6])}
    for name, key, data in (("audio_feature.h5", "avadataset", audio), ("visual_feature.h5", "avadataset", video),
                            ("labels.h5", "avadataset", labels)):
        with h5py.File(root / name, "w") as f:
            f.create_dataset(key, data=data)
    for split, order in orders.items():
        with h5py.File(root / f"{split}_order.h5", "w") as f:
            f.create_dataset("order", data=order)
    lines = ["Category&VideoID&Quality&StartTime&EndTime"]
    lines += [f"{NAMES[i % C]}&vid{i:08d}&good&{i % 4}&{10 - i % 3}" for i in range(N)]
    (root / "Annotations.txt").write_text("\n".join(lines) + "\n")
    return {"audio": audio, "video": video, "labels": labels, "orders": orders}


def test_ave_import_keeps_arrays_labels_splits_and_names(tmp_path, capsys):
    src = make_ave(tmp_path / "AVE")
    code, err = cli(capsys, "data", "import", "ave", tmp_path / "AVE", "--out", tmp_path / "ave.h5", "-q")
    assert code == 0, err
    ff = FeatureFile(tmp_path / "ave.h5")
    np.testing.assert_array_equal(ff.read("audio"), src["audio"])
    np.testing.assert_array_equal(ff.read("video"), src["video"])
    np.testing.assert_array_equal(ff.labels("all"), src["labels"])
    np.testing.assert_array_equal(ff.labels("clip"), np.arange(N) % C)
    for split, order in src["orders"].items():
        np.testing.assert_array_equal(ff.split(split), order)
    assert ff.classes == NAMES and ff.dataset == "ave"


def test_import_refuses_to_overwrite_out_without_force(tmp_path, capsys):
    make_ave(tmp_path / "AVE")
    out = tmp_path / "ave.h5"
    out.write_bytes(b"someone's file")
    code, err = cli(capsys, "data", "import", "ave", tmp_path / "AVE", "--out", out, "-q")
    assert code == 2 and one_error_line(err) and "already exists" in err and "--force" in err
    assert out.read_bytes() == b"someone's file"
    code, err = cli(capsys, "data", "import", "ave", tmp_path / "AVE", "--out", out, "-q", "--force")
    assert code == 0, err
    assert FeatureFile(out).dataset == "ave"


def test_ave_import_class_list_and_float16_video(tmp_path, capsys):
    src = make_ave(tmp_path / "AVE")
    (tmp_path / "names.txt").write_text("a\nb\nc\n")
    code, _ = cli(capsys, "data", "import", "ave", tmp_path / "AVE", "--out", tmp_path / "ave.h5",
                  "--classes", tmp_path / "names.txt", "--video-dtype", "float16", "-q")
    ff = FeatureFile(tmp_path / "ave.h5")
    assert code == 0 and ff.classes == ["a", "b", "c"] and ff.stored_dtype("video") == "float16"
    np.testing.assert_allclose(ff.read("video"), src["video"], atol=1e-3)
    (tmp_path / "names.txt").write_text("a\nb\n")
    code, err = cli(capsys, "data", "import", "ave", tmp_path / "AVE", "--out", tmp_path / "x.h5",
                    "--classes", tmp_path / "names.txt")
    assert code == 2 and one_error_line(err) and "expected 3 class names" in err


def _rewrite(path: Path, key: str, data) -> None:
    path.unlink()
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=data)


def _corrupt_missing_key(root, src):
    _rewrite(root / "audio_feature.h5", "features", src["audio"])


def _corrupt_shape(root, src):
    _rewrite(root / "visual_feature.h5", "avadataset", src["video"][:N - 1])


def _corrupt_labels_length(root, src):
    _rewrite(root / "labels.h5", "avadataset", src["labels"][:N - 2])


def _corrupt_nan(root, src):
    audio = src["audio"].copy()
    audio[9, 4, 2] = np.nan
    _rewrite(root / "audio_feature.h5", "avadataset", audio)


def _corrupt_split(root, src):
    _rewrite(root / "test_order.h5", "order", np.array([8, N]))


def _corrupt_truncated(root, src):
    path = root / "visual_feature.h5"
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


AVE_CORRUPT = {
    "missing key": (_corrupt_missing_key, "audio_feature.h5: missing key 'avadataset' (found: features)"),
    "shape mismatch between modalities": (_corrupt_shape, "visual_feature.h5: avadataset: expected [N,T]=[12, 10] "
                                                          "like audio_feature.h5, found [11, 10]"),
    "labels length != N": (_corrupt_labels_length, "labels.h5: avadataset: expected shape [12,10,C+1]"),
    "NaN features": (_corrupt_nan, "audio_feature.h5: avadataset: expected finite values, found NaN/Inf in clip 9"),
    "split index out of range": (_corrupt_split, "test_order.h5: order: index 12 out of range, expected 0 <= i < 12"),
    "truncated file": (_corrupt_truncated, "visual_feature.h5: not a readable HDF5 file (truncated or corrupt?)"),
}


@pytest.mark.parametrize("case", sorted(AVE_CORRUPT))
def test_corrupt_ave_input_gives_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    corrupt, message = AVE_CORRUPT[case]
    root = tmp_path / "AVE"
    corrupt(root, make_ave(root))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, err = cli(capsys, "data", "import", "ave", root, "--out", out_dir / "ave.h5")
    assert code == 2 and one_error_line(err), err
    assert message in err
    assert list(out_dir.iterdir()) == []                       # no output, no temp file left behind


# --------------------------------------------------------------------------- CMG layout
def _zip_pickle(path: Path, member: str, array) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, pickle.dumps(array))


def make_cmg(root: Path, split_column=True, video_single_zip=False) -> dict:
    """6 clips, 2 categories; audio has 8 seconds (padded to 10), video 12 (truncated to 10)."""
    rng = np.random.default_rng(1)
    ids = [f"id{i:09d}" for i in range(6)]
    cats = ["guitar", "drum", "drum", "guitar", "drum", "guitar"]
    splits = ["train", "train", "val", "test", "train", "train"]
    audio = {v: rng.random((8, 4)) for v in ids}
    video = {v: rng.random((12, 2, 2, 3)).astype(np.float32) for v in ids}
    (root / "audio").mkdir(parents=True)
    for v in ids:
        _zip_pickle(root / "audio" / f"{v}.zip", f"{v}.pkl", audio[v])
    if video_single_zip:
        with zipfile.ZipFile(root / "video.zip", "w") as z:
            for v in ids:
                z.writestr(f"feats/{v}.pkl", pickle.dumps(video[v]))
    else:
        (root / "video").mkdir()
        for v in ids:
            _zip_pickle(root / "video" / f"{v}.zip", f"{v}.pkl", video[v])
    header = "category,video_id,split" if split_column else "category,video_id"
    rows = [f"{c},{v},{s}" if split_column else f"{c},{v}" for c, v, s in zip(cats, ids, splits)]
    (root / "meta.csv").write_text("\n".join([header, *rows]) + "\n")
    return {"ids": ids, "cats": cats, "splits": splits, "audio": audio, "video": video}


def test_cmg_import_pads_truncates_and_labels_whole_clips(tmp_path, capsys):
    src = make_cmg(tmp_path / "cmg")
    code, err = cli(capsys, "data", "import", "cmg", "--csv", tmp_path / "cmg/meta.csv", "--audio",
                    tmp_path / "cmg/audio", "--video", tmp_path / "cmg/video", "--name", "vgg",
                    "--out", tmp_path / "vgg.h5", "-q")
    assert code == 0, err
    ff = FeatureFile(tmp_path / "vgg.h5")
    assert ff.classes == ["drum", "guitar"] and ff.dataset == "vgg" and ff.ids() == src["ids"]
    audio = ff.read("audio")
    np.testing.assert_allclose(audio[2, :8], src["audio"][src["ids"][2]], rtol=1e-6)
    np.testing.assert_allclose(audio[2, 8:], np.repeat(src["audio"][src["ids"][2]][-1:], 2, 0), rtol=1e-6)
    np.testing.assert_array_equal(ff.read("video")[4], src["video"][src["ids"][4]][:10])
    np.testing.assert_array_equal(ff.labels("clip"), [1, 0, 0, 1, 0, 1])
    lab = ff.labels("all")
    assert np.all(lab[:, :, -1] == 0) and np.all(lab[np.arange(6), :, ff.labels("clip")] == 1)
    assert ff.split("train").tolist() == [0, 1, 4, 5] and ff.split("val").tolist() == [2]
    assert ff.split("test").tolist() == [3]


def test_cmg_import_single_zip_missing_clips_and_seeded_split(tmp_path, capsys):
    src = make_cmg(tmp_path / "cmg", split_column=False, video_single_zip=True)
    (tmp_path / "cmg/audio" / f"{src['ids'][3]}.zip").unlink()
    args = ["data", "import", "cmg", "--csv", tmp_path / "cmg/meta.csv", "--audio", tmp_path / "cmg/audio",
            "--video", tmp_path / "cmg/video.zip", "--out", tmp_path / "u.h5", "-q"]
    code, err = cli(capsys, *args)
    assert code == 2 and one_error_line(err)
    assert f"no features for clip '{src['ids'][3]}' (1 clips missing; --skip-missing drops them)" in err
    assert not (tmp_path / "u.h5").exists()
    code, err = cli(capsys, *args, "--skip-missing", "--split-fractions", "0.6", "0.2", "0.2")
    assert code == 0, err
    ff = FeatureFile(tmp_path / "u.h5")
    assert ff.ids() == [v for i, v in enumerate(src["ids"]) if i != 3]
    np.testing.assert_array_equal(ff.read("video")[3], src["video"][src["ids"][4]][:10])
    assert sorted(np.concatenate([ff.split(s) for s in ("train", "val", "test")]).tolist()) == list(range(5))
    assert "seed 0" in ff.attrs["split_note"]


def test_cmg_import_rejects_unknown_category_and_inconsistent_shapes(tmp_path, capsys):
    src = make_cmg(tmp_path / "cmg")
    (tmp_path / "names.txt").write_text("guitar\n")
    code, err = cli(capsys, "data", "import", "cmg", "--csv", tmp_path / "cmg/meta.csv", "--audio",
                    tmp_path / "cmg/audio", "--classes", tmp_path / "names.txt", "--out", tmp_path / "x.h5")
    assert code == 2 and one_error_line(err) and "line 3: category 'drum' is not in the class list" in err
    _zip_pickle(tmp_path / "cmg/audio" / f"{src['ids'][5]}.zip", "x.pkl", np.zeros((10, 5)))
    code, err = cli(capsys, "data", "import", "cmg", "--csv", tmp_path / "cmg/meta.csv", "--audio",
                    tmp_path / "cmg/audio", "--out", tmp_path / "x.h5")
    assert code == 2 and one_error_line(err)
    assert f"clip '{src['ids'][5]}': expected audio shape [10, 4] like clip '{src['ids'][0]}', found [10, 5]" in err
    assert not (tmp_path / "x.h5").exists()


# --------------------------------------------------------------------------- AVVP
AUDIO_CSV = ("filename\tonset\toffset\tevent_labels\n"
             "aaaaaaaaaaa_30_40\t0,5\t3,10\tSpeech,Dog\n"
             "bbbbbbbbbbb_0_10\t2\t4\tViolin\n")
VISUAL_CSV = ("filename\tonset\toffset\tevent_labels\n"                 # one event per row, merged by filename
              "aaaaaaaaaaa_30_40\t0\t10\tSpeech\n"
              "bbbbbbbbbbb_0_10\t6\t8\tDog\n"
              "bbbbbbbbbbb_0_10\t7\t9\tViolin\n")


def make_avvp(root: Path, audio_csv=AUDIO_CSV, visual_csv=VISUAL_CSV) -> dict:
    rng = np.random.default_rng(2)
    (root / "audio").mkdir(parents=True)
    (root / "video").mkdir()
    feats = {}
    for vid in ("aaaaaaaaaaa", "bbbbbbbbbbb"):                         # zips named by the first 11 characters
        feats[vid] = rng.random((10, 4)), rng.random((10, 3))
        _zip_pickle(root / "audio" / f"{vid}.zip", "a.pkl", feats[vid][0])
        _zip_pickle(root / "video" / f"{vid}.zip", "v.pkl", feats[vid][1])
    (root / "audio.csv").write_text(audio_csv)
    (root / "visual.csv").write_text(visual_csv)
    return feats


def _avvp_args(root: Path, out: Path):
    return ["data", "import", "avvp", "--audio-csv", root / "audio.csv", "--visual-csv", root / "visual.csv",
            "--audio", root / "audio", "--video", root / "video", "--out", out]


def test_avvp_import_builds_separate_audio_and_visual_second_labels(tmp_path, capsys):
    feats = make_avvp(tmp_path / "avvp")
    code, err = cli(capsys, *_avvp_args(tmp_path / "avvp", tmp_path / "avvp.h5"), "-q")
    assert code == 0, err
    ff = FeatureFile(tmp_path / "avvp.h5")
    assert ff.classes == ["Dog", "Speech", "Violin"] and ff.ids() == ["aaaaaaaaaaa_30_40", "bbbbbbbbbbb_0_10"]
    dog, speech, violin, bg = range(4)
    audio = np.zeros((2, 10, 4))
    audio[0, 0:3, speech] = audio[0, 5:10, dog] = audio[1, 2:4, violin] = 1
    video = np.zeros((2, 10, 4))
    video[0, :, speech] = video[1, 6:8, dog] = video[1, 7:9, violin] = 1
    for m in (audio, video):
        m[..., bg] = m[..., :bg].sum(-1) == 0
    np.testing.assert_array_equal(ff.labels("audio"), audio)
    np.testing.assert_array_equal(ff.labels("video"), video)
    np.testing.assert_array_equal(ff.labels("clip"), [speech, violin])    # most annotated seconds, both streams
    np.testing.assert_allclose(ff.read("audio")[1], feats["bbbbbbbbbbb"][0], rtol=1e-6)


@pytest.mark.parametrize("audio_csv, message", [
    (AUDIO_CSV.replace("\t0,5\t", "\t0.5,5\t"), "line 2: expected integer seconds, found onset '0.5'"),
    (AUDIO_CSV.replace("3,10", "3,11"), "line 2: expected 0 <= onset < offset <= 10, found 5..11"),
    (AUDIO_CSV.replace("Speech,Dog", "Speech"), "line 2: onset/offset/event_labels lists differ in length"),
    (AUDIO_CSV.replace("event_labels", "labels"), "missing column(s) event_labels (tab-separated"),
])
def test_bad_avvp_annotations_give_one_line(audio_csv, message, tmp_path, capsys):
    make_avvp(tmp_path / "avvp", audio_csv=audio_csv)
    code, err = cli(capsys, *_avvp_args(tmp_path / "avvp", tmp_path / "avvp.h5"))
    assert code == 2 and one_error_line(err) and message in err and "audio.csv" in err
    assert not (tmp_path / "avvp.h5").exists()
