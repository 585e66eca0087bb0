"""Terminal output: one rich progress display (cells bar with an honest ETA, one line per running pretraining,
transient inner bars) and result tables."""
from __future__ import annotations

import re
import sys
import time
from collections import Counter
from typing import Callable, Iterable

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn,
                           TimeElapsedColumn)
from rich.table import Column, Table
from rich.text import Text

from .results import CellResult

console = Console(stderr=False)
err_console = Console(stderr=True)


class Estimator:
    """Remaining wall time from what this run has measured: seconds per epoch per method times the epochs the
    pending pretrainings have left, plus seconds per computed cell per task times the cells left, spread over
    the workers (but never less than the longest single pretraining left). Cached cells cost nothing.

    A figure is only as good as its measurements: `remaining` is None before any has been made and is marked a
    lower bound (`exact` False) while part of the work has no measurement yet. Between updates it counts down
    with the clock, so a display refreshed every few seconds never freezes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.workers = 1
        self.pretrainings: dict[str, dict] = {}      # key -> {"method", "left"}: still to train
        self.todo: Counter[str] = Counter()           # task name -> cells still to compute
        self.epoch_s: dict[str, list[float]] = {}     # method -> measured seconds per epoch
        self.cell_s: dict[str, list[float]] = {}      # task name -> measured seconds per cell (epochs excluded)
        self.counted: set[str] = set()                # pretrainings whose time the epochs account for
        self._at, self._value = clock(), None

    def expect(self, cells: Iterable, pretrainings: dict[str, dict], workers: int = 1) -> None:
        """The work of a run: `cells` still to compute, `pretrainings` (key -> method, epochs) still to train."""
        self.workers = max(1, workers)
        self.todo.update(cell.task.name for cell in cells)
        for key, info in pretrainings.items():
            self.pretrainings[key] = {"method": info["method"], "left": int(info["epochs"])}
        self._update()

    def epoch(self, key: str, method: str, done: int, total: int, seconds: float) -> None:
        self.epoch_s.setdefault(method, []).append(seconds)
        self.counted.add(key)
        self.pretrainings[key] = {"method": method, "left": max(0, total - done), "at": self.clock()}
        self._update()

    def pretraining_done(self, key: str) -> None:
        self.pretrainings.pop(key, None)
        self._update()

    def cell_done(self, outcome) -> None:
        """A finished cell (any status): one fewer to go; a computed one also measures its cost beyond the
        pretraining epochs already counted."""
        task = outcome.cell.task.name
        if self.todo[task] > 0:    # cached cells answered before `expect` were never counted
            self.todo[task] -= 1
        result = outcome.result
        if outcome.status == "ran" and result is not None:
            if result.pretrain_key:
                self.pretrainings.pop(result.pretrain_key, None)
            trained = result.notes.get("pretrain_s", 0) if result.pretrain_key in self.counted else 0
            cost = outcome.seconds - float(trained)
            self.cell_s.setdefault(task, []).append(max(0.0, cost))
        self._update()

    @staticmethod
    def _mean(values: list[float]) -> float:
        recent = values[-8:]        # recent epochs: a warm-up epoch should not weigh forever
        return sum(recent) / len(recent)

    def _cost(self, table: dict[str, list[float]], name: str) -> float | None:
        if table.get(name):
            return self._mean(table[name])
        known = [self._mean(v) for v in table.values() if v]
        return sum(known) / len(known) if known else None

    def _update(self) -> None:
        total, longest, exact, measured = 0.0, 0.0, True, False
        for info in self.pretrainings.values():
            per_epoch = self._cost(self.epoch_s, info["method"])
            if per_epoch is None:
                exact = False
                continue
            measured = True
            total += info["left"] * per_epoch
            longest = max(longest, info["left"] * per_epoch)
        for task, n in self.todo.items():
            if n <= 0:
                continue
            per_cell = self._cost(self.cell_s, task)
            if per_cell is None:
                exact = False
                continue
            measured = True
            total += n * per_cell
        self._at = self.clock()
        if not measured and not exact:
            self._value = None
        else:
            self._value = (max(total / self.workers, longest), exact)

    def remaining(self) -> tuple[float, bool] | None:
        """(seconds left, whether every part was measured), counting down since the last update; None: unknown."""
        if self._value is None:
            return None
        seconds, exact = self._value
        return max(0.0, seconds - (self.clock() - self._at)), exact

    def text(self) -> str:
        left = self.remaining()
        if left is None:
            return "eta —"
        seconds, exact = left
        return f"eta {'' if exact else '≥'}{_hms(seconds)}"

    def pretraining_left(self, key: str) -> float | None:
        """Seconds a pretraining has left, counting down since its last epoch (never below its last epoch)."""
        info = self.pretrainings.get(key)
        per_epoch = None if info is None else self._cost(self.epoch_s, info["method"])
        if per_epoch is None:
            return None
        running = min(per_epoch, self.clock() - info["at"]) if "at" in info and info["left"] else 0.0
        return info["left"] * per_epoch - running


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _EtaColumn(ProgressColumn):
    """The cells bar shows the run's ETA, a pretraining line the time its own epochs have left, an inner bar
    rich's own estimate."""

    def __init__(self, estimator: Estimator, table_column=None):
        super().__init__(table_column=table_column)
        self.estimator = estimator

    def render(self, task) -> Text:
        kind = task.fields.get("kind")
        if kind == "cells":
            return Text(self.estimator.text(), style="progress.remaining")
        if kind == "pretrain":
            left = self.estimator.pretraining_left(task.fields["key"])
            return Text(f"left {_hms(left)}" if left is not None else "", style="progress.remaining")
        left = task.time_remaining
        return Text(f"left {_hms(left)}" if left is not None else "", style="progress.remaining")


PLAIN_EVERY = 60.0   # seconds between progress lines when stderr is not a terminal


class CellProgress:
    """Top bar over cells with cached / ran / failed counters and the ETA of `Estimator`; one line per running
    pretraining (method, seed, epoch e/E, seconds per epoch), fed by `event` from this process or from pool
    workers; inner bars (batches, head training) appear under it while they run and vanish when done. When stderr
    is not a terminal (a log file, CI, `nohup`), where a live display shows nothing until it stops, a plain line
    with the same counts, the ETA and the running pretrainings is printed at most every `PLAIN_EVERY` seconds.
    Quiet mode prints nothing."""

    def __init__(self, total: int | None, quiet: bool = False, title: str = "cells", clock=time.monotonic):
        self.quiet = quiet
        self.total, self.clock = total, clock
        self.plain = not quiet and not err_console.is_terminal
        self._started = self._last_line = clock()
        self.counts = {"cached": 0, "ran": 0, "failed": 0, "missing": 0}
        self.title = title
        self.estimator = Estimator(clock)
        self.running: dict[int, dict] = {}     # worker slot -> the pretraining it is training
        self.progress = None
        self.task = None
        if not quiet:
            # on a narrow terminal the description gives way (ellipsis), never the counts and times
            described = TextColumn("{task.description}", table_column=Column(ratio=1, no_wrap=True,
                                                                             overflow="ellipsis", min_width=12))
            self.progress = Progress(SpinnerColumn(), described, BarColumn(bar_width=16),
                                     MofNCompleteColumn(table_column=Column(no_wrap=True)),
                                     TimeElapsedColumn(table_column=Column(no_wrap=True, min_width=7)),
                                     _EtaColumn(self.estimator, table_column=Column(no_wrap=True, min_width=12)),
                                     console=err_console, transient=False, refresh_per_second=4, expand=True)
            if total is not None:
                self.task = self.progress.add_task(self._describe(""), total=total, kind="cells")

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

    def expect(self, cells: list, pretrainings: dict[str, dict], workers: int = 1) -> None:
        """What is left to compute (cached cells already answered): the ETA's work list."""
        self.estimator.expect(cells, pretrainings, workers)

    def event(self, slot: int, kind: str, info: dict) -> None:
        """A progress event of the pretraining running in `slot` (0 = this process, else a pool worker)."""
        if kind == "pretrain_start":
            self.running[slot] = dict(info, done=0)
            self._show(slot)
        elif kind == "epoch" and slot in self.running:
            run = self.running[slot]
            run.update(done=info["done"], epochs=info["total"], seconds=info["seconds"])
            self.estimator.epoch(run["key"], run["method"], info["done"], info["total"], info["seconds"])
            self._show(slot)
            self._heartbeat()
        elif kind in ("pretrain_end", "gone"):
            run = self.running.pop(slot, None)
            if run is not None:
                self.estimator.pretraining_done(run["key"])   # trained, failed or killed: no longer running
                if self.progress and "task" in run:
                    self.progress.remove_task(run["task"])

    def _show(self, slot: int) -> None:
        run = self.running[slot]
        if not self.progress:
            return
        epochs = run.get("epochs")
        text = (f"  epoch {run['done']}/{epochs if epochs else '?'}"   # first: a narrow terminal cuts the end
                + (f" · {run['seconds']:.1f} s/epoch" if "seconds" in run else "") + f" · pretrain {run['label']}")
        if "task" not in run:
            run["task"] = self.progress.add_task(text, total=epochs, kind="pretrain", key=run["key"])
        self.progress.update(run["task"], description=text, completed=run["done"], total=epochs)

    def start(self, cell) -> None:
        if self.progress and self.task is not None:
            self.progress.update(self.task, description=self._describe(cell.label))

    def done(self, outcome) -> None:
        self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
        self.estimator.cell_done(outcome)
        if self.progress and self.task is not None:
            self.progress.update(self.task, advance=1, description=self._describe(""))
        if outcome.status == "failed":
            self.log(f"[red]failed[/] {outcome.cell.label}: {outcome.error}")
        self._heartbeat()

    def advance(self, label: str = "") -> None:
        """One unit of work that is not a cell (e.g. a budget-study training chain) finished."""
        self.counts["ran"] += 1
        if self.progress and self.task is not None:
            self.progress.update(self.task, advance=1, description=self._describe(label))
        self._heartbeat()

    def _heartbeat(self) -> None:
        """The plain progress line (stderr not a terminal), at most every `PLAIN_EVERY` seconds."""
        now = self.clock()
        if not self.plain or now - self._last_line < PLAIN_EVERY:
            return
        self._last_line = now
        c = self.counts
        training = "; ".join(f"{r['label']} epoch {r['done']}/{r.get('epochs') or '?'}" for r in self.running.values())
        err_console.print(f"{self.title}: {sum(c.values())}/{self.total if self.total is not None else '?'} · "
                          f"cached {c['cached']} · ran {c['ran']} · failed {c['failed']} · elapsed "
                          f"{_hms(now - self._started)} · {self.estimator.text()}"
                          + (f" · training {training}" if training else ""),
                          markup=False, highlight=False, soft_wrap=True)

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


def _natural(text: str) -> list:
    """Sort key reading digit runs as numbers (R@5 before R@10)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def direction_order(directions: Iterable[str]) -> list[str]:
    """One order for directions, whatever order they were stored in: cross-modal ones first (the benchmark's
    point), then same-modality ones (A->A), each group in natural order."""
    def key(direction: str):
        source, arrow, target = direction.partition("->")
        return (bool(arrow) and source == target, _natural(direction))
    return sorted(dict.fromkeys(directions), key=key)


def metric_order(names: Iterable[str], main_metric: str | None) -> list[str]:
    """The main metric first, then the others in natural order."""
    return sorted(dict.fromkeys(names), key=lambda n: (n != main_metric, _natural(n)))


def metrics_table(result: CellResult, status: str = "") -> Table:
    """Directions × metrics for one cell. A fresh result keeps the task's dict order while `result.json` is
    written key-sorted, so both go through one order (`direction_order`, `metric_order`) and print alike."""
    metrics = result.metrics
    names = metric_order((k for values in metrics.values() for k in values
                          if isinstance(values[k], (int, float))), result.main_metric)
    title = f"{result.method} × {result.task} · seed {result.seed}" + (f" · {status}" if status else "")
    table = Table(title=title, title_justify="left")
    table.add_column("direction")
    for name in names:
        table.add_column(name + (" *" if name == result.main_metric else ""), justify="right")
    for direction in direction_order(metrics):
        table.add_row(direction, *[fmt(metrics[direction].get(n, "")) for n in names])
    return table


def seeds_table(results: list[CellResult]) -> Table:
    """Directions × metrics of one (method, task) over its seeds: mean ± 95 % t-interval (`stats.summarize`),
    n = the seeds reporting the direction; n = 1 shows the mean alone (its interval is undefined)."""
    values: dict[str, dict[str, list[float]]] = {}
    for r in results:
        for direction, metric, v in r.scores():
            values.setdefault(direction, {}).setdefault(metric, []).append(v)
    first = results[0]
    names = metric_order((m for per in values.values() for m in per), first.main_metric)
    seeds = " ".join(str(s) for s in sorted({r.seed for r in results}))
    title = f"{first.method} × {first.task} · mean ± 95% CI over seeds {seeds}"
    table = Table(title=title, title_justify="left", min_width=len(title))
    table.add_column("direction")
    table.add_column("n", justify="right")
    for name in names:
        table.add_column(name + (" *" if name == first.main_metric else ""), justify="right")
    for direction in direction_order(values):
        per = values[direction]
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


def grid_tables(results: list[CellResult], unconverged: Callable[[CellResult], bool] | None = None) -> list[Table]:
    """After a grid: per task, methods × directions of the task's main metric, mean ± CI over the seeds found;
    † marks a method a cell of which is `unconverged` (default: its loss diagnostic fails; commands pass the rule
    tables use, `_common.unconverged_rule`)."""
    unconverged = unconverged or (lambda r: r.converged is False)
    by_task: dict[str, dict[str, list[CellResult]]] = {}
    for r in results:
        by_task.setdefault(r.task, {}).setdefault(r.method, []).append(r)
    tables = []
    for task, per_method in by_task.items():
        first = next(iter(per_method.values()))[0]
        directions = direction_order(d for rs in per_method.values() for r in rs for d in r.metrics)
        seeds = sorted({r.seed for rs in per_method.values() for r in rs})
        title = (f"{task} · {first.main_metric} · mean ± 95% CI over seeds {' '.join(map(str, seeds))}"
                 + (" · † not converged" if any(unconverged(r) for rs in per_method.values() for r in rs)
                    else ""))
        table = Table(title=title, title_justify="left", min_width=min(len(title), 100))
        table.add_column("method")
        table.add_column("n", justify="right")
        for d in directions:
            table.add_column(d, justify="right")
        for method, rs in per_method.items():
            mark = "†" if any(unconverged(r) for r in rs) else ""
            cells = [mean_ci([v for r in rs if (v := r.score(d)) is not None]) for d in directions]
            table.add_row(method + mark, str(len(rs)), *cells)
        tables.append(table)
    return tables


def print_error(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
