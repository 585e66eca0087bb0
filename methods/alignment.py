"""Cross-Modal Code Matching (CMCM; Liu et al. 2021a, as coded inside DCID's quantizer, docs/ORIGINAL_CODE.md §1.3).

Each clip gets a soft code distribution p = mean_T softmax_L(−‖z_t − e‖); clips are matched across two
modalities x, y by S_ij = Σ_k p^x_ik log p^y_jk + Σ_k p^y_ik log p^x_jk and a softmax over the batch. The score is
symmetric in (x, y), so unordered pairs suffice; the total is 0.5 · Σ_pairs (0.5·(av + at + tv) for a, v, t).
"""
from __future__ import annotations

import itertools
import math
from typing import Mapping

import torch
from torch import Tensor

from .precision import full_precision


REFERENCE_DIM = 256   # the released code width, at which −‖z − e‖ is used unscaled
FSQ_CMCM_SCALE = 8.0  # CMCM's multiplier on FSQ's grid (2 and 8 measured; 8 learned faster)


def cmcm_scale(settings) -> float:
    """Multiplier of −‖z − e‖ in CMCM's soft assignment: the `cmcm_scale` option, or sqrt(256 / D) by default.

    Why: the encoders' outputs have roughly unit per-dimension scale, so distances grow like sqrt(D). At the
    released D = 256 the soft assignment over 400 codes is sharp; at the CPU preset's D = 64 the same temperature
    leaves it far flatter (the measurement is in docs/INSTRUMENT.md, "Fidelity fixes"). Scaling by sqrt(256 / D)
    restores the released sharpness at any width. FSQ measures its distances on its normalised grid instead
    (coordinates in [-1, 1], a handful of dims), where that scale leaves the assignment nearly flat: its default is
    `FSQ_CMCM_SCALE`, the better of the temperatures measured (docs/FIDELITY.md).
    """
    value = settings.get("cmcm_scale")
    if value is not None:
        return float(value)
    if settings.get("quantizer") == "fsq":
        return FSQ_CMCM_SCALE
    return math.sqrt(REFERENCE_DIM / float(settings["code_dim"]))


def cmcm_applies(settings) -> bool:
    """Whether CMCM runs for these settings: off for RVQ as released (`rvq_mode=release`), on otherwise.

    FSQ keeps it (no release pairs the two): on FSQ's normalised grid the VQ temperature leaves the soft assignment
    nearly flat, yet turning CMCM off left DCID-FSQ at chance where it had learned with it (docs/FIDELITY.md);
    `cmcm_scale` sets another temperature."""
    if not settings.get("cmcm", True):
        return False
    if settings.get("quantizer", "vq") == "rvq":
        return settings.get("rvq_mode") != "release"
    return True


def soft_code_assignment(logits: Tensor) -> Tensor:
    """Per-clip code distribution: logits −‖z − e‖ `[B, T, L]` -> softmax over codes, mean over T `[B, L]`."""
    return logits.softmax(-1).mean(1)


class FixedCodebookAssignment(torch.autograd.Function):
    """`soft_code_assignment(−s·‖z − e‖)` for a codebook e that takes no gradient (an EMA buffer), as one node.

    Why: written with tensor ops, the `[B·T, L]` distance matrix goes through ~10 elementwise passes forward and as
    many backward (square, sum, clamp twice, sqrt, negate, scale, softmax, mean); here ‖z − e‖² comes from one
    GEMM, the passes are in place and the backward is written out: dz = 2(Σ_k g_k·z − g·e) with g = ∂L/∂‖z − e‖²
    (zero where the distance was clamped at 1e-12, as the clamp's gradient is). Same function, same gradient."""

    @staticmethod
    def forward(ctx, z: Tensor, codebook: Tensor, scale: float) -> Tensor:
        flat = z.reshape(-1, z.shape[-1])
        d2 = torch.addmm(codebook.pow(2).sum(-1), flat, codebook.t(), alpha=-2.0)
        d2.add_(flat.pow(2).sum(-1, keepdim=True))
        clamped = (d2 < 1e-12) if float(d2.min()) < 1e-12 else None         # a mask only when some are
        logits = d2.clamp_min_(1e-12).sqrt_().mul_(-scale)                   # −s·‖z − e‖
        probs = torch.softmax(logits, -1)
        ctx.save_for_backward(flat, codebook, logits, probs, clamped)
        ctx.shape, ctx.scale = z.shape, scale
        return probs.view(*z.shape[:2], -1).mean(1)

    @staticmethod
    def backward(ctx, grad: Tensor):
        flat, codebook, logits, probs, clamped = ctx.saved_tensors
        b, t = ctx.shape[0], ctx.shape[1]
        if ctx.scale == 0:                                                     # logits do not depend on z
            return torch.zeros(ctx.shape, dtype=flat.dtype, device=flat.device), None, None
        # mean over T, and ∂(−s·sqrt d²)/∂d² = −s / (2‖z − e‖) = s² / (2·logit), folded into the [B, L] gradient
        per_step = (grad * (0.5 * ctx.scale ** 2 / t)).unsqueeze(-1)          # [B, L, 1]
        p = probs.view(b, t, -1)
        g = (per_step.transpose(1, 2) - torch.bmm(p, per_step)).mul_(p)       # softmax backward, [B, T, L]
        g = g.view_as(logits).div_(logits)                                     # ∂L/∂‖z − e‖²
        if clamped is not None:
            g.masked_fill_(clamped, 0.0)
        dz = torch.addmm(flat * g.sum(-1, keepdim=True), g, codebook, alpha=-1.0).mul_(2.0)
        return dz.view(ctx.shape), None, None


@full_precision
def code_distributions(quantizer, z: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """`{m: soft_code_assignment(quantizer.cmcm_logits(z_m))}` `[B, L]`, each one `FixedCodebookAssignment` node
    when the quantizer's CMCM logits are distances to a table without gradient (`quantizer.cmcm_codebook`)."""
    book = getattr(quantizer, "cmcm_codebook", None)
    if book is None or book.requires_grad:
        return {m: soft_code_assignment(quantizer.cmcm_logits(v)) for m, v in z.items()}
    return {m: FixedCodebookAssignment.apply(v, book.to(v.dtype), float(quantizer.logit_scale)) for m, v in z.items()}


def code_matching_scores(p_x: Tensor, p_y: Tensor, eps: float = 1e-10) -> Tensor:
    """S_ij = Σ_k p^x_ik log(p^y_jk + ε) + Σ_k p^y_ik log(p^x_jk + ε): `[B, L]` × `[B, L]` -> `[B, B]`."""
    return p_x @ (p_y + eps).log().t() + p_y @ (p_x + eps).log().t()


def cmcm_pair_loss(p_x: Tensor, p_y: Tensor, eps: float = 1e-5) -> Tensor:
    """L = −(1/B) Σ_i log( exp S_ii / (Σ_j exp S_ij + ε) ), exponents shifted by −min S (as coded).

    Written as S_ii − log(Σ_j exp S_ij + ε) with a log-sum-exp, which is the same number without overflow.
    """
    s = code_matching_scores(p_x, p_y)
    s = s - s.min()
    log_denominator = torch.logaddexp(torch.logsumexp(s, dim=-1), torch.tensor(math.log(eps), dtype=s.dtype,
                                                                               device=s.device))
    return -(torch.diagonal(s) - log_denominator).mean()


def cmcm_loss(logits: dict[str, Tensor], weight: float = 0.5) -> Tensor:
    """`weight` · Σ over unordered modality pairs of `cmcm_pair_loss`; logits `{m: [B, T, L]}`."""
    return code_matching_loss({m: soft_code_assignment(v) for m, v in logits.items()}, weight)


def code_matching_loss(probs: Mapping[str, Tensor], weight: float = 0.5) -> Tensor:
    """`cmcm_loss` from the per-clip code distributions `{m: [B, L]}` (e.g. `code_distributions`)."""
    pairs = list(itertools.combinations(probs, 2))
    if not pairs:
        raise ValueError("CMCM needs at least two modalities")
    return weight * sum(cmcm_pair_loss(probs[a], probs[b]) for a, b in pairs)
