"""AVE cross-modal event classification (DCID Table 1 / FCCID Table 1 "AVE" columns).

A clip head (per-second linear, max over T, linear) is trained on one modality's frozen codes of the AVE train
split and tested on another modality's clips: the event class is `labels/clip`; metric: accuracy %.
Under `protocol=reference` the targets are the *train* clips of the target modality, as in the released
`ave.py`, whose `validate_epoch` receives the training loader.
"""
from __future__ import annotations

from .common import FeatureCache
from .heads import HeadTask, Labeled, classification


class AVE(HeadTask):
    main_metric = "acc"
    higher_is_better = {"acc": True}

    def evaluate(self, pretrained, world, cfg, seed, ctx):
        ff = world.open("ave")
        labels = ff.labels("clip")
        cache = FeatureCache(pretrained, ctx)
        report_split = "train" if cfg["protocol"] == "reference" else "test"

        def labeled(modality, split):
            y = labels[ff.split(split)]
            keep = y >= 0   # -1 = a clip without an event: no class to predict
            return Labeled(cache.get(ff, "ave", modality, split).x[keep], y[keep])

        return self.transfer_all(cfg, seed, ctx, classification(len(ff.classes)), labeled,
                                 lambda modality: labeled(modality, report_split))
