"""CMCM (Liu et al. 2021a, "Cross-Modal Discrete Representation Learning") in the DCID framework: one EMA codebook
shared by the modalities, Cross-Modal Code Matching on soft code assignments, commitment, and (by default) a
decoder that rebuilds each modality from its code alone — no modal-specific branch, no CLUB, no CPC:
    L = Σ_m [ MSE(x^m, D^m(q^m)) + β·MSE(z^m, sg q^m) ] + 0.5·Σ_pairs L_cmcm
The codebook uses the plain per-modality EMA and commitment unless `mm_ema` / `cross_commitment` turn DCID's
multi-modal versions on (an ablation, not Liu et al.'s method).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from .alignment import code_distributions, code_matching_loss
from .base import CodebookMethod, canonical_modalities
from .encoders import BranchedModel, ModalityBranch
from .quantizers import quantizer_from_settings
from .trainer import Step


class CMCMModel(BranchedModel):
    def __init__(self, shapes: Mapping[str, tuple], s: Mapping[str, Any]):
        super().__init__()
        self.modalities = canonical_modalities(shapes)
        self.recon = bool(s["recon"])
        self.branches = nn.ModuleDict({
            m: ModalityBranch(m, shapes[m], s, text_front=(m == "text" and s.get("text_lstm", True)),
                              specific=False, decoder=self.recon, decoder_side=False)
            for m in self.modalities})
        self.quantizer = quantizer_from_settings(self.modalities, s, mm_ema=s["mm_ema"],
                                                 cross_commitment=s["cross_commitment"])


    def losses(self, batch: Mapping[str, Tensor], step: Step | None = None) -> dict[str, Tensor]:
        feats, z = self.inputs_and_general(batch)
        out = self.quantizer(z, step.generator if step is not None else None)
        losses = dict(out.losses)
        if self.recon:
            for m in self.modalities:
                losses[f"recon_{m}"] = F.mse_loss(self.branches[m].decode(out.quantized[m], None), feats[m])
        losses["cmcm"] = code_matching_loss(code_distributions(self.quantizer, z))
        return losses


class CMCM(CodebookMethod):
    def build_model(self, shapes, settings) -> CMCMModel:
        return CMCMModel(shapes, settings)
