"""CMCM loss (issue 4) on hand-worked cases, and the `cmcm` method end to end on a tiny corpus."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark import registry
from benchmark.contracts import RunContext
from methods.alignment import cmcm_loss, cmcm_pair_loss, code_matching_scores, soft_code_assignment
from methods.base import ArrayCorpus
from methods.quantizers import distance_logits



def test_soft_assignment_by_hand():
    codes = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    z = torch.tensor([[[0.0, 0.0], [2.0, 0.0]]])                  # t0 sits on e0, t1 on e1 (distance 2 apart)
    p = soft_code_assignment(distance_logits(z, codes))
    near = 1 / (1 + math.exp(-2))                                  # softmax([0, −2])[0]
    assert distance_logits(z, codes)[0, 0].tolist() == pytest.approx([0.0, -2.0], abs=1e-5)
    assert p[0].tolist() == pytest.approx([0.5, 0.5])                # mean over T of [near, 1−near] and its mirror
    p0 = soft_code_assignment(distance_logits(z[:, :1], codes))
    assert p0[0].tolist() == pytest.approx([near, 1 - near])


def test_cmcm_pair_loss_on_two_clips_by_hand():
    px = [[0.8, 0.2], [0.3, 0.7]]
    py = [[0.6, 0.4], [0.1, 0.9]]
    # S_ij = Σ_k px_ik log py_jk + Σ_k py_ik log px_jk
    s = [[sum(px[i][k] * math.log(py[j][k] + 1e-10) + py[i][k] * math.log(px[j][k] + 1e-10) for k in range(2))
          for j in range(2)] for i in range(2)]
    lo = min(min(row) for row in s)
    want = -sum(math.log(math.exp(s[i][i] - lo) / (sum(math.exp(v - lo) for v in s[i]) + 1e-5))
                for i in range(2)) / 2
    assert want == pytest.approx(0.2631712, abs=1e-6)
    tx, ty = torch.tensor(px, dtype=torch.float64), torch.tensor(py, dtype=torch.float64)
    assert code_matching_scores(tx, ty).flatten().tolist() == pytest.approx(s[0] + s[1])
    assert cmcm_pair_loss(tx, ty).item() == pytest.approx(want, abs=1e-9)
    assert cmcm_pair_loss(ty, tx).item() == pytest.approx(want, abs=1e-9)       # symmetric in the pair


def test_cmcm_prefers_matched_assignments():
    matched = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    swapped = matched.flip(0)
    assert cmcm_pair_loss(matched, matched) < cmcm_pair_loss(matched, swapped)


def test_cmcm_total_is_half_the_sum_over_pairs_and_reaches_z():
    torch.manual_seed(0)
    codes = torch.randn(5, 3)
    z = {m: torch.randn(4, 2, 3, requires_grad=True) for m in ("audio", "video", "text")}
    logits = {m: distance_logits(v, codes) for m, v in z.items()}
    p = {m: soft_code_assignment(v) for m, v in logits.items()}
    want = 0.5 * (cmcm_pair_loss(p["audio"], p["video"]) + cmcm_pair_loss(p["audio"], p["text"])
                  + cmcm_pair_loss(p["text"], p["video"]))
    total = cmcm_loss(logits)
    assert total.item() == pytest.approx(want.item())
    total.backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in z.values())
    with pytest.raises(ValueError):
        cmcm_loss({"audio": logits["audio"]})


def test_cmcm_loss_does_not_overflow_on_confident_assignments():
    sharp = torch.nn.functional.one_hot(torch.arange(4), 4).float()
    loss = cmcm_pair_loss(sharp, sharp)            # scores span ~2·log(1e-10): exp of the shifted scores ~1e20
    assert torch.isfinite(loss) and loss.item() < 1e-3


def test_cmcm_method_pretrains_with_only_its_losses(tmp_path):
    rng = np.random.default_rng(0)
    corpus = ArrayCorpus({"audio": rng.standard_normal((24, 4, 6)), "video": rng.random((24, 4, 5))})
    entry = registry.get("method", "cmcm")
    cfg = entry.resolve({"epochs": 1, "batch_size": 12, "code_dim": 8, "codebook_size": 16})
    method = entry.load()
    pretrained = method.pretrain(corpus, cfg, 0, RunContext())
    final = pretrained.history[-1]
    assert {k for k in final if k not in ("total", "seconds", "codebook_usage")} == {
        "commit_audio", "commit_video", "recon_audio", "recon_video", "cmcm"}
    assert pretrained.encode("video", corpus.arrays["video"][:3]).shape == (3, 4, 8)
    assert pretrained.diagnostics()["codebook_size"] == 16
    quantizer = pretrained.model.quantizer
    assert quantizer.mixing.tolist() == [[1.0, 0.0], [0.0, 1.0]] and not quantizer.cross_commitment
