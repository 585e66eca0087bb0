"""Cross-Modal Code Matching (CMCM; Liu et al. 2021a, as coded inside DCID's quantizer, docs/ORIGINAL_CODE.md §1.3).

Each clip gets a soft code distribution p = mean_T softmax_L(−‖z_t − e‖); clips are matched across two
modalities x, y by S_ij = Σ_k p^x_ik log p^y_jk + Σ_k p^y_ik log p^x_jk and a softmax over the batch. The score is
symmetric in (x, y), so unordered pairs suffice; the total is 0.5 · Σ_pairs (0.5·(av + at + tv) for a, v, t).
"""
from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor


REFERENCE_DIM = 256   # the released code width, at which −‖z − e‖ is used unscaled


def cmcm_scale(settings) -> float:
    """Multiplier of −‖z − e‖ in CMCM's soft assignment: the `cmcm_scale` option, or sqrt(256 / D) by default.

    Why: the encoders' outputs have roughly unit per-dimension scale, so distances grow like sqrt(D). At the
    released D = 256 the soft assignment over 400 codes is sharp; at the CPU preset's D = 64 the same temperature
    leaves it far flatter. Measured after 2 epochs of CMCM on the default world: ‖z‖ 7.7 -> 16.1 and the spread of
    ‖z − e‖ over the codes 1.31 / 1.78 -> 2.04 / 3.37 (audio / video) from D = 64 to D = 256; assignment entropy
    4.75 / 2.94 vs 3.28 / 1.38 nats (uniform: 5.99). Scaling by sqrt(256 / D) = 2 restores the released sharpness.
    """
    value = settings.get("cmcm_scale")
    return float(value) if value is not None else math.sqrt(REFERENCE_DIM / float(settings["code_dim"]))


def soft_code_assignment(logits: Tensor) -> Tensor:
    """Per-clip code distribution: logits −‖z − e‖ `[B, T, L]` -> softmax over codes, mean over T `[B, L]`."""
    return logits.softmax(-1).mean(1)


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
    probs = {m: soft_code_assignment(v) for m, v in logits.items()}
    pairs = list(itertools.combinations(probs, 2))
    if not pairs:
        raise ValueError("CMCM needs at least two modalities")
    return weight * sum(cmcm_pair_loss(probs[a], probs[b]) for a, b in pairs)
