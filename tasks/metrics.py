"""Downstream metrics, pure functions on numpy arrays; every value is returned in percent (0-100).

Library implementations (scikit-learn) wherever one exists; written here is only what no library offers:
the released scripts' batch-averaged precision/recall (`reference_prf`, plain counts: it runs every epoch on
every target under `protocol=reference`) and tie-aware recall@k with several relevant items per query.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Clip accuracy %, `y_true`, `y_pred` int `[N]` (numpy, not sklearn's `accuracy_score`: the same mean of
    matches, without a 2-3 s import in every process that trains a classification head)."""
    y_true, y_pred = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"accuracy: {y_true.size} labels against {y_pred.size} predictions")
    return float(np.mean(y_true == y_pred) * 100.0) if y_true.size else float("nan")


def segment_prf(y_true: np.ndarray, y_pred: np.ndarray, exclude_background: bool = True) -> dict[str, float]:
    """Segment-level (per-second) micro precision / recall / F1 % over every (clip, second, class) decision.

    `y_true`, `y_pred`: {0,1} `[N, T, C+1]` with the background column last. With `exclude_background` the
    background column is dropped first, so a method is not rewarded for predicting "nothing happens" (the
    released scripts keep it; see `reference_prf`). Micro averaging pools all decisions, so frequent classes
    weigh more, as in the AVVP segment-level F-score that counts true/false positives per second.
    """
    # counted directly: scikit-learn reads a one-column label matrix (C = 1) as multiclass and its "micro"
    # average then returns accuracy, not the F1 of the positive decisions
    t = _event_columns(y_true, exclude_background).astype(bool)
    q = _event_columns(y_pred, exclude_background).astype(bool)
    tp = float(np.count_nonzero(t & q))
    fp, fn = float(np.count_nonzero(~t & q)), float(np.count_nonzero(t & ~q))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"precision": float(p * 100.0), "recall": float(r * 100.0), "f1": float(f * 100.0)}


def _event_columns(y: np.ndarray, exclude_background: bool) -> np.ndarray:
    """`[N, T, C(+1)]` -> `[N*T, C]` (background column dropped)."""
    y = np.asarray(y)
    if exclude_background:
        y = y[..., :-1]
    return y.reshape(-1, y.shape[-1])


def mean_average_precision(y_true: np.ndarray, scores: np.ndarray, exclude_background: bool = True) -> float:
    """Threshold-free detection quality: mean over event classes (with at least one positive second) of the
    per-class average precision % of the per-second scores. Chance level = the mean positive rate of those
    classes (`detection_floors`)."""
    t, s = _event_columns(y_true, exclude_background), _event_columns(scores, exclude_background)
    present = t.sum(0) > 0
    if not present.any():
        return float("nan")
    from sklearn.metrics import average_precision_score
    return float(average_precision_score(t[:, present], s[:, present], average="macro") * 100.0)


def detection_floors(y_true: np.ndarray, exclude_background: bool = True) -> dict[str, float]:
    """What an uninformative predictor scores on these labels, in %: `floor_f1` = micro F1 of predicting every
    (second, class) positive = 2p / (1 + p) for the positive rate p; `chance_mAP` = the mAP of scores independent
    of the labels (per class AP = its positive rate), over the classes `mean_average_precision` counts."""
    t = _event_columns(y_true, exclude_background).astype(np.float64)
    p = float(t.mean()) if t.size else 0.0
    rates = t.mean(0)[t.sum(0) > 0]
    return {"floor_f1": 200.0 * p / (1.0 + p) if p > 0 else 0.0, "positive_rate": 100.0 * p,
            "chance_mAP": float(rates.mean() * 100.0) if rates.size else float("nan")}


def best_f1(y_true: np.ndarray, scores: np.ndarray, exclude_background: bool = True) -> tuple[float, float]:
    """(threshold, micro F1 %) at the best single threshold on `scores`, halfway between the cut's score and the
    next distinct score below it. It runs after every epoch of a detection head, so it needs no argsort: a cut that
    adds only negatives lowers F1, so the best cut lies just below some positive's score u, where
    F1 = 2 TP(>= u) / (#scores >= u + P); both counts are read off value-sorted scores (a value sort is several
    times cheaper than an argsort). Ties in F1 go to the highest threshold; a NaN score is never predicted (as
    `scores > threshold` treats it)."""
    t = _event_columns(y_true, exclude_background).reshape(-1).astype(bool)
    s = _event_columns(scores, exclude_background).reshape(-1)
    n_pos = int(np.count_nonzero(t))
    if n_pos == 0 or s.size == 0:
        return float("inf"), 0.0                # nothing to find: predict nothing
    finite = ~np.isnan(s)
    ranked = np.sort(s[finite])                 # every score, ascending
    positives = np.sort(s[t & finite])
    if positives.size == 0:
        return float("inf"), 0.0
    cuts = np.unique(positives)[::-1]           # distinct positive scores, highest first
    above = np.searchsorted(ranked, cuts, side="left")          # scores below each cut
    tp = positives.size - np.searchsorted(positives, cuts, side="left")
    f1 = 2 * tp / (ranked.size - above + n_pos)
    i = int(np.argmax(f1))                      # the first maximum: the highest threshold
    score = float(cuts[i])
    below = float(ranked[above[i] - 1]) if above[i] > 0 else score - 1.0
    return (score + below) / 2, float(f1[i] * 100.0)


def reference_prf(y_true: np.ndarray, y_pred: np.ndarray, batch_size: int) -> dict[str, float]:
    """The released AVVP / AVE->AVVP scripts' metric, kept to show what it reports (`protocol=reference`).

    Per test batch of `batch_size` clips (in file order), over all `B x T x (C+1)` entries *including the
    background column*: precision = TP / #predicted, recall = TP / #positive, both 0 for a batch without a single
    predicted entry. P and R are averaged over batches weighted by clip count; F1 = 2PR / (P + R) of the
    averages (not the mean of per-batch F1s).
    """
    ps, rs, weights = [], [], []
    for start in range(0, len(y_true), batch_size):
        t = np.asarray(y_true[start:start + batch_size], dtype=bool)
        p = np.asarray(y_pred[start:start + batch_size], dtype=bool)
        tp, predicted = float((t & p).sum()), float(p.sum())
        ps.append(tp / predicted if predicted else 0.0)
        rs.append(tp / max(float(t.sum()), 1.0) if predicted else 0.0)
        weights.append(len(t))
    precision, recall = float(np.average(ps, weights=weights)), float(np.average(rs, weights=weights))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision * 100.0, "recall": recall * 100.0, "f1": f1 * 100.0}


def recall_at_k(similarity: np.ndarray, relevant: np.ndarray, ks: Iterable[int] = (1, 5, 10),
                tol: float = 1e-6) -> dict[str, float]:
    """Recall@k % for retrieval: the share of queries whose best-ranked relevant item is within the top k.

    `similarity` `[Q, G]` (query x gallery), `relevant` bool `[Q, G]` (several relevant items allowed, e.g. the
    5 captions of one audio: the best rank among them counts). Ties are scored by their *expected* value
    under a random order of tied items, so a collapsed representation (all codes equal) scores chance
    (k / G), not 100 %: with g irrelevant items strictly better than the best relevant similarity s*, e
    irrelevant and m relevant items tied at s*, and j = k - g,
        P(hit within k) = 1 - C(e, j) / C(e + m, j) = 1 - prod_{i<j} (e - i) / (e + m - i).
    """
    return recall_from_ranks(*best_rank(similarity, relevant, tol), ks)


def best_rank(similarity: np.ndarray, relevant: np.ndarray, tol: float = 1e-6) -> tuple[np.ndarray, ...]:
    """Per query (see `recall_at_k`): (g, e, m) = irrelevant items strictly above the best relevant similarity,
    irrelevant items tied with it, relevant items tied with it; g + 1 is its rank with ties broken in its favour."""
    similarity = np.asarray(similarity, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if not relevant.any(axis=1).all():
        raise ValueError("recall_at_k: every query needs at least one relevant gallery item")
    best = np.where(relevant, similarity, -np.inf).max(axis=1, keepdims=True)        # s* [Q, 1]
    above = (similarity > best + tol) & ~relevant
    tied = np.abs(similarity - best) <= tol
    return above.sum(axis=1), (tied & ~relevant).sum(axis=1), (tied & relevant).sum(axis=1)


def recall_from_ranks(g: np.ndarray, e: np.ndarray, m: np.ndarray, ks: Iterable[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@k % from the per-query `best_rank` counts (the tie-aware expectation of `recall_at_k`)."""
    g, e, m = (np.asarray(a, dtype=np.int64) for a in (g, e, m))
    out = {}
    for k in ks:
        j = k - g
        miss = np.ones(len(g))           # P(no relevant among the first j tied slots)
        for i in range(int(max(j.max(), 0))):
            factor = np.where(i < e, (e - i) / np.maximum(e + m - i, 1), 0.0)
            miss = np.where(i < j, miss * factor, miss)
        hit = np.where(j <= 0, 0.0, 1.0 - miss)
        out[f"R@{k}"] = float(hit.mean() * 100.0)
    return out
