"""TOC: training-free optimisation of a pretrained codebook (seed 000, Sec. 3.2), the `+toc` refiner.

For every codebook dimension k the codebook e ∈ R^{L×D} (L codes) is scored by
    Eq. 15  S_k = mean over ordered code pairs i≠j of e_k^i·e_k^j        (inter-code similarity)
    Eq. 16  V_k = variance of e_k over the L codes                      (inter-code variance)
    Eq. 17  U_k = λ·V_k − (1−λ)·S_k                                      (λ = 0.3)
and the top-Q dimensions by U_k are kept. Q defaults to the released scripts' share of the codebook width for the
cell's task (the card's `facts: q_per_task`, e.g. AVE 256 of 256, AVVP 196 of 256), written as a fraction so it scales
with D; `q` fixes it. Downstream heads then see only those dimensions of the quantized vectors; codes
are still chosen by the full-D nearest-neighbour search (as in the released `cal_criterion` scripts,
docs/ORIGINAL_CODE.md §2.2). Nothing is retrained. Several codebooks whose vectors encode() concatenates (SRCID's two
layers, TURN's chunks) get Q dims each; residual levels that add up in one D-wide vector share one selection,
scored on the first level (the coarse one that carries most of the vector).

Normalisation. The paper writes Eq. 15 with 1/L² and Eq. 16 with 1/L; the released code takes the *mean* over
the L(L−1) ordered pairs and `torch.var` (unbiased, 1/(L−1)). We follow the code. The choice cannot change
which dimensions are selected: paper S = (L−1)/L · code S and paper V = (L−1)/L · code V, so the paper's U_k
is the code's U_k times the same positive constant (L−1)/L, for every λ (tested).

S_k is computed in closed form, Σ_{i≠j} e^i e^j = (Σ_i e^i)² − Σ_i (e^i)², so scoring is O(L·D), not
O(L²·D).

`toc-random` is the control: the same Q per codebook, dimensions drawn at random (seeded by `draw` and the cell's
seed, recorded in the diagnostics), so a table shows what the criterion adds over dropping dimensions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from benchmark.contracts import Pretrained, Refiner, UserError

CRITERIA = ("both", "sim", "var")
LOW_VARIANCE_SHARE = 0.2      # a kept half of the dims holding less than this share of the variance gets a warning


# --------------------------------------------------------------------------- scores (pure math)
def inter_code_similarity(codebook: torch.Tensor) -> torch.Tensor:
    """Eq. 15 per dimension: S_k = ((Σ_i e_k^i)² − Σ_i (e_k^i)²) / (L(L−1)). codebook [L, D] -> [D] float64."""
    e = codebook.detach().to(torch.float64)
    n = e.shape[0]
    if n < 2:
        raise UserError(f"TOC needs a codebook with at least 2 codes, got {n}")
    total = e.sum(0)
    return (total * total - (e * e).sum(0)) / (n * (n - 1))


def inter_code_variance(codebook: torch.Tensor) -> torch.Tensor:
    """Eq. 16, per dimension, unbiased over the L codes (as coded). codebook [L, D] -> [D] (float64)."""
    return codebook.detach().to(torch.float64).var(dim=0, unbiased=True)


def toc_scores(codebook: torch.Tensor, lam: float = 0.3, criterion: str = "both") -> torch.Tensor:
    """Eq. 17 U_k = λV_k − (1−λ)S_k (`both`), or the Table 6 ablations −S_k (`sim`) / V_k (`var`). -> [D]."""
    if criterion == "both":
        return lam * inter_code_variance(codebook) - (1.0 - lam) * inter_code_similarity(codebook)
    if criterion == "sim":
        return -inter_code_similarity(codebook)
    if criterion == "var":
        return inter_code_variance(codebook)
    raise UserError(f"toc: criterion must be one of {list(CRITERIA)}, got {criterion!r}")


def select_dims(scores: torch.Tensor, q: int, n_max: int = 1, n_min: int = 0) -> torch.Tensor:
    """Indices (ascending) of the kept dims: the top ⌊q/(max+min)⌋·max and bottom ⌊q/(max+min)⌋·min by score.

    This is the released scripts' `max:min` split; with min=0 it is a plain top-q. When q is not a multiple of
    max+min fewer than q dimensions are kept, as coded. A stable sort makes ties deterministic. scores [D].
    """
    d = scores.shape[0]
    if not 1 <= q <= d:
        raise UserError(f"toc: q must be in 1..{d} (the codebook has {d} dimensions), got q={q}")
    unit = q // (n_max + n_min)
    n_top, n_bottom = unit * n_max, unit * n_min
    if n_top + n_bottom == 0:
        raise UserError(f"toc: q={q} with max:min={n_max}:{n_min} keeps no dimension (q must be >= max+min)")
    order = torch.sort(scores, descending=True, stable=True).indices
    kept = torch.cat([order[:n_top], order[d - n_bottom:]]) if n_bottom else order[:n_top]
    return torch.sort(kept).values


# --------------------------------------------------------------------------- how codebooks map onto encode()
def codebook_layout(pretrained: Pretrained) -> tuple[str, list[int]]:
    """("concat", offsets) when encode() concatenates one vector per codebook (SRCID, TURN, single VQ), or
    ("shared", [0]) when several codebooks of width `dim` add up in one vector (residual VQ levels)."""
    widths = [int(cb.shape[1]) for cb in pretrained.codebooks]
    dim = int(pretrained.dim)
    if sum(widths) == dim:
        offsets = [sum(widths[:i]) for i in range(len(widths))]
        return "concat", offsets
    if all(w == dim for w in widths):
        return "shared", [0]
    raise UserError(f"toc: cannot map codebook widths {widths} onto {pretrained.method}'s encode width {dim} "
                    "(expected their sum, or each equal to it)")


# --------------------------------------------------------------------------- the refined representation
@dataclass(frozen=True)
class Selection:
    """Per layer: kept dims (relative to that codebook) and all D scores; `index` = kept dims of encode()."""

    layers: tuple[torch.Tensor, ...]
    scores: tuple[torch.Tensor, ...]
    index: torch.Tensor
    variance_share: tuple[float, ...] = ()    # per layer: share of the codebook's per-dim variance the kept dims hold


class TOCPretrained(Pretrained):
    """A pretrained discrete model whose quantized vectors are sliced to the TOC-selected dimensions.

    encode(m, x) -> base.encode(m, x)[..., index]  [N, T, Q_total]; codes(m, x) unchanged (full-D search).
    """

    discrete = True

    def __init__(self, base: Pretrained, selection: Selection, layout: str, cfg: Mapping[str, Any],
                 suffix: str = "toc"):
        self.base, self.selection, self.layout, self.cfg = base, selection, layout, dict(cfg)
        self.method = f"{base.method}+{suffix}"

    @property
    def dim(self) -> int:
        return int(self.selection.index.numel())

    @property
    def modalities(self):
        return self.base.modalities

    @property
    def codebooks(self) -> list:
        books = self.base.codebooks
        if self.layout == "shared":
            return [cb[:, self.selection.layers[0].to(cb.device)] for cb in books]
        return [cb[:, kept.to(cb.device)] for cb, kept in zip(books, self.selection.layers)]

    def encode(self, modality: str, x):
        z = self.base.encode(modality, x)
        if self.selection.index.numel() == z.shape[-1]:     # every dim kept (AVE as released): the base, bit for bit
            return z
        return z[..., self.selection.index.to(z.device)]

    def codes(self, modality: str, x):
        return self.base.codes(modality, x)

    def sliced_from(self) -> tuple[Pretrained, torch.Tensor]:
        """(base, kept columns): `encode` is the base's encoding at these columns (all of them, in order, when every
        dim is kept), so encoding caches slice the base's (tasks.encodings) instead of encoding again."""
        index = self.selection.index
        return self.base, torch.arange(index.numel()) if index.numel() == self.base.dim else index

    def to(self, device: str) -> "TOCPretrained":
        self.base = self.base.to(device)
        return self

    def diagnostics(self) -> dict:
        toc = {"options": self.cfg, "layout": self.layout, "dim": self.dim,
               "selected": [kept.tolist() for kept in self.selection.layers],
               "scores": [[float(f"{v:.6g}") for v in s.tolist()] for s in self.selection.scores],
               "kept_variance_share": [round(v, 4) for v in self.selection.variance_share]}
        return {**self.base.diagnostics(), "toc": toc}


def refine_codebooks(codebooks: Sequence[torch.Tensor], cfg: Mapping[str, Any], layout: str = "concat",
                     offsets: Sequence[int] = (0,), fraction: float = 0.5,
                     generator: torch.Generator | None = None) -> Selection:
    """Select dims per codebook (concat) or once from the first, coarsest codebook (shared residual levels);
    with a `generator`, Q dims drawn at random instead (the control)."""
    books = list(codebooks) if layout == "concat" else [codebooks[0]]
    layers, scores, shares = [], [], []
    for cb in books:
        q = resolve_q(cfg["q"], cb.shape[1], fraction)
        if generator is not None:
            select_dims(torch.zeros(cb.shape[1]), q)       # the same range check as the criterion
            s = torch.rand(cb.shape[1], generator=generator, dtype=torch.float64)
            kept = torch.sort(torch.argsort(s, descending=True)[:q]).values
        else:
            s = toc_scores(cb, cfg["lam"], cfg["criterion"])
            kept = select_dims(s, q, cfg["max"], cfg["min"])
        layers.append(kept)
        scores.append(s)
        shares.append(kept_variance_share(cb, kept))
    index = torch.cat([kept + off for kept, off in zip(layers, offsets)])
    return Selection(tuple(layers), tuple(scores), index, tuple(shares))


def kept_variance_share(codebook: torch.Tensor, kept: torch.Tensor) -> float:
    """Σ_kept V_k / Σ_k V_k. Why it is recorded: on a codebook with a common offset (e.g. ReLU codes, all ≥ 0)
    S_k ≈ mean_k² dominates U_k, so Eq. 17 ranks the near-constant dims first and the kept half can hold almost
    none of the codes' spread — the head then sees codes it cannot tell apart."""
    var = inter_code_variance(codebook)
    total = float(var.sum())
    return float(var[kept].sum()) / total if total > 0 else 0.0


DEFAULT_TASK = "default"      # the `q_per_task` entry for tasks the release has no script for


def q_fraction(facts: Mapping[str, Any], task: str | None) -> float:
    """The released share of the codebook width kept for `task` (card `facts: q_per_task`)."""
    table = facts.get("q_per_task") or {}
    value = table.get(task, table.get(DEFAULT_TASK, 0.5))
    return float(value)


def resolve_q(q: int | None, width: int, fraction: float = 0.5) -> int:
    """Dims to keep from a codebook of `width` dims: q, or round(fraction · width) when q is None."""
    return max(1, min(width, int(round(fraction * width)))) if q is None else int(q)


def check_options(cfg: Mapping[str, Any]) -> None:
    if not 0.0 <= cfg["lam"] <= 1.0:
        raise UserError(f"toc: lam must be in [0, 1], got {cfg['lam']}")
    if cfg["max"] < 0 or cfg["min"] < 0 or cfg["max"] + cfg["min"] == 0:
        raise UserError(f"toc: max and min must be >= 0 with max+min >= 1, got max={cfg['max']} min={cfg['min']}")
    if cfg["criterion"] not in CRITERIA:
        raise UserError(f"toc: criterion must be one of {list(CRITERIA)}, got {cfg['criterion']!r}")


class TOC(Refiner):
    """`+toc`: score the frozen codebook(s) once and slice every quantized vector to the kept dims."""

    facts: dict = {}
    suffix = "toc"

    def generator(self, cfg: Mapping[str, Any], ctx) -> torch.Generator | None:
        return None

    def kept_dims(self, codebook, cfg: Mapping[str, Any]) -> list[int]:
        """The dims TOC keeps of one codebook `[L, D]` (`q` null = half its width): what `plot toc-heatmap` draws,
        reached through the registry like every other use of the refiner."""
        check_options(cfg)
        book = torch.as_tensor(codebook)
        q = resolve_q(cfg.get("q"), book.shape[1])
        return select_dims(toc_scores(book, cfg["lam"], cfg["criterion"]), q, cfg["max"], cfg["min"]).tolist()

    def refine(self, pretrained: Pretrained, cfg: Mapping[str, Any], ctx) -> TOCPretrained:
        if not getattr(pretrained, "discrete", False):
            raise UserError(f"{self.suffix} needs a discrete method (a codebook); '{pretrained.method}' is continuous")
        check_options(cfg)
        layout, offsets = codebook_layout(pretrained)
        fraction = q_fraction(self.facts, getattr(ctx, "task", None))
        generator = self.generator(cfg, ctx)
        selection = refine_codebooks([cb.detach().cpu() for cb in pretrained.codebooks], cfg, layout, offsets,
                                     fraction, generator)
        ctx.log(f"{self.suffix}: kept {selection.index.numel()} of {pretrained.dim} dims ({layout}, "
                f"{'random' if generator is not None else cfg['criterion']})")
        low = [v for v in selection.variance_share if v < LOW_VARIANCE_SHARE]
        if low and generator is None:     # advice about the criterion; the random control has none to follow
            ctx.log(f"toc: warning: the kept dims hold only {min(low):.0%} of the codebook's inter-code variance "
                    "(the similarity term favours near-constant dims on this codebook); criterion=var or a larger q "
                    "keeps more of it")
        return TOCPretrained(pretrained, selection, layout, {**cfg, "q_fraction": fraction}, self.suffix)


RANDOM_DEFAULTS = {"lam": 0.3, "criterion": "both", "max": 1, "min": 0}   # unused by the draw; checked as TOC's


class TOCRandom(TOC):
    """`+toc-random`: TOC's Q per codebook, the dims drawn uniformly at random — the control row for `+toc`."""

    suffix = "toc-random"

    def generator(self, cfg: Mapping[str, Any], ctx) -> torch.Generator:
        seed = getattr(ctx, "seed", None)
        return torch.Generator().manual_seed(1_000_003 * int(cfg["draw"]) + int(seed or 0))

    def refine(self, pretrained: Pretrained, cfg: Mapping[str, Any], ctx) -> TOCPretrained:
        return super().refine(pretrained, {**RANDOM_DEFAULTS, **cfg}, ctx)
