"""Terminal output: one rich progress display (cells bar + transient inner bars) and result tables."""
from __future__ import annotations

import sys
from typing import Iterable

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

from .results import CellResult

console = Console(stderr=False)
err_console = Console(stderr=True)


class CellProgress:
    """Top bar over cells with cached / ran / failed counters; inner bars (pretraining epochs, head
    training) appear under it while they run and vanish when done. Quiet mode prints nothing."""

    def __init__(self, total: int | None, quiet: bool = False, title: str = "cells"):
        self.quiet = quiet
        self.counts = {"cached": 0, "ran": 0, "failed": 0, "missing": 0}
        self.title = title
        self.progress = None
        if not quiet:
            self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"),
                                     TimeRemainingColumn(), console=err_console,
                                     transient=False, refresh_per_second=4)
            self.task = self.progress.add_task(self._describe(""), total=total) if total is not None else None

    def _describe(self, current: str) -> str:
        c = self.counts
        text = (f"[bold]{self.title}[/] cached {c['cached']} · ran {c['ran']} · "
                f"[red]failed {c['failed']}[/]" + (f" · missing {c['missing']}" if c["missing"] else ""))
        return text + (f"  [dim]{current}[/]" if current else "")

    def __enter__(self):
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.progress.stop()

    def start(self, cell) -> None:
        if self.progress and self.task is not None:
            self.progress.update(self.task, description=self._describe(cell.label))

    def done(self, outcome) -> None:
        self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
        if self.progress and self.task is not None:
            self.progress.update(self.task, advance=1, description=self._describe(""))
        if outcome.status == "failed":
            self.log(f"[red]failed[/] {outcome.cell.label}: {outcome.error}")

    def advance(self, label: str = "") -> None:
        """One unit of work that is not a cell (e.g. a budget-study training chain) finished."""
        self.counts["ran"] += 1
        if self.progress and self.task is not None:
            self.progress.update(self.task, advance=1, description=self._describe(label))

    def log(self, message: str) -> None:
        if self.quiet:
            return
        (self.progress.console if self.progress else err_console).print(message)

    def inner(self, iterable: Iterable, description: str = "", total: int | None = None):
        if not self.progress:
            yield from iterable
            return
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        task = self.progress.add_task(f"  {description}", total=total)
        try:
            for item in iterable:
                yield item
                self.progress.advance(task)
        finally:
            self.progress.remove_task(task)


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 1 or value == 0 else f"{value:.4g}"
    return str(value)


def metrics_table(result: CellResult, status: str = "") -> Table:
    """Directions × metrics for one cell."""
    metrics = result.metrics
    names: list[str] = []
    for values in metrics.values():
        names += [k for k in values if k not in names and isinstance(values[k], (int, float))]
    title = f"{result.method} × {result.task} · seed {result.seed}" + (f" · {status}" if status else "")
    table = Table(title=title, title_justify="left")
    table.add_column("direction")
    for name in names:
        table.add_column(name + (" *" if name == result.main_metric else ""), justify="right")
    for direction, values in metrics.items():
        table.add_row(direction, *[fmt(values.get(n, "")) for n in names])
    return table


def seeds_table(results: list[CellResult]) -> Table:
    """Directions × metrics of one (method, task) over its seeds: mean ± 95 % t-interval (`stats.summarize`),
    n = the seeds reporting the direction; n = 1 shows the mean alone (its interval is undefined)."""
    values: dict[str, dict[str, list[float]]] = {}
    for r in results:
        for direction, metric, v in r.scores():
            values.setdefault(direction, {}).setdefault(metric, []).append(v)
    names = list(dict.fromkeys(m for per in values.values() for m in per))
    first = results[0]
    seeds = " ".join(str(s) for s in sorted({r.seed for r in results}))
    title = f"{first.method} × {first.task} · mean ± 95% CI over seeds {seeds}"
    table = Table(title=title, title_justify="left", min_width=len(title))
    table.add_column("direction")
    table.add_column("n", justify="right")
    for name in names:
        table.add_column(name + (" *" if name == first.main_metric else ""), justify="right")
    for direction, per in values.items():
        cells = [mean_ci(per[name]) if name in per else "" for name in names]
        table.add_row(direction, str(max(len(v) for v in per.values())), *cells)
    return table


def mean_ci(values: list[float]) -> str:
    """`mean ± half-width` of the 95 % t-interval over seeds; the mean alone for one value (no interval)."""
    from . import stats  # scipy: only when a summary is printed
    if not values:
        return ""
    summary = stats.summarize(values)
    return fmt(summary.mean) + (f" ± {fmt(summary.half_width)}" if summary.ci_defined else "")


def grid_tables(results: list[CellResult]) -> list[Table]:
    """After a grid: per task, methods × directions of the task's main metric, mean ± CI over the seeds found;
    † marks a method whose pretraining says it is not converged (as the paper tables do)."""
    by_task: dict[str, dict[str, list[CellResult]]] = {}
    for r in results:
        by_task.setdefault(r.task, {}).setdefault(r.method, []).append(r)
    tables = []
    for task, per_method in by_task.items():
        first = next(iter(per_method.values()))[0]
        directions = list(dict.fromkeys(d for rs in per_method.values() for r in rs for d in r.metrics))
        seeds = sorted({r.seed for rs in per_method.values() for r in rs})
        title = (f"{task} · {first.main_metric} · mean ± 95% CI over seeds {' '.join(map(str, seeds))}"
                 + (" · † not converged" if any(r.converged is False for rs in per_method.values() for r in rs)
                    else ""))
        table = Table(title=title, title_justify="left", min_width=min(len(title), 100))
        table.add_column("method")
        table.add_column("n", justify="right")
        for d in directions:
            table.add_column(d, justify="right")
        for method, rs in per_method.items():
            mark = "†" if any(r.converged is False for r in rs) else ""
            cells = [mean_ci([v for r in rs if (v := r.score(d)) is not None]) for d in directions]
            table.add_row(method + mark, str(len(rs)), *cells)
        tables.append(table)
    return tables


def print_error(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
