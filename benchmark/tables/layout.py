"""The `table:` section of a grid, validated into a `TableSpec` (rows × columns), and the cells it reads."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import gridspec
from ..contracts import UserError
from .names import canonical_method, canonical_task


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
    optional: bool = False      # a row only some data can have (the oracle needs a synthetic world's true
                                # latents): its absent cells read n/a and are not listed as missing


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


def _decimals(value: Any, where: str) -> int | None:
    """`decimals:` is a small non-negative integer (or absent)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
        raise UserError(f"{where}: decimals must be an integer in [0, 10], got {value!r}"[:300])
    return value


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
                              _decimals(c.get("decimals"), f"{where}: table.columns[{i}]"),
                              c.get("higher_is_better")))
    avg = bool(table.get("avg", True))
    n_paper = {len(columns), len(columns) + int(avg)}
    rows = []
    for i, raw in enumerate(table["rows"]):
        r = _check_keys(raw, {"method", "task", "direction", "label", "paper", "mm", "exclude", "sep", "x",
                              "reference", "optional"},
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
                            r.get("x"), bool(r.get("reference", False)), bool(r.get("optional", False))))
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
                     decimals=_decimals(table.get("decimals", 2), f"{where}: table"), metric=table.get("metric"),
                     note=str(table.get("note", "")).strip(), paper_source=str(table.get("paper_source", "")),
                     plot=table.get("plot"), row_header=str(table.get("row_header", "Method")), path=str(path))


def load_table(name: str) -> TableSpec:
    path = gridspec.find_grid(name)
    return parse_table(gridspec.load_grid(path), path)


def grid_cells(grid: dict) -> set[tuple[str, str, int]]:
    """(method, task, seed) canonical triples a grid runs (its product plus its blocks; a loaded grid's blocks
    carry its `method_options`)."""
    blocks = grid.get("_blocks")
    if blocks is None:
        blocks = ([{"methods": grid.get("methods"), "tasks": grid.get("tasks")}] if grid.get("methods") else [])
        blocks += grid.get("blocks") or []
    seeds = grid.get("seeds") or [0]
    return {(canonical_method(m), canonical_task(t), int(s))
            for b in blocks for m in b["methods"] for t in b["tasks"] for s in seeds}


def table_cells(table: TableSpec) -> set[tuple[str, str, int]]:
    """(method, task, seed) triples a table reads."""
    return {(r.method, c.task or r.task, s) for r in table.rows for c in table.columns for s in table.seeds
            if (c.task or r.task) not in r.exclude}
