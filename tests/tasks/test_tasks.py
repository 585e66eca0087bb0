"""Downstream tasks (issue 5) on the tiny world of conftest.py.

A perfect encoder must reach ~100 % on every task and a label-independent one must stay at chance: together
they show that the heads can learn and that no task leaks labels into what it reports. The tiny world has only
180 training clips, so heads here take larger steps (lr, batch) than the released settings used by default.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark import registry
from benchmark.contracts import RunContext, UserError
from conftest import ToyEncoder, constant_encoder, perfect_encoder, random_encoder
from tasks.ave_avvp import restrict
from tasks.heads import HeadTask

FAST = {"lr": 0.01, "batch_size": 16, "epochs": 40, "patience": 8}
HEAD_TASKS = sorted(n for n, e in registry.entries("task").items() if isinstance(e.load(), HeadTask))
CHANCE_KNOWN = ("ave", "avvp", "ave_avvp", "ucf_vgg")   # tasks whose label-independent bound `chance` computes



def run(name, encoder, world, ctx, seed=0, **overrides):
    entry = registry.get("task", name)
    cfg = entry.resolve({**(FAST if isinstance(entry.load(), HeadTask) else {}), **overrides})
    task = entry.load()
    task.validate(cfg)
    return task.evaluate(encoder, world, cfg, seed, ctx), task


# --------------------------------------------------------------------------- chance levels from the labels
def majority_share(y: np.ndarray) -> float:
    """Best expected accuracy % of any label-independent predictor: the largest class share."""
    return np.bincount(y).max() / len(y) * 100


def f1_chance(frames: np.ndarray) -> float:
    """Best expected micro-F1 % of any label-independent predictor on `[N, T, C+1]` labels (background last).

    Predicting class c with probability q_c independently of the labels gives expected
    F1 = 2 sum_c q_c n_c / (sum_c q_c M + sum_c n_c) (n_c positives of c, M entries per class), linear-
    fractional in q, so the best is "always predict" for the k most frequent classes, for some k.
    """
    n = np.sort(frames[..., :-1].reshape(-1, frames.shape[-1] - 1).sum(0))[::-1]
    m = frames.shape[0] * frames.shape[1]
    return max(2 * n[:k].sum() / (k * m + n.sum()) for k in range(1, len(n) + 1)) * 100


def ucf_vgg_test_labels(world, modality):
    ff = world.open({"video": "ucf", "audio": "vgg"}[modality])
    shared = {"class2", "class3", "class4"}
    y = ff.labels("clip")[ff.split("test")]
    return np.array([c for c in y if ff.classes[c] in shared])


def chance(world, task, direction):
    """Upper bound % for a label-independent encoder on one direction's target."""
    target = {"A": "audio", "V": "video"}[direction[-1]]
    if task == "ave":
        ff = world.open("ave")
        return majority_share(ff.labels("clip")[ff.split("test")])
    if task == "ucf_vgg":
        return majority_share(ucf_vgg_test_labels(world, target))
    ff = world.open("avvp")
    test = ff.split("test")
    if task == "avvp":
        return f1_chance(ff.labels(target)[test])
    shared = [ff.classes.index(c) for c in ("class3", "class4", "class5")]
    frames = {m: restrict(ff.labels(m)[test], shared) for m in ("audio", "video")}
    keep = frames["audio"][..., :-1].any((1, 2)) | frames["video"][..., :-1].any((1, 2))
    return f1_chance(frames[target][keep])


# --------------------------------------------------------------------------- perfect and random encoders
@pytest.mark.parametrize("name", HEAD_TASKS)
def test_perfect_encoder_scores_about_100_in_every_direction(name, tiny_world, ctx):
    out, task = run(name, perfect_encoder(), tiny_world, ctx)
    assert list(out) == list(task.directions)
    for direction, values in out.items():
        assert values[task.main_metric] >= 99.0, (direction, values)


def test_perfect_encoder_retrieves_every_pair_first(tiny_world, ctx):
    out, _ = run("retrieval", perfect_encoder(), tiny_world, ctx)
    assert set(out) == {"V->T", "T->V", "A->T", "T->A", "A->V", "V->A", "V<->T", "A<->T", "A<->V"}
    assert all(v == pytest.approx(100.0) for values in out.values() for v in values.values())


@pytest.mark.parametrize("name", CHANCE_KNOWN)
def test_random_encoder_stays_at_chance(name, tiny_world, ctx):
    out, task = run(name, random_encoder(seed=7), tiny_world, ctx)
    for direction, values in out.items():
        bound = chance(tiny_world, name, direction)
        assert bound < 50
        assert 0 <= values[task.main_metric] <= bound + 12, (direction, values, bound)


def test_random_encoder_retrieval_is_near_k_over_gallery(tiny_world, ctx):
    out, _ = run("retrieval", random_encoder(seed=3), tiny_world, ctx)
    # gallery sizes: V<->T 60/60, A<->V 60/60, A->T 200 captions (5 relevant), T->A 40 audios
    gallery = {"V->T": 60, "T->V": 60, "A->V": 60, "V->A": 60, "T->A": 40}
    for direction, g in gallery.items():
        assert out[direction]["R@10"] == pytest.approx(1000 / g, abs=18), (direction, out[direction])
    assert out["A->T"]["R@10"] == pytest.approx((1 - math.comb(195, 10) / math.comb(200, 10)) * 100, abs=18)


def test_collapsed_encoder_retrieval_is_exactly_chance(tiny_world, ctx):
    """All items tied: expected recall, never an artefact of item order."""
    out, _ = run("retrieval", constant_encoder(), tiny_world, ctx)
    assert out["V->T"] == pytest.approx({"R@1": 100 / 60, "R@5": 500 / 60, "R@10": 1000 / 60, "mean_r": 1600 / 180})
    five_of_200 = {k: (1 - math.comb(195, k) / math.comb(200, k)) * 100 for k in (1, 5, 10)}
    assert out["A->T"]["R@5"] == pytest.approx(five_of_200[5])
    assert out["T->A"]["R@10"] == pytest.approx(25.0)
    assert out["A<->T"]["mean_r"] == pytest.approx((out["A->T"]["mean_r"] + out["T->A"]["mean_r"]) / 2)


# --------------------------------------------------------------------------- protocols
def test_reference_protocol_shows_the_ave_train_split_leak(tiny_world, ctx):
    """`reference` scores AVE on the training clips: m->m memorises noise, cross-modal cannot."""
    encoder = random_encoder(seed=11)
    clean, _ = run("ave", encoder, tiny_world, ctx)
    leaked, _ = run("ave", encoder, tiny_world, ctx, protocol="reference")   # same cached features
    bound = chance(tiny_world, "ave", "A->A")
    assert clean["A->A"]["acc"] <= bound + 12
    assert leaked["A->A"]["acc"] >= bound + 30 and leaked["V->V"]["acc"] >= bound + 30
    assert leaked["V->A"]["acc"] <= bound + 15
    assert ctx.notes["heads"]["ave/audio"]["epochs_run"] == FAST["epochs"]   # no early stopping


def test_reference_protocol_reports_the_released_avvp_metric(tiny_world, ctx):
    """avvp.sh keeps the epoch of best *precision*: an early, timid head wins even when recall is poor."""
    out, _ = run("avvp", perfect_encoder(), tiny_world, ctx, protocol="reference", directions="V->A")
    assert list(out) == ["V->A"] and set(out["V->A"]) == {"precision", "recall", "f1"}
    assert out["V->A"]["precision"] >= 99.0
    best = ctx.notes["heads"]["avvp/video"]["best_epoch"]["V->A"]
    assert best < FAST["epochs"] - 1


# --------------------------------------------------------------------------- structure, caching, determinism
def test_directions_option_selects_and_orders_rows(tiny_world, ctx):
    out, _ = run("ucf_vgg", perfect_encoder(), tiny_world, ctx, directions="A->V;V->A")
    assert list(out) == ["A->V", "V->A"]
    out, _ = run("retrieval", perfect_encoder(), tiny_world, ctx, directions="A->T")
    assert list(out) == ["A->T"]   # no pair row without both directions


def test_features_are_encoded_once_and_reused_from_scratch(tiny_world, ctx):
    encoder = perfect_encoder()
    descriptions = []

    def progress(iterable, description="", total=None):
        descriptions.append(description)
        return iterable

    ctx.progress = progress
    run("ave", encoder, tiny_world, ctx)
    calls = encoder.calls
    assert calls == 6           # (audio, video) x (train, val, test), one batch each
    fingerprint = tiny_world.open("ave").fingerprint      # the file's content is part of the key
    assert sorted(p.name for p in ctx.scratch.glob("*.npz")) == sorted(
        f"features-ave-{m}-{s}-{fingerprint}.npz" for m in ("audio", "video") for s in ("train", "val", "test"))
    run("ave", encoder, tiny_world, ctx, protocol="reference")
    assert encoder.calls == calls   # a second cell body on the same scratch re-encodes nothing
    assert "ave/video head" in descriptions and "ave/audio head" in descriptions


def test_same_seed_same_numbers(tiny_world, tmp_path):
    projection = np.random.default_rng(5).standard_normal((11, 6)).astype(np.float32)
    encoder = ToyEncoder(lambda x: x @ projection, dim=6)     # informative but lossy, width 6
    results = []
    for i in range(2):
        scratch = tmp_path / f"s{i}"
        scratch.mkdir()
        results.append(run("avvp", encoder, tiny_world, RunContext(scratch=scratch), seed=3)[0])
    assert results[0] == results[1]


def test_results_are_percent_floats(tiny_world, ctx):
    out, task = run("ave_avvp", random_encoder(), tiny_world, ctx, epochs=3)
    for values in out.values():
        assert set(task.higher_is_better) <= set(values)
        assert set(values) - set(task.higher_is_better) <= {"floor_f1", "chance_mAP", "positive_rate"}
        assert all(isinstance(v, float) and 0.0 <= v <= 100.0 for v in values.values())


# --------------------------------------------------------------------------- user errors
@pytest.mark.parametrize("name, overrides, message", [
    ("ave", {"directions": "V->T"}, "directions"),
    ("avvp", {"epochs": 0}, "'epochs' must be >= 1"),
    ("retrieval", {"directions": "same"}, "directions"),
])
def test_bad_options_are_user_errors(name, overrides, message):
    entry = registry.get("task", name)
    with pytest.raises(UserError, match=message):
        entry.load().validate(entry.resolve(overrides))


def test_missing_file_is_a_user_error(tmp_path, ctx):
    from conftest import open_tiny_world
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError):
        run("ave", perfect_encoder(), open_tiny_world(tmp_path / "empty"), ctx)


def test_method_without_the_modality_is_a_user_error(tiny_world, ctx):
    class AudioVideoOnly(ToyEncoder):
        modalities = ("audio", "video")

    with pytest.raises(UserError, match="no text encoder"):
        run("retrieval", AudioVideoOnly(lambda x: x), tiny_world, ctx, directions="V->T")
