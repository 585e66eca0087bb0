"""UCF(video) <-> VGGSound(audio) cross-dataset, cross-modal classification (FCCID Table 1 last columns).

Video clips come from `ucf.h5`, audio clips from `vgg.h5`; the label space is the classes the two files share
*by name* (16 in the real data), clips of other classes are dropped. `V->A`: a clip head (as in `ave`) trained
on UCF video (train split, selected on its val split) classifies VGG audio test clips; `A->V` the reverse;
`V->V` / `A->A` stay within one file. Metric: accuracy %. `protocol=reference`: best test accuracy over
epochs, as `ucf_vggsound.sh` logs it.
"""
from __future__ import annotations

import numpy as np

from benchmark.contracts import UserError

from .common import FeatureCache
from .heads import HeadTask, Labeled, classification
FILES = {"video": "ucf", "audio": "vgg"}


def shared_labels(clip: np.ndarray, classes: list[str], shared: list[str]) -> np.ndarray:
    """`[N]` file class indices -> indices into `shared`, -1 for a class outside it (or a clip without one)."""
    lookup = np.array([shared.index(c) if c in shared else -1 for c in classes] + [-1])
    return lookup[np.where(clip >= 0, clip, len(classes))]


class UCFtoVGG(HeadTask):
    main_metric = "acc"
    higher_is_better = {"acc": True}

    def evaluate(self, pretrained, world, cfg, seed, ctx):
        files = {m: world.open(name) for m, name in FILES.items()}
        shared = [c for c in files["video"].classes if c in set(files["audio"].classes)]
        if not shared:
            raise UserError("ucf_vgg: ucf.h5 and vgg.h5 share no class name (attrs 'classes')")
        ctx.notes["ucf_vgg_classes"] = len(shared)
        mapped = {m: shared_labels(ff.labels("clip"), ff.classes, shared) for m, ff in files.items()}
        cache = FeatureCache(pretrained, ctx)
        problem = classification(len(shared))

        def labeled(modality, split):
            ff = files[modality]
            y = mapped[modality][ff.split(split)]
            keep = y >= 0
            return Labeled(cache.get(ff, FILES[modality], modality, split).x[keep], y[keep])

        return self.transfer_all(cfg, seed, ctx, problem, labeled, lambda modality: labeled(modality, "test"))
