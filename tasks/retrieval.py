"""Zero-shot cross-modal retrieval on frozen codes (FCCID Table 2, SRCID Table III).

No head is trained: each item is its representation mean-pooled over time (padding frames, i.e. all-zero raw
features such as padded text tokens, left out), compared by cosine similarity. Pairs and files:
V<->T `retrieval_vt.h5` (`pairs/video_text`), A<->T `retrieval_at.h5` (`pairs/audio_text`, 5 captions per
audio: an audio query hits when its best-ranked caption is within k), A<->V `retrieval_av.h5`
(`pairs/audio_video`). The gallery is every item of the target modality in the file.

Per direction: R@1, R@5, R@10 % and `mean_r` (their mean). Per pair requested in both directions, a row
`V<->T` / `A<->T` / `A<->V` with each metric averaged over the two directions; its `mean_r` is the papers'
"mean of R@1/5/10 over both directions", and the mean of `mean_r` over all rows is the papers' "Avg".
"""
from __future__ import annotations

import numpy as np

from benchmark.contracts import Task, UserError

from . import metrics
from .common import SHORT, FeatureCache, direction_modalities, masked_mean, parse_directions

DIRECTIONS = ("V->T", "T->V", "A->T", "T->A", "A->V", "V->A")
FILES = {frozenset(("video", "text")): "retrieval_vt", frozenset(("audio", "text")): "retrieval_at",
         frozenset(("audio", "video")): "retrieval_av"}
PAIR_ORDER = {"retrieval_vt": ("video", "text"), "retrieval_at": ("audio", "text"), "retrieval_av": ("audio", "video")}
KS = (1, 5, 10)


def read_pairs(ff, file: str, a: str, b: str) -> np.ndarray:
    """`[P, 2]` (index into a, index into b) from `pairs/a_b` (or `pairs/b_a`, columns swapped)."""
    for name, flip in ((f"{a}_{b}", False), (f"{b}_{a}", True)):
        try:
            pairs = np.asarray(ff.pairs(name), dtype=np.int64)
        except (KeyError, UserError):
            continue
        return pairs[:, ::-1] if flip else pairs
    raise UserError(f"{file}.h5 has neither pairs/{a}_{b} nor pairs/{b}_{a}")


def normalized(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Retrieval(Task):
    main_metric = "mean_r"
    higher_is_better = {"R@1": True, "R@5": True, "R@10": True, "mean_r": True}

    def validate(self, cfg):
        parse_directions(cfg["directions"], DIRECTIONS, self.name)

    def modalities(self, cfg):
        return direction_modalities(cfg["directions"], DIRECTIONS, self.name)

    def evaluate(self, pretrained, world, cfg, seed, ctx):
        directions = parse_directions(cfg["directions"], DIRECTIONS, self.name)
        cache = FeatureCache(pretrained, ctx)
        out: dict[str, dict[str, float]] = {}
        done: dict[str, list[str]] = {}
        for d in directions:
            file = FILES[frozenset((d.source, d.target))]
            ff = world.open(file)
            a, b = PAIR_ORDER[file]
            pairs = read_pairs(ff, file, a, b)
            relevant = np.zeros((ff.n(a), ff.n(b)), dtype=bool)
            relevant[pairs[:, 0], pairs[:, 1]] = True
            if d.source == b:
                relevant = relevant.T
            queries = np.flatnonzero(relevant.any(1))   # items that take part in at least one pair
            q = normalized(masked_mean(cache.get(ff, file, d.source, "all")))[queries]
            g = normalized(masked_mean(cache.get(ff, file, d.target, "all")))
            above, tied, tied_relevant = metrics.best_rank(q @ g.T, relevant[queries])
            scores = metrics.recall_from_ranks(above, tied, tied_relevant, KS)
            scores["mean_r"] = float(np.mean([scores[f"R@{k}"] for k in KS]))
            out[d.label] = scores
            # per query (item index in the file): its best relevant item's rank, ties broken in its favour, and the
            # irrelevant / relevant items tied with it (recall counts a tie by its expected value)
            ctx.record(d.label, {"queries": len(queries), "gallery": g.shape[0]}, query=queries, rank=above + 1,
                       tied=tied, tied_relevant=tied_relevant)
            done.setdefault(f"{SHORT[a]}<->{SHORT[b]}", []).append(d.label)
        for pair, labels in done.items():
            if len(labels) == 2:
                out[pair] = {m: float(np.mean([out[x][m] for x in labels])) for m in out[labels[0]]}
                ctx.record(pair, {"queries": sum(ctx.test_sizes[x]["queries"] for x in labels)})
        return out
