"""MI estimators (issue 4): CLUB bounds the MI of correlated Gaussians, cross-modal CPC / InfoNCE scores."""
from __future__ import annotations

import math

import pytest
import torch

from methods.mutual_info import CLUB, CrossCPC, GroupedRows, cpc_pair_weights, info_nce, nce_nll, sample_anchor
from methods.trainer import EstimatorFitter

MODS = ("audio", "video", "text")



def gaussian_pairs(rho: float, n: int = 2000, dim: int = 4, seed: int = 0):
    """x ~ N(0, I), y = ρx + √(1−ρ²)ε per dim: I(x; y) = −½·dim·log(1 − ρ²)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    y = rho * x + math.sqrt(1 - rho ** 2) * torch.randn(n, dim, generator=g)
    return x, y


def fitted_club_estimate(rho: float) -> float:
    torch.manual_seed(0)
    x, y = gaussian_pairs(rho)
    club = CLUB(4, 4, hidden=32)
    fitter = EstimatorFitter({"club": club}, steps=5, lr=1e-3)     # the DCID schedule: 5 steps/batch, lr 1e-3
    g = torch.Generator().manual_seed(1)
    for _ in range(12):
        for idx in torch.randperm(len(x), generator=g).split(250):
            fitter({"club": (x[idx], y[idx])})
    x, y = gaussian_pairs(rho, seed=2)     # estimate on fresh samples: no credit for memorising the fit set
    with torch.no_grad():                  # average the one-permutation estimate over a few shuffles
        return sum(float(club.mi_upper_bound(x, y, g)) for _ in range(10)) / 10


def test_club_upper_bounds_the_mi_of_correlated_gaussians():
    rho = 0.6
    true_mi = -0.5 * 4 * math.log(1 - rho ** 2)                    # 0.893 nats
    estimate = fitted_club_estimate(rho)
    # with the true q(y|x) the vCLUB value is dim·ρ²/(1−ρ²) = 2.25 ≥ I
    assert true_mi <= estimate < 3.0, (true_mi, estimate)
    print(f"CLUB: true MI {true_mi:.3f}, estimate {estimate:.3f}")


def test_club_is_near_zero_on_independent_variables():
    estimate = fitted_club_estimate(0.0)
    assert abs(estimate) < 0.05, estimate


def test_club_log_likelihood_formula():
    club = CLUB(1, 1, hidden=4)
    x, y = torch.zeros(2, 1), torch.tensor([[1.0], [3.0]])
    mu, logvar = club.mu(x)[0, 0].item(), club.logvar(x)[0, 0].item()
    want = sum(-(mu - v) ** 2 / math.exp(logvar) - logvar for v in (1.0, 3.0)) / 2 / 2
    assert club.log_likelihood(x, y).item() == pytest.approx(want, rel=1e-5)
    with torch.no_grad():
        assert float(club.logvar(torch.randn(50, 1) * 100).abs().max()) <= 1.0     # tanh-bounded log-variance


def test_nce_is_log_b_for_tied_scores_and_zero_for_separated_pairs():
    b = 8
    assert nce_nll(torch.zeros(b, 4), torch.zeros(b, 4)).item() == pytest.approx(math.log(b))
    separated = 10 * torch.eye(b)                                   # identical, well-separated target/prediction
    assert nce_nll(separated, separated).item() < 1e-6


def test_info_nce_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # scores = I / τ (τ = 1): −log(e / (e + 1)) per row
    assert info_nce(q, q, temperature=1.0).item() == pytest.approx(math.log(1 + math.exp(-1)))
    assert info_nce(q, q.flip(0), temperature=1.0).item() == pytest.approx(math.log(1 + math.exp(1)))
    assert info_nce(q, q, temperature=1.0, symmetric=True).item() == pytest.approx(math.log(1 + math.exp(-1)))


def test_cpc_loss_is_log_b_per_pair_on_random_features():
    torch.manual_seed(0)
    b = 16
    cpc = CrossCPC(MODS, dim=8, hidden=8, layers=2, horizon=1)
    z = {m: 0.01 * torch.randn(b, 6, 8) for m in MODS}             # uninformative, near-tied scores
    pairs = cpc.pair_losses(z, torch.Generator().manual_seed(0))
    assert pairs.shape == (3, 3, 1)
    assert torch.allclose(pairs, torch.full_like(pairs, math.log(b)), atol=1e-3)
    weights = cpc_pair_weights(3)
    assert weights.tolist() == [[0.1, 1, 1], [1, 0.1, 1], [1, 1, 0.1]] or torch.allclose(
        weights, torch.tensor([[0.1, 1, 1], [1, 0.1, 1], [1, 1, 0.1]]))
    total = cpc(z, torch.Generator().manual_seed(0)).item()
    assert total == pytest.approx(6.3 * math.log(b), rel=1e-3)     # 6 cross pairs ·1 + 3 self pairs ·0.1


def test_cpc_learns_to_zero_on_identical_separated_features():
    torch.manual_seed(0)
    b, t = 8, 5
    clip = 4 * torch.eye(b)[:, None, :].expand(b, t, b)             # clip i = 4·e_i at every step, all modalities
    z = {m: clip for m in MODS[:2]}
    cpc = CrossCPC(MODS[:2], dim=b, hidden=16, layers=1, horizon=2)
    opt = torch.optim.Adam(cpc.parameters(), lr=0.02)
    g = torch.Generator().manual_seed(0)
    start = cpc(z, g).item()
    for _ in range(150):
        opt.zero_grad()
        loss = cpc(z, g)
        loss.backward()
        opt.step()
    assert start > 2.0 * math.log(b) and loss.item() < 0.05


def test_cpc_vectorised_scores_equal_a_loop_over_pairs_and_horizons():
    torch.manual_seed(0)
    cpc = CrossCPC(MODS, dim=6, hidden=5, layers=2, horizon=2)
    z = {m: torch.randn(4, 7, 6) for m in MODS}
    got = cpc.pair_losses(z, torch.Generator().manual_seed(5))
    t = sample_anchor(7, 2, torch.Generator().manual_seed(5))
    want = torch.zeros(3, 3, 2)
    for mi, m in enumerate(MODS):
        context = cpc.lstms[m](z[m][:, :t + 1])[0][:, -1]
        for r in range(2):
            pred = context @ cpc.weight[mi, r] + cpc.bias[mi, r]
            for ni, n in enumerate(MODS):
                scores = z[n][:, t + 1 + r] @ pred.t()
                want[ni, mi, r] = -torch.diagonal(scores.log_softmax(-1)).mean()
    assert torch.allclose(got, want, atol=1e-5)


def test_anchor_range_matches_the_release():
    g = torch.Generator().manual_seed(0)
    assert {sample_anchor(10, 1, g) for _ in range(400)} == set(range(1, 9))      # t ∈ {1..8} for T = 10
    with pytest.raises(ValueError):
        sample_anchor(2, 1, g)


# --------------------------------------------------------------------------- fits on distinct codes (issue 9)
def test_distinct_rows_are_exact_and_a_collision_falls_back():
    from methods import mutual_info as mi
    g = torch.Generator().manual_seed(0)
    codebook = torch.randn(50, 8, generator=g)
    idx = torch.randint(0, 12, (6, 10), generator=g)
    rows = mi.distinct_rows(codebook[idx])
    assert rows.values.shape[0] == len(torch.unique(idx))
    assert torch.equal(rows.values[rows.inverse], codebook[idx].reshape(-1, 8))
    nearly = codebook[idx].reshape(-1, 8).clone()
    nearly[0, 3] = torch.nextafter(nearly[0, 3], torch.tensor(math.inf))     # one ulp apart: a distinct row
    assert mi.distinct_rows(nearly).values.shape[0] == rows.values.shape[0] + 1
    original = mi._projection
    try:                                                   # every row hashes alike: verification must refuse
        mi._projection = lambda width, dtype, device: torch.zeros(2, width, dtype=dtype)
        assert mi.distinct_rows(codebook[idx]) is None
    finally:
        mi._projection = original


def test_club_fit_on_distinct_codes_has_the_same_loss_and_gradients():
    torch.manual_seed(0)
    club = CLUB(8, 5, hidden=16)
    g = torch.Generator().manual_seed(1)
    codebook = torch.randn(20, 8, generator=g)
    x = codebook[torch.randint(0, 20, (32, 10), generator=g)]          # [B, T, D] quantized codes repeat
    y = torch.randn(32, 10, 5, generator=g)
    xs, ys = club.fit_inputs(x, y)
    assert isinstance(xs, GroupedRows) and xs.values.shape[0] <= 20 and ys is None
    direct = club.learning_loss(x, y)
    grads = torch.autograd.grad(direct, list(club.parameters()))
    distinct = club.learning_loss(xs, ys)
    grads_d = torch.autograd.grad(distinct, list(club.parameters()))
    assert torch.allclose(direct, distinct, rtol=1e-6, atol=1e-6)
    for a, b in zip(grads, grads_d):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    continuous = torch.randn(32, 10, 8, generator=g)                    # nothing repeats: the direct path
    assert club.fit_inputs(continuous, y)[0] is continuous


def test_straight_through_returns_the_code_bit_for_bit_with_the_identity_gradient():
    from methods.quantizers import straight_through
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(200, 16, generator=g) * 3).requires_grad_(True)
    q = torch.randn(200, 16, generator=g) * 1e-3
    out = straight_through(q, z)
    assert torch.equal(out, q)                     # z + (q − z) is not: it is off by an ulp somewhere
    assert not torch.equal(z.detach() + (q - z.detach()), q)
    out.mul(torch.arange(16.0)).sum().backward()
    assert torch.equal(z.grad, torch.arange(16.0).expand(200, 16))
