"""A table built from the store: per (row, column) the per-seed values, their summary and what bold means.

Pure: reads results only. Over seeds a cell shows mean ± 95 % t-interval (`stats.summarize`).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from .. import stats
from ..results import CellResult, as_results
from .index import Index, build_index, cell_value
from .layout import TableSpec, table_cells
from .names import mm_direction


@dataclass
class CellStats:
    per_seed: dict[int, float]
    summary: stats.Summary | None
    excluded: bool = False
    higher_is_better: bool | None = None
    metric: str | None = None
    unconverged: bool = False    # a contributing pretraining did not pass its convergence diagnostic
    floor: float | None = None   # mean over seeds of what an uninformative predictor scores here (FLOORS)
    below_floor: bool = False    # the mean does not beat that floor: the cell measures nothing


# metrics whose results record the score of an uninformative predictor on the same labels (tasks.metrics)
FLOORS = {"f1": "floor_f1", "mAP": "chance_mAP"}


def _floor(index: Index, row, task: str, dirs, results: list[CellResult], metric: str | None,
           seeds: Sequence[int]) -> float | None:
    """The mean floor of a cell's metric over its seeds (None when the metric has none or a seed lacks it)."""
    names = {r.metric_name(metric) for r in results}
    if len(names) != 1 or names & set(FLOORS) != names:
        return None
    floor_metric = FLOORS[names.pop()]
    values = [cell_value(index, row.method, task, dirs, floor_metric, s) for s in seeds]
    return None if not values or None in values else sum(values) / len(values)


@dataclass(frozen=True)
class Display:
    """What the renderers show; the numbers and the bold marks are the same either way."""

    paper: bool = True    # the papers' numbers in parentheses
    ci: bool = True       # "± half-width" of the 95 % CI (never shown for n = 1, where it is undefined)


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
    display: Display = Display()
    lower_bounds: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)   # (row, task, head) -> dirs

    def column_best(self) -> list[set[int]]:
        """Row index in bold per column (+ Avg last): the best mean, only when it is significantly ahead of the
        runner-up (`significantly_ahead`); a lead within seed noise is a tie and nothing is bold."""
        cols = [[self.cells[r][c] for r in range(len(self.cells))] for c in range(len(self.spec.columns))]
        if self.spec.avg:
            cols.append(self.avg)
        best = []
        for col in cols:
            present = [(i, c) for i, c in enumerate(col)
                       if c is not None and c.summary is not None and not self.spec.rows[i].reference]
            hib = {c.higher_is_better for c in col if c is not None and c.summary is not None}
            if self.spec.bold == "none" or len(present) < 2 or len(hib) != 1 or None in hib:
                best.append(set())
                continue
            sign = 1.0 if hib.pop() else -1.0
            (i, top), (_, second) = sorted(present, key=lambda ic: -sign * ic[1].summary.mean)[:2]
            best.append({i} if significantly_ahead(top, second, sign) else set())
        return best


    def separated_pairs(self) -> tuple[int, int] | None:
        """(pairs that differ, pairs tested) on Avg. among the competitor rows: a paired t-test over the seeds
        both rows hold per pair, Holm-corrected over all pairs (`stats.holm`), since with many pairs some would
        pass an uncorrected p < α by chance alone. None without an Avg. column or fewer than two rows."""
        if not self.spec.avg:
            return None
        rows = [c for i, c in enumerate(self.avg)
                if c is not None and c.summary is not None and not self.spec.rows[i].reference]
        pvalues = []
        for i, a in enumerate(rows):
            for b in rows[i + 1:]:
                seeds = sorted(set(a.per_seed) & set(b.per_seed))
                if len(seeds) >= 2:
                    pvalues.append(stats.paired_test([a.per_seed[s] for s in seeds],
                                                     [b.per_seed[s] for s in seeds]).p)
        return (sum(stats.holm(pvalues)), len(pvalues)) if pvalues else None


def significantly_ahead(a: CellStats, b: CellStats, sign: float = 1.0) -> bool:
    """Whether `a` beats `b` (sign -1: lower is better) by a paired t-test over the seeds both hold, p < α."""
    seeds = sorted(set(a.per_seed) & set(b.per_seed))
    if len(seeds) < 2:
        return False
    test = stats.paired_test([a.per_seed[s] for s in seeds], [b.per_seed[s] for s in seeds])
    return test.p < stats.ALPHA and sign * test.mean_diff > 0


def _hib(results: Iterable[CellResult], metric: str | None) -> bool | None:
    found = {r.higher_is_better_for(metric) for r in results} - {None}
    return found.pop() if len(found) == 1 else None


def default_seeds(table: TableSpec, index, wanted: set[tuple[str, str]]) -> tuple[set[int], list[str]]:
    """The seeds at which every row of the table has results, so that rows are compared on the same seeds (a
    one-seed ablation grid reusing a 3-seed main-grid row compares them at seed 0, not 1 seed against 3); the
    seeds the store holds when no seed is shared by all rows; the grid's seeds when it holds none. A seed left
    out is named in one warning."""
    rows = {r.method for r in table.rows if r.method}
    per_row = {m: {s for (mm, t, s) in index.cells if mm == m and (mm, t) in wanted} for m in rows}
    present = set().union(*per_row.values()) if per_row else set()
    if not present:
        return set(table.seeds), []
    common = set.intersection(*per_row.values())
    if not common or common == present:
        return present, []
    left = sorted(present - common)
    lacking = sorted(m for m, got in per_row.items() if not set(left) <= got)
    shown = ", ".join(lacking[:3]) + (f" and {len(lacking) - 3} more" if len(lacking) > 3 else "")
    return common, [f"seed(s) {', '.join(map(str, left))} left out: {len(lacking)} row(s) have no results "
                    f"there ({shown}); pass --seeds to include them"]


def _study(results: Sequence[CellResult | dict], recorded: Mapping[str, bool] | None = None):
    from ..budget import study_verdicts     # lazily: the budget study's module pulls in the runner
    return study_verdicts(as_results(results), recorded=recorded)


def unconverged(result: CellResult, study) -> bool:
    """† for a cell: the budget study says its pretraining's budget is not converged — the study's probes in the
    store, else the study's committed record of that pretraining — or, where no study covers it, its loss
    diagnostic does (`benchmark.convergence`)."""
    verdict = study(result)
    return verdict is False if verdict is not None else result.converged is False


SOURCE_HEAD = {"A": "audio", "V": "video"}     # a direction's source letter -> the head task it reads


def build(table: TableSpec, results: Sequence[CellResult | dict], world: str | None = None,
          seeds: Sequence[int] | None = None, display: Display = Display(),
          recorded: Mapping[str, bool] | None = None,
          unsettled: Mapping[tuple[str, str], Mapping] | None = None) -> BuiltTable:
    """Resolve every (row, column) cell against the store. `seeds` None = `default_seeds`; cells with different
    seed counts add a warning. `unsettled` (`budget.unsettled_heads`) names the heads the head study found still
    moving: a cell read from one, on the data the study judged, is listed in `lower_bounds`."""
    wanted = {(m, t) for m, t, _ in table_cells(table)}
    index = build_index(results, world, wanted)
    study = _study(results, recorded)
    notes: list[str] = []
    if seeds is None:
        seeds, notes = default_seeds(table, index, wanted)
    seeds = sorted(int(s) for s in seeds)
    missing: list[dict] = []
    used: dict[str, dict] = {}
    metrics_by_task: dict[str, set] = defaultdict(set)
    grid, avgs = [], []
    lower_bounds: dict[tuple[str, str, str], list[str]] = {}
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
            moving = (unsettled or {}).get((task, row.method))
            if moving and any(r.data_fingerprint in moving["data"] for r in cell_results):
                for direction in dirs:
                    head = SOURCE_HEAD.get(direction.partition("->")[0])
                    if head in moving["heads"]:
                        lower_bounds.setdefault((row.label, task, head), []).append(direction)
            hib = col.higher_is_better if col.higher_is_better is not None else _hib(cell_results, metric)
            summary = stats.summarize(list(per_seed.values())) if per_seed else None
            floor = _floor(index, row, task, dirs, cell_results, metric, sorted(per_seed)) if per_seed else None
            line.append(CellStats(per_seed, summary, higher_is_better=hib, metric=metric,
                                  unconverged=any(unconverged(r, study) for r in cell_results), floor=floor,
                                  below_floor=floor is not None and hib is not False and summary.mean <= floor))
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
    optional = {r.method for r in table.rows if r.optional}   # absent on this data by design: n/a, not missing
    unique = {(m["method"], m["task"], m["seed"], m["reason"]): m for m in missing
              if not (m["method"] in optional and m["reason"] == "no result")}
    missing = sorted(unique.values(), key=lambda m: (m["task"], m["method"], m["seed"], m["reason"]))
    warnings = list(index.warnings) + notes
    counts = {c.summary.n for line in grid for c in line if c.summary is not None}
    if len(counts) > 1:
        warnings.append(f"cells have different seed counts ({min(counts)} to {max(counts)} of seeds "
                        f"{', '.join(map(str, seeds))}); choose the seeds with --seeds")
    return BuiltTable(table, index, grid, avgs, missing, used, seeds, warnings, dict(metrics_by_task), display,
                      lower_bounds)
