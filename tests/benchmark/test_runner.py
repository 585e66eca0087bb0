"""One cell's layer (issue 26): a run plans and validates its specs once, keys them once the world is open, and
checks the device in one place."""
from __future__ import annotations

import pytest

from benchmark import api, runner, spec
from benchmark.contracts import UserError
from benchmark.world import WorldChoice


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from tasks.data import synthesize
    out = tmp_path_factory.mktemp("runner_world")
    synthesize("smoke", 0, out)
    return out


def test_a_run_plans_and_validates_once_and_keys_like_plan(world, tmp_path, monkeypatch):
    calls = []
    real = spec.validate_method
    monkeypatch.setattr(spec, "validate_method", lambda s: calls.append(s.canonical()) or real(s))
    plans = []

    def planner(w):
        plans.append(w)
        return runner.plan(["tinymethod", "tinymethod@dim=4"], ["tinytask"], [0, 1], w)
    options = runner.Options(threads=1, world=WorldChoice(profile=None, data=str(world)))
    outcomes = api.run_cells(planner, options, tmp_path / "s")
    assert plans == [None] and sorted(calls) == ["tinymethod", "tinymethod@dim=4"]
    opened = WorldChoice(profile=None, data=str(world)).open()
    expected = runner.plan(["tinymethod", "tinymethod@dim=4"], ["tinytask"], [0, 1], opened)
    assert [(o.cell.key, o.cell.data_fingerprint) for o in outcomes] == \
        [(c.key, c.data_fingerprint) for c in expected] and all(c.key for c in expected)


def test_the_device_is_checked_in_one_place():
    """(The precision half is tests/test_precision.py's case through the same function.)"""
    cells = runner.plan(["tinymethod"], ["tinytask"], [0], None)
    assert runner.check_device("cpu", cells) == "cpu"
    with pytest.raises(UserError, match="--device must be"):
        runner.check_device("tpu", cells)


def test_keying_checks_only_the_pairs_the_cells_hold(world):
    """A grid's blocks are not a cross product: `cca` on AVE beside `dcid` on retrieval must key (cca has no text
    encoder, but no cell pairs it with retrieval) — `make bench`'s main grid has exactly these blocks."""
    cells = runner.plan(["cca"], ["ave"], [0], None) + runner.plan(["dcid"], ["retrieval"], [0], None)
    opened = WorldChoice(profile=None, data=str(world)).open()
    keyed = runner.key_cells(cells, opened)
    assert sorted((c.method.base.name, c.task.name) for c in keyed) == [("cca", "ave"), ("dcid", "retrieval")]
    assert all(c.key for c in keyed)
    with pytest.raises(UserError, match="no text encoder"):
        runner.key_cells(runner.plan(["cca"], ["retrieval"], [0], None), opened)
