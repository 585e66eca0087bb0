"""Encodings shared across cells (tasks/encodings.py): each (representation, file, modality, split) is encoded once
for every task that reads it, TOC rows slice their base's encoding, and the numbers do not change."""
from __future__ import annotations

import numpy as np
import torch

from benchmark.contracts import RunContext
from conftest import perfect_encoder
from methods.toc import Selection, TOCPretrained
from tasks import encodings
from tasks.common import FeatureCache
from test_tasks import run


def fresh_ctx(scratch, **notes) -> RunContext:
    ctx = RunContext(scratch=scratch)
    ctx.notes.update(notes)
    return ctx


def test_a_split_is_encoded_once_for_every_task_that_reads_it(tiny_world, tmp_path):
    encodings.MEMORY.clear()
    encoder = perfect_encoder()
    first, _ = run("ave", encoder, tiny_world, fresh_ctx(tmp_path))
    after_ave = encoder.calls
    run("ave_avvp", encoder, tiny_world, fresh_ctx(tmp_path))
    # ave_avvp reads AVE's train/val (already encoded by ave) and AVVP's test: only the latter is new
    assert encoder.calls == after_ave + 2
    again, _ = run("ave", encoder, tiny_world, fresh_ctx(tmp_path))       # from memory
    encodings.MEMORY.clear()
    from_disk, _ = run("ave", encoder, tiny_world, fresh_ctx(tmp_path))   # a later process: from the scratch files
    assert encoder.calls == after_ave + 2
    assert first == again == from_disk


def test_toc_rows_slice_their_base_encoding(tiny_world, tmp_path):
    encodings.MEMORY.clear()
    base = perfect_encoder()
    index = torch.tensor([7, 0, 3])
    toc = TOCPretrained(base, Selection((index,), (torch.zeros(11),), index), "concat", {})
    ave = tiny_world.open("ave")
    want = toc.encode("audio", ave.read("audio", ave.split("test"))).numpy()
    base_x = FeatureCache(base, fresh_ctx(tmp_path)).get(ave, "ave", "audio", "test").x
    calls = base.calls
    got = FeatureCache(toc, fresh_ctx(tmp_path, refiners=["toc"])).get(ave, "ave", "audio", "test").x
    assert base.calls == calls                    # the TOC row encoded nothing: it sliced the cached base
    assert np.array_equal(got, want) and np.array_equal(got, base_x[..., [7, 0, 3]])
    every = torch.randperm(11)                       # every dim kept: the base encoding itself, as `encode` gives it
    toc = TOCPretrained(base, Selection((every,), (torch.zeros(11),), every), "concat", {})
    got = FeatureCache(toc, fresh_ctx(tmp_path, refiners=["toc"])).get(ave, "ave", "audio", "test").x
    assert np.array_equal(got, base_x) and np.array_equal(got, toc.encode("audio", ave.read("audio", ave.split("test"))))


class Opaque:
    """A refinement that is no column slice: keyed by the refiners, task and seed it ran under."""

    method, modalities = "opaque", ("audio", "video", "text")

    def __init__(self, base, scale):
        self.base, self.scale, self.calls = base, scale, 0

    def encode(self, modality, x):
        self.calls += 1
        return self.base.encode(modality, x) * self.scale


def test_other_refinements_are_keyed_by_refiners_task_and_seed(tiny_world, tmp_path):
    encodings.MEMORY.clear()
    ave = tiny_world.open("ave")
    base = perfect_encoder()
    plain = FeatureCache(base, fresh_ctx(tmp_path)).get(ave, "ave", "audio", "test").x
    outputs = []
    for task, scale in (("ave", 2.0), ("ave_avvp", 3.0), ("ave", 2.0)):
        ctx = fresh_ctx(tmp_path, refiners=["opaque"])
        ctx.task, ctx.seed = task, 0
        refined = Opaque(base, scale)
        outputs.append((FeatureCache(refined, ctx).get(ave, "ave", "audio", "test").x, refined.calls))
    assert np.array_equal(outputs[0][0], 2 * plain) and np.array_equal(outputs[1][0], 3 * plain)
    assert [calls for _, calls in outputs] == [1, 1, 0]      # the same refiners, task and seed: shared


def test_memory_is_bounded_by_bytes():
    memory = encodings._Memory(limit=3 * 40)
    for i in range(5):
        memory.put((i,), encodings.Encoded(np.zeros((10,), np.float32), np.zeros((0,), bool)))
    assert sorted(memory.items) == [(2,), (3,), (4,)] and memory.used == 120
    assert memory.get((0,)) is None and memory.get((2,)) is not None


def test_cells_share_encodings_through_the_runner_and_their_numbers_do_not_change(tmp_path):
    """A grid's cells of one pretraining encode each split once (a TOC row and a second task included), and every
    number equals that of the same cell computed alone in an empty store."""
    import benchmark
    methods, tasks = ["tinymethod", "tinymethod+toc"], ["ave", "ave_avvp"]
    encodings.MEMORY.clear()
    together = benchmark.evaluate(methods, tasks, seeds=[0], profile="smoke", results=tmp_path / "together")
    folders = [p for p in (tmp_path / "together" / "features").glob("*/*") if p.is_dir()]
    assert len(folders) == 1                          # one pretraining, one base spec: one encoding folder
    names = sorted(p.name.split("-")[1:4] for p in folders[0].glob("*.npz"))
    assert len(names) == len({tuple(n) for n in names})               # no split encoded twice
    assert ["ave", "audio", "train"] in names and ["avvp", "audio", "test"] in names
    for i, (method, task) in enumerate((m, t) for m in methods for t in tasks):
        encodings.MEMORY.clear()
        alone = benchmark.evaluate(method, task, seeds=[0], profile="smoke", results=tmp_path / f"alone{i}")
        mine = together[(together.method == alone.method[0]) & (together.task == alone.task[0])]
        assert list(mine.key.unique()) == list(alone.key.unique())
        assert mine.value.tolist() == alone.value.tolist()
