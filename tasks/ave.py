"""AVE cross-modal event classification (DCID Table 1 / FCCID Table 1 "AVE" columns).

A clip head (per-second linear, max over T, linear) is trained on one modality's frozen codes of the AVE train
split and tested on another modality's clips: the event class is `labels/clip`; metric: accuracy %.
Under `protocol=reference` the targets are the *train* clips of the target modality, as in the released
`ave.py`, whose `validate_epoch` receives the training loader.
"""
from __future__ import annotations

from benchmark.contracts import Task

from .common import FeatureCache, parse_directions, sources
from .heads import Labeled, check_head_options, classification, transfer

DIRECTIONS = ("V->A", "A->V", "V->V", "A->A")


class AVE(Task):
    datasets = ("ave",)
    main_metric = "acc"
    higher_is_better = {"acc": True}

    def validate(self, cfg):
        check_head_options(cfg, self.name or "ave")
        parse_directions(cfg["directions"], DIRECTIONS, self.name or "ave")

    def evaluate(self, pretrained, world, cfg, seed, ctx):
        ff = world.open("ave")
        labels = ff.labels("clip")
        cache = FeatureCache(pretrained, ctx)
        problem = classification(len(ff.classes))
        report_split = "train" if cfg["protocol"] == "reference" else "test"

        def labeled(modality, split):
            y = labels[ff.split(split)]
            keep = y >= 0   # -1 = a clip without an event: no class to predict
            return Labeled(cache.get(ff, "ave", modality, split).x[keep], y[keep])

        directions = parse_directions(cfg["directions"], DIRECTIONS, "ave")
        out = {}
        for src, group in sources(directions).items():
            val = labeled(src, "val") if cfg["protocol"] == "clean" else None
            targets = {d.label: labeled(d.target, report_split) for d in group}
            out.update(transfer(labeled(src, "train"), val, targets, problem, cfg, seed, ctx, name=f"ave/{src}"))
        return {d.label: out[d.label] for d in directions}
