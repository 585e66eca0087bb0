"""pytest-benchmark: one downstream head-training epoch (AVE-sized: 1612 clips × 10 s × 64-d codes, 28 classes,
released settings) and HDF5 feature-reading throughput (clips/s) through the native reader."""
from __future__ import annotations

import numpy as np

from benchmark import registry
from benchmark.contracts import RunContext
from tasks.heads import Labeled, classification, fit, head_generator


def test_one_head_training_epoch(benchmark):
    rng = np.random.default_rng(0)
    data = Labeled(rng.standard_normal((1612, 10, 64)).astype(np.float32), rng.integers(0, 28, 1612))
    cfg = {**registry.get("task", "ave").defaults(), "epochs": 1}
    problem = classification(28)

    def epoch():
        head = problem.head(64, 64, head_generator(0, "bench"))
        return fit(head, data, problem, cfg, head_generator(0, "bench"), RunContext(), "bench", lambda e: False)
    assert benchmark.pedantic(epoch, rounds=5, iterations=1, warmup_rounds=1) == 1


def test_hdf5_read_throughput(benchmark, tmp_path):
    from tasks.data import open_world, synthesize
    synthesize("default", 0, tmp_path, only=["pretrain"])
    corpus = open_world(tmp_path).corpus()

    def read_all():
        return sum(len(b["index"]) for b in corpus.iter_batches(80, seed=0))
    clips = benchmark.pedantic(read_all, rounds=3, iterations=1, warmup_rounds=1)
    if benchmark.stats is not None:  # None under --benchmark-disable (make test runs the case once)
        benchmark.extra_info["clips_per_s"] = clips / benchmark.stats.stats.median
    assert clips == len(corpus)
