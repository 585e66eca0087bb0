"""Paper tables as a pure function of the result store: a grid's `table:` section -> CSV / LaTeX / Markdown / rich.

Nothing here trains. A table is a grid of (row, column) cells; each cell resolves to one
(method, task, directions, metric) and, per seed, to the mean over its directions of that metric in the stored
result (`result.json`). Over seeds a cell shows mean ± 95 % t-interval (`stats.summarize`); n = 1 shows "± n/a".
Cells the store lacks are *listed* (method, task, seed, why), never dropped silently.

The `table:` section of a grid (everything optional except `rows` and `columns`):

    table:
      method: vqvae              # default method for rows that give none
      task: toc_recon            # default task for columns that give none
      metric: null               # default metric; null = each result's `main_metric`
      decimals: 2                # digits shown (a column may override)
      avg: true                  # add an "Avg." column: per seed the mean of the row's columns, then over seeds
      bold: columns              # columns = best mean per column in bold (respecting higher_is_better) | none
      paper_source: "..."        # where the paper numbers come from (caption)
      row_header: Method         # heading of the label column
      note: "..."                # appended to the caption (e.g. why an ablation uses fewer seeds)
      plot: {kind: size_curve, x_label: "codebook size"}   # report_plots draws rows with `x` as a curve
      columns:
        - {task: ave, direction: V->A, group: AVE}         # direction: one label or a list (averaged)
        - {task: retrieval, direction: [V->T, T->V], metric: R@1, group: "V<->T", label: R@1}
      rows:
        - {method: codis, label: CODIS, paper: [36.8, ..., 39.90]}   # paper: one per column (+ Avg last)
        - {method: dcid, label: "m->m", mm: true, exclude: [ave_avvp]}   # mm: X->Y read as X->X
        - {direction: mask87.5, label: "87.5"}             # a row may fix the direction (and `task`) instead (t3)
        - {method: fccid+toc, sep: true}                   # sep: a rule above this row
        - {method: fccid@codebook_size=256, x: 256}        # x: position on a curve (plots)

Method and task strings are matched to results through their canonical form (`spec.parse_method(...).canonical()`),
so `dcid@quantizer=vq` finds the cells stored as `dcid`.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import registry, spec as specs, stats
from .contracts import UserError
from .store import atomic_write_json, atomic_write_text

FORMATS = ("csv", "latex", "md", "terminal")
SUFFIX = {"csv": ".csv", "latex": ".tex", "md": ".md"}


# --------------------------------------------------------------------------- canonical names
def _syntactic(text: str) -> str:
    """Canonical spelling without the registry (overrides sorted, values normalised): for entries whose card
    is not (or no longer) registered. Defaults cannot be dropped here, so grids spell only non-defaults."""
    parts = []
    for part in text.strip().split("+"):
        name, at, rest = part.strip().partition("@")
        over = specs.parse_overrides(rest, text) if at else {}
        parts.append(name.strip() + ("@" + ",".join(f"{k}={specs._fmt(v)}" for k, v in sorted(over.items()))
                                     if over else ""))
    return "+".join(parts)


def canonical_method(text: str) -> str:
    """Canonical method spec as stored in result.json; registry-resolved when every component is registered."""
    names = [p.partition("@")[0].strip() for p in text.strip().split("+")]
    kinds = ["method"] + ["refiner"] * (len(names) - 1)
    if all(n in registry.entries(k) for n, k in zip(names, kinds)):
        return specs.parse_method(text).canonical()
    return _syntactic(text)


def canonical_task(text: str) -> str:
    name = text.strip().partition("@")[0].strip()
    if name in registry.entries("task"):
        return specs.parse_task(text).canonical()
    return _syntactic(text)


def mm_direction(direction: str) -> str:
    """The source modality's own direction: 'V->A' -> 'V->V' (SRCID Table I's m->m rows)."""
    src, arrow, _ = direction.partition("->")
    return f"{src}->{src}" if arrow else direction


# --------------------------------------------------------------------------- table specification
@dataclass(frozen=True)
class Column:
    task: str | None
    directions: tuple[str, ...] | None
    metric: str | None
    label: str
    group: str
    decimals: int | None
    higher_is_better: bool | None


@dataclass(frozen=True)
class Row:
    method: str | None
    spec: str | None
    label: str
    task: str | None = None
    directions: tuple[str, ...] | None = None
    paper: tuple | None = None
    mm: bool = False
    exclude: frozenset = frozenset()
    sep: bool = False
    x: float | None = None
    reference: bool = False     # a floor / baseline / ceiling row: shown, never bold, not a competitor


@dataclass
class TableSpec:
    name: str
    title: str
    seeds: list[int]
    rows: list[Row]
    columns: list[Column]
    avg: bool = True
    bold: str = "columns"
    decimals: int = 2
    metric: str | None = None
    note: str = ""
    paper_source: str = ""
    plot: dict | None = None
    row_header: str = "Method"
    path: str = ""


def _directions(value, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise UserError(f"{where}: 'direction' must be a label or a non-empty list of labels, got {value!r}")


def _check_keys(obj: Any, allowed: set[str], where: str) -> dict:
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a mapping, got {obj!r}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    return obj


def _pretty(label: str) -> str:
    return label.replace("<->", "↔").replace("->", "→")


def parse_table(grid: dict, path: str | Path = "") -> TableSpec:
    """The `table:` section of a loaded grid dict, validated (UserError names the file and key)."""
    where = str(path) or grid.get("name", "grid")
    table = grid.get("table")
    if table is None:
        raise UserError(f"{where}: grid has no 'table:' section (it is a run-only grid)")
    _check_keys(table, {"method", "task", "metric", "decimals", "avg", "bold", "paper_source", "note", "plot",
                        "row_header", "columns", "rows"}, f"{where}: table")
    if table.get("bold", "columns") not in ("columns", "none"):
        raise UserError(f"{where}: table.bold must be 'columns' or 'none', got {table.get('bold')!r}")
    if not table.get("columns") or not table.get("rows"):
        raise UserError(f"{where}: table needs non-empty 'columns' and 'rows' lists")
    default_task = table.get("task")
    columns = []
    for i, raw in enumerate(table["columns"]):
        c = _check_keys(raw, {"task", "direction", "metric", "label", "group", "decimals", "higher_is_better"},
                        f"{where}: table.columns[{i}]")
        task = c.get("task", default_task)
        dirs = _directions(c.get("direction"), f"{where}: table.columns[{i}]")
        label = c.get("label") or (" ".join(dirs) if dirs else c.get("metric") or f"col{i}")
        try:
            canonical = canonical_task(task) if task else None
        except UserError as exc:
            raise UserError(f"{where}: table.columns[{i}]: {exc}") from None
        columns.append(Column(canonical, dirs, c.get("metric"), str(label), str(c.get("group", "")),
                              c.get("decimals"), c.get("higher_is_better")))
    avg = bool(table.get("avg", True))
    n_paper = {len(columns), len(columns) + int(avg)}
    rows = []
    for i, raw in enumerate(table["rows"]):
        r = _check_keys(raw, {"method", "task", "direction", "label", "paper", "mm", "exclude", "sep", "x",
                              "reference"},
                        f"{where}: table.rows[{i}]")
        method = r.get("method", table.get("method"))
        if method is None:
            raise UserError(f"{where}: table.rows[{i}] has no 'method' and the table sets no default method")
        task = r.get("task")
        dirs = _directions(r.get("direction"), f"{where}: table.rows[{i}]")
        paper = r.get("paper")
        if paper is not None:
            if not isinstance(paper, list) or len(paper) not in n_paper:
                raise UserError(f"{where}: table.rows[{i}].paper must list one number per column "
                                f"({len(columns)}{' + Avg' if avg else ''}), got {paper!r}")
            paper = tuple(paper)
        label = r.get("label") or (dirs[0] if dirs else str(method))
        try:
            rows.append(Row(canonical_method(str(method)), str(method), str(label),
                            canonical_task(task) if task else None, dirs, paper, bool(r.get("mm", False)),
                            frozenset(canonical_task(t) for t in r.get("exclude") or []), bool(r.get("sep", False)),
                            r.get("x"), bool(r.get("reference", False))))
        except UserError as exc:
            raise UserError(f"{where}: table.rows[{i}]: {exc}") from None
    for i, c in enumerate(columns):
        for j, r in enumerate(rows):
            if (c.task or r.task) is None or (c.directions or r.directions) is None:
                raise UserError(f"{where}: cell (row {j}, column {i}) has no task or no direction "
                                f"(set it on the column, the row or table.task)")
    seeds = [int(s) for s in (grid.get("seeds") or [0])]
    return TableSpec(name=str(grid.get("name") or Path(path).stem), title=str(grid.get("title", "")), seeds=seeds,
                     rows=rows, columns=columns, avg=avg, bold=table.get("bold", "columns"),
                     decimals=int(table.get("decimals", 2)), metric=table.get("metric"),
                     note=str(table.get("note", "")).strip(), paper_source=str(table.get("paper_source", "")),
                     plot=table.get("plot"), row_header=str(table.get("row_header", "Method")), path=str(path))


def load_table(name: str) -> TableSpec:
    from .commands.grid import find_grid, load_grid
    path = find_grid(name)
    return parse_table(load_grid(path), path)


def table_names() -> list[str]:
    """Every grid under benchmark/grids with a `table:` section (what `table all` builds)."""
    import yaml
    from .commands.grid import GRID_DIR
    return [p.stem for p in sorted(Path(GRID_DIR).glob("*.yaml"))
            if isinstance(d := yaml.safe_load(p.read_text()), dict) and d.get("table")]


def grid_cells(grid: dict) -> set[tuple[str, str, int]]:
    """(method, task, seed) canonical triples a grid runs (its product plus its blocks)."""
    blocks = ([{"methods": grid.get("methods"), "tasks": grid.get("tasks")}] if grid.get("methods") else [])
    blocks += grid.get("blocks") or []
    seeds = grid.get("seeds") or [0]
    return {(canonical_method(m), canonical_task(t), int(s))
            for b in blocks for m in b["methods"] for t in b["tasks"] for s in seeds}


def table_cells(table: TableSpec) -> set[tuple[str, str, int]]:
    """(method, task, seed) triples a table reads."""
    return {(r.method, c.task or r.task, s) for r in table.rows for c in table.columns for s in table.seeds
            if (c.task or r.task) not in r.exclude}


# --------------------------------------------------------------------------- the store, indexed
@dataclass
class Index:
    """Results of one world keyed by (method, task, seed); duplicates resolved to the newest."""

    world: str | None
    cells: dict[tuple[str, str, int], dict]
    warnings: list[str] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)

    def get(self, method: str, task: str, seed: int) -> dict | None:
        return self.cells.get((method, task, int(seed)))

    def seeds(self, method: str, task: str | None = None) -> list[int]:
        return sorted({s for (m, t, s) in self.cells if m == method and (task is None or t == task)})


def build_index(results: Sequence[dict], world: str | None = None,
                wanted: Iterable[tuple[str, str]] | None = None) -> Index:
    """Pick one world (the named one, else the one holding most of the wanted (method, task) cells) and key
    its results. Two results for one (method, task, seed) (e.g. after a task version bump) keep the newest
    (highest task_version, then latest `created`); the others are reported as duplicates."""
    warnings: list[str] = []
    wanted = set(wanted) if wanted is not None else None
    worlds = defaultdict(int)
    for r in results:
        if wanted is None or (r.get("method"), r.get("task")) in wanted:
            worlds[r.get("world")] += 1
    if world is None and worlds:
        world = max(sorted(worlds, key=str), key=lambda w: worlds[w])
        if len(worlds) > 1:
            others = ", ".join(f"{w} ({n} cells)" for w, n in sorted(worlds.items(), key=str) if w != world)
            warnings.append(f"results from several worlds; using {world} ({worlds[world]} cells), "
                            f"ignoring {others} (choose with --world)")
    elif world is not None and world not in worlds and worlds:
        warnings.append(f"no results from world '{world}' (found: {', '.join(map(str, sorted(worlds, key=str)))})")
    cells: dict[tuple[str, str, int], dict] = {}
    dup: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        if r.get("world") != world:
            continue
        ident = (r["method"], r["task"], int(r["seed"]))
        dup[ident].append(r)
    duplicates = []
    for ident, group in dup.items():
        group.sort(key=lambda r: (r.get("task_version", 0), str(r.get("created", "")), r.get("key", "")))
        cells[ident] = group[-1]
        if len(group) > 1:
            duplicates.append({"method": ident[0], "task": ident[1], "seed": ident[2], "used": group[-1].get("key"),
                               "ignored": [g.get("key") for g in group[:-1]]})
            ignored = ", ".join(str(g.get("key")) for g in group[:-1])
            warnings.append(f"duplicate cells for {ident[0]} × {ident[1]} × seed {ident[2]}: using "
                            f"{group[-1].get('key')} (newest), ignoring {ignored}")
    return Index(world, cells, warnings, duplicates)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def cell_value(index: Index, method: str, task: str, directions: Sequence[str], metric: str | None, seed: int,
               missing: list[dict] | None = None, used: dict | None = None) -> float | None:
    """Mean over `directions` of `metric` (None = the result's main metric) in one stored cell, or None
    (appending why to `missing`; recording the result in `used`)."""
    result = index.get(method, task, seed)
    if result is None:
        if missing is not None:
            missing.append({"method": method, "task": task, "seed": int(seed), "reason": "no result"})
        return None
    name = metric or result.get("main_metric")
    values = []
    for d in directions:
        v = _number((result.get("metrics", {}).get(d) or {}).get(name))
        if v is None:
            if missing is not None:
                missing.append({"method": method, "task": task, "seed": int(seed),
                                "reason": f"'{d}' has no metric '{name}'", "key": result.get("key")})
            return None
        values.append(v)
    if used is not None:
        used[result.get("key")] = result
    return sum(values) / len(values)


def seed_values(index: Index, method: str, coords: Sequence[tuple[str, Sequence[str], str | None]],
                seeds: Iterable[int] | None = None, missing: list[dict] | None = None,
                used: dict | None = None) -> dict[int, float]:
    """Per seed, the mean over coords (task, directions, metric) of `cell_value`; only seeds where every
    coord is present. `seeds` None = every seed the store holds for this method."""
    seeds = sorted(seeds) if seeds is not None else index.seeds(method)
    out = {}
    for s in seeds:
        vals = [cell_value(index, method, t, d, m, s, missing, used) for t, d, m in coords]
        if vals and all(v is not None for v in vals):
            out[s] = sum(vals) / len(vals)
    return out


# --------------------------------------------------------------------------- building a table
@dataclass
class CellStats:
    per_seed: dict[int, float]
    summary: stats.Summary | None
    excluded: bool = False
    higher_is_better: bool | None = None
    metric: str | None = None
    unconverged: bool = False    # a contributing pretraining did not pass its convergence diagnostic


def converged_flag(result: dict | None) -> bool | None:
    """A cell's pretraining convergence diagnostic: True / False, None for training-free methods."""
    flag = (((result or {}).get("diagnostics") or {}).get("training") or {}).get("converged")
    return None if flag is None else bool(flag)


def unconverged(result: dict | None) -> bool:
    """Whether a cell's pretraining recorded `converged: false` (cells of training-free methods never are)."""
    return converged_flag(result) is False


@dataclass
class BuiltTable:
    spec: TableSpec
    index: Index
    cells: list[list[CellStats]]            # [row][column]
    avg: list[CellStats | None]             # per row (None when the table has no Avg column)
    missing: list[dict]
    used: dict[str, dict]                   # key -> result of every contributing cell
    seeds: list[int]
    warnings: list[str]
    metrics_by_task: dict[str, set]

    def column_best(self) -> list[set[int]]:
        """Row indices in bold per column (+ Avg last): best displayed mean, ties included."""
        cols = [[self.cells[r][c] for r in range(len(self.cells))] for c in range(len(self.spec.columns))]
        decimals = [_decimals(self.spec, c) for c in self.spec.columns]
        if self.spec.avg:
            cols.append(self.avg)
            decimals.append(self.spec.decimals)
        best = []
        for col, dec in zip(cols, decimals):
            present = [(i, round(c.summary.mean, dec)) for i, c in enumerate(col)
                       if c is not None and c.summary is not None and not self.spec.rows[i].reference]
            hib = {c.higher_is_better for c in col if c is not None and c.summary is not None}
            if self.spec.bold == "none" or len(present) < 2 or len(hib) != 1 or None in hib:
                best.append(set())
                continue
            top = (max if hib.pop() else min)(v for _, v in present)
            best.append({i for i, v in present if v == top})
        return best


def _decimals(spec: TableSpec, column: Column) -> int:
    return int(column.decimals) if column.decimals is not None else spec.decimals


def _hib(results: Iterable[dict], metric: str | None) -> bool | None:
    found = set()
    for r in results:
        name = metric or r.get("main_metric")
        if name in (r.get("higher_is_better") or {}):
            found.add(bool(r["higher_is_better"][name]))
    return found.pop() if len(found) == 1 else None


def build(table: TableSpec, results: Sequence[dict], world: str | None = None,
          seeds: Sequence[int] | None = None) -> BuiltTable:
    """Resolve every (row, column) cell against the store. Pure: reads result dicts only."""
    seeds = sorted(int(s) for s in (seeds or table.seeds))
    wanted = {(m, t) for m, t, _ in table_cells(table)}
    index = build_index(results, world, wanted)
    missing: list[dict] = []
    used: dict[str, dict] = {}
    metrics_by_task: dict[str, set] = defaultdict(set)
    grid, avgs = [], []
    for row in table.rows:
        line = []
        for col in table.columns:
            task = col.task or row.task
            if task in row.exclude:
                line.append(CellStats({}, None, excluded=True))
                continue
            dirs = row.directions or col.directions
            if row.mm:
                dirs = tuple(mm_direction(d) for d in dirs)
            metric = col.metric or table.metric
            per_seed = {}
            cell_results = []
            for s in seeds:
                v = cell_value(index, row.method, task, dirs, metric, s, missing, used)
                if v is not None:
                    per_seed[s] = v
                    cell_results.append(index.get(row.method, task, s))
            for r in cell_results:
                metrics_by_task[task].add(metric or r.get("main_metric"))
            hib = col.higher_is_better if col.higher_is_better is not None else _hib(cell_results, metric)
            line.append(CellStats(per_seed, stats.summarize(list(per_seed.values())) if per_seed else None,
                                  higher_is_better=hib, metric=metric,
                                  unconverged=any(unconverged(r) for r in cell_results)))
        grid.append(line)
        if table.avg:
            active = [c for c in line if not c.excluded]
            per_seed = {s: sum(c.per_seed[s] for c in active) / len(active)
                        for s in seeds if active and all(s in c.per_seed for c in active)}
            hibs = {c.higher_is_better for c in active if c.summary is not None}
            avgs.append(CellStats(per_seed, stats.summarize(list(per_seed.values())) if per_seed else None,
                                  higher_is_better=hibs.pop() if len(hibs) == 1 else None,
                                  unconverged=any(c.unconverged for c in active)))
        else:
            avgs.append(None)
    unique = {(m["method"], m["task"], m["seed"], m["reason"]): m for m in missing}
    missing = sorted(unique.values(), key=lambda m: (m["task"], m["method"], m["seed"], m["reason"]))
    return BuiltTable(table, index, grid, avgs, missing, used, seeds, list(index.warnings), dict(metrics_by_task))


# --------------------------------------------------------------------------- text pieces shared by renderers
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
    pm: str = ""          # half-width, "n/a" for n = 1, "" when no value
    paper: str = ""
    n_mark: str = ""      # "n=2" when fewer seeds than the table lists
    state: str = "ok"     # ok | missing | excluded
    bold: bool = False
    flag: str = ""        # UNCONVERGED_MARK when a contributing pretraining is not converged


UNCONVERGED_MARK = "†"


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
            t = CellText(paper=_fmt_paper(paper, paper_dec[j]) if paper is not None else "")
            if c.excluded:
                t.state = "excluded"
            elif c.summary is None:
                t.state = "missing"
            else:
                s = c.summary
                t.mean = f"{s.mean:.{dec}f}"
                t.pm = f"{s.half_width:.{dec}f}" if s.ci_defined else "n/a"
                t.n_mark = f"n={s.n}" if s.n < len(bt.seeds) else ""
                t.bold = i in best[j]
                t.flag = UNCONVERGED_MARK if c.unconverged else ""
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
        cfg = _read_json(Path(r["_dir"]) / "config.json") if r.get("_dir") else None
        task_cfg = ((cfg or {}).get("task") or {}).get("cfg") or {}
        if "protocol" in task_cfg:
            found.add(str(task_cfg["protocol"]))
    return sorted(found)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def caption(bt: BuiltTable) -> str:
    spec = bt.spec
    seeds = ", ".join(map(str, bt.seeds))
    ns = {c.summary.n for line in bt.cells for c in line if c.summary is not None}
    n_text = (f"n={max(ns)} seeds per cell" + (f" (fewer where marked n=k; min {min(ns)})" if min(ns) < max(ns)
                                                  or max(ns) < len(bt.seeds) else "")) if ns else "no cells found"
    metrics = "; ".join(f"{t}: {', '.join(sorted(m))}" for t, m in sorted(bt.metrics_by_task.items()))
    if spec.metric:
        metric_text = f"metric {spec.metric}"
    elif all(c.metric for c in spec.columns):
        metric_text = "the metric named in each column"
    else:
        metric_text = "each task's main metric"
    protocols = _protocols(bt)
    parts = [spec.title.rstrip(". ") + "." if spec.title else f"Table {spec.name}.",
             f"Mean ± 95% CI (Student t-interval over seeds; n/a when n=1) of {metric_text}"
             + (f" ({metrics})" if metrics else "") + f"; seeds {{{seeds}}}, {n_text}.",
             f"Protocol: {', '.join(protocols) if protocols else 'task default (not recorded)'}; "
             f"world: {bt.index.world or 'none found'}."]
    if spec.avg:
        parts.append("Avg. = per-seed mean over the row's columns, then over seeds.")
    if spec.bold != "none":
        parts.append("Bold: best mean per column" + (" (reference rows excluded)." if any(r.reference for r in
                                                                                        spec.rows) else "."))
    floors = floor_text(bt)
    if floors:
        parts.append(floors)
    if any(c.unconverged for line in bt.cells for c in line):
        parts.append(f"{UNCONVERGED_MARK} = a pretraining behind this cell is not converged (its loss still moved "
                     f"by more than 10 % of its total change in the last quarter of training).")
    if any(r.paper for r in spec.rows):
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
        for direction, values in (r.get("metrics") or {}).items():
            for name in ("floor_f1", "chance_mAP"):
                v = _number((values or {}).get(name))
                if v is not None:
                    acc[(r.get("task_name") or r.get("task"), direction)][name].append(v)
    if not acc:
        return ""
    items = [f"{task} {d}: F1 {stats.mean(v['floor_f1']):.2f}, mAP {stats.mean(v['chance_mAP']):.2f}"
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


# --------------------------------------------------------------------------- renderers
def to_long_csv(bt: BuiltTable) -> str:
    """Canonical long format: one row per contributing cell × direction × metric; `converged` is the cell's
    pretraining convergence diagnostic (true / false; empty for training-free methods)."""
    rows = []
    for key, r in bt.used.items():
        flag = converged_flag(r)
        converged = "" if flag is None else str(flag).lower()
        for direction, values in (r.get("metrics") or {}).items():
            for metric, value in (values or {}).items():
                v = _number(value)
                if v is not None:
                    rows.append((r["method"], r["task"], direction, metric, int(r["seed"]), v, key, converged))
    rows.sort(key=lambda x: (x[1], x[0], x[4], x[2], x[3]))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["method", "task", "direction", "metric", "seed", "value", "key", "converged"])
    for row in rows:
        writer.writerow([*row[:5], repr(row[5]), *row[6:]])
    return buf.getvalue()


_LATEX_MAP = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#",
    "$": r"\$", "^": r"\^{}", "~": r"\~{}", "<->": r"$\leftrightarrow$", "->": r"$\rightarrow$",
    "↔": r"$\leftrightarrow$", "→": r"$\rightarrow$", "±": r"$\pm$", "—": "---", "–": "--", "×": r"$\times$",
    "≈": r"$\approx$", "≥": r"$\geq$", "≤": r"$\leq$", "↑": r"$\uparrow$", "↓": r"$\downarrow$",
}
_LATEX_RE = re.compile("|".join(re.escape(k) for k in sorted(_LATEX_MAP, key=len, reverse=True)))


def latex_escape(text: str) -> str:
    """Plain text -> LaTeX text (special characters escaped, arrows as math)."""
    return _LATEX_RE.sub(lambda m: _LATEX_MAP[m.group(0)], str(text))


def _latex_cell(t: CellText) -> str:
    if t.state == "excluded":
        return "--"
    if t.state == "missing":
        body = r"\textit{missing}"
    else:
        mean = rf"\textbf{{{t.mean}}}" if t.bold else t.mean
        body = f"{mean}{t.flag} $\\pm$ {t.pm}" + (f"$^{{{t.n_mark}}}$" if t.n_mark else "")
    return body + (rf" {{\scriptsize({latex_escape(t.paper)})}}" if t.paper else "")


def _spans(groups: list[str]) -> list[tuple[str, int, int]]:
    """Consecutive runs of one group label: (label, first, last) 0-based."""
    spans, start = [], 0
    for i in range(1, len(groups) + 1):
        if i == len(groups) or groups[i] != groups[start]:
            spans.append((groups[start], start, i - 1))
            start = i
    return spans


def to_latex(bt: BuiltTable) -> str:
    """A booktabs table (needs only \\usepackage{booktabs}); missing cells are also listed as comments."""
    heads = header_labels(bt)
    texts = cell_texts(bt)
    first = latex_escape(bt.spec.row_header)
    lines = [f"% generated by unibench: python -m benchmark table {bt.spec.name} (do not edit by hand)"]
    lines += [f"% {w}" for w in bt.warnings + missing_lines(bt)]   # a comment needs no escaping
    lines += [r"\begin{table}[t]", r"\centering", r"\small", r"\setlength{\tabcolsep}{3pt}",
              r"\begin{tabular}{l" + "r" * len(heads) + "}", r"\toprule"]
    groups = [g for g, _ in heads]
    if any(groups):
        cells, rules = [""], []
        for label, a, b in _spans(groups):
            width = b - a + 1
            cells.append(rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(label)}}}" if width > 1 or label
                         else "")
            if label:
                rules.append(rf"\cmidrule(lr){{{a + 2}-{b + 2}}}")
        lines.append(" & ".join(cells) + r" \\")
        lines.append(" ".join(rules))
    lines.append(" & ".join([first] + [latex_escape(lab) for _, lab in heads]) + r" \\")
    lines.append(r"\midrule")
    for row, line in zip(bt.spec.rows, texts):
        if row.sep and row is not bt.spec.rows[0]:
            lines.append(r"\midrule")
        lines.append(" & ".join([latex_escape(row.label)] + [_latex_cell(t) for t in line]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{latex_escape(caption(bt))}}}",
              rf"\label{{tab:unibench-{re.sub(r'[^A-Za-z0-9-]', '-', bt.spec.name)}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _plain_cell(t: CellText, bold: tuple[str, str] = ("**", "**")) -> str:
    if t.state == "excluded":
        return "—"
    if t.state == "missing":
        body = "missing"
    else:
        mean = f"{bold[0]}{t.mean}{bold[1]}" if t.bold else t.mean
        body = f"{mean}{t.flag} ± {t.pm}" + (f" [{t.n_mark}]" if t.n_mark else "")
    return body + (f" ({t.paper})" if t.paper else "")


def to_markdown(bt: BuiltTable) -> str:
    heads = header_labels(bt)
    texts = cell_texts(bt)
    esc = lambda s: _pretty(s).replace("|", r"\|")  # noqa: E731
    head = [esc(bt.spec.row_header)] + [esc(f"{g} {lab}".strip()) for g, lab in heads]
    lines = [f"**{esc(bt.spec.title or bt.spec.name)}**", "", "| " + " | ".join(head) + " |",
             "|" + "|".join([":---"] + ["---:"] * len(heads)) + "|"]
    for row, line in zip(bt.spec.rows, texts):
        lines.append("| " + " | ".join([esc(row.label)] + [esc(_plain_cell(t)) for t in line]) + " |")
    lines += ["", esc(caption(bt))]
    notes = bt.warnings + missing_lines(bt)
    if notes:
        lines += ["", "> **Warnings**"] + [f"> - {esc(n)}" for n in notes]
    return "\n".join(lines) + "\n"


def to_rich(bt: BuiltTable):
    from rich.table import Table
    from rich.text import Text
    heads = header_labels(bt)
    table = Table(title=_pretty(bt.spec.title or bt.spec.name), caption=_pretty(caption(bt)), title_justify="left",
                  caption_justify="left")
    table.add_column(_pretty(bt.spec.row_header), style="bold")
    for g, lab in heads:
        table.add_column(_pretty(f"{g}\n{lab}" if g else lab), justify="right")
    for row, line in zip(bt.spec.rows, cell_texts(bt)):
        if row.sep and row is not bt.spec.rows[0]:
            table.add_section()
        cells = []
        for t in line:
            text = Text(_plain_cell(t, ("", "")))
            if t.bold:
                text.stylize("bold green", 0, len(t.mean))
            if t.state == "missing":
                text.stylize("yellow")
            cells.append(text)
        table.add_row(_pretty(row.label), *cells)
    return table


# --------------------------------------------------------------------------- provenance and writing
def _git_now() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent.parent,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def meta(bt: BuiltTable) -> dict:
    """Sidecar naming every contributing cell and the code version(s) that produced them."""
    shas, dirty = set(), False
    for r in bt.used.values():
        env = _read_json(Path(r["_dir"]) / "env.json") if r.get("_dir") else None
        if env and env.get("git_sha"):
            shas.add(env["git_sha"])
            dirty |= bool(env.get("git_dirty"))
    source = "results env.json" if shas else "git rev-parse (no sha in the results)"
    if not shas and (now := _git_now()):
        shas.add(now)
    return {
        "table": bt.spec.name, "title": bt.spec.title, "grid": bt.spec.path, "world": bt.index.world,
        "seeds": bt.seeds, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_sha": sorted(shas)[0] if len(shas) == 1 else sorted(shas) or None, "git_dirty": dirty,
        "git_sha_source": source, "caption": caption(bt),
        "cells": sorted(({"key": k, "method": r["method"], "task": r["task"], "seed": r["seed"],
                          "dir": r.get("_dir")} for k, r in bt.used.items()),
                        key=lambda c: (c["task"], c["method"], c["seed"])),
        "missing": bt.missing, "duplicates": bt.index.duplicates, "warnings": bt.warnings,
    }


RENDER = {"csv": to_long_csv, "latex": to_latex, "md": to_markdown}


def write(bt: BuiltTable, formats: Iterable[str], out_dir: str | Path) -> list[Path]:
    """Write the requested file formats plus `<name>.meta.json`, each atomically. Returns the paths."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' exists and is not a directory")
    paths = []
    for fmt in formats:
        if fmt in RENDER:
            path = out / f"{bt.spec.name}{SUFFIX[fmt]}"
            atomic_write_text(path, RENDER[fmt](bt))
            paths.append(path)
    if paths:
        path = out / f"{bt.spec.name}.meta.json"
        sidecar = meta(bt)
        if _changed_besides_created(_read_json(path), sidecar):   # an unchanged sidecar keeps its bytes (git stays
            atomic_write_json(path, sidecar)                        # clean) when no number, cell or sha moved
        paths.append(path)
    return paths


def _without_created(d: dict) -> dict:
    return json.loads(json.dumps({k: v for k, v in d.items() if k != "created"}, sort_keys=True, default=str))


def _changed_besides_created(old: dict | None, new: dict) -> bool:
    return old is None or _without_created(old) != _without_created(new)
