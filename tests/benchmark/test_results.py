"""CellResult: the typed cell result round-trips result.json byte for byte and loads older layouts."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmark import tables
from benchmark.atomic import atomic_write_json
from benchmark.results import RESULT_SCHEMA, CellResult
from benchmark.store import Store

FIXTURES = Path(__file__).parent.parent / "fixtures" / "results"


def test_round_trip_keeps_the_bytes_of_a_stored_result(tmp_path):
    """A result.json written by the runner before CellResult existed (a smoke-world cell) is re-written
    byte-identical: the on-disk format did not change."""
    original = FIXTURES / "v1_chance_ave.json"
    result = CellResult.from_json(json.loads(original.read_text()))
    assert result.schema_version == RESULT_SCHEMA and result.extra == {}
    atomic_write_json(tmp_path / "result.json", result.to_json())
    assert (tmp_path / "result.json").read_bytes() == original.read_bytes()
    assert CellResult.from_json(result.to_json()) == result


def test_test_sizes_are_written_only_when_set_and_read_back():
    raw = json.loads((FIXTURES / "v1_chance_ave.json").read_text())
    assert "test_sizes" not in raw and CellResult.from_json(raw).test_sizes == {}
    assert CellResult.from_json({**raw, "test_sizes": None}).test_sizes == {}
    sized = CellResult.from_json({**raw, "test_sizes": {"V->A": {"clips": 19}}})
    assert sized.to_json()["test_sizes"] == {"V->A": {"clips": 19}} and sized.extra == {}
    assert CellResult.from_json(sized.to_json()) == sized


def test_accessors():
    result = CellResult.from_json(json.loads((FIXTURES / "v1_chance_ave.json").read_text()))
    assert result.score("V->A") == 0.0 and result.score("V->A", "acc") == 0.0
    assert result.score("V->A", "f1") is None and result.score("T->A") is None
    assert result.higher_is_better_for(None) is True and result.higher_is_better_for("f1") is None
    assert result.converged is None          # a training-free method records no convergence diagnostic
    assert result.base == "chance"
    nan = CellResult("dcid+toc", "ave", 0, {"V->A": {"acc": float("nan")}}, main_metric="acc",
                     diagnostics={"training": {"converged": False}})
    assert nan.score("V->A") is None and nan.converged is False and nan.base == "dcid"


def test_an_old_schema_result_loads_migrated_and_keeps_unknown_keys(tmp_path):
    raw = json.loads((FIXTURES / "v0_minimal.json").read_text())
    result = CellResult.from_json(raw)
    assert result.schema_version == RESULT_SCHEMA
    assert (result.task_name, result.method_base, result.task_version) == ("ave", "dcid", 0)
    assert result.extra == {"comment": "hand-made, pre-schema"} and result.to_json()["comment"] == raw["comment"]
    # and a table reads it from a store like any other cell
    cell = tmp_path / "cells" / "ave" / "dcid" / "k0"
    cell.mkdir(parents=True)
    shutil.copy(FIXTURES / "v0_minimal.json", cell / "result.json")
    (loaded,) = Store(tmp_path).results()
    assert loaded.directory == str(cell) and loaded.score("V->A") == 41.5
    spec = tables.parse_table({"name": "x", "seeds": [0], "table": {
        "method": "dcid", "avg": False, "columns": [{"task": "ave", "direction": "V->A"}], "rows": [{}]}})
    assert tables.build(spec, [loaded]).cells[0][0].summary.mean == 41.5


@pytest.mark.parametrize("data, reason", [
    ([1, 2], "a JSON list"), ({"method": "m", "task": "t", "seed": 0}, "no metrics"),
    ({"method": "m", "task": "t", "seed": True, "metrics": {}}, "not an integer"),
    ({"method": "m", "task": "t", "seed": 0, "metrics": {"V->A": 1}}, "metrics is not"),
])
def test_foreign_files_are_refused_with_a_reason(data, reason):
    with pytest.raises(ValueError, match=reason):
        CellResult.from_json(data)


def test_null_mappings_read_as_empty():
    result = CellResult.from_json({"method": "m", "task": "t", "seed": 0, "metrics": {}, "diagnostics": None,
                                   "notes": None, "schema_version": 1})
    assert result.diagnostics == {} and result.notes == {} and result.converged is None
