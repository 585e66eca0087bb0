"""The seven claims of docs/PAPERS.md, checked on the result store: holds / fails / inconclusive, with statistics.

Nothing is trained and nothing is tuned: the cells, statistics and decision rules below are fixed in advance
and the verdict is whatever the stored numbers say. Seeds pair cells: a comparison of method A and method B uses
the seeds for which *both* have every cell it needs (n = that count).

Quantities (per seed s; each task's `main_metric`, percent):
- CMG(m, s)  = mean of the 8 Table 1 cells: {ave, avvp, ave_avvp, ucf_vgg} × {V->A, A->V}.
- MM(m, s)   = mean of the 6 same-modality cells {ave, avvp, ucf_vgg} × {V->V, A->A} (SRCID Table I's m->m rows,
               which exclude AVE->AVVP).
- LOC(m, s)  = mean of {avvp, ave_avvp} × {V->A, A->V};  CLS(m, s) = mean of {ave, ucf_vgg} × {V->A, A->V}.
- toc_recon cells (method vqvae): per mask ratio (= direction, e.g. `mask87.5`), `mse_random` (mean MSE over
  the random masks) and `mse_toc` (MSE with TOC's mask).

Relations between two per-seed quantities a and b, d_s = a_s − b_s, paired t-test (two-sided p), α = 0.05,
equivalence margin δ = 1.0 point (TOST: the 90 % t-interval of mean(d) inside (−δ, δ)):
- `a > b`   holds if mean(d) > 0 and p < α;  fails if mean(d) < 0 and p < α;  else inconclusive.
- `a ≥ b`   fails if mean(d) < 0 and p < α (significantly worse);  holds if mean(d) > 0 and p < α, or a ≈ b
            (TOST within δ);  else inconclusive.
- `a ≈ b`   holds if TOST within δ;  fails if the 95 % interval of mean(d) lies entirely beyond ±δ;
            else inconclusive.
- fewer than 2 paired seeds: inconclusive (missing data; the missing cells are named).
A claim made of several links fails if any link fails, holds if every link holds, and is inconclusive otherwise.

Claims (cells = methods as specs; every comparison uses CMG unless stated):
1. FCCID > DCID > CMCM > TURN ≈ CODIS: links fccid > dcid, dcid > cmcm, cmcm > turn, turn ≈ codis.
2. +TOC ≥ base for every discrete method: m+toc ≥ m for m ∈ {codis, turn, cmcm, dcid, fccid}.
3. TOC sim+var ≥ either alone: fccid+toc ≥ fccid+toc@criterion=sim, and ≥ fccid+toc@criterion=var.
4. RVQ/FSQ beat VQ on m->m but not cross-modal: for q ∈ the FSQ / RVQ-2,3,4 rows of SRCID Table I's grid:
   MM(q) > MM(vq)  and  CMG(vq) ≥ CMG(q), vq = its VQ row (the specs, budget included, come from the grid).
5. SRCID's layer 2 helps localization more than classification: with gain_X = X(srcid) − X(srcid@only1=true):
   gain_LOC > 0 (LOC(srcid) > LOC(srcid@only1=true)) and gain_LOC > gain_CLS.
6. A codebook of ~400 is best among the sizes tried: CMG(400-code row) ≥ CMG(N-code row) for every other size
   row of Table 7's grid (its rows' `x`; specs from the grid).
7. TOC masks beat random masks for VQ-VAE reconstruction at every ratio: for every mask ratio stored,
   mse_random > mse_toc (lower MSE is better); no ratio stored = inconclusive.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from . import stats
from .atomic import atomic_write_json, atomic_write_text
from .results import CellResult
from .tables.index import Index, build_index, seed_values
from .tables.names import canonical_method, canonical_task

ALPHA = stats.ALPHA
MARGIN = 1.0
HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"

_PAIR = ("V->A", "A->V")
CMG = [(t, (d,), None) for t in ("ave", "avvp", "ave_avvp", "ucf_vgg") for d in _PAIR]
MM = [(t, (d,), None) for t in ("ave", "avvp", "ucf_vgg") for d in ("V->V", "A->A")]
LOC = [(t, (d,), None) for t in ("avvp", "ave_avvp") for d in _PAIR]
CLS = [(t, (d,), None) for t in ("ave", "ucf_vgg") for d in _PAIR]
TOC_BASES = ("codis", "turn", "cmcm", "dcid", "fccid")
QUANTIZER_GRID, SIZE_GRID, BEST_SIZE = "srcid_t1", "t7", 400


def quantizer_rows() -> tuple[str, dict[str, str]]:
    """(VQ spec, {label: spec}) of claim 4, read from SRCID Table I's grid (its first row is the VQ baseline),
    so the claim checks exactly the cells the table shows (e.g. at the grid's own budget)."""
    from .tables import load_table
    rows = [r for r in load_table(QUANTIZER_GRID).rows if not r.mm]
    return rows[0].method, {r.label: r.method for r in rows[1:]}


def size_rows() -> tuple[str, dict[int, str]]:
    """(spec of the 400-code row, {size: spec} of the others) of claim 6, from Table 7's grid (rows with `x`)."""
    from .tables import load_table
    rows = {int(r.x): r.method for r in load_table(SIZE_GRID).rows if r.x is not None}
    return rows.pop(BEST_SIZE), rows
RECON_METHOD, RECON_TASK, RANDOM_MSE, TOC_MSE = "vqvae", "toc_recon", "mse_random", "mse_toc"

RULES = {
    ">": "holds if mean(a−b) > 0 and p < 0.05; fails if mean(a−b) < 0 and p < 0.05; else inconclusive",
    "≥": "fails if mean(a−b) < 0 and p < 0.05; holds if mean(a−b) > 0 and p < 0.05, or a ≈ b within "
         f"±{MARGIN:g} (TOST, 90% CI); else inconclusive",
    "≈": f"holds if the 90% CI of mean(a−b) lies inside ±{MARGIN:g} (TOST); fails if the 95% CI lies entirely "
         f"beyond ±{MARGIN:g}; else inconclusive",
}


@dataclass
class Link:
    """One comparison a REL b over paired seeds."""

    a: str
    rel: str
    b: str
    quantity: str
    a_values: dict[int, float]
    b_values: dict[int, float]
    verdict: str = INCONCLUSIVE
    reason: str = ""
    test: stats.Paired | None = None

    @property
    def seeds(self) -> list[int]:
        return sorted(set(self.a_values) & set(self.b_values))

    def to_dict(self) -> dict:
        s = self.seeds
        return {"a": self.a, "rel": self.rel, "b": self.b, "quantity": self.quantity, "seeds": s,
                "a_mean": stats.mean([self.a_values[i] for i in s]) if s else None,
                "b_mean": stats.mean([self.b_values[i] for i in s]) if s else None,
                "verdict": self.verdict, "reason": self.reason,
                "test": _clean(self.test.to_dict()) if self.test else None}


@dataclass
class Claim:
    number: int
    statement: str
    cells: str
    links: list[Link] = field(default_factory=list)
    missing: list[dict] = field(default_factory=list)
    note: str = ""

    @property
    def verdict(self) -> str:
        return combine([l.verdict for l in self.links]) if self.links else INCONCLUSIVE

    def deciding(self) -> Link | None:
        """The link deciding the verdict: the first failing, else the first inconclusive, else the weakest (max p)."""
        for v in (FAILS, INCONCLUSIVE):
            for link in self.links:
                if link.verdict == v:
                    return link
        tested = [l for l in self.links if l.test is not None]
        return max(tested, key=lambda l: l.test.p) if tested else None

    def to_dict(self) -> dict:
        return {"claim": self.number, "statement": self.statement, "cells": self.cells, "verdict": self.verdict,
                "links": [l.to_dict() for l in self.links], "missing": self.missing, "note": self.note}


def _clean(obj):
    """JSON-safe: NaN/inf -> None / strings."""
    if isinstance(obj, float):
        return None if math.isnan(obj) else ("inf" if obj == math.inf else "-inf" if obj == -math.inf else obj)
    if isinstance(obj, (list, tuple)):
        return [_clean(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    return obj


def combine(verdicts: Sequence[str]) -> str:
    if any(v == FAILS for v in verdicts):
        return FAILS
    if verdicts and all(v == HOLDS for v in verdicts):
        return HOLDS
    return INCONCLUSIVE


def decide(rel: str, test: stats.Paired, alpha: float = ALPHA, margin: float = MARGIN) -> tuple[str, str]:
    """Verdict of `a rel b` from the paired test of a − b (rules in the module docstring)."""
    if test.n < 2 or math.isnan(test.p):
        return INCONCLUSIVE, f"missing data: n={test.n} paired seeds (< 2)"
    sig = test.p < alpha
    if rel == ">":
        if sig and test.mean_diff > 0:
            return HOLDS, "significantly greater"
        if sig and test.mean_diff < 0:
            return FAILS, "significantly smaller"
        return INCONCLUSIVE, "not significant"
    if rel == "≥":
        if sig and test.mean_diff < 0:
            return FAILS, "significantly smaller"
        if sig and test.mean_diff > 0:
            return HOLDS, "significantly greater"
        if stats.equivalent(test, margin):
            return HOLDS, f"equivalent within ±{margin:g}"
        return INCONCLUSIVE, "neither significantly different nor shown equivalent"
    if rel == "≈":
        if stats.equivalent(test, margin):
            return HOLDS, f"equivalent within ±{margin:g}"
        if stats.differs_beyond(test, margin):
            return FAILS, f"differs by more than {margin:g}"
        return INCONCLUSIVE, "equivalence not shown"
    raise ValueError(f"unknown relation {rel!r}")


def compare(a: str, rel: str, b: str, quantity: str, a_values: dict, b_values: dict) -> Link:
    link = Link(a, rel, b, quantity, a_values, b_values)
    seeds = link.seeds
    link.test = stats.paired_test([a_values[s] for s in seeds], [b_values[s] for s in seeds])
    link.verdict, link.reason = decide(rel, link.test)
    return link


# --------------------------------------------------------------------------- the seven claims
class _Ctx:
    """Index + bookkeeping of missing cells shared by the claim builders."""

    def __init__(self, index: Index):
        self.index = index
        self.missing: list[dict] = []

    def q(self, method: str, coords) -> dict[int, float]:
        """Per-seed quantity of a method over the union of seeds the store holds (any method), so a method
        with no cells at all is reported missing for every seed rather than silently skipped."""
        m = canonical_method(method)
        coords = [(canonical_task(t), d, metric) for t, d, metric in coords]
        seeds = sorted({s for (_, _, s) in self.index.cells}) or [0]
        return seed_values(self.index, m, coords, seeds=seeds, missing=self.missing)


def _claim(number: int, statement: str, cells: str, ctx: _Ctx, links: list[Link], note: str = "") -> Claim:
    missing = {(m["method"], m["task"], m["seed"], m["reason"]): m for m in ctx.missing}
    ctx.missing = []
    return Claim(number, statement, cells, links, sorted(missing.values(), key=lambda m: tuple(map(str, m.values()))),
                 note)


def claim1(ctx: _Ctx) -> Claim:
    order = ["fccid", "dcid", "cmcm", "turn", "codis"]
    v = {m: ctx.q(m, CMG) for m in order}
    links = [compare(a, ">", b, "CMG", v[a], v[b]) for a, b in zip(order[:3], order[1:4])]
    links.append(compare("turn", "≈", "codis", "CMG", v["turn"], v["codis"]))
    return _claim(1, "FCCID > DCID > CMCM > TURN ≈ CODIS on the Table 1 average", "CMG of fccid, dcid, cmcm, turn, "
                  "codis (8 Table 1 cells each)", ctx, links)


def claim2(ctx: _Ctx) -> Claim:
    links = [compare(f"{m}+toc", "≥", m, "CMG", ctx.q(f"{m}+toc", CMG), ctx.q(m, CMG)) for m in TOC_BASES]
    return _claim(2, "+TOC ≥ base for every discrete method", "CMG of m and m+toc, m ∈ "
                  + ", ".join(TOC_BASES), ctx, links)


def claim3(ctx: _Ctx) -> Claim:
    both = ctx.q("fccid+toc", CMG)
    links = [compare("fccid+toc", "≥", f"fccid+toc@criterion={c}", "CMG", both,
                     ctx.q(f"fccid+toc@criterion={c}", CMG)) for c in ("sim", "var")]
    return _claim(3, "TOC sim+var ≥ either alone", "CMG of fccid+toc (criterion both), "
                  "fccid+toc@criterion=sim, fccid+toc@criterion=var (Table 6)", ctx, links)


def claim4(ctx: _Ctx) -> Claim:
    vq, quantizers = quantizer_rows()
    vq_mm, vq_cmg = ctx.q(vq, MM), ctx.q(vq, CMG)
    links = []
    for spec in quantizers.values():
        links.append(compare(spec, ">", vq, "MM (m->m)", ctx.q(spec, MM), vq_mm))
        links.append(compare(vq, "≥", spec, "CMG (cross-modal)", vq_cmg, ctx.q(spec, CMG)))
    return _claim(4, "RVQ/FSQ beat VQ on m→m but not cross-modal", f"MM and CMG of {vq} (VQ) and "
                  + ", ".join(quantizers.values()) + " (SRCID Table I)", ctx, links)


def claim5(ctx: _Ctx) -> Claim:
    full_loc, one_loc = ctx.q("srcid", LOC), ctx.q("srcid@only1=true", LOC)
    full_cls, one_cls = ctx.q("srcid", CLS), ctx.q("srcid@only1=true", CLS)
    gain_loc = {s: full_loc[s] - one_loc[s] for s in set(full_loc) & set(one_loc)}
    gain_cls = {s: full_cls[s] - one_cls[s] for s in set(full_cls) & set(one_cls)}
    links = [compare("srcid", ">", "srcid@only1=true", "LOC", full_loc, one_loc),
             compare("gain_LOC", ">", "gain_CLS", "layer-2 gain (srcid − srcid@only1=true)", gain_loc, gain_cls)]
    return _claim(5, "SRCID's layer 2 helps localization (AVVP, AVE→AVVP) more than classification",
                  "LOC = avvp, ave_avvp; CLS = ave, ucf_vgg; V->A and A->V; srcid vs srcid@only1=true "
                  "(SRCID Table II)", ctx, links)


def claim6(ctx: _Ctx) -> Claim:
    base, others = size_rows()
    best = ctx.q(base, CMG)
    links = [compare(f"{base} ({BEST_SIZE})", "≥", spec, "CMG", best, ctx.q(spec, CMG)) for spec in others.values()]
    return _claim(6, "A codebook of ~400 is best among the sizes tried", f"CMG of {base} ({BEST_SIZE} codes) "
                  f"vs {', '.join(others.values())} (Table 7)", ctx, links)


def claim7(ctx: _Ctx) -> Claim:
    method, task = canonical_method(RECON_METHOD), canonical_task(RECON_TASK)
    ratios = sorted({d for (m, t, _), r in ctx.index.cells.items() if m == method and t == task
                     for d, v in r.metrics.items() if RANDOM_MSE in v and TOC_MSE in v})
    links = [compare("random masks", ">", "TOC mask", f"MSE at {d}",
                     ctx.q(RECON_METHOD, [(RECON_TASK, (d,), RANDOM_MSE)]),
                     ctx.q(RECON_METHOD, [(RECON_TASK, (d,), TOC_MSE)])) for d in ratios]
    note = ""
    if not ratios:
        note = f"no {RECON_TASK} cell of {RECON_METHOD} reports both {RANDOM_MSE} and {TOC_MSE}"
        for s in sorted({s for (_, _, s) in ctx.index.cells}) or [0]:
            present = ctx.index.get(method, task, s) is not None
            ctx.missing.append({"method": method, "task": task, "seed": s, "reason": (
                f"no direction with both {RANDOM_MSE} and {TOC_MSE}" if present else "no result")})
    return _claim(7, "TOC masks beat random masks for VQ-VAE reconstruction at every ratio",
                  f"{RECON_METHOD} × {RECON_TASK}: {RANDOM_MSE} vs {TOC_MSE} per mask ratio (Table 3)", ctx, links,
                  note)


CLAIMS = (claim1, claim2, claim3, claim4, claim5, claim6, claim7)


def wanted_cells() -> set[tuple[str, str]]:
    """(method, task) pairs the claims read, to pick the world."""
    vq, quantizers = quantizer_rows()
    base, sizes = size_rows()
    methods = ["fccid", "dcid", "cmcm", "turn", "codis", *[f"{m}+toc" for m in TOC_BASES],
               "fccid+toc@criterion=sim", "fccid+toc@criterion=var", vq, *quantizers.values(), "srcid",
               "srcid@only1=true", base, *sizes.values()]
    tasks = ["ave", "avvp", "ave_avvp", "ucf_vgg"]
    out = {(canonical_method(m), canonical_task(t)) for m in methods for t in tasks}
    return out | {(canonical_method(RECON_METHOD), canonical_task(RECON_TASK))}


def evaluate(results: Sequence[CellResult | dict], world: str | None = None) -> tuple[list[Claim], Index]:
    index = build_index(results, world, wanted_cells())
    ctx = _Ctx(index)
    return [c(ctx) for c in CLAIMS], index


# --------------------------------------------------------------------------- output
def _num(x: float | None, fmt: str = "+.2f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "+inf" if x > 0 else "-inf"
    return format(x, fmt)


def _p(p: float) -> str:
    return "n/a" if p is None or math.isnan(p) else (f"{p:.3g}" if p >= 1e-4 else "<1e-4")


def link_row(link: Link) -> list[str]:
    t = link.test
    s = link.seeds
    a = stats.mean([link.a_values[i] for i in s]) if s else math.nan
    b = stats.mean([link.b_values[i] for i in s]) if s else math.nan
    return [f"{link.a} {link.rel} {link.b}", link.quantity, _num(a, ".2f"), _num(b, ".2f"),
            _num(t.mean_diff if t else None), _num(t.d_z if t else None), _p(t.p if t else math.nan),
            str(len(s)), f"{link.verdict} ({link.reason})"]


LINK_HEAD = ["comparison a REL b", "quantity", "mean a", "mean b", "Δ = a−b", "d_z", "p", "n", "verdict"]


def to_markdown(claims: list[Claim], index: Index) -> str:
    lines = ["# Claims of the papers, checked on the result store", "",
             f"World: {index.world or 'none found'}. Paired by seed; two-sided paired t-test, α = {ALPHA}; "
             f"equivalence margin δ = {MARGIN:g} point (TOST). Nothing tuned: rules fixed in `benchmark/claims.py`.",
             "", "Decision rules per comparison:", ""]
    lines += [f"- `a {rel} b`: {rule}" for rel, rule in RULES.items()]
    lines += ["- fewer than 2 paired seeds: inconclusive (missing cells listed).",
              "- a claim holds if every comparison holds, fails if any fails, else inconclusive.", "",
              "| # | claim | verdict | deciding comparison | Δ | d_z | p | n |", "|---|---|---|---|---|---|---|---|"]
    for c in claims:
        d = c.deciding()
        row = link_row(d) if d else ["–"] * 9
        lines.append(f"| {c.number} | {c.statement} | **{c.verdict}** | {row[0]} ({row[1]}) | {row[4]} | {row[5]} "
                     f"| {row[6]} | {row[7]} |")
    for w in index.warnings:
        lines += ["", f"> warning: {w}"]
    for c in claims:
        lines += ["", f"## {c.number}. {c.statement} — **{c.verdict}**", "", f"Cells: {c.cells}.", ""]
        if c.note:
            lines += [c.note, ""]
        if c.links:
            lines += ["| " + " | ".join(LINK_HEAD) + " |", "|" + "---|" * len(LINK_HEAD)]
            lines += ["| " + " | ".join(link_row(l)) + " |" for l in c.links]
        if c.missing:
            lines += ["", "Missing cells:"]
            lines += [f"- {m['method']} × {m['task']} × seed {m['seed']} ({m['reason']})" for m in c.missing]
    return "\n".join(lines) + "\n"


def to_json(claims: list[Claim], index: Index) -> dict:
    return {"world": index.world, "alpha": ALPHA, "margin": MARGIN, "rules": RULES, "warnings": index.warnings,
            "claims": [_clean(c.to_dict()) for c in claims]}


def write(claims: list[Claim], index: Index, out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    atomic_write_text(out / "claims.md", to_markdown(claims, index))
    atomic_write_json(out / "claims.json", to_json(claims, index))
    return [out / "claims.md", out / "claims.json"]


def to_rich(claims: list[Claim], index: Index):
    from rich.table import Table
    colour = {HOLDS: "green", FAILS: "red", INCONCLUSIVE: "yellow"}
    table = Table(title=f"Claims (world {index.world or 'none found'}; paired t over seeds, α={ALPHA}, "
                        f"δ={MARGIN:g})", title_justify="left")
    for h in ["#", "claim / comparison", "quantity", "Δ", "d_z", "p", "n", "verdict"]:
        table.add_column(h, justify="right" if h in ("Δ", "d_z", "p", "n") else "left")
    for c in claims:
        if c.number != claims[0].number:
            table.add_section()
        table.add_row(str(c.number), f"[bold]{c.statement}[/]", "", "", "", "", "",
                      f"[bold {colour[c.verdict]}]{c.verdict}[/]")
        for l in c.links:
            r = link_row(l)
            table.add_row("", "  " + r[0], r[1], r[4], r[5], r[6], r[7], f"[{colour[l.verdict]}]{r[8]}[/]")
        if c.note:
            table.add_row("", f"  [dim]{c.note}[/]", "", "", "", "", "", "")
    return table

