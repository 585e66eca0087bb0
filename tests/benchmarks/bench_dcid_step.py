"""pytest-benchmark: one DCID training step (forward, 5 CLUB fits, backward, clipping, Adam) on batch 80.

Default scale: the synthetic default world's shapes (audio [10,128], pooled video [10,512], text [10,768]).
Paper scale: the released shapes and widths (video [10,7,7,512], d = 256, 2048-channel video convs); marked slow.
Run: `pytest tests/benchmarks/bench_dcid_step.py --benchmark-enable -m ""` (add `-m "not slow"` for default only).
"""
from __future__ import annotations

import resource

import pytest
import torch

from methods.base import resolve_settings
from methods.dcid import DCIDModel
from methods.trainer import EstimatorFitter, Step, adam, main_parameters, train_step

SHAPES = {
    "default": {"audio": (10, 128), "video": (10, 512), "text": (10, 768)},
    "paper": {"audio": (10, 128), "video": (10, 7, 7, 512), "text": (10, 768)},
}
OPTIONS = {"beta": 0.25, "decay": 0.99, "mm_ema": True, "club": True, "cpc": True, "cmcm": True, "cpc_horizon": 1,
           "mi_steps": 5, "mi_lr": 1e-3, "quantizer": "vq", "dtype": "float32"}


def one_step_runner(scale: str, batch_size: int = 80):
    settings = resolve_settings({"scale": scale, **OPTIONS})
    torch.manual_seed(0)
    model = DCIDModel(SHAPES[scale], settings).train()
    g = torch.Generator().manual_seed(0)
    batch = {m: torch.rand(batch_size, *shape, generator=g) for m, shape in SHAPES[scale].items()}
    optimizer = adam(main_parameters(model), settings["lr"])
    fitter = EstimatorFitter(model.estimators(), settings["mi_steps"], settings["mi_lr"])
    groups = model.clip_groups()
    counter = iter(range(10 ** 9))

    def step():
        return train_step(model, batch, optimizer, Step(0, next(counter), g, fitter), settings["clip"], groups)
    return step


def test_dcid_step_default_scale(benchmark):
    step = one_step_runner("default")
    losses, total = benchmark.pedantic(step, rounds=10, iterations=1, warmup_rounds=2)
    assert torch.isfinite(total) and "cpc" in losses


@pytest.mark.slow
def test_dcid_step_paper_scale(benchmark):
    step = one_step_runner("paper")
    losses, total = benchmark.pedantic(step, rounds=2, iterations=1, warmup_rounds=1)
    if benchmark.stats is not None:   # the model, Adam state and one batch's activations at the released widths
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        benchmark.extra_info["process_peak_rss_mib"] = round(rss, 1)
    assert torch.isfinite(total) and "cpc" in losses
