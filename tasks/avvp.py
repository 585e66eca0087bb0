"""AVVP cross-modal event localisation (FCCID Table 1 "AVVP" columns; SRCID Table I).

A per-second multi-label head (BCE over the C event classes + background) is trained on one modality's frozen
codes with that modality's labels (`labels/audio` for audio, `labels/video` for video: an event may be audible
but not visible) and tested on another modality with *its* labels.

Metric (`protocol=clean`): segment-level F1 %, i.e. per-second, per-class binary decisions, background column
excluded, micro-averaged over all (clip, second, class) decisions of the test split, at the threshold that
maximises the source's *val* F1; the head is trained with a per-class positive weight and selected on that tuned
val F1. Only ~2 % of (second, class) pairs are positive, so an unweighted head at sigmoid > 0.5 learns to say
"nothing" and the val-F1 selection then keeps the untrained epoch (measured on v1: every method scored the
all-positive floor). `precision`, `recall`, the threshold-free `mAP`, and the floors of the target labels
(`floor_f1` = all-positive F1, `chance_mAP`) are reported alongside.
`protocol=reference` reports the released scripts' batch-averaged P/R over all columns *including the
background*, F1 from the averaged P and R, at the epoch of best test precision (`metrics.reference_prf`).
The released scripts add an ExpLogLoss term (26 learnable weights) to the BCE; both protocols here train
with BCE alone, so `reference` isolates the evaluation choices.
"""
from __future__ import annotations

from .common import FeatureCache
from .heads import HeadTask, Labeled, event_detection


class AVVP(HeadTask):
    main_metric = "f1"
    higher_is_better = {"f1": True, "precision": True, "recall": True, "mAP": True}
    reference_select = "precision"   # avvp.sh keeps the epoch of best precision ("accuracy" in the paper)

    def evaluate(self, pretrained, world, cfg, seed, ctx):
        ff = world.open("avvp")
        cache = FeatureCache(pretrained, ctx)
        labels = {m: ff.labels(m) for m in ("audio", "video")}
        problem = event_detection(labels["audio"].shape[-1], cfg["protocol"], cfg["batch_size"],
                                  self.reference_select, cfg["pos_weight"] == "balanced", cfg["threshold"])

        def labeled(modality, split):
            return Labeled(cache.get(ff, "avvp", modality, split).x, labels[modality][ff.split(split)])

        return self.transfer_all(cfg, seed, ctx, problem, labeled, lambda modality: labeled(modality, "test"))
