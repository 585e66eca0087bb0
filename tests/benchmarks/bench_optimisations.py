"""pytest-benchmark: each optimisation of the pretraining loop, before and after, measured in one run.

- CLUB fits on distinct code rows (`CLUB.fit_inputs`): DCID and SRCID fit their CLUBs on quantized codes, of
  which only ~100-500 of the 1280 rows of a default batch are distinct; the estimator nets now run once per
  distinct row. `before` switches it off (`CLUB.DISTINCT_BELOW = 0`). Measured on a whole 1-epoch pretraining
  on the default world's corpus, so the code usage is the real one, not an untrained model's.
Slow (a pretraining per round); `make perf` runs them, `make test` does not.
"""
from __future__ import annotations

import pytest
import torch

from benchmark import registry
from benchmark.contracts import RunContext
from methods.mutual_info import CLUB


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from tasks.data import open_world, synthesize
    root = tmp_path_factory.mktemp("world")
    synthesize("default", 0, root, only=["pretrain"])
    return open_world(root).corpus()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dcid", "srcid"])
@pytest.mark.parametrize("variant", ["before", "after"])
def test_club_fits_on_distinct_codes(benchmark, corpus, method, variant, monkeypatch):
    monkeypatch.setattr(CLUB, "DISTINCT_BELOW", 0.0 if variant == "before" else CLUB.DISTINCT_BELOW)
    torch.set_num_threads(1)
    entry = registry.get("method", method)
    impl = entry.load()
    cfg = {**entry.defaults(), "epochs": 1}
    pretrained = benchmark.pedantic(lambda: impl.pretrain(corpus, cfg, 0, RunContext()), rounds=2, iterations=1)
    assert torch.isfinite(torch.tensor(pretrained.history[-1]["total"]))
