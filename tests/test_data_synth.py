"""The synthetic world (issue 3): speed, determinism, the required structure, and the generative mechanisms."""
from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from benchmark.__main__ import main as cli_main
from benchmark.contracts import UserError
from tasks.data import PROFILES, ensure_world, open_world, profile_knobs, synthesize
from tasks.data import synth


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """Two smoke worlds with seed 0 and one with seed 1, plus the time the first one took."""
    t0 = time.perf_counter()
    a = synthesize("smoke", 0, tmp_path_factory.mktemp("a"))
    seconds = time.perf_counter() - t0
    b = synthesize("smoke", 0, tmp_path_factory.mktemp("b"))
    return a, b, synthesize("smoke", 1, tmp_path_factory.mktemp("c")), seconds


def arrays(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None)
    return out


# --------------------------------------------------------------------------- speed and determinism
def test_smoke_world_is_fast_and_byte_identical_for_one_seed(worlds):
    a, b, _, seconds = worlds
    assert seconds < 30
    names = sorted(p.name for p in a.glob("*.h5"))
    assert len(names) == 8
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
        assert open_world(a).open(name[:-3]).fingerprint == open_world(b).open(name[:-3]).fingerprint


def test_another_seed_gives_other_arrays(worlds):
    a, _, c, _ = worlds
    for name in sorted(p.name for p in a.glob("*.h5")):
        x, y = arrays(a / name), arrays(c / name)
        for key in ("audio", "video", "text"):
            if key in x:
                assert x[key].shape == y[key].shape and not np.array_equal(x[key], y[key]), (name, key)
        assert open_world(a).open(name[:-3]).fingerprint != open_world(c).open(name[:-3]).fingerprint


# --------------------------------------------------------------------------- required structure
def test_class_universe_is_shared_across_datasets(worlds):
    w = open_world(worlds[0])
    classes = {n: set(w.open(n).classes) for n in ("pretrain", "ave", "avvp", "ucf", "vgg", "retrieval_vt")}
    assert len(classes["pretrain"]) == 141 and len(classes["ave"]) == 28 and len(classes["avvp"]) == 25
    assert classes["ave"] <= classes["pretrain"]
    assert len(classes["ave"] & classes["avvp"]) == 12
    assert len(classes["avvp"] - classes["pretrain"]) == profile_knobs("smoke").avvp_novel
    assert classes["ucf"] == classes["vgg"] and len(classes["ucf"]) == 16
    assert classes["retrieval_vt"] == classes["pretrain"]
    prompts = w.open("pretrain").attrs["prompts"]
    assert len(prompts) == 141 and all(name in p for name, p in zip(w.open("pretrain").classes, prompts))


def test_ave_like_clips_have_one_contiguous_event_and_background_elsewhere(worlds):
    ave = open_world(worlds[0]).open("ave")
    lab, clip = ave.labels("all"), ave.labels("clip")
    assert lab.shape == (200, 10, 29) and np.all(lab.sum(-1) == 1)            # one-hot per second
    event = lab[..., 28] == 0
    for i in range(len(lab)):
        seconds = np.flatnonzero(event[i])
        assert len(seconds) >= 2 and np.all(np.diff(seconds) == 1)           # one contiguous segment
        assert np.all(lab[i, seconds].argmax(-1) == clip[i])
    assert sorted(np.concatenate([ave.split(s) for s in ("train", "val", "test")])) == list(range(200))


def test_avvp_like_clips_have_several_audio_only_visual_only_and_av_events(worlds):
    avvp = open_world(worlds[0]).open("avvp")
    a, v = avvp.labels("audio"), avvp.labels("video")
    for m in (a, v):
        assert np.array_equal(m[..., 25], (m[..., :25].sum(-1) == 0).astype(np.float32))   # background column
    a_cls, v_cls = a[..., :25].max(1), v[..., :25].max(1)                  # [N, C] class present in the clip
    assert (a_cls > v_cls).any() and (v_cls > a_cls).any() and (a_cls * v_cls).any()
    assert (np.maximum(a_cls, v_cls).sum(1) >= 2).mean() > 0.3               # several events per clip
    present = np.maximum(a_cls, v_cls)
    assert np.all(present[np.arange(len(present)), avvp.labels("clip")] == 1)


def test_pretrain_text_is_one_prompt_per_class(worlds):
    pre = open_world(worlds[0]).open("pretrain")
    text, clip = pre.read("text"), pre.labels("clip")
    c = np.bincount(clip).argmax()
    same = text[clip == c]
    assert len(same) >= 2 and np.all(same == same[0])
    other = text[clip != c][0]
    assert not np.allclose(other, same[0])


def test_ucf_and_vgg_are_single_modality_with_the_event_over_the_whole_clip(worlds):
    w = open_world(worlds[0])
    assert w.open("ucf").modalities == ("video",) and w.open("vgg").modalities == ("audio",)
    lab = w.open("vgg").labels("all")
    assert np.all(lab[..., -1] == 0) and np.all(lab[..., :-1].argmax(-1) == w.open("vgg").labels("clip")[:, None])


def test_video_is_non_negative_and_spatial_in_smoke(worlds):
    ff = open_world(worlds[0]).open("ave")
    video = ff.read("video")
    assert ff.shape("video") == (200, 10, 3, 3, 16) and video.min() >= 0 and (video == 0).any()


def test_paper_profile_has_real_widths_and_float16_video(tmp_path):
    k = profile_knobs("paper")
    assert (k.n_pretrain, k.ave_split, k.video_grid, k.video_channels, k.audio_dim, k.text_dim) == \
        (40000, (3339, 402, 402), 7, 512, 128, 768)
    synthesize("paper", 0, tmp_path, only=["ave"], n_ave=6, ave_split=(4, 1, 1))
    ff = open_world(tmp_path).open("ave")
    assert ff.shape("video") == (6, 10, 7, 7, 512) and ff.stored_dtype("video") == "float16"
    assert ff.read("video").dtype == np.float32 and ff.attrs["generator"]["storage_dtype"]["video"] == "float16"


def test_profiles_are_documented_and_knobs_recorded(tmp_path):
    assert PROFILES == ("smoke", "default", "paper")
    default = profile_knobs("default")
    assert default.n_pretrain >= 2000 and 1000 <= default.n_ave <= 2000 and default.audio_dim == 128
    synthesize("smoke", 0, tmp_path, only=["vgg"], scene_sigma=0.0, max_lag=0)
    knobs = open_world(tmp_path).open("vgg").attrs["generator"]["knobs"]
    assert knobs["scene_sigma"] == 0.0 and knobs["max_lag"] == 0
    assert set(knobs) == {f.name for f in dataclasses.fields(synth.Knobs)}
    with pytest.raises(UserError, match="did you mean 'scene_sigma'"):
        synthesize("smoke", 0, tmp_path, scene_sigm=0)
    with pytest.raises(UserError, match="unknown profile 'huge'"):
        synthesize("huge", 0, tmp_path)
    with pytest.raises(UserError, match="non-negative integer"):
        synthesize("smoke", -1, tmp_path)


# --------------------------------------------------------------------------- mechanisms (W1-W6 in WORLD.md)
@pytest.fixture(scope="module")
def universe():
    return synth.build_universe(0, profile_knobs("smoke", max_lag=2, lag_prob=1.0))


def _perturbed(universe, field_name, block_fn, n=8):
    """Features of the same clips before and after adding 1 to one latent field (same noise draws)."""
    ev = synth.draw_events(np.random.default_rng(0), n, universe.class_sets["ave"], "single", universe)
    before = block_fn(ev, slice(None), universe, np.random.default_rng(1))
    changed = dataclasses.replace(ev, **{field_name: getattr(ev, field_name) + 1.0})
    after = block_fn(changed, slice(None), universe, np.random.default_rng(1))
    return ev, np.abs(after - before).reshape(n, universe.knobs.seconds, -1).max(-1) > 1e-6, \
        np.abs(after - before)


def test_event_semantics_reach_audio_only_in_its_lagged_seconds(universe):
    ev, moved, _ = _perturbed(universe, "sem", synth.audio_block)
    t = np.arange(10)
    src = t - ev.lag[:, None]
    expected = (ev.on[:, :1] <= src) & (src < ev.off[:, :1])
    assert np.all(ev.lag != 0)
    np.testing.assert_array_equal(moved, expected)


def test_event_semantics_reach_video_only_in_the_object_cells_of_event_seconds(universe):
    ev, _, diff = _perturbed(universe, "sem", synth.video_block)
    cells = diff.max(-1) > 1e-6                                                     # [N, T, g, g]
    active = (ev.on[:, :1] <= np.arange(10)) & (np.arange(10) < ev.off[:, :1])      # [N, T]
    expected = active[:, :, None, None] & ev.box[:, 0, None]
    np.testing.assert_array_equal(cells, expected)
    assert ev.box.any((2, 3)).all() and not ev.box.all((2, 3)).all()                # some, not all, cells


def test_scene_reaches_every_second_of_audio_video_and_captions(universe):
    _, moved_audio, _ = _perturbed(universe, "scene", synth.audio_block)
    _, moved_video, _ = _perturbed(universe, "scene", synth.video_block)
    assert moved_audio.all() and moved_video.all()
    ev = synth.draw_events(np.random.default_rng(0), 4, universe.class_sets["pretrain"], "single", universe)
    item = np.arange(4)
    before = synth.captions(ev, item, np.random.default_rng(2), universe)
    after = synth.captions(dataclasses.replace(ev, scene=ev.scene + 1), item, np.random.default_rng(2), universe)
    assert not np.allclose(before, after)


def test_private_nuisance_stays_in_its_modality(universe):
    ev = synth.draw_events(np.random.default_rng(0), 4, universe.class_sets["ave"], "single", universe)
    shifted = dataclasses.replace(ev, nuisance={**ev.nuisance, "audio": ev.nuisance["audio"] + 1})
    video = [synth.video_block(e, slice(None), universe, np.random.default_rng(1)) for e in (ev, shifted)]
    audio = [synth.audio_block(e, slice(None), universe, np.random.default_rng(1)) for e in (ev, shifted)]
    assert np.array_equal(video[0], video[1]) and not np.allclose(audio[0], audio[1])


# --------------------------------------------------------------------------- the world cache and the CLI
def test_ensure_world_generates_once_atomically(tmp_path, monkeypatch):
    calls = []
    real = synth.synthesize

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)
    monkeypatch.setattr(synth, "synthesize", counting)
    threads = [threading.Thread(target=ensure_world, args=("smoke", 3, tmp_path)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    root = ensure_world("smoke", 3, tmp_path)
    assert root == tmp_path / "smoke-s3" and (root / ".complete").exists() and len(calls) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["smoke-s3"]
    assert open_world(root).open("ave").attrs["generator"]["seed"] == 3


def test_cli_synth_writes_the_requested_datasets(tmp_path, capsys):
    code = cli_main(["data", "synth", "--profile", "smoke", "--seed", "2", "--out", str(tmp_path), "--only",
                     "ave,vgg", "--set", "lag_prob=0", "-q"])
    err = capsys.readouterr().err
    assert code == 0 and "wrote smoke world (seed 2)" in err
    assert sorted(p.name for p in tmp_path.glob("*.h5")) == ["ave.h5", "vgg.h5"]
    assert open_world(tmp_path).open("ave").attrs["generator"]["knobs"]["lag_prob"] == 0.0
    assert cli_main(["data", "synth", "--profile", "smoke", "--out", str(tmp_path), "--set", "nope"]) == 2
    assert capsys.readouterr().err == "error: --set expects KNOB=VALUE, got 'nope'\n"
