"""The synthetic world (issue 3): speed, determinism, the required structure, and the generative mechanisms."""
from __future__ import annotations

import dataclasses
import re
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
    assert default.n_pretrain >= 2000 and default.ave_split == (1612, 1000, 1000) and default.audio_dim == 128
    synthesize("smoke", 0, tmp_path, only=["vgg"], scene_sigma=0.0, max_lag=0)
    knobs = open_world(tmp_path).open("vgg").attrs["generator"]["knobs"]
    assert knobs["scene_sigma"] == 0.0 and knobs["max_lag"] == 0
    assert set(knobs) == {f.name for f in dataclasses.fields(synth.Knobs)}
    synthesize("smoke", 0, tmp_path / "v2", only=["vgg"], version=2)
    knobs = open_world(tmp_path / "v2").open("vgg").attrs["generator"]["knobs"]
    assert set(knobs) == {f.name for f in dataclasses.fields(synth.Knobs)} - {"version", "avvp_split", "ucf_split",
                                                                              "vgg_split"}   # as version 2 wrote them
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


# --------------------------------------------------------------------------- version 3: latents and test sizes
@pytest.fixture(scope="module")
def v3(tmp_path_factory, worlds):
    """(the default smoke world, version 3; the same seed written by version 2)."""
    return worlds[0], synthesize("smoke", 0, tmp_path_factory.mktemp("v2"), version=2)


def test_version_3_adds_the_latent_group_and_changes_no_feature(v3):
    """Same seed, same sizes: version 3 files hold version 2's features, labels and splits byte for byte, plus
    `latent/<modality>/<factor>` for every modality; version 2 files have no latent group (and keep their pins)."""
    new, old = v3
    for path in sorted(old.glob("*.h5")):
        a, b = arrays(path), arrays(new / path.name)
        assert set(b) - set(a) == {f"latent/{m}/{f}" for m in open_world(new).open(path.stem).modalities
                                   for f in synth.FACTORS}, path.name
        for key, value in a.items():
            np.testing.assert_array_equal(value, b[key], err_msg=f"{path.name}:{key}")
        assert open_world(old).open(path.stem).latent_names == {}
        ff = open_world(new).open(path.stem)
        assert ff.attrs["generator"]["generator_version"] == 3 and ff.attrs["generator"]["knobs"]["version"] == 3
        for m in ff.modalities:
            k = profile_knobs("smoke")
            widths = {"semantic": k.semantic_dim, "scene": k.scene_dim, "nuisance": k.nuisance_dim}
            for factor, d in widths.items():
                assert ff.latent(m, factor).shape == (*ff.shape(m)[:2], d)


def test_latents_are_the_true_factors(v3):
    """Audio semantics sit on the lagged event seconds, video's on the annotated ones (= labels/all), both equal
    to the event's instance semantics; scene is shared by audio and video of a clip; nuisance is per modality;
    a prompt's tokens carry its class prototype on content words and no scene."""
    new, _ = v3
    ave = open_world(new).open("ave")
    labels = ave.labels("all")[..., :-1].any(-1)                                          # [N, T] event seconds
    sem_v, sem_a = ave.latent("video", "semantic"), ave.latent("audio", "semantic")
    np.testing.assert_array_equal(np.abs(sem_v).max(-1) > 0, labels)
    assert (np.abs(sem_a).max(-1) > 0).sum() > 0.8 * labels.sum()
    inst = sem_v[np.arange(len(sem_v)), labels.argmax(1)]                                 # [N, ds]
    on = np.abs(sem_a).max(-1) > 0
    np.testing.assert_allclose(sem_a[on], np.repeat(inst, on.sum(1), 0), atol=1e-6)
    np.testing.assert_array_equal(ave.latent("audio", "scene"), ave.latent("video", "scene"))
    assert not np.allclose(ave.latent("audio", "nuisance"), ave.latent("video", "nuisance"))
    assert np.ptp(ave.latent("audio", "scene"), axis=1).max() == 0                        # clip-level
    pre = open_world(new).open("pretrain")
    assert np.abs(pre.latent("text", "scene")).max() == 0
    uni = synth.build_universe(0, profile_knobs("smoke"))
    cls = np.asarray(pre.attrs["generator"]["class_ids"])[pre.labels("clip")]
    tokens = pre.latent("text", "semantic")
    np.testing.assert_allclose(tokens[:, 0], uni.prototypes[cls], atol=1e-6)              # token 0: content


def test_version_3_default_test_sets_are_large_enough_to_read():
    """One clip <= 0.1 point of AVE and UCF<->VGG accuracy (>= 1000 test and val clips), AVVP >= 5x version 2's
    test seconds; train splits unchanged; the lead's calibration knobs go on top of the sizes."""
    v2, v3 = profile_knobs("default", version=2), profile_knobs("default", nuisance_sigma=0.7)
    assert v3.nuisance_sigma == 0.7 and v3.version == 3 and v2.version == 2 and v2.nuisance_sigma == 2.0
    assert profile_knobs("default").nuisance_sigma == 0.75       # the calibrated version 3 world (WORLD.md)
    counts = {}
    for name in ("ave", "avvp", "ucf", "vgg"):
        n, split = getattr(v3, f"n_{name}"), getattr(v3, f"{name}_split")
        rng = np.random.default_rng(0)
        old = synth.split_indices(rng, getattr(v2, f"n_{name}"), synth.DATASETS[name].splits, None)
        counts[name] = [len(v) for v in old.values()], list(split)
        assert split[0] == counts[name][0][0] and sum(split) == n, name
    for name in ("ave", "ucf", "vgg"):
        assert min(counts[name][1][1:]) >= 1000 and 100 / counts[name][1][2] <= 0.1, counts
    assert counts["avvp"][1][2] >= 5 * counts["avvp"][0][2] and counts["avvp"][1][1] >= 5 * counts["avvp"][0][1]
    with pytest.raises(UserError, match="need version=3"):
        profile_knobs("default", version=2, ucf_split=(600, 200, 200))
    with pytest.raises(UserError, match="vgg_split"):
        profile_knobs("default", version=3, n_vgg=100)
    with pytest.raises(UserError, match="version must be one of 2, 3"):
        profile_knobs("default", version=4)


def test_a_malformed_latent_group_is_one_error_line(v3, tmp_path):
    import shutil
    new, _ = v3
    def zeros(*shape):
        return np.zeros(shape, "f4")

    cases = {"unknown factor": lambda f: f.create_dataset("latent/audio/mood", data=zeros(200, 10, 2)),
             "expected shape [200,10,d]": lambda f: (f["latent/audio"].__delitem__("scene"),
                                                     f.create_dataset("latent/audio/scene", data=zeros(200, 9, 2))),
             "one of the file's modalities": lambda f: f.create_dataset("latent/text/semantic", data=zeros(200, 10, 2))}
    for message, damage in cases.items():
        path = tmp_path / "ave.h5"
        shutil.copy(new / "ave.h5", path)
        with h5py.File(path, "a") as f:
            damage(f)
        with pytest.raises(UserError, match=re.escape(message)) as err:
            open_world(tmp_path).open("ave")
        assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="only synthetic files carry"):
        open_world(v3[1]).open("ave").latent("audio", "semantic")


def test_importers_never_write_latents(tmp_path, capsys):
    """Real data has no true factors: every importer's file opens without a latent group (the oracle says n/a)."""
    from test_data_import import _avvp_args, make_ave, make_avvp, make_cmg
    make_ave(tmp_path / "AVE")
    make_cmg(tmp_path / "cmg")
    make_avvp(tmp_path / "avvp")
    runs = {"ave": ["data", "import", "ave", tmp_path / "AVE", "--out", tmp_path / "out/ave.h5"],
            "vgg": ["data", "import", "cmg", "--csv", tmp_path / "cmg/meta.csv", "--audio", tmp_path / "cmg/audio",
                    "--video", tmp_path / "cmg/video", "--name", "vgg", "--out", tmp_path / "out/vgg.h5"],
            "avvp": _avvp_args(tmp_path / "avvp", tmp_path / "out/avvp.h5")}
    for name, args in runs.items():
        assert cli_main([str(a) for a in args] + ["-q"]) == 0, capsys.readouterr().err
        ff = open_world(tmp_path / "out").open(name)
        assert ff.latent_names == {} and "latent" not in ff.h5, name


def test_ensure_world_regenerates_a_world_made_with_other_knobs(tmp_path, monkeypatch):
    """Intact files generated under other knobs (e.g. before the default generator version changed) are not
    today's world: the cache regenerates them instead of serving the old world under the same folder name."""
    root = ensure_world("smoke", 0, tmp_path)
    stamp = (root / "pretrain.h5").stat().st_mtime_ns
    assert ensure_world("smoke", 0, tmp_path) == root and (root / "pretrain.h5").stat().st_mtime_ns == stamp
    assert open_world(root).open("pretrain").latent_names["audio"] == synth.FACTORS
    monkeypatch.setitem(synth._PROFILE_KNOBS, "smoke", {**synth._PROFILE_KNOBS["smoke"], "version": 2})
    assert ensure_world("smoke", 0, tmp_path) == root
    assert open_world(root).open("pretrain").latent_names == {}
