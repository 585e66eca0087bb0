"""The claim engine: paired comparisons of per-seed quantities, their verdicts and the claims' renderers.

Nothing is trained and nothing is tuned: the decision rules below are fixed in advance and the verdict is whatever
the stored numbers say. Seeds pair cells: a comparison of A and B uses the seeds for which *both* have every cell
it needs (n = that count). The paper's seven claims, built on this engine, are in `benchmark/paper_claims.py`.

Relations between two per-seed quantities a and b, d_s = a_s − b_s, paired t-test (two-sided p), α = 0.05,
equivalence margin δ = 1.0 point (TOST: the 90 % t-interval of mean(d) inside (−δ, δ)):
- `a > b`   holds if mean(d) > 0 and p < α;  fails if mean(d) < 0 and p < α;  else inconclusive.
- `a ≥ b`   fails if mean(d) < 0 and p < α (significantly worse);  holds if mean(d) > 0 and p < α, or a ≈ b
            (TOST within δ);  else inconclusive.
- `a ≈ b`   holds if TOST within δ;  fails if the 95 % interval of mean(d) lies entirely beyond ±δ;
            else inconclusive.
- fewer than 2 paired seeds: inconclusive (missing data; the missing cells are named).
A claim made of several links fails if any link fails, holds if every link holds, and is inconclusive otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from . import stats
from .atomic import atomic_write_json, atomic_write_text
from .tables.index import Index, seed_values
from .tables.names import canonical_method, canonical_task

ALPHA = stats.ALPHA
MARGIN = 1.0
HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"

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


class Ctx:
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


def make_claim(number: int, statement: str, cells: str, ctx: Ctx, links: list[Link], note: str = "") -> Claim:
    missing = {(m["method"], m["task"], m["seed"], m["reason"]): m for m in ctx.missing}
    ctx.missing = []
    return Claim(number, statement, cells, links, sorted(missing.values(), key=lambda m: tuple(map(str, m.values()))),
                 note)


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
        table.add_column(h, justify="right" if h in ("Δ", "d_z", "p", "n") else "left", overflow="fold")
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

