"""TURN (Zhao et al., NeurIPS 2022), the alignment stream, as a unified discrete representation.

No public code exists (docs/ORIGINAL_CODE.md §5); this follows the paper's alignment stream:
- each modality's modal-general feature z^m `[B, T, D]` is split into q chunks `[B, T, q, D/q]`, chunk k quantized by
  its own codebook of `codebook_size / q` codes (k's codebook shared by all modalities, nearest code + EMA; the
  total is fixed, as TURN's group sweep keeps it); the code of a second is the
  concatenation of its q chunk codes `[B, T, D]` (`codes` -> `[N, T, q]`);
- L_contra: in-batch InfoNCE (cosine, temperature τ_c) between clip-pooled features of every modality pair;
- self-cross reconstruction: decoder D^m rebuilds x^m from m's own code (self) and from every other modality's code
  of the same second (cross);
      L_aln = λ3·L_code + λ4·(L_recon^self + L_recon^cross) + λ5·L_contra.
Design decisions where the paper is silent or does not fit this harness (each a card option where it changes numbers):
- VQ loss: the codebook term ‖sg f − e‖² is replaced by EMA updates (decay 0.99) as for every codebook method here;
  commitment β·‖f − sg e‖² per chunk, averaged over chunks (so it has the scale of one full-width VQ), λ3 = 1.
- The paper's mask-predict transformer decoders (cross-entropy on text tokens, L1 on audio) become per-second decoders
  with MSE on the input features: the features are continuous here and no token vocabulary exists.
- λ4 = λ5 = 1 (`w_recon`, `w_nce`), τ_c = 0.1 (`nce_tau`), q = 4 (`chunks`): the paper gives no values.
- InfoNCE runs on the continuous features before quantization, mean-pooled over T (TURN pools its features), both
  directions, summed over modality pairs.
"""
from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.contracts import UserError

from .base import CodebookMethod, CodebookPretrained, canonical_modalities
from .encoders import BranchedModel, ModalityBranch
from .mutual_info import info_nce
from .quantizers import MultiModalEMAQuantizer, QuantizerOutput
from .trainer import Step


# --------------------------------------------------------------------------- codebooks side by side
class ConcatCodebooks:
    """Several quantizers side by side (TURN's chunks, SRCID's layers): z `[.., ΣD_k]` is cut into slices of the
    parts' widths, slice k quantized by part k; codes are concatenated `[.., ΣD_k]`, indices stacked `[.., K]`.

    A view over quantizers registered elsewhere (so their buffers are saved once); `codebooks` lists every part's
    `[L_k, D_k]` table, which TOC scores per part ("concat" layout)."""

    def __init__(self, parts: Sequence[nn.Module]):
        self.parts = list(parts)

    @property
    def widths(self) -> list[int]:
        return [int(p.codebooks[0].shape[1]) for p in self.parts]

    @property
    def codebooks(self) -> list[Tensor]:
        return [cb for p in self.parts for cb in p.codebooks]

    @property
    def num_codes(self) -> list[int]:
        return [int(c.shape[0]) for c in self.codebooks]

    def split(self, z: Tensor, parts: int | None = None) -> list[Tensor]:
        widths = self.widths[:parts]
        if z.shape[-1] != sum(widths):
            raise ValueError(f"expected features of width {sum(widths)} (= {'+'.join(map(str, widths))}), "
                             f"got {z.shape[-1]}")
        return list(torch.split(z, widths, dim=-1))

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Inference: `[.., ΣD_k]` -> (codes `[.., ΣD_k]`, indices `[.., K]`). A z as wide as the first k parts
        uses only those (SRCID's only1)."""
        k = next((i for i in range(1, len(self.parts)) if sum(self.widths[:i]) >= z.shape[-1]), len(self.parts))
        out = [p.quantize(s) for p, s in zip(self.parts, self.split(z, k))]
        return torch.cat([q for q, _ in out], -1), torch.stack([i for _, i in out], -1)

    def __call__(self, z: Mapping[str, Tensor], generator: torch.Generator | None = None) -> QuantizerOutput:
        """Training: every part's forward on its slice; commitment terms averaged over parts."""
        names = list(z)
        slices = {m: self.split(z[m]) for m in names}
        outs = [p({m: slices[m][k] for m in names}, generator) for k, p in enumerate(self.parts)]
        quantized = {m: torch.cat([o.quantized[m] for o in outs], -1) for m in names}
        indices = {m: torch.stack([o.indices[m] for o in outs], -1) for m in names}
        losses = {key: sum(o.losses[key] for o in outs) / len(outs) for key in outs[0].losses}
        return QuantizerOutput(quantized, indices, losses)


class ConcatPretrained(CodebookPretrained):
    """A codebook model whose code is several codebooks' codes side by side: `dim` is their summed width."""

    @property
    def dim(self) -> int:
        return int(sum(cb.shape[1] for cb in self.codebooks))


# --------------------------------------------------------------------------- losses (pure)
def pooled_info_nce(z: Mapping[str, Tensor], temperature: float) -> Tensor:
    """Σ over modality pairs of the symmetric InfoNCE between clip-pooled features: z `{m: [B, T, D]}` -> scalar."""
    pooled = {m: v.mean(1) for m, v in z.items()}
    return sum(info_nce(pooled[a], pooled[b], temperature, symmetric=True)
               for a, b in itertools.combinations(pooled, 2))


def codes_per_chunk(s: Mapping[str, Any]) -> int:
    """`codebook_size` is the total over the chunks (TURN sweeps the number of groups at a fixed total), split
    evenly; `codebook_per=chunk` gives every chunk `codebook_size` codes (the earlier reading)."""
    size = int(s["codebook_size"])
    return size if s.get("codebook_per") == "chunk" else size // int(s["chunks"])


# --------------------------------------------------------------------------- model
class TURNModel(BranchedModel):
    """Φ per modality, q chunk codebooks shared by the modalities, one decoder per modality (self + cross)."""

    def __init__(self, shapes: Mapping[str, tuple], s: Mapping[str, Any]):
        super().__init__()
        self.modalities = canonical_modalities(shapes)
        d, q = int(s["code_dim"]), int(s["chunks"])
        self.branches = nn.ModuleDict({m: ModalityBranch(m, shapes[m], s, specific=False, decoder=True,
                                                         decoder_side=False) for m in self.modalities})
        # plain VQ-EMA per chunk: each modality moves its own codes (no multi-modal EMA), commitment β (TURN's VQ)
        self.chunk_quantizers = nn.ModuleList(
            MultiModalEMAQuantizer(self.modalities, codes_per_chunk(s), d // q, decay=s["decay"],
                                   beta=s["beta"], self_weight=1.0, dead_after=s["dead_after"],
                                   cross_commitment=False) for _ in range(q))
        self.w_recon, self.w_nce = float(s["w_recon"]), float(s["w_nce"])
        self.cross_recon, self.nce_tau = bool(s["cross_recon"]), float(s["nce_tau"])

    @property
    def quantizer(self) -> ConcatCodebooks:
        return ConcatCodebooks(self.chunk_quantizers)


    def losses(self, batch: Mapping[str, Tensor], step: Step | None = None) -> dict[str, Tensor]:
        feats, z = self.inputs_and_general(batch)
        out = self.quantizer(z, step.generator if step is not None else None)
        losses = dict(out.losses)
        for m in self.modalities:
            decode = self.branches[m].decode
            if self.w_recon:
                losses[f"recon_{m}"] = self.w_recon * F.mse_loss(decode(out.quantized[m], None), feats[m])
                others = [n for n in self.modalities if n != m]
                if self.cross_recon and others:
                    cross = sum(F.mse_loss(decode(out.quantized[n], None), feats[m]) for n in others) / len(others)
                    losses[f"cross_recon_{m}"] = self.w_recon * cross
        if self.w_nce:
            losses["nce"] = self.w_nce * pooled_info_nce(z, self.nce_tau)
        return losses


class TURN(CodebookMethod):
    pretrained_class = ConcatPretrained

    def validate(self, cfg: Mapping[str, Any]) -> None:
        super().validate(cfg)
        s = self.settings(cfg)
        if s.get("codebook_per", "total") == "total" and s["codebook_size"] % s["chunks"]:
            raise UserError(f"method '{self.name}': codebook_size {s['codebook_size']} (the total) must be divisible "
                            f"by chunks {s['chunks']} (or set codebook_per=chunk)")
        if s["chunks"] < 1 or s["code_dim"] % s["chunks"]:
            raise UserError(f"method '{self.name}': code_dim {s['code_dim']} must be divisible by chunks "
                            f"{s['chunks']} (each chunk has its own codebook of width code_dim/chunks)")

    def build_model(self, shapes, settings) -> TURNModel:
        return TURNModel(shapes, settings)
