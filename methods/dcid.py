"""DCID (Xia et al., NeurIPS 2023): a shared discrete code for paired audio / video / text, obtained by
disentangling each modality into a modal-general part Φ^m (quantized with one shared codebook) and a modal-specific
part Ψ^m, with
    L = Σ_m [ MSE(x^m, D^m(q^m, Ψ^m)) + commit^m + CLUB(q^m; Ψ^m) ] + cross-CPC(Φ) + CMCM(Φ)      (all weights 1)
CLUB (vCLUB, seed-000 paper Eq. 20) pushes the general/specific MI down, cross-modal CPC (Eq. 21 there) pushes
the MI between modalities' general features up, CMCM aligns their soft code assignments, and the multi-modal EMA
(DCID Eq. 7) / cross commitment (self 2β, cross β/2) tie the modalities to the same codes. Quantizer variants (SRCID Table I): vq (default), rvq, fsq.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.contracts import UserError

from .alignment import cmcm_applies, code_distributions, code_matching_loss
from .base import CodebookMethod, canonical_modalities
from .encoders import BranchedModel, ModalityBranch
from .mutual_info import CLUB, CrossCPC
from .quantizers import quantizer_from_settings
from .trainer import Step


class DCIDModel(BranchedModel):
    """Φ/Ψ branches per modality, one shared quantizer, a CLUB per modality, cross-modal CPC and CMCM."""

    def __init__(self, shapes: Mapping[str, tuple], s: Mapping[str, Any]):
        super().__init__()
        self.modalities = canonical_modalities(shapes)
        self.branches = nn.ModuleDict({
            m: ModalityBranch(m, shapes[m], s, text_front=(m == "text" and s.get("text_lstm", True)))
            for m in self.modalities})
        self.quantizer = quantizer_from_settings(self.modalities, s, mm_ema=s["mm_ema"], cross_commitment=True)
        d = int(s["code_dim"])
        self.clubs = nn.ModuleDict({m: CLUB(d, self.branches[m].club_dim, int(s["club_hidden"]))
                                    for m in self.modalities}) if s["club"] else None
        self.cpc = CrossCPC(self.modalities, d, int(s["cpc_hidden"]), int(s["cpc_layers"]),
                            int(s["cpc_horizon"])) if s["cpc"] else None
        self.use_cmcm = cmcm_applies(s)     # off for the released RVQ


    def estimators(self) -> dict[str, nn.Module]:
        return dict(self.clubs) if self.clubs is not None else {}

    def clip_groups(self) -> list[list[nn.Parameter]]:
        """Clipped separately, as the release clips each module: encoders (+ quantizer), decoders, text front-end,
        CPC."""
        enc, dec, front = [], [], []
        for b in self.branches.values():
            for name, p in b.named_parameters():
                (dec if name.startswith("decoder_net") else front if name.startswith("front") else enc).append(p)
        enc += list(self.quantizer.parameters())
        cpc = list(self.cpc.parameters()) if self.cpc is not None else []
        return [g for g in (enc, dec, front, cpc) if g]

    def losses(self, batch: Mapping[str, Tensor], step: Step | None = None) -> dict[str, Tensor]:
        generator = step.generator if step is not None else None
        feats, z = self.inputs_and_general(batch)
        out = self.quantizer(z, generator)
        losses: dict[str, Tensor] = {}
        specific = {m: self.branches[m].specific(feats[m]) for m in self.modalities}   # (side, CLUB y)
        for m in self.modalities:
            losses[f"recon_{m}"] = F.mse_loss(self.branches[m].decode(out.quantized[m], specific[m][0]), feats[m])
        if self.clubs is not None:
            pairs = {m: (out.quantized[m], specific[m][1]) for m in self.modalities}
            if step is not None:
                step.fit_estimators(pairs)
            for m, (x, y) in pairs.items():
                losses[f"club_{m}"] = self.clubs[m].mi_upper_bound(x, y, generator)
        losses.update(out.losses)
        if self.cpc is not None:
            losses["cpc"] = self.cpc(z, generator)
        if self.use_cmcm:
            losses["cmcm"] = code_matching_loss(code_distributions(self.quantizer, z))
        return losses


class DCID(CodebookMethod):
    def check_shapes(self, shapes, settings) -> None:
        steps = next(iter(shapes.values()))[0]
        if settings["cpc"] and steps < settings["cpc_horizon"] + 2:
            raise UserError(f"dcid: cross-modal CPC with cpc_horizon={settings['cpc_horizon']} needs clips of at "
                            f"least {settings['cpc_horizon'] + 2} steps, the corpus has T={steps} (or set cpc=false)")

    def build_model(self, shapes, settings) -> DCIDModel:
        return DCIDModel(shapes, settings)
