"""Report figures from the result store (PNG, matplotlib Agg via `Figure`, no pyplot global state).

- Codebook activation per modality (seed 000 Appendix E, Figs. 5/6): for every code, each modality's share of
  its activations, after normalising each modality's counts by that modality's total (so a modality that emits
  more tokens, e.g. audio at T per clip vs text, does not dominate). Categories, as the paper colours them:
  "one"  = a single modality holds > 95 % of the code's share (red),
  "all"  = every modality holds ≥ 5 % (green),
  "two"  = in between, i.e. shared by some but not all modalities (blue).
  Codes no modality activates are "dead" and excluded from the fractions.
  Input: `result.diagnostics["code_counts"] = {"audio": [L], "video": [L], "text": [L]}` (or `[layers, L]`).
- Codebook-size curve: the Avg. column of a table whose rows carry `x:` (t7, srcid_fig3), mean ± 95 % CI,
  with the paper's Avg. beside it where the table has one.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .atomic import atomic_write
from .contracts import UserError
from .results import CellResult

SINGLE, FLOOR = 0.95, 0.05
CATEGORIES = ("one", "two", "all")
COLOURS = {"one": "#d62728", "two": "#1f77b4", "all": "#2ca02c"}


# --------------------------------------------------------------------------- pure computations
def modality_shares(code_counts: Mapping[str, Sequence[float]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(modalities, shares [L, M], used [L] bool): per code, each modality's normalised activation share."""
    mods = sorted(code_counts)
    counts = np.stack([np.asarray(code_counts[m], dtype=float).ravel() for m in mods], axis=1)  # [L, M]
    if counts.ndim != 2 or counts.shape[1] < 2:
        raise ValueError("code_counts needs at least two modalities with equal-length count vectors")
    if np.any(counts < 0):
        raise ValueError("code counts must be non-negative")
    totals = counts.sum(axis=0)
    freq = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)   # [L, M], columns sum to 1
    mass = freq.sum(axis=1)
    used = mass > 0
    shares = np.divide(freq, mass[:, None], out=np.zeros_like(freq), where=used[:, None])
    return mods, shares, used


def activation_categories(shares: np.ndarray) -> np.ndarray:
    """'one' | 'two' | 'all' per code (rows of `shares` [L, M], each summing to 1)."""
    out = np.full(shares.shape[0], "two", dtype=object)
    out[shares.min(axis=1) >= FLOOR] = "all"
    out[shares.max(axis=1) > SINGLE] = "one"
    return out


def activation_fractions(code_counts: Mapping[str, Sequence[float]]) -> dict:
    """Fractions of *used* codes in each category, plus the used / dead code counts."""
    _, shares, used = modality_shares(code_counts)
    cats = activation_categories(shares[used])
    n = int(used.sum())
    fractions = {c: (float(np.mean(cats == c)) if n else float("nan")) for c in CATEGORIES}
    return {**fractions, "used": n, "dead": int((~used).sum())}


def _layers(code_counts: Mapping[str, Sequence]) -> list[dict[str, np.ndarray]]:
    """Split `[layers, L]` counts into one dict per layer (a `[L]` vector is one layer)."""
    arrays = {m: np.asarray(v, dtype=float) for m, v in code_counts.items()}
    depth = {a.ndim for a in arrays.values()}
    if depth == {1}:
        return [arrays]
    if depth == {2}:
        n = {a.shape[0] for a in arrays.values()}.pop()
        return [{m: a[i] for m, a in arrays.items()} for i in range(n)]
    raise ValueError(f"code_counts must be [L] or [layers, L] per modality, got ndim {sorted(depth)}")


def collect_activation(results: Sequence[CellResult]) -> dict[str, dict[int, dict]]:
    """label -> seed -> fractions, one pretraining per (base method, seed): every task of it, and every
    training-free refiner (+toc) on it, reports the same codebook, so it is counted once."""
    out: dict[str, dict[int, dict]] = defaultdict(dict)
    for r in results:
        counts = r.diagnostics.get("code_counts")
        if not counts:
            continue
        layers = _layers(counts)
        for i, layer in enumerate(layers):
            label = r.base + (f" (layer {i + 1})" if len(layers) > 1 else "")
            out[label].setdefault(r.seed, activation_fractions(layer))
    return dict(out)


# --------------------------------------------------------------------------- drawing
def _figure(width: float, height: float):
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), dpi=120, layout="constrained")


def save_png(fig, path: Path) -> Path:
    """Atomic: a reader never sees half an image."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def plot_activation_bars(activation: Mapping[str, Mapping[int, dict]], path: Path) -> Path:
    """Stacked bars per method: fraction of used codes activated by one / two / all modalities (mean over seeds)."""
    labels = sorted(activation)
    if not labels:
        raise UserError("no result carries diagnostics.code_counts; nothing to plot")
    fig = _figure(max(6.0, 0.9 * len(labels) + 3), 3.8)
    ax = fig.add_subplot()
    bottom = np.zeros(len(labels))
    for cat, text in zip(CATEGORIES, ("one modality (>95%)", "two / in between", "all modalities (≥5% each)")):
        vals = np.array([np.nanmean([f[cat] for f in activation[l].values()]) for l in labels])
        ax.bar(labels, vals, bottom=bottom, color=COLOURS[cat], label=text)
        bottom += vals
    seeds = {l: len(activation[l]) for l in labels}
    ax.set_xticks(range(len(labels)), [f"{l}\n(n={seeds[l]})" for l in labels], rotation=30, ha="right",
                  fontsize=8)
    ax.set_ylabel("fraction of used codes")
    ax.set_ylim(0, 1)
    ax.set_title("Codebook activation by modality (mean over seeds)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return save_png(fig, path)


def plot_activation_simplex(per_method: Mapping[str, Mapping[str, Sequence[float]]], path: Path) -> Path:
    """One panel per method: every used code as a point in the modality simplex (barycentric), coloured by
    category, size ∝ log activations — the layout of seed 000 Figs. 5/6 for three modalities."""
    items = sorted(per_method.items())
    fig = _figure(3.2 * len(items), 3.6)
    axes = fig.subplots(1, len(items), squeeze=False)[0]
    for ax, (label, counts) in zip(axes, items):
        mods, shares, used = modality_shares(counts)
        m = len(mods)
        angles = np.pi / 2 + 2 * np.pi * np.arange(m) / m
        corners = np.stack([np.cos(angles), np.sin(angles)], axis=1)        # [M, 2]
        xy = shares[used] @ corners
        total = np.stack([np.asarray(counts[k], float).ravel() for k in mods], 1).sum(1)[used]
        cats = activation_categories(shares[used])
        ax.fill(*np.vstack([corners, corners[:1]]).T, fill=False, lw=0.8, color="grey")
        for cat in CATEGORIES:
            sel = cats == cat
            ax.scatter(xy[sel, 0], xy[sel, 1], s=4 + 6 * np.log1p(total[sel]), c=COLOURS[cat], alpha=0.6,
                       linewidths=0, label=f"{cat} ({int(sel.sum())})")
        for name, (cx, cy) in zip(mods, corners):
            ax.annotate(name, (cx, cy), ha="center", va="bottom" if cy > 0 else "top", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.set_xlim(-1.25, 1.25)
        ax.set_ylim(-0.8, 1.3)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.legend(fontsize=6, loc="lower center", bbox_to_anchor=(0.5, -0.18), ncol=3, frameon=False)
    return save_png(fig, path)


def plot_size_curve(bt, path: Path, x_label: str = "codebook size") -> Path:
    """Avg. (mean ± 95 % CI over seeds) against each row's `x`, the paper's Avg. as a dashed line."""
    pts = [(row.x, bt.avg[i], row.paper[-1] if row.paper and len(row.paper) > len(bt.spec.columns) else None)
           for i, row in enumerate(bt.spec.rows) if row.x is not None and bt.avg[i] is not None]
    if not pts:
        raise UserError(f"table {bt.spec.name}: no row has an 'x' and an Avg. column to plot")
    pts.sort(key=lambda p: p[0])
    fig = _figure(4.6, 3.2)
    ax = fig.add_subplot()
    ours = [(x, c.summary) for x, c, _ in pts if c.summary is not None]
    if ours:
        xs = [x for x, _ in ours]
        ys = [s.mean for _, s in ours]
        err = [s.half_width if s.ci_defined else 0.0 for _, s in ours]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=f"ours (mean ± 95% CI, world {bt.index.world})")
    paper = [(x, p) for x, _, p in pts if p is not None]
    if paper:
        ax.plot(*zip(*paper), "s--", color="grey", label="paper")
    ax.set_xscale("log", base=2)
    ax.set_xticks([x for x, _, _ in pts], [str(x) for x, _, _ in pts])
    ax.set_xlabel(x_label)
    ax.set_ylabel("Avg. (%)")
    ax.set_title(bt.spec.title, fontsize=9)
    ax.legend(fontsize=7)
    return save_png(fig, path)


def plot_budget_curves(points, methods: Sequence[str], budgets: Sequence[int], directions: Sequence[str],
                       path: Path, chosen: int | None = None) -> Path:
    """Budget study: one panel per direction, AVE accuracy (mean ± 95 % CI) against pretraining epochs, one
    line per method, chance as a dotted line and the chosen default as a vertical line."""
    fig = _figure(4.2 * len(directions), 3.4)
    axes = fig.subplots(1, len(directions), sharey=True, squeeze=False)[0]
    for ax, d in zip(axes, directions):
        for m in methods:
            pts = [(b, points[(m, b, d)].summary) for b in sorted(budgets) if (m, b, d) in points]
            if not pts:
                continue
            ax.errorbar([b for b, _ in pts], [s.mean for _, s in pts],
                        yerr=[s.half_width if s.ci_defined else 0.0 for _, s in pts], marker="o", capsize=3,
                        label=m)
        ax.axhline(100 / 28, ls=":", color="grey", label="chance")
        if chosen:
            ax.axvline(chosen, ls="--", color="black", lw=0.8, label=f"default budget ({chosen})")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(budgets), [str(b) for b in sorted(budgets)])
        ax.set_xlabel("pretraining epochs")
        ax.set_title(f"AVE {d.replace('->', '→')}", fontsize=10)
    axes[0].set_ylabel("accuracy (%)")
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_png(fig, path)


# --------------------------------------------------------------------------- everything at once
def make_report_figures(results_dir: str | Path, out_dir: str | Path | None = None,
                        world: str | None = None) -> tuple[list[Path], list[str]]:
    """All report figures the store supports, into `<results>/figures` by default.
    Returns (written paths, notes on what could not be drawn and why)."""
    from . import tables
    from .store import Store
    results_dir = Path(results_dir)
    out = Path(out_dir) if out_dir else results_dir / "figures"
    results = Store(results_dir).results()
    if world is not None:
        results = [r for r in results if r.world == world]
    written, notes = [], []
    activation = collect_activation(results)
    if activation:
        written.append(plot_activation_bars(activation, out / "codebook_activation.png"))
        first = {}
        for r in sorted(results, key=lambda r: (r.method, r.seed)):
            counts = r.diagnostics.get("code_counts")
            if counts and r.base not in first:
                first[r.base] = _layers(counts)[0]
        written.append(plot_activation_simplex(first, out / "codebook_activation_simplex.png"))
    else:
        notes.append("no result carries diagnostics.code_counts: codebook activation figures skipped")
    for name in tables.table_names():
        spec = tables.load_table(name)
        if (spec.plot or {}).get("kind") != "size_curve":
            continue
        bt = tables.build(spec, results, world=world)
        if not any(c is not None and c.summary is not None for c in bt.avg):
            notes.append(f"{name}: no complete row in the store; size curve skipped")
            continue
        written.append(plot_size_curve(bt, out / f"{name}_size_curve.png", spec.plot.get("x_label", "codebook size")))
    return written, notes
