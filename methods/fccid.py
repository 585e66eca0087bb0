"""FCCID (seed 000; "FCID" in the released ACL'25 code, docs/ORIGINAL_CODE.md §3): fine and coarse cross-modal
information disentangling.

Fine (FCID, audio–video, per second; Eq. 1–4): modal-general Φ_f^m and modal-specific Ψ_f^m encoders for m ∈ {a, v};
CLUB between f^m and f̄^m per modality (Eq. 3), cross-modal CPC between f^a and f^v (Eq. 4), and each modality rebuilt
from (f^m, f̄^m). As released there is no fine codebook: f^m stays continuous.
Coarse (CCID, AV ↔ text, per clip; Eq. 5–9): P^{va→vat} (mean over T, then Linear; shared by a and v) and
P^{te→vat} (text token features through their own Φ, mean over tokens, Linear) compress to clip vectors p^m;
coarse general / specific encoders (Linear+ReLU; a and v share theirs, text has its own) give c^m and c̄^m;
CLUB between c^m and c̄^m (Eq. 6; one estimator for AV with audio and video stacked along the batch, one for text);
InfoNCE (Eq. 7, τ = 0.1 as coded) between c^v and c^t and between c^a and c^t; one codebook shared by a, v, t on
the c^m (multi-modal EMA, cross commitment, CMCM, dead-code reset, as DCID); p^m rebuilt from (code, c̄^m).
    L = L_recon(fine + coarse) + L_commit + L_cmcm + (L_cpc + L_nce) + (I_CLUB_f + I_CLUB_c)      (Eq. 10, weights 1)
Inference (as the released code): each second's general feature goes through the coarse path (P^{va→vat} on a
window of one second is its Linear), so a clip gets 10 codes `[N, T, D]`; text tokens likewise, per token.

Ablations (seed 000 Table 5): `club_a`, `club_v` (fine), `club_av`, `club_te` (coarse) switch each CLUB term;
`cpc`, `nce`, `cmcm` switch the alignment terms. Design notes: the paper writes τ = 1.0 for L_nce but the released
code uses the `info-nce-pytorch` default τ = 0.1 (one direction, in-batch negatives), which is the default here
(`nce_tau`); text features feed Φ^t directly (the release dropped DCID's BiLSTM); the coarse reconstruction target
p^m is not detached (as coded).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.contracts import UserError

from .alignment import cmcm_applies, cmcm_loss
from .base import CodebookMethod, canonical_modalities
from .encoders import ModalityBranch, VectorDecoder
from .mutual_info import CLUB, CrossCPC, info_nce
from .quantizers import quantizer_from_settings
from .trainer import Step

AV = ("audio", "video")
SIDE = {"audio": "av", "video": "av", "text": "text"}     # which coarse projection / encoders a modality uses


class FCCIDModel(nn.Module):
    """Fine A–V branches, a token-level text encoder, the coarse compressors / encoders / decoders, one codebook."""

    def __init__(self, shapes: Mapping[str, tuple], s: Mapping[str, Any]):
        super().__init__()
        self.modalities = canonical_modalities(shapes)
        d = int(s["code_dim"])
        self.fine = nn.ModuleDict({m: ModalityBranch(m, shapes[m], s) for m in AV})
        self.text = ModalityBranch("text", shapes["text"], s, specific=False, decoder=False)
        self.compress = nn.ModuleDict({k: nn.Linear(d, d) for k in ("av", "text")})
        self.coarse_general = nn.ModuleDict({k: nn.Sequential(nn.Linear(d, d), nn.ReLU()) for k in ("av", "text")})
        self.coarse_specific = nn.ModuleDict({k: nn.Sequential(nn.Linear(d, d), nn.ReLU()) for k in ("av", "text")})
        self.coarse_decoder = nn.ModuleDict({k: VectorDecoder(d, d, d) for k in ("av", "text")})
        self.quantizer = quantizer_from_settings(self.modalities, s, mm_ema=s["mm_ema"], cross_commitment=True)
        hidden = int(s["club_hidden"])
        wanted = {"audio": s["club_a"], "video": s["club_v"], "av": s["club_av"], "text": s["club_te"]}
        y_dims = {"audio": self.fine["audio"].club_dim, "video": self.fine["video"].club_dim, "av": d, "text": d}
        self.clubs = nn.ModuleDict({k: CLUB(d, y_dims[k], hidden) for k, on in wanted.items() if on})
        self.cpc = (CrossCPC(AV, d, int(s["cpc_hidden"]), int(s["cpc_layers"]), int(s["cpc_horizon"]))
                    if s["cpc"] else None)
        self.use_nce, self.nce_tau, self.use_cmcm = bool(s["nce"]), float(s["nce_tau"]), cmcm_applies(s)

    # --- inference: per second through the coarse path ---------------------------------------------------
    def general(self, modality: str, x: Tensor) -> Tensor:
        """Raw features `[N, T, ...]` -> coarse general features per step `[N, T, D]` (what the codebook sees)."""
        branch = self.fine[modality] if modality in AV else self.text
        branch.check(x)
        side = SIDE[modality]
        return self.coarse_general[side](self.compress[side](branch.general(branch.inputs(x))))

    def estimators(self) -> dict[str, nn.Module]:
        return dict(self.clubs)

    def clip_groups(self) -> list[list[nn.Parameter]]:
        """Clipped per module as released: encoders (+ coarse encoders), decoders, CPC."""
        skip = {id(p) for c in self.clubs.values() for p in c.parameters()}
        dec = [p for n, p in self.named_parameters() if ("decoder" in n) and id(p) not in skip]
        cpc = list(self.cpc.parameters()) if self.cpc is not None else []
        taken = {id(p) for p in dec + cpc} | skip
        enc = [p for p in self.parameters() if id(p) not in taken and p.requires_grad]
        return [g for g in (enc, dec, cpc) if g]

    # --- training ---------------------------------------------------------------------------------------
    def losses(self, batch: Mapping[str, Tensor], step: Step | None = None) -> dict[str, Tensor]:
        generator = step.generator if step is not None else None
        losses: dict[str, Tensor] = {}
        # fine: per-second general / specific for audio and video, reconstruction from both
        fine = {m: self.fine[m].general(batch[m]) for m in AV}                          # [B, T, D]
        spec = {m: self.fine[m].specific(batch[m]) for m in AV}                         # (side, CLUB y)
        for m in AV:
            losses[f"recon_{m}"] = F.mse_loss(self.fine[m].decode(fine[m], spec[m][0]), batch[m])
        # coarse: compress to clip vectors, split into general / specific
        tokens = self.text.general(batch["text"])                                        # [B, L, D]
        pooled = {"audio": fine["audio"].mean(1), "video": fine["video"].mean(1), "text": tokens.mean(1)}
        p = {m: self.compress[SIDE[m]](v) for m, v in pooled.items()}                    # [B, D]
        c = {m: self.coarse_general[SIDE[m]](p[m]) for m in self.modalities}
        cs = {m: self.coarse_specific[SIDE[m]](p[m]) for m in self.modalities}
        out = self.quantizer({m: c[m][:, None] for m in self.modalities}, generator)   # T = 1
        losses.update(out.losses)
        for m in self.modalities:
            rebuilt = self.coarse_decoder[SIDE[m]](out.quantized[m][:, 0], cs[m])
            losses[f"coarse_recon_{m}"] = F.mse_loss(rebuilt, p[m])
        # MI minimisation: fine CLUB per modality, coarse CLUB for AV (stacked) and text
        pairs = {"audio": (fine["audio"], spec["audio"][1]), "video": (fine["video"], spec["video"][1]),
                 "av": (torch.cat([c["video"], c["audio"]]), torch.cat([cs["video"], cs["audio"]])),
                 "text": (c["text"], cs["text"])}
        pairs = {k: v for k, v in pairs.items() if k in self.clubs}
        if pairs and step is not None:
            step.fit_estimators(pairs)
        for k, (x, y) in pairs.items():
            losses[f"club_{k}"] = self.clubs[k].mi_upper_bound(x, y, generator)
        # MI maximisation: fine cross-CPC (a, v), coarse InfoNCE (v ↔ t, a ↔ t)
        if self.cpc is not None:
            losses["cpc"] = self.cpc(fine, generator)
        if self.use_nce:
            losses["nce"] = (info_nce(c["video"], c["text"], self.nce_tau)
                             + info_nce(c["audio"], c["text"], self.nce_tau))
        if self.use_cmcm:
            losses["cmcm"] = cmcm_loss({m: self.quantizer.cmcm_logits(c[m][:, None]) for m in self.modalities})
        return losses


class FCCID(CodebookMethod):
    min_modalities = 3

    def modalities_of(self, corpus) -> tuple[str, ...]:
        names = super().modalities_of(corpus)
        if set(names) != {"audio", "video", "text"}:
            raise UserError(f"{self.name} disentangles audio–video finely and AV–text coarsely, so it needs exactly "
                            f"audio, video and text; the corpus has {list(names)}")
        return names

    def build_model(self, shapes, settings) -> FCCIDModel:
        return FCCIDModel(shapes, settings)
