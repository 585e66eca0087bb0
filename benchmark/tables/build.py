"""A table built from the store: per (row, column) the per-seed values, their summary and what bold means.

Pure: reads results only. Over seeds a cell shows mean ± 95 % t-interval (`stats.summarize`).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

from .. import stats
from ..results import CellResult
from .index import Index, build_index, cell_value
from .layout import Column, TableSpec, table_cells
from .names import mm_direction


@dataclass
class CellStats:
    per_seed: dict[int, float]
    summary: stats.Summary | None
    excluded: bool = False
    higher_is_better: bool | None = None
    metric: str | None = None
    unconverged: bool = False    # a contributing pretraining did not pass its convergence diagnostic


@dataclass
class BuiltTable:
    spec: TableSpec
    index: Index
    cells: list[list[CellStats]]            # [row][column]
    avg: list[CellStats | None]             # per row (None when the table has no Avg column)
    missing: list[dict]
    used: dict[str, CellResult]             # key -> result of every contributing cell
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


def _hib(results: Iterable[CellResult], metric: str | None) -> bool | None:
    found = {r.higher_is_better_for(metric) for r in results} - {None}
    return found.pop() if len(found) == 1 else None


def build(table: TableSpec, results: Sequence[CellResult | dict], world: str | None = None,
          seeds: Sequence[int] | None = None) -> BuiltTable:
    """Resolve every (row, column) cell against the store."""
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
                metrics_by_task[task].add(r.metric_name(metric))
            hib = col.higher_is_better if col.higher_is_better is not None else _hib(cell_results, metric)
            line.append(CellStats(per_seed, stats.summarize(list(per_seed.values())) if per_seed else None,
                                  higher_is_better=hib, metric=metric,
                                  unconverged=any(r.converged is False for r in cell_results)))
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
