"""AVE -> AVVP: train on AVE, localise events in AVVP (FCCID Table 1 "AVE->AVVP" columns).

The classes the two files share *by name* (12 in the real data; `classes` attrs of `ave.h5` and `avvp.h5`) are
the label space. The per-second head (as in `avvp`) is trained on the AVE clips of those classes (source
modality, train split; selection on their val split) with `labels/all` restricted to the shared columns, and
tested on the AVVP test clips with at least one shared-class event in either modality, with the target
modality's labels restricted the same way; a second with no shared event is background. Metric: segment-level
micro F1 % (background excluded) at the source-val threshold, with mAP and floors, trained and selected as in
`avvp` (positive weight, selection on the tuned val F1); `protocol=reference`: the released metric at the epoch of best test F1.
"""
from __future__ import annotations

import numpy as np

from benchmark.contracts import UserError

from .common import FeatureCache
from .heads import HeadTask, Labeled, event_detection


def restrict(frames: np.ndarray, columns: list[int]) -> np.ndarray:
    """`[N, T, C+1]` per-second labels -> `[N, T, S+1]` over the given event columns, background recomputed."""
    events = frames[..., columns]
    background = (events.max(-1, keepdims=True) == 0).astype(events.dtype)
    return np.concatenate([events, background], axis=-1)


class AVEtoAVVP(HeadTask):
    main_metric = "f1"
    higher_is_better = {"f1": True, "precision": True, "recall": True, "mAP": True}
    reference_select = "f1"   # ave_avvp.sh keeps the epoch of best F1

    def evaluate(self, pretrained, world, cfg, seed, ctx):
        ave, avvp = world.open("ave"), world.open("avvp")
        shared = [c for c in ave.classes if c in set(avvp.classes)]
        if not shared:
            raise UserError("ave_avvp: ave.h5 and avvp.h5 share no class name (attrs 'classes')")
        ctx.notes["ave_avvp_classes"] = len(shared)
        ave_frames = restrict(ave.labels("all"), [ave.classes.index(c) for c in shared])
        ave_keep = np.isin(ave.labels("clip"), [ave.classes.index(c) for c in shared])
        avvp_frames = {m: restrict(avvp.labels(m), [avvp.classes.index(c) for c in shared])
                       for m in ("audio", "video")}
        test = avvp.split("test")
        test_keep = (avvp_frames["audio"][test, :, :-1].any((1, 2)) | avvp_frames["video"][test, :, :-1].any((1, 2)))
        cache = FeatureCache(pretrained, ctx)
        problem = event_detection(len(shared) + 1, cfg["protocol"], cfg["batch_size"], self.reference_select,
                                  cfg["pos_weight"] == "balanced", cfg["threshold"])

        def source(modality, split):
            idx = ave.split(split)
            keep = ave_keep[idx]
            return Labeled(cache.get(ave, "ave", modality, split).x[keep], ave_frames[idx][keep])

        def target(modality):
            return Labeled(cache.get(avvp, "avvp", modality, "test").x[test_keep],
                           avvp_frames[modality][test][test_keep])

        return self.transfer_all(cfg, seed, ctx, problem, source, target)
