"""What the terminal shows while and after cells run (issue 27): an ETA computed from measured costs that counts
down between updates, one line per running pretraining, and one rendering of a cell whether fresh or cached."""
from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from benchmark.results import CellResult
from benchmark.ui import CellProgress, Estimator, direction_order, metric_order, metrics_table


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def cell(task: str = "ave"):
    return SimpleNamespace(task=SimpleNamespace(name=task), label=f"m × {task} × seed 0")


def outcome(task: str, seconds: float, pretrain_key: str | None = None, pretrain_s: float | None = None):
    notes = {} if pretrain_s is None else {"pretrain_s": pretrain_s}
    result = SimpleNamespace(pretrain_key=pretrain_key, notes=notes)
    return SimpleNamespace(status="ran", cell=cell(task), result=result, seconds=seconds, error=None)


def test_eta_is_unknown_until_measured_then_a_lower_bound_then_exact():
    """Two pending 10-epoch pretrainings of `m` and four `ave` cells, one worker. After one 2 s epoch: epochs left
    9 + 10 at 2 s = 38 s, the cells not measured yet (so "at least"). A cell that took 7 s of which 5 s were its
    counted pretraining costs 2 s: 3 cells left -> 6 s more. The clock counts it down between updates."""
    clock = Clock()
    eta = Estimator(clock)
    eta.expect([cell(), cell(), cell(), cell()], {"k1": {"method": "m", "epochs": 10},
                                                  "k2": {"method": "m", "epochs": 10}}, workers=1)
    assert eta.remaining() is None and eta.text() == "eta —"
    eta.epoch("k1", "m", 1, 10, 2.0)
    assert eta.remaining() == (38.0, False) and eta.text() == "eta ≥0:00:38"
    eta.pretraining_done("k1")               # (say it trained to the end meanwhile)
    eta.cell_done(outcome("ave", 7.0, pretrain_key="k1", pretrain_s=5.0))
    assert eta.remaining() == (20.0 + 3 * 2.0, True)
    clock.now += 10
    assert eta.remaining() == (16.0, True) and eta.text() == "eta 0:00:16"
    clock.now += 100
    assert eta.remaining() == (0.0, True)


def test_eta_spreads_work_over_workers_but_not_below_the_longest_pretraining():
    clock = Clock()
    eta = Estimator(clock)
    eta.expect([], {"a": {"method": "m", "epochs": 30}, "b": {"method": "m", "epochs": 2}}, workers=2)
    eta.epoch("b", "m", 1, 2, 1.0)           # 30 + 1 epochs left at 1 s over 2 workers: 15.5 s, but `a` alone is 30
    assert eta.remaining() == (30.0, True)
    eta.expect([cell()] * 60, {}, workers=2)
    eta.cell_done(outcome("ave", 1.0))       # 59 cells at 1 s + 31 epochs at 1 s, over 2 workers
    assert eta.remaining() == ((59.0 + 31.0) / 2, True)


def test_cached_cells_cost_nothing_and_an_unmeasured_task_borrows_the_measured_mean():
    eta = Estimator(Clock())
    eta.expect([cell("ave"), cell("avvp")], {}, workers=1)
    eta.cell_done(SimpleNamespace(status="cached", cell=cell("ave"), result=None, seconds=0.0, error=None))
    assert eta.remaining() is None           # a cached cell measures nothing and is not counted as done work
    eta.cell_done(outcome("ave", 4.0))
    assert eta.remaining() == (4.0, True)    # avvp, unmeasured, at the measured mean


def test_a_running_pretraining_is_one_line_with_epoch_and_seconds_per_epoch():
    clock = Clock()
    ui = CellProgress(3, clock=clock)
    ui.expect([cell()], {"k": {"method": "dcid", "epochs": 32, "label": "dcid seed 0"}}, workers=2)
    ui.event(7, "pretrain_start", {"key": "k", "label": "dcid seed 0", "method": "dcid", "epochs": 32})
    ui.event(7, "epoch", {"done": 3, "total": 32, "seconds": 4.25})
    lines = [t.description for t in ui.progress.tasks if t.fields.get("kind") == "pretrain"]
    assert lines == ["  epoch 3/32 · 4.2 s/epoch · pretrain dcid seed 0"]
    text = render(ui.progress)
    assert "epoch 3/32" in text and "left 0:02:03" in text and "eta ≥0:02:03" in text   # 29 epochs × 4.25 s
    clock.now += 3.0                         # the line counts down between epochs, like the ETA
    assert "left 0:02:00" in render(ui.progress) and "eta ≥0:02:00" in render(ui.progress)
    ui.event(7, "pretrain_end", {"key": "k"})
    assert [t for t in ui.progress.tasks if t.fields.get("kind") == "pretrain"] == []


def render(renderable, width: int = 160) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_a_cell_renders_alike_fresh_or_from_the_cache():
    """A task returns its directions and metrics in its own order; result.json is written key-sorted. Both print
    in one order: cross-modal directions first, the main metric first."""
    fresh = CellResult(method="m", task="avvp", seed=0, main_metric="f1",
                       metrics={"V->A": {"precision": 1.0, "recall": 2.0, "f1": 3.0},
                                "A->V": {"precision": 4.0, "recall": 5.0, "f1": 6.0},
                                "A->A": {"precision": 7.0, "recall": 8.0, "f1": 9.0}})
    cached = CellResult(method="m", task="avvp", seed=0, main_metric="f1",
                        metrics={d: dict(sorted(v.items())) for d, v in sorted(fresh.metrics.items())})
    assert list(cached.metrics) != list(fresh.metrics)
    assert render(metrics_table(fresh)) == render(metrics_table(cached))
    rows = [line.split("│")[1].strip() for line in render(metrics_table(fresh)).splitlines() if line.count("│") > 2]
    assert rows == ["A->V", "V->A", "A->A"]
    assert direction_order(["V->V", "A->T", "V-and-T", "A->A"]) == ["A->T", "V-and-T", "A->A", "V->V"]
    assert metric_order(["R@10", "mean_r", "R@5", "R@1"], "mean_r") == ["mean_r", "R@1", "R@5", "R@10"]


def test_at_80_columns_the_description_gives_way_never_the_times():
    ui = CellProgress(10, clock=Clock())
    ui.start(SimpleNamespace(label="dcid@quantizer=rvq,levels=3,epochs=16+toc × ave@protocol=reference × seed 2"))
    ui.event(1, "pretrain_start", {"key": "k", "label": "dcid@quantizer=rvq,levels=3,epochs=16 seed 2",
                                   "method": "dcid", "epochs": 16})
    ui.event(1, "epoch", {"done": 3, "total": 16, "seconds": 61.0})
    lines = render(ui.progress, width=80).splitlines()
    assert len(lines) == 2 and all(len(line) <= 80 for line in lines)
    assert lines[0].rstrip().endswith("0/10 0:00:00 eta 0:13:13")          # 13 epochs × 61 s, whole
    assert lines[1].rstrip().endswith("3/16 0:00:00 left 0:13:13") and "…" in lines[1]   # the label gave way
    assert "epoch 3/16 · 61.0 s/epoch" in lines[1]


def test_without_a_terminal_a_plain_progress_line_at_most_every_minute(monkeypatch):
    # a log file (nohup, CI, `make bench > log`) sees nothing of a live display until it stops: a plain line instead
    from benchmark import ui as ui_module
    out = io.StringIO()
    monkeypatch.setattr(ui_module, "err_console", Console(file=out, width=200))   # a file: not a terminal
    clock = Clock()
    ui = CellProgress(3, clock=clock)
    ui.expect([cell(), cell()], {"k": {"method": "dcid", "epochs": 32}}, workers=1)
    ui.event(1, "pretrain_start", {"key": "k", "label": "dcid seed 0", "method": "dcid", "epochs": 32})
    ui.event(1, "epoch", {"done": 1, "total": 32, "seconds": 2.0})
    assert out.getvalue() == ""                                   # under a minute: nothing yet
    clock.now += ui_module.PLAIN_EVERY
    ui.event(1, "epoch", {"done": 2, "total": 32, "seconds": 2.0})
    clock.now += 1.0
    ui.done(outcome("ave", 3.0))                                  # a second later: no second line
    lines = out.getvalue().splitlines()
    assert lines == ["cells: 0/3 · cached 0 · ran 0 · failed 0 · elapsed 0:01:00 · eta ≥0:01:00 · training dcid seed 0 "
                     "epoch 2/32"]
    clock.now += ui_module.PLAIN_EVERY
    ui.done(outcome("ave", 3.0))
    assert out.getvalue().splitlines()[-1].startswith("cells: 2/3 · cached 0 · ran 2 · failed 0 · elapsed 0:02:01")
