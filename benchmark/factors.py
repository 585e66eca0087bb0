"""The factor-probe table and figure: per pretraining, the held-out R² of the true semantics, scene and nuisance
(computed once when the pretraining is made, `tasks/data/factors.py`, and carried in every cell's diagnostics).

Pure: reads stored results only. One row per method spec (a pretraining without refiners), mean ± 95 % CI over
its seeds; columns per modality and representation (codes = what a codebook method's heads see, features = the
general features before quantization, or a continuous method's output).
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence

from . import stats
from .atomic import atomic_write
from .contracts import UserError
from .results import CellResult

FACTORS = ("semantic", "scene", "nuisance")
SHORT = {"audio": "A", "video": "V"}
REPRESENTATIONS = ("codes", "features")
TITLE = "Ground-truth factor probes: held-out R² of each clip's true semantics, scene and nuisance"


def shown_as(bases: Sequence[str]) -> Callable[[str], str | None]:
    """method spec -> the one of `bases` that is its pretraining (inference-only options aside: `srcid@only1=true`
    is `srcid`), None when none is: the table and figure show the pretrainings the tables show, matched by spec as
    the tables match their rows, not every budget a study left in the store."""
    from . import spec as specs

    def pretraining(method: str) -> str | None:
        try:
            return specs.parse_method(method).pretrain_canonical()
        except UserError:          # a plugin that is not installed here
            return None
    known: dict[str, str] = {}
    for base in bases:
        known.setdefault(pretraining(base), base)
    known.pop(None, None)
    return lambda method: known.get(pretraining(method))


def collect(results: Sequence[CellResult], world: str | None = None,
            shown: Callable[[str], str | None] | None = None) -> dict[str, dict[int, dict]]:
    """{method spec: {seed: r2 {modality: {representation: {factor: R²}}}}}, one entry per pretraining (cells
    with refiners left out: they share their base's pretraining), from the world the most cells come from unless
    `world` names one; with `shown` (`shown_as`), only the pretrainings it names, under its names."""
    found = [r for r in results if not r.refiners and isinstance((r.diagnostics or {}).get("factors"), dict)]
    worlds = defaultdict(int)
    for r in found:
        worlds[r.world] += 1
    if world is None and worlds:
        world = max(sorted(worlds, key=str), key=worlds.get)
    out: dict[str, dict[int, dict]] = defaultdict(dict)
    for r in sorted(found, key=lambda r: (r.method, r.seed, r.created)):
        name = r.method if shown is None else shown(r.method)
        if r.world == world and name is not None:
            out[name][r.seed] = r.diagnostics["factors"].get("r2") or {}
    return dict(out)


def columns(probes: dict[str, dict[int, dict]]) -> list[tuple[str, str, str]]:
    """(modality, representation, factor) present in any row, in a fixed order."""
    have = {(m, rep, f) for seeds in probes.values() for r2 in seeds.values()
            for m, reps in r2.items() for rep, fs in reps.items() for f in fs}
    return [(m, rep, f) for m in SHORT for rep in REPRESENTATIONS for f in FACTORS if (m, rep, f) in have]


def summaries(probes: dict[str, dict[int, dict]]) -> dict[str, dict[tuple, stats.Summary | None]]:
    cols = columns(probes)
    out = {}
    for method, seeds in probes.items():
        row = {}
        for m, rep, f in cols:
            values = [v for r2 in seeds.values() if (v := r2.get(m, {}).get(rep, {}).get(f)) is not None]
            row[(m, rep, f)] = stats.summarize(values) if values else None
        out[method] = row
    return out


def _cell(s: stats.Summary | None) -> str:
    if s is None:
        return "—"
    return f"{s.mean:.2f}" + (f" ± {s.half_width:.2f}" if s.ci_defined else "")


def caption(probes: dict[str, dict[int, dict]]) -> str:
    seeds = sorted({s for v in probes.values() for s in v})
    return (f"{TITLE}. Ridge regression per second from a pretraining's representation to each true factor "
            f"(latent/ group of a version 3 synthetic corpus): fit on the corpus' train split, ridge chosen on val, "
            f"R² = 1 − ΣSSE/ΣSST on the test split (held out; ≤ 0 = explains nothing). codes: the quantized vectors a "
            f"codebook method's heads see; features: its general features before quantization (for a continuous "
            f"method, what it encodes). Mean ± 95% CI over seeds {{{', '.join(map(str, seeds))}}}; the oracle row "
            f"is the clip's semantic latent itself. A disentangled code has high semantic and low nuisance R²; "
            f"scene R² is what alignment kept of the shared-but-irrelevant factor.")


def to_markdown(probes: dict[str, dict[int, dict]], label: Callable[[str], str] = str) -> str:
    cols = columns(probes)
    rows = summaries(probes)
    head = ["method"] + [f"{SHORT[m]} {rep} {f}" for m, rep, f in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in sorted(rows, key=lambda m: (m == "oracle", label(m).lower())):
        lines.append("| " + " | ".join([label(method)] + [_cell(rows[method][c]) for c in cols]) + " |")
    return f"**{TITLE}**\n\n" + "\n".join(lines) + "\n\n" + caption(probes) + "\n"   # as the paper tables


def to_csv(probes: dict[str, dict[int, dict]]) -> str:
    """Long format: method, seed, modality, representation, factor, r2."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "seed", "modality", "representation", "factor", "r2"])
    for method in sorted(probes):
        for seed in sorted(probes[method]):
            for m, rep, f in columns(probes):
                v = probes[method][seed].get(m, {}).get(rep, {}).get(f)
                if v is not None:
                    w.writerow([method, seed, m, rep, f, v])
    return buf.getvalue()


def write(probes: dict[str, dict[int, dict]], out: Path, label: Callable[[str], str] = str) -> list[Path]:
    """`factors.md` and `factors.csv` into `out` (atomic writes)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in (("factors.md", to_markdown(probes, label)), ("factors.csv", to_csv(probes))):
        paths.append(atomic_write(out / name, lambda tmp, text=text: tmp.write_text(text)))
    return paths


def plot(probes: dict[str, dict[int, dict]], path: Path, label: Callable[[str], str] = str) -> Path:
    """One panel per (modality, representation): per method, the R² of each factor with its 95 % CI."""
    import numpy as np
    from matplotlib.figure import Figure

    rows = summaries(probes)
    panels = [(m, rep) for m in SHORT for rep in REPRESENTATIONS
              if any((m, rep, f) in r for r in rows.values() for f in FACTORS)]
    methods = sorted(rows, key=lambda m: (m == "oracle", label(m).lower()))
    fig = Figure(figsize=(6.0 * min(len(panels), 2), 0.42 * len(methods) * -(-len(panels) // 2) + 1.2), dpi=120,
                 layout="constrained")
    axes = fig.subplots(-(-len(panels) // 2), min(len(panels), 2), squeeze=False, sharey=True).ravel()
    y = np.arange(len(methods))
    colors = {"semantic": "tab:green", "scene": "tab:orange", "nuisance": "tab:red"}
    for ax, (m, rep) in zip(axes, panels):
        for k, f in enumerate(FACTORS):
            s = [rows[meth].get((m, rep, f)) for meth in methods]
            means = [x.mean if x is not None else np.nan for x in s]
            err = [x.half_width if x is not None and x.ci_defined else 0.0 for x in s]
            ax.barh(y + (k - 1) * 0.27, means, height=0.27, xerr=err, color=colors[f], label=f, capsize=2)
        ax.axvline(0, color="black", lw=0.6)
        ax.set_xlim(-0.2, 1.05)
        ax.set_title(f"{'audio' if m == 'audio' else 'video'} · {rep}", fontsize=10)
        ax.set_xlabel("held-out R²")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    axes[0].set_yticks(y, [label(m) for m in methods])
    axes[0].invert_yaxis()
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(TITLE, fontsize=10)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
