"""pytest-benchmark: one pretraining step (forward, CLUB fits where the method has them, backward, clip, Adam)
for every registered pretraining method, batch 80 — so a change that slows one method's losses shows up next to
the others. `scale=default` on the default world's shapes (part of `make perf`), and `scale=paper` on the
released shapes (video `[10,7,7,512]`; slow, minutes per step on a CPU: `make perf-paper`)."""
from __future__ import annotations

import pytest
import torch

from benchmark import registry
from methods.trainer import EstimatorFitter, Step, adam, main_parameters, train_step

SHAPES = {"audio": (10, 128), "video": (10, 512), "text": (10, 768)}
PAPER_SHAPES = {"audio": (10, 128), "video": (10, 7, 7, 512), "text": (10, 768)}
METHODS = ["cmcm", "dcid", "codis", "turn", "simmmdg", "fccid", "srcid"]


def step_runner(name: str, batch_size: int = 80, scale: str = "default", batch: dict | None = None,
                options: dict | None = None):
    """A closure running one training step of `name` (with `options`) on a fixed batch: uniform noise of
    `batch_size` clips, or `batch` (`{modality: tensor, "labels": [B]}`, e.g. a corpus batch, whose text repeats
    the class prompts)."""
    entry = registry.get("method", name)
    method = entry.load()
    settings = method.settings({**entry.defaults(), "scale": scale, **(options or {})})
    g = torch.Generator().manual_seed(0)
    if batch is None:
        shapes = PAPER_SHAPES if scale == "paper" else SHAPES
        batch = {m: torch.rand(batch_size, *shape, generator=g) for m, shape in shapes.items()}
        batch["labels"] = torch.randint(0, 10, (batch_size,), generator=g)
    shapes = {m: tuple(v.shape[1:]) for m, v in batch.items() if m != "labels"}
    torch.manual_seed(0)
    model = method.build_model(shapes, settings).train()
    batch = {m: batch.get(m, batch["labels"]) for m in model.modalities}   # a label column: a supervised SimMMDG
    optimizer = adam(main_parameters(model), settings["lr"])
    estimators = model.estimators() if hasattr(model, "estimators") else {}
    fitter = EstimatorFitter(estimators, settings.get("mi_steps", 5), settings.get("mi_lr", 1e-3))
    params = main_parameters(model)
    groups = [list(g) for g in model.clip_groups()] if hasattr(model, "clip_groups") else [params]
    counter = iter(range(10 ** 9))

    def step():
        return train_step(model, batch, optimizer, Step(1, next(counter), g, fitter), settings["clip"], groups)
    return step


@pytest.mark.parametrize("name", METHODS)
def test_pretraining_step_default_scale(benchmark, name):
    step = step_runner(name)
    losses, total = benchmark.pedantic(step, rounds=5, iterations=1, warmup_rounds=1)
    assert torch.isfinite(total)


@pytest.mark.slow
@pytest.mark.parametrize("name", [m for m in METHODS if m != "dcid"])   # DCID's: bench_dcid_step.py, with its RSS
def test_pretraining_step_paper_scale(benchmark, name):
    step = step_runner(name, scale="paper")
    losses, total = benchmark.pedantic(step, rounds=1, iterations=1, warmup_rounds=1)
    assert torch.isfinite(total)
