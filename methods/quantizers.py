"""Quantizers behind one contract: `forward({modality: z [B, T, D]}) -> (quantized, indices, losses)`.

All three dicts are keyed by modality except `losses` (keyed by loss name, e.g. `commit_audio`). `quantized` is the
straight-through output (value of the code, gradient of z); `indices` is `[B, T]` (`[B, T, levels]` for RVQ).
`quantize(z)` is the inference path (no EMA update, no straight-through); `codebooks` lists the `[L, D]` tables
refiners (TOC) read; `distance_logits(z)` gives −‖z − e‖ over the codes that CMCM's soft assignment uses.

- `MultiModalEMAQuantizer` (DCID, docs/ORIGINAL_CODE.md §1.3): one codebook shared by every modality, nearest code
  by squared L2, EMA codebook (decay 0.99, eps 1e-5, Laplace-smoothed counts), the multi-modal EMA (each
  modality's codes also pulled towards the other modalities' features at the same (b, t): self 0.5, the rest split
  evenly), cross-modal commitment (self 2β, cross β split evenly), and dead-code reset.
- `ResidualQuantizer`: a stack of the above on successive residuals (RVQ; Lee et al. 2022), one codebook per level.
- `FiniteScalarQuantizer`: FSQ (Mentzer et al. 2023): project to len(levels) dims, bound, round per dim.
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.contracts import UserError

from .alignment import cmcm_scale
from .precision import full_precision


class QuantizerOutput(NamedTuple):
    quantized: dict[str, Tensor]   # [B, T, D] straight-through
    indices: dict[str, Tensor]     # [B, T] or [B, T, levels]
    losses: dict[str, Tensor]      # e.g. {"commit_audio": scalar}


def straight_through(value: Tensor, z: Tensor) -> Tensor:
    """`value` forward, the identity's gradient to `z` backward (the VQ-VAE straight-through estimator).

    Written value + (z − sg z) rather than the usual z + sg(value − z): the forward result is `value` bit for bit
    (z + (q − z) is q only up to an ulp), so vectors with the same code are identical rows — which CLUB's fits
    on distinct rows (mutual_info.distinct_rows) rely on. Gradients are the same."""
    return value.detach() + (z - z.detach())


def squared_distances(z: Tensor, codebook: Tensor) -> Tensor:
    """‖z − e‖² for every code: z `[..., D]`, codebook `[L, D]` -> `[..., L]`."""
    return (z.pow(2).sum(-1, keepdim=True) - 2 * z @ codebook.t() + codebook.pow(2).sum(-1)).clamp_min(0)


def distance_logits(z: Tensor, codebook: Tensor) -> Tensor:
    """−‖z − e‖ (not squared, as CMCM is coded), `[..., L]`; clamped so the sqrt gradient stays finite."""
    return -squared_distances(z, codebook).clamp_min(1e-12).sqrt()


def mixing_weights(n_modalities: int, self_weight: float) -> Tensor:
    """`[M, M]` matrix w[m, o]: how much modality o's features at m's codes move m's codes (MM-EMA, DCID Eq. 7).

    Self `self_weight`, the rest `(1 − self_weight)` split evenly: 0.5/0.25/0.25 for three modalities, 0.5/0.5
    for two (as coded); a single modality keeps weight 1.
    """
    if n_modalities == 1:
        return torch.ones(1, 1)
    cross = (1.0 - self_weight) / (n_modalities - 1)
    return torch.full((n_modalities, n_modalities), cross).fill_diagonal_(self_weight)


def commitment_weights(n_modalities: int, beta: float, cross: bool = True) -> tuple[float, float]:
    """(self, cross-each) commitment weights. Cross-modal (DCID paper): self 2β, cross β split over the others
    (β/2 each for three modalities, β for two: the released 0.5 / 0.125 and 0.5 / 0.25 for β = 0.25).
    Plain VQ-VAE commitment (`cross=False`): self β, no cross terms."""
    if not cross or n_modalities == 1:
        return beta, 0.0
    return 2.0 * beta, beta / (n_modalities - 1)


def _rand(shape, generator, device, dtype) -> Tensor:
    """Uniform [0, 1) drawn from `generator` on CPU (so one CPU generator serves CUDA runs too)."""
    return torch.rand(shape, generator=generator).to(device=device, dtype=dtype)


class Quantizer(nn.Module):
    """Base class; subclasses set `modalities` and implement the contract in the module docstring."""

    modalities: tuple[str, ...]

    @property
    def codebooks(self) -> list[Tensor]:
        raise NotImplementedError

    @property
    def num_codes(self) -> list[int]:
        """Codes per level (one entry per codebook)."""
        return [int(c.shape[0]) for c in self.codebooks]

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def distance_logits(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    logit_scale: float = 1.0     # CMCM sharpness; set from the method's settings (`alignment.cmcm_scale`)
    cmcm_codebook: Tensor | None = None   # the table `distance_logits` measures to, when it takes no gradient

    def cmcm_logits(self, z: Tensor) -> Tensor:
        """The logits CMCM's soft assignment uses: `distance_logits` × `logit_scale`."""
        logits = self.distance_logits(z)
        return logits * self.logit_scale if self.logit_scale != 1.0 else logits


class MultiModalEMAQuantizer(Quantizer):
    """Shared codebook `[L, D]` with EMA updates, multi-modal EMA, cross commitment and dead-code reset.

    The EMA runs sequentially per modality in `modalities` order (as coded: a, then v, then t), so the decay applies
    M times per batch; assignments and the returned codes use the codebook from before this batch's updates.
    Dead-code reset: every training forward ages each code by one; codes hit by any modality go back to 0; codes
    older than `dead_after` batches are overwritten with a random active code (age < dead_after / 3) plus
    U(±`reset_noise`) noise. Unlike the release (which overwrote only `embedding`, recomputed from the EMA state at
    the next step) the reset also copies the donor's EMA count so that it survives the next EMA step.
    """

    def __init__(self, modalities: Sequence[str], num_codes: int, dim: int, *, decay: float = 0.99,
                 eps: float = 1e-5, beta: float = 0.25, self_weight: float = 0.5, dead_after: int = 300,
                 cross_commitment: bool = True, reset_noise: float = 1.0 / 1024, init_scale: float | None = None,
                 generator: torch.Generator | None = None, pin_zero: bool = False):
        super().__init__()
        self.modalities = tuple(modalities)
        self.decay, self.eps, self.beta = float(decay), float(eps), float(beta)
        self.cross_commitment = bool(cross_commitment)
        self.dead_after, self.reset_noise = int(dead_after), float(reset_noise)
        self.active_below = max(1, self.dead_after // 3)
        scale = 1.0 / num_codes if init_scale is None else init_scale   # U(−1/L, 1/L) as coded
        embedding = (torch.rand(num_codes, dim, generator=generator) * 2 - 1) * scale
        self.pin_zero = bool(pin_zero)      # code 0 stays the zero vector (RVQ levels as released)
        if self.pin_zero:
            embedding[0] = 0.0
        self.register_buffer("embedding", embedding)
        self.register_buffer("ema_weight", embedding.clone())
        self.register_buffer("ema_count", torch.zeros(num_codes))
        self.register_buffer("unused", torch.zeros(num_codes, dtype=torch.long))
        self.register_buffer("mixing", mixing_weights(len(self.modalities), self_weight))

    @property
    def codebooks(self) -> list[Tensor]:
        return [self.embedding]

    def assign(self, z: Tensor) -> Tensor:
        """Nearest code index per vector: z `[..., D]` -> `[...]`."""
        return squared_distances(z.detach(), self.embedding).argmin(-1)

    @full_precision
    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor]:
        idx = self.assign(z)
        return self.embedding[idx], idx

    @full_precision
    def distance_logits(self, z: Tensor) -> Tensor:
        return distance_logits(z, self.embedding)

    @property
    def cmcm_codebook(self) -> Tensor:
        return self.embedding

    @full_precision
    def forward(self, z: dict[str, Tensor], generator: torch.Generator | None = None) -> QuantizerOutput:
        names = [m for m in self.modalities if m in z]
        idx = {m: self.assign(z[m]) for m in names}
        codes = {m: self.embedding[idx[m]] for m in names}           # before this batch's EMA updates
        losses = self.commitment(z, codes)
        if self.training:
            self.ema_update({m: z[m].detach() for m in names}, idx)
            self.reset_dead_codes(idx, generator)
            if self.pin_zero:
                self._pin()
        quantized = {m: straight_through(codes[m], z[m]) for m in names}
        return QuantizerOutput(quantized, idx, losses)

    def commitment(self, z: dict[str, Tensor], codes: dict[str, Tensor]) -> dict[str, Tensor]:
        """commit_m = 2β·MSE(z_m, sg e_m) + Σ_o β/(M−1)·MSE(z_m, sg e_o) (e_o: o's code at the same (b, t));
        β·MSE(z_m, sg e_m) alone without cross commitment."""
        names = list(codes)
        w_self, w_cross = commitment_weights(len(names), self.beta, self.cross_commitment)
        out = {}
        for m in names:
            loss = w_self * F.mse_loss(z[m], codes[m].detach())
            for o in names:
                if o != m and w_cross:
                    loss = loss + w_cross * F.mse_loss(z[m], codes[o].detach())
            out[f"commit_{m}"] = loss
        return out

    @torch.no_grad()
    def ema_update(self, z: dict[str, Tensor], idx: dict[str, Tensor]) -> None:
        """Multi-modal EMA, one modality after another (DCID Eq. 7 without the dropped cross-attention).

        For modality m with assignments E_m: N ← γN + (1−γ)·counts_m, Laplace-smoothed; W ← γW + (1−γ)·Σ_o w_mo
        E_mᵀ z_o; e = W / N. z_o must share m's `[B, T]` grid (the same clip and second).
        """
        names = list(z)
        pos = [self.modalities.index(m) for m in names]
        num_codes = self.embedding.shape[0]
        flat = {m: z[m].reshape(-1, z[m].shape[-1]) for m in names}
        for i, m in enumerate(names):
            rows = idx[m].reshape(-1)
            counts = torch.bincount(rows, minlength=num_codes).to(self.ema_count.dtype)
            self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
            n = self.ema_count.sum()
            self.ema_count.copy_((self.ema_count + self.eps) / (n + num_codes * self.eps) * n)
            mixed = sum(self.mixing[pos[i], pos[j]] * flat[o] for j, o in enumerate(names)
                        if self.mixing[pos[i], pos[j]] != 0)
            dw = torch.zeros_like(self.ema_weight).index_add_(0, rows, mixed)
            self.ema_weight.mul_(self.decay).add_(dw, alpha=1 - self.decay)
            self.embedding.copy_(self.ema_weight / self.ema_count.unsqueeze(-1))

    @torch.no_grad()
    def _pin(self) -> None:
        """Code 0 back to zero after the EMA step; it is never dead (a zero residual is always a valid code)."""
        self.embedding[0] = 0.0
        self.ema_weight[0] = 0.0
        self.unused[0] = 0

    @torch.no_grad()
    def reset_dead_codes(self, idx: dict[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        """Age codes, revive those unused for more than `dead_after` batches; returns the reset code ids."""
        self.unused += 1
        for rows in idx.values():
            self.unused[rows.reshape(-1)] = 0
        dead = (self.unused > self.dead_after).nonzero().squeeze(-1)
        if dead.numel() == 0:
            return dead
        active = (self.unused < self.active_below).nonzero().squeeze(-1)
        pick = torch.randint(active.numel(), (dead.numel(),), generator=generator).to(active.device)
        donors = active[pick]
        noise = (_rand((dead.numel(), self.embedding.shape[1]), generator, self.embedding.device,
                       self.embedding.dtype) * 2 - 1) * self.reset_noise
        self.embedding[dead] = self.embedding[donors] + noise
        self.ema_count[dead] = self.ema_count[donors]
        self.ema_weight[dead] = self.embedding[dead] * self.ema_count[dead].unsqueeze(-1)
        self.unused[dead] = 0
        return dead


class ResidualQuantizer(Quantizer):
    """RVQ: level k quantizes what levels < k left over; each level is a `MultiModalEMAQuantizer` of its own.

    The code of a vector is the sum of its level codes; indices are `[B, T, levels]`. Two modes:
    - `release` (the released DCID RVQ variant, `Cross_RQEmbeddingEMA_AVT`): code 0 of every level is pinned to
      the zero vector (a level may add nothing), and commitment is computed once, on the summed code;
      the DCID model turns CMCM off with it, as the release does.
    - `per_level`: commitment summed over levels, each on its own residual; no pinned code; CMCM (if on) uses
      level 0, the only one that sees z itself.
    """

    MODES = ("release", "per_level")

    def __init__(self, modalities: Sequence[str], levels: int, num_codes: int, dim: int,
                 generator: torch.Generator | None = None, mode: str = "release", **ema):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"rvq mode must be one of {self.MODES}, got {mode!r}")
        self.modalities = tuple(modalities)
        self.mode = mode
        self.stages = nn.ModuleList(MultiModalEMAQuantizer(modalities, num_codes, dim, generator=generator,
                                                           pin_zero=(mode == "release"), **ema)
                                    for _ in range(levels))

    @property
    def codebooks(self) -> list[Tensor]:
        return [s.embedding for s in self.stages]

    @full_precision
    def quantize(self, z: Tensor, levels: int | None = None) -> tuple[Tensor, Tensor]:
        residual, total, ids = z, torch.zeros_like(z), []
        for stage in self.stages[:levels]:
            code, i = stage.quantize(residual)
            residual, total = residual - code, total + code
            ids.append(i)
        return total, torch.stack(ids, -1)

    @full_precision
    def distance_logits(self, z: Tensor) -> Tensor:
        return self.stages[0].distance_logits(z)

    @property
    def cmcm_codebook(self) -> Tensor:
        return self.stages[0].embedding

    @full_precision
    def forward(self, z: dict[str, Tensor], generator: torch.Generator | None = None) -> QuantizerOutput:
        names = [m for m in self.modalities if m in z]
        residual = {m: z[m] for m in names}
        total = {m: torch.zeros_like(z[m]) for m in names}
        ids: dict[str, list] = {m: [] for m in names}
        losses: dict[str, Tensor] = {}
        for stage in self.stages:
            out = stage(residual, generator)
            for m in names:
                code = out.quantized[m].detach()          # straight-through output: the code's value
                total[m] = total[m] + code
                residual[m] = residual[m] - code
                ids[m].append(out.indices[m])
            if self.mode == "per_level":
                for k, v in out.losses.items():
                    losses[k] = losses[k] + v if k in losses else v
        if self.mode == "release":
            losses = self.stages[0].commitment(z, total)
        quantized = {m: straight_through(total[m], z[m]) for m in names}
        return QuantizerOutput(quantized, {m: torch.stack(ids[m], -1) for m in names}, losses)


def parse_fsq_levels(value) -> list[int]:
    """FSQ levels from a list or a string such as "8x5x5x5" / "8-5-5-5" / "[8;5;5;5]" (the spec grammar's list)."""
    if isinstance(value, str):
        value = [int(v) for v in re.findall(r"\d+", value)]
    elif isinstance(value, (list, tuple)):
        value = [v for item in value for v in (parse_fsq_levels(item) if isinstance(item, str) else [item])]
    else:
        raise ValueError(f"FSQ levels must be a list of ints, got {value!r}")
    if not value or any(not isinstance(v, int) or isinstance(v, bool) or v < 2 for v in value):
        raise ValueError(f"FSQ levels must be ints >= 2, got {value!r}")
    return list(value)


MAX_GRID = 1 << 16      # FSQ codes the codebook view may list (the FSQ paper's largest level set, 8x8x8x5x5x5, has 64,000)


class FiniteScalarQuantizer(Quantizer):
    """FSQ: z `[.., D]` → Linear → d = len(levels) dims, bound to (−L_i/2, L_i/2), round (straight-through),
    normalise to [−1, 1], Linear back to D. The implicit codebook is the grid of prod(levels) points; no EMA,
    no commitment (Mentzer et al. 2023, Eq. 1 with the half-level offset for even L)."""

    def __init__(self, modalities: Sequence[str], levels: Sequence[int], dim: int):
        super().__init__()
        self.modalities = tuple(modalities)
        levels = parse_fsq_levels(list(levels))
        self.levels = list(levels)
        self.project_in = nn.Linear(dim, len(levels))
        self.project_out = nn.Linear(len(levels), dim)
        lv = torch.tensor(levels, dtype=torch.float64)
        self.register_buffer("_levels", lv)
        self.register_buffer("_half", torch.div(lv, 2, rounding_mode="floor"))
        basis = torch.cumprod(torch.tensor([1] + levels[:-1]), 0)
        self.register_buffer("_basis", basis)
        self.size = math.prod(levels)

    def points(self, idx: Tensor) -> Tensor:
        """Normalised grid coordinates of code indices `[..]` -> `[.., d]` (digit i of k is (k // basis_i) % L_i):
        computed from the index, so the grid itself is never stored."""
        digits = (idx.long()[..., None] // self._basis) % self._levels.long()
        return (digits - self._half.long()).to(self._half.dtype) / self._half

    @property
    def grid(self) -> Tensor:
        """Every grid point in index order `[prod(levels), d]`; only for the codebook view (TOC, usage) and CMCM,
        refused beyond MAX_GRID points (a high-precision level set trains and encodes without it)."""
        if self.size > MAX_GRID:
            raise UserError(f"fsq: levels {self.levels} make {self.size:,} codes; listing them all (TOC, CMCM) is "
                            f"limited to {MAX_GRID:,} (use fewer levels)")
        return self.points(torch.arange(self.size, device=self._basis.device))

    def bound(self, h: Tensor) -> Tensor:
        """tanh bound so that rounding yields exactly L_i values per dim (offset ½ for even L_i)."""
        lv = self._levels.to(h.dtype)
        half_l = (lv - 1) * (1 + 1e-3) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0).to(h.dtype)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(h + shift) * half_l - offset

    def _grid_coords(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(normalised code coordinates with straight-through gradient `[.., d]`, indices `[..]`)."""
        bounded = self.bound(self.project_in(z))
        rounded = straight_through(torch.round(bounded), bounded)
        half = self._half.to(z.dtype)
        idx = ((rounded.detach() + half).round().long() * self._basis).sum(-1)
        return rounded / half, idx

    @property
    def codebooks(self) -> list[Tensor]:
        return [self.project_out(self.grid.to(self.project_out.weight.dtype))]

    @full_precision
    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor]:
        _, idx = self._grid_coords(z)
        return self.project_out(self.points(idx).to(self.project_out.weight.dtype)), idx

    @full_precision
    def distance_logits(self, z: Tensor) -> Tensor:
        """−‖u − g‖ between the bounded, normalised (unrounded) projection u and every grid point g."""
        u = self.bound(self.project_in(z)) / self._half.to(z.dtype)
        return distance_logits(u, self.grid.to(z.dtype))

    @full_precision
    def forward(self, z: dict[str, Tensor], generator: torch.Generator | None = None) -> QuantizerOutput:
        names = [m for m in self.modalities if m in z]
        out_q, out_i = {}, {}
        for m in names:
            coords, out_i[m] = self._grid_coords(z[m])
            out_q[m] = self.project_out(coords)
        return QuantizerOutput(out_q, out_i, {})


def build_quantizer(kind: str, modalities: Sequence[str], *, codebook_size: int, code_dim: int, levels=None,
                    generator: torch.Generator | None = None, **ema) -> Quantizer:
    """`vq` | `rvq` (levels = number of residual levels) | `fsq` (levels = per-dim level counts)."""
    if kind == "vq":
        return MultiModalEMAQuantizer(modalities, codebook_size, code_dim, generator=generator, **ema)
    if kind == "rvq":
        return ResidualQuantizer(modalities, int(levels), codebook_size, code_dim, generator=generator, **ema)
    if kind == "fsq":
        return FiniteScalarQuantizer(modalities, parse_fsq_levels(levels), code_dim)
    raise ValueError(f"unknown quantizer '{kind}' (vq | rvq | fsq)")


def quantizer_from_settings(modalities, s: Mapping[str, Any], *, mm_ema: bool, cross_commitment: bool):
    """The quantizer every codebook method builds from its resolved settings."""
    ema = {}
    if s["quantizer"] in ("vq", "rvq"):
        ema = dict(decay=s["decay"], beta=s["beta"], self_weight=0.5 if mm_ema else 1.0,
                   dead_after=s["dead_after"], cross_commitment=cross_commitment)
    if s["quantizer"] == "rvq":
        ema["mode"] = s["rvq_mode"]
    quantizer = build_quantizer(s["quantizer"], modalities, codebook_size=s["codebook_size"],
                                code_dim=s["code_dim"], levels=s["levels"], **ema)
    quantizer.logit_scale = cmcm_scale(s)
    return quantizer
