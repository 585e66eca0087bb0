"""SRCID (seed 003, Huang, Wang, Xia, ICASSP 2025): semantic-residual cross-modal information disentanglement.

Two DCID layers (Eq. 1–8). Layer 1 is DCID on the raw features: modal-general Φ_1^m (quantized with codebook 1),
modal-specific Ψ_1^m, CLUB between them (Eq. 5–6), cross-modal CPC between the modalities' general features (Eq. 7),
CMCM, multi-modal EMA, reconstruction. Layer 2 repeats all of it on the *semantic residual*: its encoders read layer
1's specific output, x_2^m = z̄_1^m (Eq. 2), with a separate codebook, its own CLUB, CPC and CMCM; its decoder
rebuilds z̄_1^m. Codes of both layers are concatenated at inference: `encode` -> `[N, T, D1 + D2]`,
`codebooks` -> [codebook 1, codebook 2] (so TOC selects dims per layer), `codes` -> `[N, T, 2]`.
`only1` (Table II "SRCID(only1)") encodes with layer 1 alone: `[N, T, D1]`, one codebook, codes `[N, T]`.

No public code exists (docs/ORIGINAL_CODE.md §4); design decisions follow the closest released code, H-DCID (§2.3):
- Warm start: layer-2 losses join, weighted 0.3 (`layer2_weight`), from epoch round(`warm_frac` · epochs) on
  (H-DCID: epoch 3 of 5, so 0.6; a fixed `warm_epoch` overrides it), or earlier once the running mean of layer 1's summed CLUB estimate falls below `warm_mi` (the paper:
  "once the first layer's MI loss approaches 0"; null = epoch rule only). Before that layer 2 is not run at all and its
  CLUB estimators are not fitted (as H-DCID). Once on, it stays on (a buffer, so a resumed run keeps it).
- Layer-2 input: the vector CLUB compares with layer 1's code (audio/text: Ψ_1's output; video maps: the pooled
  club feature), as H-DCID's `video_club_feature`; layer-2 Φ_2 is Linear + transformer, Ψ_2 Linear + ReLU, the decoder
  Linear([Linear(q_2); z̄_2]) — DCID's vector branch, i.e. H-DCID's layer 2. Layer-2 gradients reach layer 1's Ψ_1.
- CMCM runs in both layers (Eq. 8 lists it; H-DCID had it off): `cmcm=false` turns both off.
- `club_l1`, `club_l2` switch each layer's CLUB (Fig. 3 ablation).
- `only1` changes inference only: pretraining (and its resume tag) ignores it, and `inference_view` applies it to a
  model trained with either value.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from benchmark.contracts import UserError

from .base import CodebookMethod, canonical_modalities
from .dcid import DCIDModel
from .trainer import Step
from .turn import ConcatCodebooks, ConcatPretrained



def warm_start_epoch(s: Mapping[str, Any]) -> int:
    """The 0-based epoch layer 2 joins: `warm_epoch`, else round(warm_frac · epochs). Why a share of the budget:
    the paper adds layer 2 once layer 1 has converged, and a constant epoch goes stale whenever the budget moves
    (warm_epoch = 2 of 16 joined layer 2 while layer 1 was still at chance)."""
    if s.get("warm_epoch") is not None:
        return int(s["warm_epoch"])
    return int(round(float(s["warm_frac"]) * int(s["epochs"])))


def prefixed(step: Step | None, prefix: str) -> Step | None:
    """The same step, but estimator names get `prefix` (each layer's DCID names its CLUBs by modality)."""
    if step is None or step.fit is None:
        return step
    return dataclasses.replace(step, fit=lambda pairs: step.fit({prefix + k: v for k, v in pairs.items()}))


class SRCIDModel(nn.Module):
    """Layer 1 = DCID on raw features; layer 2 = DCID on layer 1's specific vectors; warm-start gate."""

    def __init__(self, shapes: Mapping[str, tuple], s: Mapping[str, Any]):
        super().__init__()
        self.modalities = canonical_modalities(shapes)
        self.layer1 = DCIDModel(shapes, {**s, "club": s["club_l1"]})
        shapes2 = {m: (shapes[m][0], self.layer1.branches[m].club_dim) for m in self.modalities}
        self.layer2 = DCIDModel(shapes2, {**s, "club": s["club_l2"], "text_lstm": False})
        self.weight2, self.warm_epoch = float(s["layer2_weight"]), warm_start_epoch(s)
        self.warm_mi = None if s.get("warm_mi") is None else float(s["warm_mi"])
        self.register_buffer("layer2_on", torch.tensor(False))
        self.register_buffer("mi1_running", torch.tensor(float("nan")))

    @property
    def quantizer(self) -> ConcatCodebooks:
        return ConcatCodebooks([self.layer1.quantizer, self.layer2.quantizer])

    def general(self, modality: str, x: Tensor) -> Tensor:
        """Raw features -> [z_1 | z_2] `[N, T, D1 + D2]` (layer 2 reads layer 1's specific vector)."""
        b1, b2 = self.layer1.branches[modality], self.layer2.branches[modality]
        b1.check(x)
        feats = b1.inputs(x)
        z1 = b1.general(feats)
        z2 = b2.general(b1.specific(feats)[1])
        return torch.cat([z1, z2], -1)

    def estimators(self) -> dict[str, nn.Module]:
        return {**{f"l1_{k}": v for k, v in self.layer1.estimators().items()},
                **{f"l2_{k}": v for k, v in self.layer2.estimators().items()}}

    def clip_groups(self) -> list[list[nn.Parameter]]:
        return self.layer1.clip_groups() + self.layer2.clip_groups()

    @torch.no_grad()
    def track_layer1_mi(self, layer1_losses: Mapping[str, Tensor]) -> None:
        """Running mean (0.9) of layer 1's summed CLUB estimate, the warm-start signal."""
        clubs = [v.detach() for k, v in layer1_losses.items() if k.startswith("club_")]
        if clubs:
            mi = torch.stack(clubs).sum().to(self.mi1_running.dtype)
            self.mi1_running.copy_(mi if torch.isnan(self.mi1_running) else 0.9 * self.mi1_running + 0.1 * mi)

    @torch.no_grad()
    def open_layer2(self, epoch: int) -> None:
        """Layer 2 joins from `warm_epoch` on, or once layer 1's running MI is below `warm_mi`; then stays on."""
        low_mi = self.warm_mi is not None and bool(self.mi1_running < self.warm_mi)
        if epoch >= self.warm_epoch or low_mi:
            self.layer2_on.fill_(True)

    def losses(self, batch: Mapping[str, Tensor], step: Step | None = None) -> dict[str, Tensor]:
        if self.training and step is not None:
            self.open_layer2(step.epoch)
        run2 = bool(self.layer2_on)
        residual: dict[str, Tensor] = {}
        hooks = []
        if run2:     # capture layer 1's specific vectors from its own forward (no second pass through Ψ_1)
            for m in self.modalities:
                hooks.append(self.layer1.branches[m].specific_net.register_forward_hook(
                    lambda module, args, out, m=m: residual.__setitem__(m, out[1])))
        try:
            first = self.layer1.losses(batch, prefixed(step, "l1_"))
        finally:
            for h in hooks:
                h.remove()
        losses = {f"l1_{k}": v for k, v in first.items()}
        if run2:
            second = self.layer2.losses(residual, prefixed(step, "l2_"))
            losses.update({f"l2_{k}": self.weight2 * v for k, v in second.items()})
        if self.training:
            self.track_layer1_mi(first)
        return losses


class SRCIDPretrained(ConcatPretrained):
    """Both layers' codes side by side; `layers = 1` is the only1 view (layer 1's code and codebook alone)."""

    layers = 2

    def view(self, layers: int) -> "SRCIDPretrained":
        """A representation sharing this model, encoding with the first `layers` layers."""
        return self.variant(layers=int(layers))

    @property
    def codebooks(self) -> list[torch.Tensor]:
        return super().codebooks[:self.layers]

    def _quantize(self, modality: str, x) -> tuple[torch.Tensor, torch.Tensor]:
        q, idx = super()._quantize(modality, x)
        if self.layers == 1:
            width = self.model.layer1.quantizer.codebooks[0].shape[1]
            return q[..., :width], idx[..., 0]
        return q, idx


class SRCID(CodebookMethod):
    pretrained_class = SRCIDPretrained

    def validate(self, cfg: Mapping[str, Any]) -> None:
        super().validate(cfg)
        s = self.settings(cfg)
        if (s.get("warm_epoch") is not None and s["warm_epoch"] < 0) or not s["layer2_weight"] >= 0:
            raise UserError(f"method '{self.name}': warm_epoch and layer2_weight must be >= 0, "
                            f"got {s.get('warm_epoch')} and {s['layer2_weight']}")
        if not 0.0 <= float(s["warm_frac"]) <= 1.0:
            raise UserError(f"method '{self.name}': warm_frac must be in [0, 1], got {s['warm_frac']}")

    def schedule_depends_on_epochs(self, settings: Mapping[str, Any]) -> bool:
        """With a warm start at a share of the budget, a shorter run is not a prefix of a longer one (the budget
        study then trains each budget on its own)."""
        return settings.get("warm_epoch") is None

    def build_model(self, shapes, settings) -> SRCIDModel:
        return SRCIDModel(shapes, settings)

    def resume_tag(self, settings, shapes, corpus, seed: int) -> str:
        """The resolved warm-start epoch kept in: it depends on the budget the tag leaves out."""
        return super().resume_tag({**settings, "warm_start": warm_start_epoch(settings)}, shapes, corpus, seed)

    def inference_view(self, pretrained: SRCIDPretrained, cfg: Mapping[str, Any]) -> SRCIDPretrained:
        """Apply the inference-only options (`only1`) to a pretrained SRCID, whichever `only1` it was trained with."""
        return pretrained.view(1 if cfg.get("only1") else 2)

    def pretrain(self, corpus, cfg, seed, ctx) -> SRCIDPretrained:
        return self.inference_view(super().pretrain(corpus, cfg, seed, ctx), cfg)

    def load(self, directory, cfg, ctx) -> SRCIDPretrained:
        return self.inference_view(super().load(directory, cfg, ctx), cfg)
