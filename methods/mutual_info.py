"""Mutual-information estimators: CLUB (upper bound, minimised), cross-modal CPC and InfoNCE (lower bounds, maximised).

- `CLUB` (Cheng et al. 2020): a Gaussian q(y|x) = N(μ(x), diag e^{logvar(x)}) learnt by likelihood; the sampled
  vCLUB bound I ≈ E_p(x,y)[log q(y|x)] − E_p(x)E_p(y)[log q(y|x)] with in-batch shuffled negatives.
- `CrossCPC` (Oord et al. 2018; seed-000 paper Eq. 21): per-modality LSTM contexts predict every modality's features r steps
  ahead; in-batch negatives; cross pairs weigh 1, self pairs 0.1.
- `info_nce`: cosine InfoNCE with in-batch negatives (FCCID's AV↔text term).
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .recurrent import lstm_outputs


def mlp(dims: Sequence[int], final: nn.Module | None = None) -> nn.Sequential:
    """Linear layers through `dims` with ReLU between them (and `final` after the last, if given)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    if final is not None:
        layers.append(final)
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- distinct rows
class DistinctRows(NamedTuple):
    """Rows `[N, D]` stored as `values[inverse]`: the distinct rows `[U, D]` and each row's index into them `[N]`."""

    values: Tensor
    inverse: Tensor


_INT_OF_SIZE = {2: torch.int16, 4: torch.int32, 8: torch.int64}


@functools.lru_cache(maxsize=32)
def _projection(width: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Two fixed random directions `[2, width]` that rows are projected on to key them."""
    g = torch.Generator().manual_seed(0x5EED)
    return torch.randn(2, width, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)


def distinct_rows(x: Tensor) -> DistinctRows | None:
    """The exact distinct rows of x `[..., D]` (flattened to rows), or None if they could not be told apart.

    Rows are keyed by the bits of their projections on two random directions (a row-wise product and sum: far
    cheaper than `torch.unique(dim=0)`'s row sort, an integer pass over every bit or a skinny matrix product, which
    matters for wide rows such as whole text clips; each row is reduced alike, so equal rows get equal keys) and the
    grouping is then verified bit for bit: rows that share a key but differ return None, never a wrong answer.
    """
    flat = x.detach().reshape(-1, x.shape[-1])
    if flat.shape[0] == 0 or not flat.is_floating_point() or flat.element_size() not in _INT_OF_SIZE:
        return None
    with torch.autocast(flat.device.type, enabled=False):
        projected = torch.stack([(flat * w).sum(-1) for w in _projection(flat.shape[1], flat.dtype, flat.device)], -1)
    bits = projected.view(_INT_OF_SIZE[projected.element_size()]).to(torch.int64)
    keys = bits[:, 0] * 1_000_003 + bits[:, 1]                      # wraps around in int64: a hash
    _, inverse = torch.unique(keys, return_inverse=True)
    n = inverse.new_full((int(inverse.max()) + 1,), flat.shape[0])
    first = n.scatter_reduce(0, inverse, torch.arange(flat.shape[0], device=flat.device), "amin")
    values = flat[first]
    if not torch.equal(values[inverse], flat):
        return None
    return DistinctRows(values, inverse)


# --------------------------------------------------------------------------- CLUB
class GroupedRows(NamedTuple):
    """x rows with repeats, for the Gaussian likelihood: the distinct rows `[U, Dx]` and, per distinct row, its
    number of rows `[U, 1]`, the mean `[U, Dy]` of their y and the sum of squared deviations from that mean `[U, Dy]`
    (Σ_r (μ − y_r)² = n·(μ − ȳ)² + Σ_r (y_r − ȳ)²); `rows` in all."""

    values: Tensor
    count: Tensor
    mean: Tensor
    scatter: Tensor
    rows: int

    @staticmethod
    def of(rows: DistinctRows, y: Tensor) -> "GroupedRows":
        y = y.detach().reshape(-1, y.shape[-1])
        u = rows.values.shape[0]
        count = torch.bincount(rows.inverse, minlength=u).to(y.dtype).unsqueeze(-1)
        mean = y.new_zeros(u, y.shape[-1]).index_add_(0, rows.inverse, y) / count
        scatter = y.new_zeros(u, y.shape[-1]).index_add_(0, rows.inverse, (y - mean[rows.inverse]) ** 2)
        return GroupedRows(rows.values, count, mean, scatter, y.shape[0])


class CLUB(nn.Module):
    """Gaussian variational q(y|x); μ and logvar nets x→h→h→h→y (logvar ends in tanh, as coded)."""

    # fit on distinct x rows when at most this share of the rows is distinct (quantized codes repeat a lot)
    DISTINCT_BELOW = 0.75

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 128):
        super().__init__()
        self.mu = mlp([x_dim, hidden, hidden, hidden, y_dim])
        self.logvar = mlp([x_dim, hidden, hidden, hidden, y_dim], nn.Tanh())

    def log_likelihood(self, x: Tensor | GroupedRows, y: Tensor | None) -> Tensor:
        """½·mean over samples of Σ_d [−(μ−y)²/σ² − log σ²] (the Gaussian log-likelihood up to a constant).

        With `GroupedRows` (y then unused) the nets and every elementwise term run once per distinct x, on its
        rows' count, mean and squared deviations: the same function (and gradient) of the weights, at U/N of the
        cost."""
        if isinstance(x, GroupedRows):
            mu, logvar = self.mu(x.values), self.logvar(x.values)
            squares = x.count * (mu - x.mean) ** 2 + x.scatter
            return -(squares / logvar.exp() + x.count * logvar).sum() / (2 * x.rows)
        mu, logvar = self.mu(x), self.logvar(x)
        return (-(mu - y) ** 2 / logvar.exp() - logvar).sum(-1).mean() / 2

    def learning_loss(self, x: Tensor | GroupedRows, y: Tensor | None) -> Tensor:
        """What the estimator's own optimiser minimises (negative log-likelihood)."""
        return -self.log_likelihood(x, y)

    def fit_inputs(self, x: Tensor, y: Tensor) -> tuple[Tensor | GroupedRows, Tensor | None]:
        """(x, y) as the fitting loop should pass them to `learning_loss` for its several steps on one batch: x as
        its distinct rows with their y statistics when codes repeat (DCID/SRCID fit on quantized codes: ~100-500
        distinct of 1280 rows)."""
        rows = distinct_rows(x)
        if rows is None or rows.values.shape[0] > self.DISTINCT_BELOW * rows.inverse.shape[0]:
            return x, y
        return GroupedRows.of(rows, y), None

    def mi_upper_bound(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """vCLUB estimate (seed-000 paper Eq. 20, one shuffled negative per sample): x `[B, (T,) Dx]`, y `[B, (T,) Dy]`.

        As coded for sequences: squared errors and logvar are averaged over T first, i.e. per clip
        −mean_T (μ−y)² / exp(mean_T logvar); negatives pair clip i's x with clip π(i)'s y (π a random
        permutation of the batch). Returns ½·mean_B Σ_d (positive − negative), in nats.
        """
        if x.dim() == 2:
            x, y = x.unsqueeze(1), y.unsqueeze(1)
        mu, logvar = self.mu(x), self.logvar(x)
        perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
        scale = logvar.mean(1).exp()
        positive = -((mu - y) ** 2).mean(1) / scale
        negative = -((mu - y[perm]) ** 2).mean(1) / scale
        return (positive.sum(-1) - negative.sum(-1)).mean() / 2


# --------------------------------------------------------------------------- contrastive scores
def nce_nll(targets: Tensor, predictions: Tensor) -> Tensor:
    """Mean over the batch of −log softmax_j(⟨target_i, pred_j⟩) at j = i: `[..., B, D]` × `[..., B, D]` -> `[...]`.

    The other B−1 items of the batch are the negatives (CPC Eq. 4, InfoNCE). Equals log B when all scores tie.
    """
    scores = targets @ predictions.transpose(-1, -2)                 # [..., B, B]
    return -torch.diagonal(scores.log_softmax(-1), dim1=-2, dim2=-1).mean(-1)


def info_nce(query: Tensor, key: Tensor, temperature: float = 0.1, symmetric: bool = False) -> Tensor:
    """InfoNCE on L2-normalised `[B, D]` pairs (query_i ↔ key_i positive), temperature τ; one direction by default
    (as the `info-nce-pytorch` defaults FCCID used), both directions averaged when `symmetric`."""
    q, k = F.normalize(query, dim=-1), F.normalize(key, dim=-1)
    loss = nce_nll(q / temperature, k)
    return (loss + nce_nll(k / temperature, q)) / 2 if symmetric else loss


# --------------------------------------------------------------------------- cross-modal CPC
def cpc_pair_weights(n_modalities: int, cross_weight: float = 1.0, self_weight: float = 0.1) -> Tensor:
    """`[M, M]` weights of the (target modality, predicting modality) pairs: cross 1, self 0.1 (as coded)."""
    return torch.full((n_modalities, n_modalities), cross_weight).fill_diagonal_(self_weight)


def sample_anchor(length: int, horizon: int, generator: torch.Generator | None = None) -> int:
    """One anchor step t ~ U{1, …, T−1−R} for the whole batch (as coded: {1..8} for T = 10, R = 1)."""
    high = length - horizon            # exclusive upper bound: t + R <= T − 1
    if high <= 1:
        raise ValueError(f"cross-modal CPC needs T > horizon + 1 steps, got T={length}, horizon={horizon}")
    return int(torch.randint(1, high, (1,), generator=generator).item())


class CrossCPC(nn.Module):
    """Cross-modal CPC over continuous modal-general features `{m: [B, T, D]}` (seed-000 paper Eq. 21).

    One LSTM pass per modality over steps 0..t gives the context c^m_t; W^m_r c^m_t predicts f^n_{t+r} for every
    modality n and horizon r = 1..R at once (batched einsums, no loop over time, pairs or horizons). Each
    (n, m, r) scores the B targets against the B predictions; the loss is Σ_{n,m} w_nm · mean_r NCE_nmr.
    """

    def __init__(self, modalities: Sequence[str], dim: int, hidden: int, layers: int = 2, horizon: int = 1,
                 cross_weight: float = 1.0, self_weight: float = 0.1):
        super().__init__()
        self.modalities = tuple(modalities)
        self.horizon = int(horizon)
        self.lstms = nn.ModuleDict({m: nn.LSTM(dim, hidden, layers, batch_first=True) for m in self.modalities})
        bound = 1.0 / math.sqrt(hidden)          # nn.Linear's default init, one W_r per (modality, horizon)
        shape = (len(self.modalities), self.horizon)
        self.weight = nn.Parameter(torch.empty(*shape, hidden, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(*shape, dim).uniform_(-bound, bound))
        self.register_buffer("pair_weights", cpc_pair_weights(len(self.modalities), cross_weight, self_weight))

    def pair_losses(self, z: dict[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        """NCE per (target n, predictor m, horizon r): `[M, M, R]`."""
        feats = torch.stack([z[m] for m in self.modalities])              # [M, B, T, D]
        t = sample_anchor(feats.shape[2], self.horizon, generator)
        context = torch.stack([lstm_outputs(self.lstms[m], z[m][:, :t + 1])[:, -1] for m in self.modalities])
        predictions = torch.einsum("mbh,mrhd->mrbd", context, self.weight) + self.bias[:, :, None, :]
        targets = feats[:, :, t + 1:t + 1 + self.horizon].transpose(1, 2)  # [M(n), R, B, D]
        return nce_nll(targets[:, None], predictions[None])                 # broadcast to [n, m, R]

    def forward(self, z: dict[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        return (self.pair_weights * self.pair_losses(z, generator).mean(-1)).sum()
