"""The display text of a built table, shared by every renderer so they cannot disagree: cell strings, column
heads, the caption (what the numbers are, seeds, protocol, world, floors) and the missing-cell lines."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from .. import convergence, stats
from ..results import finite
from .build import BuiltTable
from .layout import Column, Row, TableSpec
from .names import task_label


def _decimals(spec: TableSpec, column: Column) -> int:
    return int(column.decimals) if column.decimals is not None else spec.decimals


def _ndec(value) -> int:
    """Decimals a paper number was written with (YAML keeps 55.0 but not 39.90's trailing zero)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    text = repr(float(value)) if isinstance(value, float) else str(value)
    return 0 if "e" in text or "." not in text else len(text.split(".")[1].rstrip("0") or "")


def _fmt_paper(value, decimals: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.{decimals}f}"


def _paper(row: Row, j: int):
    if row.paper is None or j >= len(row.paper):
        return None
    return row.paper[j]


@dataclass
class CellText:
    mean: str = ""
    pm: str = ""          # CI half-width; "" for n = 1, with --no-ci, or when no value
    paper: str = ""
    n_mark: str = ""      # "n=2" when fewer seeds than the table lists
    state: str = "ok"     # ok | missing | excluded
    bold: bool = False
    flag: str = ""        # UNCONVERGED_MARK when a contributing pretraining is not converged; + BELOW_FLOOR_MARK


UNCONVERGED_MARK = "†"
BELOW_FLOOR_MARK = "↓"
SMOKE_BANNER = ("SMOKE: a toy world and a seconds-long budget; these numbers test the plumbing only, they are not "
                "results.")


def is_smoke(world: str | None) -> bool:
    """Whether a world label names the synthetic smoke profile (`smoke-s0`)."""
    return str(world or "").startswith("smoke-")


def smoke_banner(bt: BuiltTable) -> str:
    """The one-line warning every table of a smoke world carries ("" for other worlds)."""
    return SMOKE_BANNER if is_smoke(bt.index.world) else ""


def cell_texts(bt: BuiltTable) -> list[list[CellText]]:
    """Display strings per (row, column [+ Avg]), shared by all renderers so they cannot disagree."""
    best = bt.column_best()
    cols = list(bt.spec.columns) + ([None] if bt.spec.avg else [])
    # paper numbers in one column share the precision of the most precise one (e.g. Avg. 39.90 beside 44.78)
    paper_dec = [max([_ndec(_paper(r, j)) for r in bt.spec.rows if _paper(r, j) is not None] or [0])
                 for j in range(len(cols))]
    out = []
    for i, row in enumerate(bt.spec.rows):
        line = []
        for j, col in enumerate(cols):
            c = bt.cells[i][j] if col is not None else bt.avg[i]
            dec = _decimals(bt.spec, col) if col is not None else bt.spec.decimals
            paper = _paper(row, j)
            shown = paper is not None and bt.display.paper
            t = CellText(paper=_fmt_paper(paper, paper_dec[j]) if shown else "")
            if c.excluded:
                t.state = "excluded"
            elif c.summary is None and row.optional:
                t.mean = "n/a"
            elif c.summary is None:
                t.state = "missing"
            else:
                s = c.summary
                t.mean = f"{s.mean:.{dec}f}"
                t.pm = f"{s.half_width:.{dec}f}" if s.ci_defined and bt.display.ci else ""
                t.n_mark = f"n={s.n}" if s.n < len(bt.seeds) else ""
                t.bold = i in best[j]
                t.flag = (UNCONVERGED_MARK if c.unconverged else "") + (BELOW_FLOOR_MARK if c.below_floor else "")
            line.append(t)
        out.append(line)
    return out


def header_labels(bt: BuiltTable) -> list[tuple[str, str]]:
    """(group, label) per displayed column (+ Avg)."""
    cols = [(c.group, c.label) for c in bt.spec.columns]
    return cols + ([("", "Avg.")] if bt.spec.avg else [])


def _protocols(bt: BuiltTable) -> list[str]:
    found = set()
    for r in bt.used.values():
        task_cfg = ((r.sidecar("config.json") or {}).get("task") or {}).get("cfg") or {}
        if "protocol" in task_cfg:
            found.add(str(task_cfg["protocol"]))
    return sorted(found)


def caption(bt: BuiltTable) -> str:
    spec = bt.spec
    seeds = ", ".join(map(str, bt.seeds))
    ns = {c.summary.n for line in bt.cells for c in line if c.summary is not None}
    n_text = (f"n={max(ns)} seeds per cell" + (f" (fewer where marked n=k; min {min(ns)})" if min(ns) < max(ns)
                                                  or max(ns) < len(bt.seeds) else "")) if ns else "no cells found"
    metrics = "; ".join(f"{task_label(t)}: {', '.join(sorted(m))}" for t, m in sorted(bt.metrics_by_task.items()))
    if spec.metric:
        metric_text = f"metric {spec.metric}"
    elif all(c.metric for c in spec.columns):
        metric_text = "the metric named in each column"
    else:
        metric_text = "each task's main metric"
    protocols = _protocols(bt)
    parts = [spec.title.rstrip(". ") + "." if spec.title else f"Table {spec.name}.",
             (f"Mean ± 95% CI (Student t-interval over seeds; the mean alone when n=1) of {metric_text}"
              if bt.display.ci else f"Mean over seeds of {metric_text}")
             + (f" ({metrics})" if metrics else "") + f"; seeds {{{seeds}}}, {n_text}.",
             f"Protocol: {', '.join(protocols) if protocols else 'task default (not recorded)'}; "
             f"world: {bt.index.world or 'none found'}."]
    if spec.avg:
        parts.append("Avg. = per-seed mean over the row's columns, then over seeds.")
    if spec.bold != "none":
        parts.append(f"Bold: best mean per column where a paired t-test over seeds puts it ahead of the next best "
                     f"(p < {stats.ALPHA:g}); no bold = a tie within seed noise"
                     + (" (reference rows excluded)." if any(r.reference for r in spec.rows) else "."))
    separated = bt.separated_pairs()
    if separated:
        parts.append(f"Separated: {separated[0]} of {separated[1]} pairs of rows differ on Avg. (paired t-test over "
                     f"seeds, Holm-corrected over the pairs, family-wise α = {stats.ALPHA:g}"
                     + ("; reference rows excluded)." if any(r.reference for r in spec.rows) else ")."))
    floors = floor_text(bt)
    if floors:
        parts.append(floors)
    if any(c.unconverged for line in bt.cells for c in line):
        parts.append(f"{UNCONVERGED_MARK} = a pretraining behind this cell is not converged: the budget study (its probes "
                     f"in the store, else its record in tables/budget.json) finds its AVE probe still moving at "
                     f"twice its budget, or, where no study covers it, {convergence.RULE}.")
    if any(c.below_floor for line in bt.cells for c in line):
        parts.append(f"{BELOW_FLOOR_MARK} = at or below the floor of its labels (what an uninformative predictor "
                     f"scores: all-positive F1, chance mAP): the cell measures nothing.")
    if bt.lower_bounds:
        cells = "; ".join(f"{row}, {task_label(task)} {' '.join(dict.fromkeys(dirs))} ({head} head)"
                          for (row, task, head), dirs in bt.lower_bounds.items())
        parts.append(f"Lower bounds: the head study (tables/head_budget.md) found these heads still rising at their "
                     f"task's head budget, so the cells they feed are lower bounds: {cells}.")
    if bt.display.paper and any(r.paper for r in spec.rows):
        parts.append(f"In parentheses: the paper's number ({spec.paper_source or 'paper'}).")
    if bt.missing:
        parts.append(f"{len({(m['method'], m['task'], m['seed']) for m in bt.missing})} cell(s) missing "
                     "(listed in the warnings / meta.json).")
    if spec.note:
        parts.append(spec.note)
    return " ".join(parts)


def floor_text(bt: BuiltTable) -> str:
    """The floors the detection cells recorded for their target labels (they depend on the labels only)."""
    acc: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in bt.used.values():
        for direction, values in r.metrics.items():
            for name in ("floor_f1", "chance_mAP"):
                v = finite((values or {}).get(name))
                if v is not None:
                    acc[(r.task_name or r.task, direction)][name].append(v)
    if not acc:
        return ""
    items = [f"{task_label(task)} {d}: F1 {stats.mean(v['floor_f1']):.2f}, mAP {stats.mean(v['chance_mAP']):.2f}"
             for (task, d), v in sorted(acc.items()) if v.get("floor_f1") and v.get("chance_mAP")]
    return ("Detection floors of the target labels (all-positive F1, chance mAP): " + "; ".join(items) + "."
            if items else "")


def missing_lines(bt: BuiltTable) -> list[str]:
    """Compact warning lines: one per (method, reason, seeds) with its tasks."""
    seeds: dict[tuple, list[int]] = defaultdict(list)
    for m in bt.missing:
        seeds[(m["method"], m["task"], m["reason"])].append(m["seed"])
    tasks: dict[tuple, list[str]] = defaultdict(list)
    for (method, task, reason), s in seeds.items():
        tasks[(method, reason, tuple(sorted(s)))].append(task)
    return [f"missing: {method} × {', '.join(sorted(t))} × seed {', '.join(map(str, s))} ({reason})"
            for (method, reason, s), t in sorted(tasks.items())]
