"""Every bound of `benchmark.bounds` (issue 25): each table entry refuses limit + 1 (and low - 1 where a low is set)
and accepts the limit; options that a registered entry carries are also refused by `runner.plan`, before any
world exists; the memory estimate names its largest term; feature files are refused by their declared shapes."""
from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest

from benchmark import bounds, registry, runner
from benchmark.contracts import UserError


def _carrier(option: str) -> tuple[str, str] | None:
    """(kind, name) of a registered entry with `option`, preferring the cheap test-only ones."""
    for kind in ("method", "refiner", "task"):
        for name, entry in sorted(registry.entries(kind).items(), key=lambda kv: not kv[0].startswith("tiny")):
            if option in entry.options and not entry.only_tasks and not entry.only_methods:
                return kind, name
    return None


def _value(bound: bounds.Bound, value):
    """`value` in the shape the option takes (list options get a one-item list)."""
    return [value] if bound.name in ("lr_milestones", "proj_dims", "video_widths") else value


@pytest.mark.parametrize("name", sorted(bounds.OPTION_BOUNDS))
def test_every_option_bound_refuses_above_and_accepts_the_limit(name):
    bound = bounds.OPTION_BOUNDS[name]
    over = bound.limit + 1
    with pytest.raises(UserError, match=f"'{name}' is {over}, at most {bound.limit}"):
        bounds.check_values({name: _value(bound, over)}, bounds.OPTION_BOUNDS, "x")
    bounds.check_values({name: _value(bound, bound.limit)}, bounds.OPTION_BOUNDS, "x")


def _spec(kind: str, name: str, option: str, value) -> tuple[list[str], list[str]]:
    text = f"{name}@{option}={value}".replace(" ", "")
    if kind == "method":
        return [text], ["tinytask"]
    if kind == "refiner":
        return [f"tinymethod+{text}"], ["tinytask"]
    return ["tinymethod"], [text]


CARRIED = sorted(n for n in bounds.OPTION_BOUNDS if _carrier(n))


@pytest.mark.parametrize("name", CARRIED)
def test_plan_refuses_every_carried_option_above_its_bound(name):
    """The bound holds where users meet it: `runner.plan` (run, grid, the API) refuses the spec, world or no."""
    kind, entry = _carrier(name)
    bound = bounds.OPTION_BOUNDS[name]
    methods, tasks = _spec(kind, entry, name, _value(bound, bound.limit + 1))
    with pytest.raises(UserError, match=f"'{name}' is"):
        runner.plan(methods, tasks, [0], None)


def test_the_carried_options_cover_what_users_can_set():
    """Sizes users can set on today's entries are all bounded (the preset-only widths are bounded for plugin
    cards' presets)."""
    assert {"epochs", "patience", "batch_size", "codebook_size", "code_dim", "dim", "hidden", "q",
            "cpc_horizon", "codes", "lr_milestones", "sleep"} <= set(CARRIED)


KNOBS = sorted(bounds.KNOB_BOUNDS)


def _knob_value(name: str, number):
    from tasks.data.synth import Knobs
    default = {f.name: f for f in dataclasses.fields(Knobs)}[name]
    if "tuple" in str(default.type):
        size = str(default.type).count("int") or str(default.type).count("float")
        return [number] * size
    return number


@pytest.mark.parametrize("name", KNOBS)
def test_every_knob_bound_is_checked_before_generation(name):
    from tasks.data.synth import profile_knobs
    bound = bounds.KNOB_BOUNDS[name]
    over = bound.limit + 1 if isinstance(bound.limit, int) else bound.limit * 2
    with pytest.raises(UserError, match=f"{name} is .*at most"):
        profile_knobs("smoke", **{name: _knob_value(name, over)})
    if bound.low is not None:
        under = bound.low - 1 if isinstance(bound.low, int) and bound.low >= 1 else -1
        with pytest.raises(UserError, match=f"{name} is .*at least"):
            profile_knobs("smoke", **{name: _knob_value(name, under)})


def _file(tmp_path, shape, key="audio", chunks=True):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w", libver="latest") as f:   # latest: an attribute over 64 KB (class test)
        f.attrs["format_version"], f.attrs["dataset"] = 1, "pretrain"
        f.attrs["classes"] = np.array(["a"], dtype=h5py.string_dtype())
        f.create_dataset(key, shape=shape, dtype="float32", chunks=(1, *[min(s, 64) for s in shape[1:]])
                         if chunks else None)
    return path


@pytest.mark.parametrize("name, shape, key", [
    ("clips", (bounds.FILE_BOUNDS["clips"].limit + 1, 10, 4), "audio"),
    ("steps", (2, bounds.FILE_BOUNDS["steps"].limit + 1, 4), "audio"),
    ("values_per_clip", (2, 10, bounds.FILE_BOUNDS["values_per_clip"].limit // 10 + 1), "audio"),
    ("pairs", (bounds.FILE_BOUNDS["pairs"].limit + 1, 2), "pairs/audio_video"),
])
def test_every_file_bound_refuses_the_declared_shape_before_reading(name, shape, key, tmp_path):
    from tasks.data import FeatureFile
    path = _file(tmp_path, shape, key)
    with pytest.raises(UserError, match="at most"):
        FeatureFile(path)


def test_heatmap_code_bound(tmp_path):
    from benchmark.commands.plot import load_codebook
    top = bounds.FILE_BOUNDS["heatmap_codes"].limit
    np.save(tmp_path / "ok.npy", np.ones((top, 2), np.float32))
    assert load_codebook(str(tmp_path / "ok.npy"))[1].shape == (top, 2)
    np.save(tmp_path / "big.npy", np.ones((top + 1, 2), np.float32))
    with pytest.raises(UserError, match=f"{top + 1} codes, at most {top}"):
        load_codebook(str(tmp_path / "big.npy"))


def test_result_file_bound(tmp_path, monkeypatch):
    from benchmark.store import read_result
    monkeypatch.setitem(bounds.FILE_BOUNDS, "result_bytes", bounds.Bound("result_bytes", 10, "test"))
    (tmp_path / "result.json").write_text('{"a": 1}')           # 8 bytes: read (and found foreign)
    assert "at most" not in (read_result(tmp_path / "result.json")[1] or "")
    (tmp_path / "result.json").write_text('{"a": 12345}')       # 12 bytes: not read, counts as missing
    assert read_result(tmp_path / "result.json") == (None, "12 bytes, at most 10 (test)")


def test_file_class_bound(tmp_path):
    from tasks.data import FeatureFile
    path = _file(tmp_path, (2, 10, 4))
    with h5py.File(path, "a", libver="latest") as f:
        f["audio"][...] = 0
        f.attrs["classes"] = np.array(["c"] * (bounds.FILE_BOUNDS["classes"].limit + 1), dtype=h5py.string_dtype())
    with pytest.raises(UserError, match="classes, at most"):
        FeatureFile(path)


def test_seed_count_bound():
    from benchmark.spec import check_seeds
    top = bounds.CLI_BOUNDS["seeds"].limit
    assert len(check_seeds(range(top))) == top
    with pytest.raises(UserError, match=f"{top + 1} seeds, at most {top}"):
        check_seeds(range(top + 1))


@pytest.mark.parametrize("name, flag", [("workers", "--workers"), ("threads", "--threads")])
def test_cli_count_bounds(name, flag):
    from benchmark import api
    limit = bounds.CLI_BOUNDS[name].limit
    bounds.check_count(name, limit, flag)
    with pytest.raises(UserError, match=flag):
        bounds.check_count(name, limit + 1, flag)
    with pytest.raises(UserError, match=flag):   # the API uses the same table
        if name == "threads":
            api.check_threads(limit + 1)
        else:
            api.run_cells(lambda w: [], runner.Options(), "/nonexistent", workers=limit + 1)


def test_memory_estimate_names_its_largest_term_and_compares_with_available_memory():
    terms = bounds.method_terms({"codebook_size": 2**20, "code_dim": 2**16, "batch_size": 128, "layers": 1,
                                 "ffn": 128})
    with pytest.raises(UserError, match=r"needs about .* GiB of memory \(mostly codebook_size x code_dim"):
        bounds.check_memory("method 'dcid'", terms, available=2**40)
    bounds.check_memory("method 'dcid'", bounds.method_terms({"codebook_size": 400, "code_dim": 64,
                                                                "batch_size": 128}), available=2**30)


def test_plan_refuses_a_method_that_does_not_fit_in_memory():
    with pytest.raises(UserError, match="mostly codebook_size x code_dim"):
        runner.plan([f"dcid@codebook_size={2**20},code_dim={2**16}"], ["ave"], [0], None)


def test_the_planning_estimate_reads_clips_as_the_tasks_do():
    from tasks.common import ENCODE_BATCH
    assert bounds.ENCODE_BATCH == ENCODE_BATCH
