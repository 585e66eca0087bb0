"""LinearVQ: one linear map per modality onto a shared EMA-VQ codebook, pulled together by a cross-modal MSE.

A minimal codebook method on unibench's contract: `build_model` returns a module with `modalities`,
`general(modality, x)`, a `quantizer` and `losses(batch, step)`; the shared loop in `methods.base` trains,
saves, diagnoses and encodes it. Its card includes the `_codebook` base, so presets, precision and the
codebook options come with it.
"""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import nn

from methods.base import CodebookMethod, canonical_modalities
from methods.quantizers import build_quantizer


class LinearVQModel(nn.Module):
    def __init__(self, shapes, s):
        super().__init__()
        self.modalities = canonical_modalities(shapes)
        self.proj = nn.ModuleDict({m: nn.Linear(math.prod(shapes[m][1:]), s["code_dim"]) for m in self.modalities})
        self.quantizer = build_quantizer("vq", self.modalities, codebook_size=s["codebook_size"],
                                         code_dim=s["code_dim"], decay=s["decay"], beta=s["beta"], self_weight=1.0,
                                         dead_after=s["dead_after"], cross_commitment=False)
        self.w_align = s["w_align"]

    def general(self, modality, x):
        """Per-second features `[N, T, ...]` -> `[N, T, D]`."""
        return self.proj[modality](x.flatten(2))

    def losses(self, batch, step=None):
        z = {m: self.general(m, batch[m]) for m in self.modalities}
        out = self.quantizer(z, step.generator if step is not None else None)
        first, *rest = self.modalities
        return {**out.losses, "align": self.w_align * sum(F.mse_loss(z[m], z[first]) for m in rest)}


class LinearVQ(CodebookMethod):
    def build_model(self, shapes, settings):
        return LinearVQModel(shapes, settings)
