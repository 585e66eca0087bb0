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

import hashlib
import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from .atomic import atomic_write, atomic_write_json
from .contracts import UserError
from .results import CellResult
from .tables.render import pretty_label

SINGLE, FLOOR = 0.95, 0.05
FIG_WIDTH = 11.2   # inches at 120 dpi: 1344 px, whole at 100 % zoom on a 1440-px-wide screen
PANELS = 12        # small multiples per figure
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


def collect_activation(results: Sequence[CellResult]) -> dict[str, dict[int, list[dict]]]:
    """spec -> seed -> code counts per codebook ({modality: [L]}), one entry per pretraining.

    Every task of a pretraining, every training-free refiner on it (+toc) and every inference-only option
    (srcid@only1=true) report the same codebook, and a spec that spells out the preset (dcid@epochs=16) has the
    same pretraining key: each pretraining is counted once, under its shortest spec."""
    seen: dict[tuple, tuple[str, list]] = {}
    for r in results:
        counts = r.diagnostics.get("code_counts")
        if not counts:
            continue
        spec, seed = r.base, int(r.seed)
        ident = (r.pretrain_key or spec, seed)
        if ident not in seen or (len(spec), spec) < (len(seen[ident][0]), seen[ident][0]):
            seen[ident] = (spec, _layers(counts))
    out: dict[str, dict[int, list[dict]]] = defaultdict(dict)
    for (_, seed), (spec, layers) in sorted(seen.items(), key=lambda kv: (kv[1][0], kv[0][1])):
        out[spec][seed] = layers
    return dict(out)


def _natural(text: str) -> list:
    """Sort key that puts 'epochs=8' before 'epochs=16'."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def method_labels(specs: Iterable) -> Callable[[str], str]:
    """canonical method spec -> the name the tables print for it (from the tables' row labels).

    A spec a table names keeps that label when it is self-explanatory ("DCID (FSQ)"); a row label that only makes
    sense under its table's row header ("256" under "Codebook size") is prefixed with the method and that header
    ("FCCID, Codebook size: 256"); a spec no table names is its base's label plus its options
    ("DCID (epochs=8)")."""
    named: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for spec in specs:
        for row in spec.rows:
            if not (row.mm or row.directions or row.task):   # rows that are not a method (t3's mask ratios, m->m)
                named[row.method].append((spec.row_header, pretty_label(row.label.strip())))

    def plain(method: str) -> str:
        labels = [label for _, label in named.get(method, ())]
        return max(labels, key=labels.count) if labels else method   # the most common spelling: "FCCID"

    def label(method: str) -> str:
        head, sep, opts = method.partition("@")
        if not sep or method not in named and "+" in opts:
            return plain(method)
        base = plain(head)
        for header, text in named.get(method, ()):
            if base.lower() in text.lower():
                return text
        if named.get(method):
            header, text = named[method][0]
            return f"{base}, {text}" if base.lower() in header.lower() else f"{base}, {header}: {text}"
        return f"{base} ({opts.replace(',', ', ')})"
    return label


def _epochs(spec: str) -> int | None:
    """The pretraining epochs a method spec trains (its preset resolved), None for a method without presets."""
    from . import spec as specs
    try:
        settings = specs.pretrain_settings(specs.parse_method(spec))
    except UserError:
        return None
    return (settings or {}).get("epochs")


def with_budgets(specs: Iterable[str], label: Callable[[str], str]) -> Callable[[str], str]:
    """`label` plus each spec's pretraining budget (", 16 ep") when the specs drawn together differ in budget:
    a 16-epoch ablation row beside a 32-epoch main-grid row must not read as another method."""
    budgets = {s: _epochs(s) for s in specs}
    if len({b for b in budgets.values() if b is not None}) < 2:
        return label

    def labelled(spec: str) -> str:
        return label(spec) + (f", {budgets[spec]} ep" if budgets.get(spec) is not None else "")
    labelled.plain = label      # a family's panel title names the family, not one member's budget
    return labelled


def package_tables() -> dict:
    """{grid name: TableSpec} of every table of the package's grids (each grid file read once per caller)."""
    from . import tables
    return {name: tables.load_table(name) for name in tables.table_names()}


def table_labels(table_specs: Iterable | None = None) -> Callable[[str], str]:
    """method_labels over every table of the package's grids."""
    return method_labels(package_tables().values() if table_specs is None else table_specs)


def tabled_bases(table_specs: Iterable | None = None) -> set[str]:
    """Canonical base specs (the pretrainings) that some table of the package's grids shows: the activation
    figures draw these, not every probe a budget study or an ad-hoc `run` left in the store."""
    from . import spec as specs
    return {specs.parse_method(row.method).base.canonical()
            for table in (package_tables().values() if table_specs is None else table_specs) for row in table.rows}


# --------------------------------------------------------------------------- drawing
def _figure(width: float, height: float):
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), dpi=120, layout="constrained")


def save_png(fig, path: Path) -> Path:
    """Atomic: a reader never sees half an image."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def _family(spec: str) -> str:
    return spec.split("@")[0].split("+")[0]


def _ordered(specs: Iterable[str], label: Callable[[str], str]) -> list[str]:
    """Specs family by family (by the family's label), the plain method first, then its variants."""
    return sorted(specs, key=lambda s: (_natural(label(_family(s))), s != _family(s), _natural(label(s))))


def _wrap(text: str, width: int) -> str:
    import textwrap
    return "\n".join(textwrap.wrap(text, width, break_long_words=True)) or text


def _balanced(sizes: Sequence[int], n: int) -> list[list[int]]:
    """Split indices 0..len-1, in order, into n consecutive runs of about equal total size (panel columns)."""
    target, out, acc = sum(sizes) / n, [[]], 0
    for i, size in enumerate(sizes):
        if out[-1] and acc + size / 2 > target * len(out) and len(out) < n:
            out.append([])
        out[-1].append(i)
        acc += size
    return out


def plot_activation_bars(activation: Mapping[str, Mapping[int, list[dict]]], path: Path,
                         label: Callable[[str], str] = str) -> Path:
    """Small multiples, one panel per method family: a horizontal stacked bar per pretraining (and codebook) —
    the fraction of its used codes activated by one / two / all modalities, mean over seeds.
    `activation`: collect_activation's spec -> seed -> code counts per codebook."""
    if not activation:
        raise UserError("no result carries diagnostics.code_counts; nothing to plot")
    families: dict[str, list[tuple[str, list[float], int]]] = defaultdict(list)
    for spec in _ordered(activation, label):
        seeds = activation[spec]
        depth = max(len(layers) for layers in seeds.values())
        for i in range(depth):
            per_seed = [activation_fractions(layers[i]) for layers in seeds.values() if i < len(layers)]
            means = [float(np.nanmean([f[c] for f in per_seed])) for c in CATEGORIES]
            name = label(spec) + (f", codebook {i + 1}" if depth > 1 else "")   # never wrapped: one line a bar
            families[_family(spec)].append((name, means, len(per_seed)))
    names = list(families)
    columns = _balanced([len(families[f]) + 2 for f in names], min(2, len(names)))   # 2: a panel's title + axis
    tallest = max(sum(len(families[names[k]]) + 2 for k in col) for col in columns)
    fig = _figure(FIG_WIDTH / 2 * len(columns), 0.27 * tallest + 1.2)
    texts = ("one modality (>95 %)", "in between", "all modalities (≥5 % each)")
    for sub, col in zip(np.atleast_1d(fig.subfigures(1, len(columns))), columns):
        heights = [len(families[names[k]]) + 2 for k in col]
        filler = tallest - sum(heights)
        axes = sub.subplots(len(col) + bool(filler), 1, height_ratios=heights + ([filler] if filler else []))
        axes = np.atleast_1d(axes)
        if filler:
            axes[-1].axis("off")
        for ax, k in zip(axes, col):
            bars = families[names[k]]
            y = np.arange(len(bars))
            left = np.zeros(len(bars))
            for j, (cat, text) in enumerate(zip(CATEGORIES, texts)):
                vals = np.array([m[j] for _, m, _ in bars])
                ax.barh(y, vals, left=left, color=COLOURS[cat], label=text if k == 0 else None, height=0.75)
                left += vals
            for yi, (_, _, n) in zip(y, bars):
                ax.text(1.01, yi, f"n={n}", va="center", fontsize=8, color="dimgrey" if n > 1 else "#b3261e")
            ax.set_yticks(y, [name for name, _, _ in bars], fontsize=9)
            ax.set_ylim(len(bars) - 0.5, -0.5)   # first on top
            ax.set_xlim(0, 1.1)
            ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0", "", "0.5", "", "1"], fontsize=9)
            ax.set_title(getattr(label, "plain", label)(names[k]), fontsize=10, loc="left")
            ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle("Codebook activation by modality: fraction of used codes, mean over the n seeds (n=1 in red)",
                 fontsize=11)
    fig.legend(loc="outside lower center", ncol=3, fontsize=10, frameon=False)
    return save_png(fig, path)


def simplex_pages(per_method: Mapping[str, object], label: Callable[[str], str] = str) -> list[list[str]]:
    """The pretrainings in drawing order (family by family), at most `PANELS` to a figure, pages evenly filled."""
    specs = _ordered(per_method, label)
    size = math.ceil(len(specs) / max(1, math.ceil(len(specs) / PANELS))) if specs else PANELS
    return [specs[i:i + size] for i in range(0, len(specs), size)]


def plot_activation_simplex(per_method: Mapping[str, Sequence[Mapping[str, Sequence[float]]]], path: Path,
                            label: Callable[[str], str] = str, columns: int = 4, page: str = "") -> Path:
    """Small multiples, one panel per pretraining (at most `PANELS`: `simplex_pages` splits more over several
    figures): every used code of its first codebook as a point in the modality simplex (barycentric), coloured by
    category, size ∝ log activations — seed 000 Figs. 5/6 for three modalities. `per_method`: spec -> code
    counts per codebook (one seed)."""
    specs = _ordered(per_method, label)
    if len(specs) > PANELS:
        raise UserError(f"{len(specs)} panels in one figure; at most {PANELS} (split with simplex_pages)")
    ncols = min(columns, len(specs))
    nrows = math.ceil(len(specs) / ncols)
    fig = _figure(FIG_WIDTH, FIG_WIDTH / columns * nrows + 0.7)     # the full width: the title fits any page
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[len(specs):]:
        ax.axis("off")
    for ax, spec in zip(axes, specs):
        layers = per_method[spec]
        counts = layers[0]
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
            ax.scatter(xy[sel, 0], xy[sel, 1], s=3 + 4 * np.log1p(total[sel]), c=COLOURS[cat], alpha=0.6,
                       linewidths=0, label=cat if ax is axes[0] else None)
        for name, (cx, cy) in zip(mods, corners):
            ax.annotate(name, (cx, cy), ha="center", va="bottom" if cy > 0 else "top", fontsize=9)
        title = label(spec) + (f" (codebook 1 of {len(layers)})" if len(layers) > 1 else "")
        ax.set_title(_wrap(title, 36), fontsize=10)
        counted = "  ".join(f"{c} {int((cats == c).sum())}" for c in CATEGORIES)
        ax.text(0, -0.95, f"{counted}  dead {int((~used).sum())}", ha="center", va="top", fontsize=9)
        ax.set_xlim(-1.2, 1.2)
        ax.set_ylim(-1.1, 1.25)
        ax.set_aspect("equal")
        ax.axis("off")
    fig.suptitle("Codebook activation: each used code in the modality simplex" + (f" ({page})" if page else "")
                 + "\none seed; colour = how many modalities use it: one > 95 %, all ≥ 5 % each", fontsize=11)
    fig.legend(loc="outside lower center", ncol=3, fontsize=10, frameon=False, markerscale=2)
    return save_png(fig, path)


def _with_ci(ax, xs, cells, beside: Callable[[float], float], **style):
    """Mean ± 95 % CI error bars, and each seed's value as a hollow dot just `beside` it (so n = 1 still shows
    what there is and the seeds' spread is visible under the interval)."""
    means = [c.summary.mean for c in cells]
    err = [c.summary.half_width if c.summary.ci_defined else 0.0 for c in cells]
    line = ax.errorbar(xs, means, yerr=err, capsize=3, **{**style, "ls": "none"})   # a line would read as a trend
    colour = line[0].get_color()
    for i, (x, c) in enumerate(zip(xs, cells)):
        vals = list(c.per_seed.values())
        ax.scatter([beside(x)] * len(vals), vals, s=14, facecolors="none", edgecolors=colour, linewidths=0.8,
                   zorder=3, label="one seed" if i == 0 and "label" in style else None)
    return line


def plot_size_curve(bt, path: Path, x_label: str = "codebook size") -> Path:
    """Avg. (mean ± 95 % CI over seeds, per-seed dots) against each row's `x`, the paper's Avg. dashed; rows
    without `x` (SRCID Fig. 3's CLUB ablation) as a second panel when at least two of them have results — the
    title names only what is drawn."""
    n_cols = len(bt.spec.columns)
    paper_avg = lambda row: row.paper[-1] if row.paper and len(row.paper) > n_cols else None  # noqa: E731
    present = lambda i: bt.avg[i] is not None and bt.avg[i].summary is not None  # noqa: E731
    pts = sorted(((row.x, bt.avg[i], paper_avg(row)) for i, row in enumerate(bt.spec.rows)
                  if row.x is not None and bt.avg[i] is not None), key=lambda p: p[0])
    if not pts:
        raise UserError(f"table {bt.spec.name}: no row has an 'x' and an Avg. column to plot")
    others = [(pretty_label(row.label), bt.avg[i]) for i, row in enumerate(bt.spec.rows) if row.x is None and present(i)]
    ablation = len(others) >= 2
    fig = _figure(9.2 if ablation else 6.4, 3.9)
    axes = fig.subplots(1, 2 if ablation else 1, squeeze=False, width_ratios=[1.2, 1] if ablation else None)[0]
    ax = axes[0]
    ours = [(x, c) for x, c, _ in pts if c.summary is not None]
    if ours:
        ns = sorted({c.summary.n for _, c in ours})
        n_text = "n=" + "/".join(map(str, ns)) + (": no CI" if ns == [1] else "")
        _with_ci(ax, [x for x, _ in ours], [c for _, c in ours], lambda x: x * 1.05, marker="o",
                 label=f"ours, mean ± 95 % CI ({n_text}; world {bt.index.world})")
    paper = [(x, p) for x, _, p in pts if p is not None]
    if paper:
        ax.plot(*zip(*paper), "s", color="grey", label="paper")
    budgets = {row.x: _epochs(row.method) for row in bt.spec.rows
               if row.x is not None and getattr(row, "method", None)}
    differ = len(set(budgets.values()) - {None}) > 1          # then each point says its budget
    ax.set_xscale("log", base=2)
    ax.set_xticks([x for x, _, _ in pts], [f"{x}\n{budgets[x]} ep" if differ and budgets.get(x) else str(x)
                                           for x, _, _ in pts])
    ax.minorticks_off()
    ax.set_xlabel(x_label)
    ax.set_ylabel("Avg. (%)")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=3 if ablation else 2, fontsize=9,
               frameon=False)
    if ablation:
        ab = axes[1]
        _with_ci(ab, list(range(len(others))), [c for _, c in others], lambda x: x + 0.12, marker="o",
                 color="tab:orange")
        ab.set_xticks(range(len(others)), [_wrap(t, 14) for t, _ in others], fontsize=9)
        ab.set_xlim(-0.5, len(others) - 0.5)
        ab.set_ylabel("Avg. (%)")
        title = bt.spec.title
    else:
        missing = [pretty_label(row.label) for i, row in enumerate(bt.spec.rows) if row.x is None and not present(i)]
        title = bt.spec.title   # the title promises only the curve unless the table has other rows
        if others or missing:
            title = f"{bt.spec.title.split(' — ')[0]} — Avg. against {x_label}"
            skipped = [t for t, _ in others] + missing
            ax.set_title(f"(not drawn, too few results: {', '.join(skipped)})", fontsize=7, color="dimgrey")
    shared = set(budgets.values()) - {None}
    fig.suptitle(title + (f" ({shared.pop()} pretraining epochs)" if len(shared) == 1 else ""), fontsize=11)
    return save_png(fig, path)


def plot_budget_curves(points, methods: Sequence[str], budgets: Sequence[int], directions: Sequence[str],
                       path: Path, chance: float, learned_factor: float, chosen: int | None = None,
                       label: Callable[[str], str] | None = None) -> Path:
    """Budget study: one panel per direction, AVE accuracy (mean ± 95 % CI, no connecting lines) against
    pretraining epochs, methods side by side at each budget and named as the tables print them, chance as a dotted
    line, the "has learned" bar (`learned_factor` × chance) dash-dotted and the chosen default as a vertical line."""
    label = label or table_labels()
    fig = _figure(min(FIG_WIDTH, 4.6 * len(directions) + 1.8), 3.8)
    axes = fig.subplots(1, len(directions), sharey=True, squeeze=False)[0]
    for ax, d in zip(axes, directions):
        for k, m in enumerate(methods):
            pts = [(b, points[(m, b, d)].summary) for b in sorted(budgets) if (m, b, d) in points]
            if not pts:
                continue
            dodge = 2 ** (0.06 * (k - (len(methods) - 1) / 2))     # side by side on the log axis
            ax.errorbar([b * dodge for b, _ in pts], [s.mean for _, s in pts],
                        yerr=[s.half_width if s.ci_defined else 0.0 for _, s in pts], marker="o", capsize=2,
                        ls="none", label=label(m))
        ax.axhline(chance, ls=":", color="grey", label=f"chance ({chance:.1f} %)")
        ax.axhline(learned_factor * chance, ls="-.", color="grey", lw=0.8, label=f"{learned_factor:g}× chance")
        if chosen:
            ax.axvline(chosen, ls="--", color="black", lw=0.8, label=f"default budget ({chosen})")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(budgets), [str(b) for b in sorted(budgets)])
        ax.set_xlabel("pretraining epochs")
        ax.set_title(f"AVE {d.replace('->', '→')}", fontsize=11)
    axes[0].set_ylabel("accuracy (%)")
    axes[-1].legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_png(fig, path)


# --------------------------------------------------------------------------- everything at once
class _Drawn:
    """Redraw a figure only when what it shows changed: a warm `make bench` rerun re-plotted identical PNGs for
    ~12 s. The digest covers the figure's input data and this module's source (a code change redraws); it is kept
    in `<out>/.figures.json`, and a missing PNG is always drawn."""

    def __init__(self, out: Path):
        self.index_path = out / ".figures.json"
        try:
            self.index = json.loads(self.index_path.read_text())
        except (OSError, ValueError):
            self.index = {}
        if not isinstance(self.index, dict):
            self.index = {}
        self.code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]

    def __call__(self, path: Path, inputs, draw: Callable[[Path], Path]) -> Path:
        h = hashlib.sha256(self.code.encode())
        try:    # one C-level pass; the recursive walk only when a mapping has non-string keys
            h.update(json.dumps(inputs, sort_keys=True, default=_plain, separators=(",", ":")).encode())
        except TypeError:
            _feed(h, inputs)
        digest = h.hexdigest()[:16]
        if path.exists() and self.index.get(path.name) == digest:
            return path
        draw(path)
        self.index[path.name] = digest
        return path

    def save(self) -> None:
        if self.index:
            atomic_write_json(self.index_path, self.index)


def _plain(value):
    """json.dumps fallback for figure inputs: arrays by dtype, shape and a hash of their bytes, dataclasses by
    their fields, anything else by repr."""
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value)
        return {"__array__": str(data.dtype), "shape": list(data.shape),
                "sha256": hashlib.sha256(data.tobytes()).hexdigest()}
    if hasattr(value, "__dataclass_fields__"):
        return {k: getattr(value, k) for k in value.__dataclass_fields__}
    if isinstance(value, (set, frozenset)):     # in a fixed order: a set's repr follows per-process string hashing
        return sorted(value, key=repr)
    return repr(value)


def _feed(h, value) -> None:
    """Hash what a figure shows by value: arrays by their bytes (the activation figures hold ~10^6 counts),
    mappings in key order, dataclasses by their fields, anything else by repr."""
    if isinstance(value, np.ndarray):
        h.update(f"a{value.dtype}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, dict):
        h.update(b"{")
        for k in sorted(value, key=repr):
            _feed(h, k)
            _feed(h, value[k])
        h.update(b"}")
    elif hasattr(value, "__dataclass_fields__"):
        _feed(h, {k: getattr(value, k) for k in value.__dataclass_fields__})
    elif isinstance(value, (list, tuple)):
        flat = None
        if value and type(value[0]) in (int, float):      # a JSON count vector: by its bytes, not item by item
            try:
                flat = np.asarray(value, dtype=float)
            except (TypeError, ValueError):
                pass
        if flat is not None and flat.ndim == 1:
            _feed(h, flat)
        else:
            h.update(b"[")
            for v in value:
                _feed(h, v)
            h.update(b"]")
    else:
        h.update(repr(value).encode())


def make_report_figures(results_dir: str | Path, out_dir: str | Path | None = None, world: str | None = None,
                        results: Sequence[CellResult] | None = None) -> tuple[list[Path], list[str]]:
    """All report figures the store supports, into `<results>/figures` by default.
    `results`: the store's results when the caller has read them already (one pass over ~900 result.json).
    Returns (written paths, notes on what could not be drawn and why)."""
    from . import tables
    from .store import Store
    results_dir = Path(results_dir)
    out = Path(out_dir) if out_dir else results_dir / "figures"
    results = Store(results_dir).results() if results is None else list(results)
    if world is not None:
        results = [r for r in results if r.world == world]
    written, notes = [], []
    drawn = _Drawn(out)
    table_specs = package_tables()
    tabled = tabled_bases(table_specs.values())
    activation = collect_activation([r for r in results if r.base in tabled])
    pages = 0
    if activation:
        label = with_budgets(activation, table_labels(table_specs.values()))
        first = {spec: seeds[min(seeds)] for spec, seeds in activation.items()}
        written.append(drawn(out / "codebook_activation.png", activation,
                             lambda path: plot_activation_bars(activation, path, label)))
        chunks = simplex_pages(first, label)
        pages = len(chunks)
        for k, chunk in enumerate(chunks):
            shown = {s: first[s] for s in chunk}
            title = f"{k + 1} of {pages}" if pages > 1 else ""
            written.append(drawn(simplex_path(out, k), shown, lambda path, shown=shown, title=title:
                                 plot_activation_simplex(shown, path, label, page=title)))
    else:
        notes.append("no result of a tabled method carries diagnostics.code_counts: codebook activation figures "
                     "skipped")
    from . import factors
    probes = factors.collect(results, world, factors.shown_as(sorted(tabled_bases(table_specs.values()))))
    if probes:
        written.append(drawn(out / "factor_probes.png", probes,
                             lambda path: factors.plot(probes, path, table_labels(table_specs.values()))))
    else:
        notes.append("no pretraining carries diagnostics.factors (a synthetic world with true latents, generator "
                     "version 3): factor-probe figure skipped")
    for name, spec in table_specs.items():
        if (spec.plot or {}).get("kind") != "size_curve":
            continue
        bt = tables.build(spec, results, world=world)
        if not any(c is not None and c.summary is not None for c in bt.avg):
            notes.append(f"{name}: no complete row in the store; size curve skipped")
            continue
        x_label = spec.plot.get("x_label", "codebook size")
        shown = [bt.spec, bt.index.world, [a.per_seed if a is not None else None for a in bt.avg], x_label]
        written.append(drawn(out / f"{name}_size_curve.png", shown,   # what the curve draws, not the whole index
                             lambda path, bt=bt, x_label=x_label: plot_size_curve(bt, path, x_label)))
    for stale in sorted(out.glob("codebook_activation_simplex*.png")):   # pages a smaller store no longer has
        if stale not in {simplex_path(out, k) for k in range(pages)}:
            stale.unlink()
    drawn.save()
    return written, notes


def simplex_path(out: Path, page: int) -> Path:
    """Page 0 keeps the single figure's name, later pages are numbered from 2."""
    return out / ("codebook_activation_simplex.png" if page == 0 else f"codebook_activation_simplex_{page + 1}.png")
