"""CODIS (Duan et al., CVPR 2022, "Multi-modal Alignment using Representation Codebook") on paired audio/video/text.

No public code exists (docs/ORIGINAL_CODE.md §5); this follows the paper's description:
- a codebook of K prototypes (cluster centres) c_k shared by every modality, learnt by gradient;
- assignments by optimal transport: the momentum teacher's features are assigned to the prototypes by Sinkhorn
  (entropic OT with uniform marginals, so every prototype receives n/K of the batch — no collapse onto few codes):
      Q = argmax_{Q ∈ U(1/n, 1/K)} ⟨Q, S⟩ + ε·H(Q),  S_ik = cos(z^t_i, c_k)         (POT `ot.sinkhorn`)
- contrast through cluster assignments, across modalities (swapped prediction): the student of modality m predicts
  the teacher's assignment of modality n ≠ m for the same second,
      L_swap = mean_{m≠n} mean_i −Σ_k Q^n_ik log softmax_k(cos(z^m_i, c_k)/τ_p)
- momentum teacher → student distillation: the teacher is an EMA of the student (momentum μ), and an instance-level
  cross-modal InfoNCE pairs each student clip (mean over T) with the teacher's clip of the other modality,
      L_nce = mean_{m≠n} InfoNCE(student^m, teacher^n; τ)
      L = w_swap·L_swap + w_nce·L_nce.
Discrete representation: the prototypes (L2-normalised) are the codebook; a second's code is its nearest prototype by
cosine (`encode` -> `[N, T, D]` unit vectors, `codes` -> `[N, T]`).
Design decisions (the paper is image–text, with a ViT, queues and a fusion encoder):
- per-second assignments (n = B·T rows per modality, Sinkhorn per modality) so codes are per second like every other
  method here; SwAV's 3 Sinkhorn iterations and ε = 0.05, prototype temperature τ_p = 0.1;
- CODIS's memory queues are replaced by in-batch negatives, its learnable temperature by a fixed τ = 0.1;
- no reconstruction and no fusion encoder (they serve CODIS' VL downstream tasks, not the codes);
- the student encodes at inference (the teacher only provides targets).
"""
from __future__ import annotations

import copy
import warnings
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.contracts import UserError

from .base import CodebookMethod, canonical_modalities
from .encoders import BranchedModel, ModalityBranch
from .mutual_info import info_nce
from .precision import full_precision
from .trainer import Step


# --------------------------------------------------------------------------- optimal transport and losses (pure)
def sinkhorn_assignments(scores: Tensor, eps: float = 0.05, iters: int = 3) -> Tensor:
    """Balanced soft assignments of n items to K prototypes: scores `[n, K]` (cosines) -> Q `[n, K]`, rows sum to 1.

    Entropic OT between uniform marginals (1/n per item, 1/K per prototype) with cost −S, solved by POT's Sinkhorn
    (`ot.sinkhorn`, float64); the plan is scaled by n so each row is a distribution. POT ends on the row update, so
    rows are exact and the prototype marginals are approximately uniform after `iters` iterations (SwAV uses 3).
    """
    import ot   # POT is slow to import: only a CODIS pretraining pays for it, not every registry validation
    n, k = scores.shape
    s = scores.detach().to(torch.float64)
    a = torch.full((n,), 1.0 / n, dtype=torch.float64, device=s.device)
    b = torch.full((k,), 1.0 / k, dtype=torch.float64, device=s.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # a few iterations by design: POT warns that it has not converged
        plan = ot.sinkhorn(a, b, -s, eps, numItermax=iters, stopThr=0.0, method="sinkhorn")
    return (plan * n).to(scores.dtype)


def swapped_prediction_loss(logits: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> Tensor:
    """mean over ordered pairs m ≠ n of the cross-entropy −Σ_k Q^n_ik log softmax(logits^m)_ik, mean over i.

    logits `{m: [n, K]}` (student scores / τ_p), targets `{m: [n, K]}` (teacher Sinkhorn assignments), rows aligned.
    """
    pairs = [(m, n) for m in logits for n in targets if m != n]
    if not pairs:
        raise ValueError("swapped prediction needs at least two modalities")
    return sum(-(targets[n] * logits[m].log_softmax(-1)).sum(-1).mean() for m, n in pairs) / len(pairs)


@torch.no_grad()
def momentum_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """θ_teacher ← μ·θ_teacher + (1 − μ)·θ_student (parameters and floating buffers)."""
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)
    for t, s in zip(teacher.buffers(), student.buffers()):
        if t.is_floating_point():
            t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)


# --------------------------------------------------------------------------- the codebook view
class PrototypeCodebook:
    """The prototypes as a codebook: rows L2-normalised; a vector's code is its nearest prototype by cosine."""

    def __init__(self, prototypes: Tensor):
        self.prototypes = prototypes

    @property
    def codebooks(self) -> list[Tensor]:
        return [F.normalize(self.prototypes, dim=-1)]

    @property
    def num_codes(self) -> list[int]:
        return [int(self.prototypes.shape[0])]

    @full_precision
    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z `[.., D]` -> (unit prototype `[.., D]`, index `[..]`)."""
        codebook = self.codebooks[0]
        idx = (F.normalize(z, dim=-1) @ codebook.t()).argmax(-1)
        return codebook[idx], idx


# --------------------------------------------------------------------------- model
class CODISModel(BranchedModel):
    """Student Φ per modality, its momentum teacher, and K shared prototypes."""

    def __init__(self, shapes: Mapping[str, tuple], s: Mapping[str, Any]):
        super().__init__()
        self.modalities = canonical_modalities(shapes)
        self.branches = nn.ModuleDict({m: ModalityBranch(m, shapes[m], s, specific=False, decoder=False)
                                       for m in self.modalities})
        self.teacher = copy.deepcopy(self.branches).requires_grad_(False)
        d = int(s["code_dim"])
        self.prototypes = nn.Parameter(F.normalize(torch.randn(int(s["codebook_size"]), d), dim=-1))
        self.momentum, self.proto_tau = float(s["momentum"]), float(s["proto_tau"])
        self.eps, self.iters = float(s["sinkhorn_eps"]), int(s["sinkhorn_iters"])
        self.w_swap, self.w_nce, self.nce_tau = float(s["w_swap"]), float(s["w_nce"]), float(s["nce_tau"])

    @property
    def quantizer(self) -> PrototypeCodebook:
        return PrototypeCodebook(self.prototypes)


    def scores(self, z: Tensor) -> Tensor:
        """Cosine of every second to every prototype: `[B, T, D]` -> `[B·T, K]`."""
        return F.normalize(z.reshape(-1, z.shape[-1]), dim=-1) @ F.normalize(self.prototypes, dim=-1).t()

    def losses(self, batch: Mapping[str, Tensor], step: Step | None = None) -> dict[str, Tensor]:
        if self.training:      # the teacher follows the student as it was after the previous optimiser step
            momentum_update(self.teacher, self.branches, self.momentum)
        z = {m: self.branches[m].general(self.branches[m].inputs(batch[m])) for m in self.modalities}
        with torch.no_grad():
            zt = {m: self.teacher[m].general(self.teacher[m].inputs(batch[m])) for m in self.modalities}
            targets = {m: sinkhorn_assignments(self.scores(zt[m]), self.eps, self.iters) for m in self.modalities}
        losses: dict[str, Tensor] = {}
        if self.w_swap:
            logits = {m: self.scores(z[m]) / self.proto_tau for m in self.modalities}
            losses["swap"] = self.w_swap * swapped_prediction_loss(logits, targets)
        if self.w_nce:
            pairs = [(m, n) for m in self.modalities for n in self.modalities if m != n]
            nce = sum(info_nce(z[m].mean(1), zt[n].mean(1), self.nce_tau) for m, n in pairs) / len(pairs)
            losses["nce"] = self.w_nce * nce
        return losses


class CODIS(CodebookMethod):

    def validate(self, cfg: Mapping[str, Any]) -> None:
        super().validate(cfg)
        s = self.settings(cfg)
        if not (s["w_swap"] > 0 or s["w_nce"] > 0):
            raise UserError(f"method '{self.name}': w_swap and w_nce are both 0, nothing would be trained")
        if not 0.0 <= s["momentum"] < 1.0 or s["sinkhorn_eps"] <= 0 or s["sinkhorn_iters"] < 1:
            raise UserError(f"method '{self.name}': need 0 <= momentum < 1, sinkhorn_eps > 0, sinkhorn_iters >= 1 "
                            f"(got {s['momentum']}, {s['sinkhorn_eps']}, {s['sinkhorn_iters']})")

    def build_model(self, shapes, settings) -> CODISModel:
        return CODISModel(shapes, settings)
