"""Quantizers (issue 4): MM-EMA on a hand-worked example, commitment weights, dead-code reset, RVQ, FSQ."""
from __future__ import annotations

import itertools

import pytest
import torch

from methods.quantizers import (FiniteScalarQuantizer, MultiModalEMAQuantizer, ResidualQuantizer, build_quantizer,
                                commitment_weights, mixing_weights, parse_fsq_levels)

AV = ("audio", "video")



def two_code_quantizer(decay=0.5, eps=0.0, **kw) -> MultiModalEMAQuantizer:
    """Codes e0 = (0, 0), e1 = (2, 2), each with EMA count 1 (so EMA weight = code)."""
    q = MultiModalEMAQuantizer(AV, 2, 2, decay=decay, eps=eps, **kw)
    q.embedding.copy_(torch.tensor([[0.0, 0.0], [2.0, 2.0]]))
    q.ema_count.fill_(1.0)
    q.ema_weight.copy_(q.embedding)
    return q


def test_mixing_and_commitment_weights_match_the_release():
    assert mixing_weights(3, 0.5).tolist() == [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]]
    assert mixing_weights(2, 0.5).tolist() == [[0.5, 0.5], [0.5, 0.5]]
    assert mixing_weights(1, 0.5).tolist() == [[1.0]]
    assert commitment_weights(3, 0.25) == (0.5, 0.125)      # self 2β, cross β/2 each
    assert commitment_weights(2, 0.25) == (0.5, 0.25)       # AV quantizer: cross β
    assert commitment_weights(3, 0.25, cross=False) == (0.25, 0.0)


def test_multimodal_ema_update_by_hand():
    """B=1, T=3, γ=0.5, ε=0: audio then video update the shared codes, each pulled half by the other modality."""
    q = two_code_quantizer().train()
    z_a = torch.tensor([[[0.2, 0.0], [1.8, 2.2], [0.1, 0.1]]])    # -> codes 0, 1, 0
    z_v = torch.tensor([[[1.6, 1.4], [0.4, 0.2], [0.3, -0.1]]])   # -> codes 1, 0, 0
    quantized, indices, _ = q({"audio": z_a, "video": z_v})
    assert indices["audio"].tolist() == [[0, 1, 0]] and indices["video"].tolist() == [[1, 0, 0]]
    # outputs use the codebook from before the update
    assert torch.equal(quantized["video"], torch.tensor([[[2.0, 2.0], [0.0, 0.0], [0.0, 0.0]]]))
    # audio step: N = .5·[1,1] + .5·[2,1] = [1.5, 1]
    #   W0 = .5·0 + .5·(.5·(z_a0 + z_a2) + .5·(z_v0 + z_v2)) = .5·([.15,.05] + [.95,.65]) = [.55, .35]
    #   W1 = .5·[2,2] + .5·(.5·z_a1 + .5·z_v1) = [1, 1] + .5·[1.1, 1.2] = [1.55, 1.6]
    # video step: N = .5·[1.5,1] + .5·[2,1] = [1.75, 1]
    #   W0 = .5·[.55,.35] + .5·(.5·(z_v1 + z_v2) + .5·(z_a1 + z_a2)) = [.275,.175] + .5·[1.3,1.2] = [.925, .775]
    #   W1 = .5·[1.55,1.6] + .5·(.5·z_v0 + .5·z_a0) = [.775,.8] + .5·[.9,.7] = [1.225, 1.15]
    assert q.ema_count.tolist() == pytest.approx([1.75, 1.0])
    assert q.ema_weight.flatten().tolist() == pytest.approx([0.925, 0.775, 1.225, 1.15])
    assert q.embedding.flatten().tolist() == pytest.approx([0.925 / 1.75, 0.775 / 1.75, 1.225, 1.15])


def test_plain_ema_ignores_the_other_modality():
    q = two_code_quantizer(self_weight=1.0).train()
    z_a = torch.tensor([[[0.2, 0.0]]])
    z_v = torch.tensor([[[0.4, 0.2]]])     # both -> code 0; audio: W0 = .5·z_a, video: W0 = .5·(.5·z_a) + .5·z_v
    q({"audio": z_a, "video": z_v})
    assert q.ema_weight[0].tolist() == pytest.approx([0.25 * 0.2 + 0.5 * 0.4, 0.5 * 0.2])


def test_laplace_smoothing_keeps_the_count_mass():
    q = two_code_quantizer(decay=0.9, eps=1e-5).train()
    q({"audio": torch.zeros(1, 4, 2), "video": torch.zeros(1, 4, 2)})   # 8 hits on code 0
    # per modality: n ← .9·n + .1·4, smoothing preserves n: 2 -> 2.2 -> 2.38
    assert float(q.ema_count.sum()) == pytest.approx(2.38)
    assert float(q.ema_count[1]) > 0       # the unused code keeps a positive count


def test_cross_commitment_by_hand():
    """commit_a = .5·MSE(z_a, e_a) + .125·MSE(z_a, e_v) + .125·MSE(z_a, e_t) with β = .25."""
    q = MultiModalEMAQuantizer(("audio", "video", "text"), 2, 2, beta=0.25).eval()
    q.embedding.copy_(torch.tensor([[0.0, 0.0], [2.0, 2.0]]))
    z = {"audio": torch.tensor([[[0.5, 0.0]]], requires_grad=True),   # -> e0
         "video": torch.tensor([[[1.5, 2.0]]]),                          # -> e1
         "text": torch.tensor([[[0.0, 0.5]]])}                           # -> e0
    quantized, _, losses = q(z)
    # MSE(z_a, e0) = (.25 + 0)/2 = .125; MSE(z_a, e1) = (1.5² + 2²)/2 = 3.125
    assert losses["commit_audio"].item() == pytest.approx(0.5 * 0.125 + 0.125 * 3.125 + 0.125 * 0.125)
    # straight-through: the output carries the code's value and the identity gradient to z
    quantized["audio"].sum().backward()
    assert quantized["audio"].tolist() == [[[0.0, 0.0]]] and z["audio"].grad.tolist() == [[[1.0, 1.0]]]
    plain = MultiModalEMAQuantizer(AV, 2, 2, beta=0.25, cross_commitment=False).eval()
    plain.embedding.copy_(q.embedding)
    _, _, losses = plain({"audio": z["audio"].detach(), "video": z["video"]})
    assert losses["commit_audio"].item() == pytest.approx(0.25 * 0.125)


def test_dead_codes_are_reset_to_a_noisy_copy_of_an_active_code():
    q = MultiModalEMAQuantizer(AV, 4, 2, dead_after=3).train()
    q.embedding.copy_(torch.tensor([[0.0, 0.0], [5.0, 5.0], [10.0, 10.0], [-5.0, -5.0]]))
    q.ema_count.fill_(1.0)
    q.ema_weight.copy_(q.embedding)
    z = {"audio": torch.full((2, 3, 2), 0.1), "video": torch.full((2, 3, 2), -0.1)}   # always code 0
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        q(z, g)
    assert q.unused.tolist() == [0, 3, 3, 3]
    assert float(q.embedding[1].min()) > 4          # not yet reset (aged 3, limit is "more than 3")
    q(z, g)                                         # aged 4 > 3: codes 1..3 copy code 0 (the only active one)
    assert q.unused.tolist() == [0, 0, 0, 0]
    gap = (q.embedding[1:] - q.embedding[0]).abs()
    assert float(gap.max()) <= 1 / 1024 and float(gap.max()) > 0
    assert torch.equal(q.ema_count[1:], q.ema_count[0].expand(3))
    assert torch.allclose(q.ema_weight[1:], q.embedding[1:] * q.ema_count[1:, None])
    before = q.embedding[1:].clone()
    at_code0 = q.embedding[0].expand(1, 1, 2).clone()           # hits code 0 only
    q({"audio": at_code0, "video": at_code0}, g)                 # the resets survive an EMA step
    assert float((q.embedding[1:] - before).abs().max()) < 1e-3


def test_codebook_init_is_uniform_within_one_over_l():
    q = MultiModalEMAQuantizer(AV, 400, 16, generator=torch.Generator().manual_seed(0))
    assert float(q.embedding.abs().max()) <= 1 / 400 and float(q.embedding.abs().max()) > 0.9 / 400
    assert float(q.ema_count.sum()) == 0


@pytest.mark.parametrize("kind, levels", [("vq", None), ("rvq", 2), ("rvq", 3), ("rvq", 4), ("fsq", [4, 3, 3])])
def test_every_quantizer_honours_the_contract(kind, levels):
    mods = ("audio", "video", "text")
    torch.manual_seed(0)
    q = build_quantizer(kind, mods, codebook_size=8, code_dim=6, levels=levels).train()
    z = {m: torch.randn(3, 5, 6, requires_grad=True) for m in mods}
    quantized, indices, losses = q(z)
    assert set(quantized) == set(indices) == set(mods)
    idx_shape = (3, 5, levels) if kind == "rvq" else (3, 5)
    for m in mods:
        assert quantized[m].shape == (3, 5, 6) and tuple(indices[m].shape) == idx_shape
    assert set(losses) == ({f"commit_{m}" for m in mods} if kind != "fsq" else set())
    sum(v.sum() for v in quantized.values()).backward()
    assert all(z[m].grad is not None and z[m].grad.abs().sum() > 0 for m in mods)
    q.eval()
    values, ids = q.quantize(z["audio"].detach())
    assert tuple(ids.shape) == idx_shape and values.shape == (3, 5, 6)
    assert len(q.codebooks) == (levels if kind == "rvq" else 1)


def test_rvq_error_decreases_with_levels():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(1, 512, 8, generator=g)
    rvq = ResidualQuantizer(("audio",), 4, 16, 8, generator=g).train()
    for _ in range(40):
        rvq({"audio": data}, g)
    rvq.eval()
    errors = [float((rvq.quantize(data, levels=k)[0] - data).pow(2).mean()) for k in range(1, 5)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.6 * errors[0]


def test_fsq_codes_lie_on_the_declared_grid():
    levels = [8, 5, 3]
    fsq = FiniteScalarQuantizer(("audio", "video"), levels, dim=6)
    torch.manual_seed(0)
    z = torch.randn(4, 7, 6) * 5
    coords, idx = fsq._grid_coords(z)
    for i, n in enumerate(levels):
        allowed = {(k - n // 2) / (n // 2) for k in range(n)}
        assert set(coords[..., i].flatten().tolist()) <= allowed
    assert int(idx.min()) >= 0 and int(idx.max()) < 8 * 5 * 3
    assert torch.equal(fsq.grid[idx].float(), coords)      # index <-> grid point
    # the bound yields exactly L values per dim, even L included
    sweep = fsq.bound(torch.linspace(-20, 20, 2001)[:, None].expand(-1, 3)).round()
    assert [len(set(sweep[:, i].tolist())) for i in range(3)] == levels
    grid = fsq.grid
    assert grid.shape == (120, 3) and len({tuple(r) for r in grid.tolist()}) == 120
    values, ids = fsq.quantize(z)
    assert torch.equal(values, fsq.codebooks[0][ids])        # encode returns codebook rows


def test_fsq_level_parsing():
    assert parse_fsq_levels("8x5x5x5") == [8, 5, 5, 5]
    assert parse_fsq_levels(["8;5;5"]) == [8, 5, 5]         # the spec grammar's list rendering
    assert parse_fsq_levels([7, 5]) == [7, 5]
    for bad in ([1, 5], [], "x", 3):
        with pytest.raises(ValueError):
            parse_fsq_levels(bad)


def test_same_generator_same_codebook():
    def run():
        g = torch.Generator().manual_seed(3)
        q = MultiModalEMAQuantizer(AV, 8, 4, dead_after=2, generator=g).train()
        data = torch.randn(2, 6, 4, generator=g)
        for i, j in itertools.product(range(3), range(2)):
            q({"audio": data + i, "video": data - j}, g)
        return q.embedding.clone()
    assert torch.equal(run(), run())


# --------------------------------------------------------------------------- RVQ as released (issue 14)
def test_release_rvq_pins_code_zero_and_commits_once_on_the_summed_code():
    from methods.quantizers import ResidualQuantizer
    torch.manual_seed(0)
    q = ResidualQuantizer(("audio", "video"), 3, 16, 4, mode="release", dead_after=2).train()
    z = {"audio": torch.randn(2, 5, 4), "video": torch.randn(2, 5, 4)}
    for _ in range(4):
        out = q(z)
    assert all(torch.equal(s.embedding[0], torch.zeros(4)) for s in q.stages)
    total = q.quantize(z["audio"])[0]
    expected = q.stages[0].commitment(z, {m: q.quantize(z[m])[0] for m in z})
    q.eval()
    out = q(z)
    assert set(out.losses) == {"commit_audio", "commit_video"}
    assert torch.allclose(out.losses["commit_audio"], expected["commit_audio"])
    assert torch.allclose(out.quantized["audio"], total)


def test_per_level_rvq_sums_the_level_commitments():
    from methods.quantizers import ResidualQuantizer
    torch.manual_seed(0)
    q = ResidualQuantizer(("audio", "video"), 2, 16, 4, mode="per_level").eval()
    z = {"audio": torch.randn(2, 5, 4), "video": torch.randn(2, 5, 4)}
    out = q(z)
    first = q.stages[0](z)
    residual = {m: z[m] - first.quantized[m].detach() for m in z}
    second = q.stages[1](residual)
    assert torch.allclose(out.losses["commit_audio"], first.losses["commit_audio"] + second.losses["commit_audio"])


def test_dcid_with_released_rvq_has_no_cmcm_term():
    from benchmark import registry
    entry = registry.get("method", "dcid")
    method = entry.load()
    s = method.settings({**entry.defaults(), "quantizer": "rvq", "levels": 2})
    assert s["rvq_mode"] == "release"
    assert method.build_model({"audio": (10, 8), "video": (10, 8)}, s).use_cmcm is False
    assert "rvq_mode" not in method.settings(entry.defaults())     # VQ settings (and keys) do not carry it


# --------------------------------------------------------------------------- FSQ: no stored grid; where CMCM runs
def test_fsq_codes_are_computed_from_the_index_and_match_the_listed_grid():
    from methods.quantizers import FiniteScalarQuantizer
    torch.manual_seed(0)
    q = FiniteScalarQuantizer(["audio", "video"], [8, 5, 5, 5], 16)
    z = torch.randn(3, 4, 16)
    codes, idx = q.quantize(z)
    assert torch.allclose(codes, q.codebooks[0][idx], atol=1e-6)
    assert "grid" not in q.state_dict()                   # nothing prod(levels)-sized is stored or saved


def test_fsq_with_a_high_precision_level_set_trains_without_listing_its_grid():
    from benchmark.contracts import UserError
    from methods.quantizers import FiniteScalarQuantizer
    q = FiniteScalarQuantizer(["audio", "video"], [8, 8, 8, 8, 5, 5, 5], 16)     # 512,000 codes
    out = q({"audio": torch.randn(2, 3, 16, requires_grad=True), "video": torch.randn(2, 3, 16)})
    assert out.quantized["audio"].shape == (2, 3, 16) and int(out.indices["audio"].max()) < 512_000
    out.quantized["audio"].sum().backward()              # straight-through gradient reaches the projection
    with pytest.raises(UserError, match="512,000 codes"):
        q.codebooks


def test_cmcm_runs_for_vq_and_fsq_not_for_released_rvq():
    from methods.alignment import cmcm_applies
    assert cmcm_applies({"cmcm": True, "quantizer": "vq"})
    assert not cmcm_applies({"cmcm": False, "quantizer": "vq"})
    assert not cmcm_applies({"cmcm": True, "quantizer": "rvq", "rvq_mode": "release"})
    assert cmcm_applies({"cmcm": True, "quantizer": "rvq", "rvq_mode": "per_level"})
    assert cmcm_applies({"cmcm": True, "quantizer": "fsq", "cmcm_scale": None})
    assert not cmcm_applies({"cmcm": False, "quantizer": "fsq"})


def test_fsq_cmcm_uses_its_grid_temperature_unless_one_is_given():
    from methods.alignment import FSQ_CMCM_SCALE, cmcm_scale
    assert cmcm_scale({"quantizer": "fsq", "code_dim": 64, "cmcm_scale": None}) == FSQ_CMCM_SCALE == 8.0
    assert cmcm_scale({"quantizer": "fsq", "code_dim": 64, "cmcm_scale": 3.0}) == 3.0
    assert cmcm_scale({"quantizer": "vq", "code_dim": 64, "cmcm_scale": None}) == 2.0     # sqrt(256 / 64)
