"""Downstream metrics (issue 5), each on a case small enough to check by hand."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark.contracts import UserError
from tasks import metrics
from tasks.common import Encoded, masked_mean, parse_directions


def test_accuracy_is_percent_of_correct_clips():
    assert metrics.accuracy(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2])) == pytest.approx(75.0)


# one clip, two seconds, classes (c0, c1, background)
#   second 0: true c0        predicted c0, c1  -> c0 TP, c1 FP
#   second 1: true c1        predicted bg      -> c1 FN, bg FP
SEG_TRUE = np.array([[[1, 0, 0], [0, 1, 0]]])
SEG_PRED = np.array([[[1, 1, 0], [0, 0, 1]]])


def test_segment_f1_is_micro_over_event_classes_without_background():
    out = metrics.segment_prf(SEG_TRUE, SEG_PRED)   # TP 1, FP 1, FN 1
    assert out == pytest.approx({"precision": 50.0, "recall": 50.0, "f1": 50.0})


def test_segment_f1_with_background_counts_the_background_column():
    out = metrics.segment_prf(SEG_TRUE, SEG_PRED, exclude_background=False)   # TP 1, FP 2, FN 1
    assert out == pytest.approx({"precision": 100 / 3, "recall": 50.0, "f1": 40.0})


def test_reference_prf_averages_batches_and_includes_background():
    # three clips of one second, columns (c0, background), batch size 2
    y_true = np.array([[[1, 0]], [[0, 1]], [[1, 0]]])
    y_pred = np.array([[[1, 1]], [[0, 1]], [[0, 0]]])
    # batch 1 (clips 0,1): TP 2 (c0 of clip 0, background of clip 1), 3 predicted, 2 positive -> P 2/3, R 1
    # batch 2 (clip 2): nothing predicted -> P = R = 0 (the released scripts' rule)
    # clip-weighted: P = (2 * 2/3 + 0) / 3 = 4/9, R = 2/3; F1 = 2PR / (P + R) = 8/15
    out = metrics.reference_prf(y_true, y_pred, batch_size=2)
    assert out == pytest.approx({"precision": 400 / 9, "recall": 200 / 3, "f1": 800 / 15})
    # pooled over all entries it would be P = R = 2/3: the batch averaging changes the number
    assert out["precision"] != pytest.approx(200 / 3)


def test_recall_at_k_uses_the_best_ranked_relevant_item():
    sim = np.array([[0.9, 0.5, 0.8, 0.1],    # relevant: item 2 -> rank 2
                    [0.2, 0.7, 0.6, 0.9]])   # relevant: items 0 and 2 (two captions) -> best is 0.6, rank 3
    relevant = np.array([[0, 0, 1, 0], [1, 0, 1, 0]], bool)
    out = metrics.recall_at_k(sim, relevant, ks=(1, 2, 3))
    assert out == pytest.approx({"R@1": 0.0, "R@2": 50.0, "R@3": 100.0})


def test_recall_at_k_scores_ties_by_their_expected_value():
    relevant = np.array([[0, 1, 0, 0]], bool)
    # everything tied: the relevant item is equally likely at each of the 4 ranks
    flat = metrics.recall_at_k(np.full((1, 4), 0.5), relevant, ks=(1, 2, 4))
    assert flat == pytest.approx({"R@1": 25.0, "R@2": 50.0, "R@4": 100.0})
    # one item strictly better, the relevant one tied with two others: ranks 2, 3, 4 equally likely
    partial = metrics.recall_at_k(np.array([[0.9, 0.5, 0.5, 0.5]]), relevant, ks=(1, 2, 3, 4))
    assert partial == pytest.approx({"R@1": 0.0, "R@2": 100 / 3, "R@3": 200 / 3, "R@4": 100.0})
    # two relevant among 4 tied: P(best within 2) = 1 - C(2,2)/C(4,2) = 5/6
    two = metrics.recall_at_k(np.full((1, 4), 0.5), np.array([[1, 0, 1, 0]], bool), ks=(1, 2))
    assert two == pytest.approx({"R@1": 50.0, "R@2": 500 / 6})


def test_recall_at_k_without_ties_matches_argsort_ranks():
    rng = np.random.default_rng(0)
    sim = rng.standard_normal((30, 40))
    relevant = rng.random((30, 40)) < 0.08
    relevant[np.arange(30), rng.integers(0, 40, 30)] = True
    order = np.argsort(-sim, axis=1)
    best_rank = np.array([np.flatnonzero(relevant[q, order[q]])[0] + 1 for q in range(30)])
    out = metrics.recall_at_k(sim, relevant, ks=(1, 5, 10))
    for k in (1, 5, 10):
        assert out[f"R@{k}"] == pytest.approx((best_rank <= k).mean() * 100)


def test_recall_at_k_rejects_a_query_without_relevant_items():
    with pytest.raises(ValueError, match="relevant"):
        metrics.recall_at_k(np.zeros((1, 3)), np.zeros((1, 3), bool))


def test_directions_parse_groups_and_lists():
    allowed = ("V->A", "A->V", "V->V", "A->A")
    assert [d.label for d in parse_directions("all", allowed, "t")] == list(allowed)
    assert [d.label for d in parse_directions("cross", allowed, "t")] == ["V->A", "A->V"]
    assert [(d.source, d.target) for d in parse_directions("A->A;V->A", allowed, "t")] == [
        ("audio", "audio"), ("video", "audio")]
    with pytest.raises(UserError, match="directions"):
        parse_directions("V->T", allowed, "t")


def test_mean_pooling_leaves_padding_frames_out():
    x = np.array([[[2.0], [4.0], [0.0]], [[0.0], [0.0], [0.0]]], np.float32)
    valid = np.array([[True, True, False], [False, False, False]])   # clip 2 is all padding: mean of all
    assert masked_mean(Encoded(x, valid)) == pytest.approx(np.array([[3.0], [0.0]]))


# --------------------------------------------------------------------------- detection floors (issue 14)
def _detection_labels(seed=0, n=400, t=10, c=8, rate=0.03):
    rng = np.random.default_rng(seed)
    events = (rng.random((n, t, c)) < rate).astype(np.int64)
    background = (events.max(-1, keepdims=True) == 0).astype(np.int64)
    return np.concatenate([events, background], -1), rng


def test_all_positive_predictor_scores_the_floor_f1():
    y, _ = _detection_labels()
    floors = metrics.detection_floors(y)
    p = y[..., :-1].mean()
    assert floors["floor_f1"] == pytest.approx(200 * p / (1 + p))
    assert metrics.segment_prf(y, np.ones_like(y))["f1"] == pytest.approx(floors["floor_f1"])
    assert floors["positive_rate"] == pytest.approx(100 * p)


def test_all_negative_predictor_scores_zero_and_perfect_scores_100():
    y, _ = _detection_labels()
    assert metrics.segment_prf(y, np.zeros_like(y))["f1"] == 0.0
    assert metrics.segment_prf(y, y)["f1"] == pytest.approx(100.0)
    assert metrics.mean_average_precision(y, y.astype(float)) == pytest.approx(100.0)
    threshold, f1 = metrics.best_f1(y, y + 0.1)
    assert f1 == pytest.approx(100.0) and 0.1 < threshold < 1.1


def test_random_predictor_scores_about_the_floors():
    y, rng = _detection_labels(n=4000)
    floors = metrics.detection_floors(y)
    coin = (rng.random(y.shape) < 0.5).astype(np.int64)
    # a fair coin: precision = p, recall = 1/2 -> F1 = 2p / (1 + 2p), just under the all-positive floor
    p = y[..., :-1].mean()
    assert metrics.segment_prf(y, coin)["f1"] == pytest.approx(200 * p / (1 + 2 * p), rel=0.1)
    assert metrics.mean_average_precision(y, rng.random(y.shape)) == pytest.approx(floors["chance_mAP"], rel=0.15)


def test_best_f1_threshold_by_hand():
    # scores 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg): cuts give F1 2/3, 1/2, 4/5, 2/3 -> cut after 0.7
    y = np.array([[[1, 0], [0, 1], [1, 0], [0, 1]]])       # one event column + background
    s = np.array([[[0.9, 0], [0.8, 0], [0.7, 0], [0.1, 0]]])
    threshold, f1 = metrics.best_f1(y, s)
    assert f1 == pytest.approx(80.0)
    assert threshold == pytest.approx(0.4)
    assert metrics.segment_prf(y, s > threshold)["f1"] == pytest.approx(80.0)


def test_best_f1_without_positives_predicts_nothing():
    y = np.zeros((2, 3, 3), dtype=np.int64)
    assert metrics.best_f1(y, np.ones((2, 3, 3))) == (float("inf"), 0.0)


def test_best_f1_with_tied_scores_is_the_best_threshold_found_by_brute_force():
    # scores on a coarse grid (many ties): the unstable sort may order a tie either way, yet every cut sits between
    # distinct scores, so the best F1 and its threshold are those of trying every threshold
    rng = np.random.default_rng(3)
    for _ in range(20):
        y = (rng.random((30, 10, 6)) < 0.15).astype(np.int64)
        s = np.round(rng.random(y.shape) + 0.5 * y, 1)
        threshold, f1 = metrics.best_f1(y, s)
        values = np.unique(s[..., :-1])
        cuts = np.r_[(values[1:] + values[:-1]) / 2, values[0] - 1.0]
        brute = max(metrics.segment_prf(y, s > c)["f1"] for c in cuts)
        assert f1 == pytest.approx(brute)
        assert metrics.segment_prf(y, s > threshold)["f1"] == pytest.approx(brute)


def test_best_f1_never_predicts_a_nan_score():
    # a NaN logit is never `> threshold`; the F1 best_f1 reports is the F1 its threshold gets on those scores
    rng = np.random.default_rng(5)
    y = (rng.random((20, 6, 4)) < 0.2).astype(np.int64)
    s = rng.random(y.shape) + 0.5 * y
    s[tuple(np.argwhere(y[..., :-1] == 1)[:3].T)] = np.nan     # three positive seconds
    s[0, 0, :] = np.nan
    threshold, f1 = metrics.best_f1(y, s)
    values = np.unique(s[..., :-1][~np.isnan(s[..., :-1])])
    brute = max(metrics.segment_prf(y, s > c)["f1"] for c in np.r_[(values[1:] + values[:-1]) / 2, values[0] - 1])
    assert f1 == pytest.approx(brute)
    assert metrics.segment_prf(y, s > threshold)["f1"] == pytest.approx(f1)
