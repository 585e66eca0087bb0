"""The one pretraining loop every method shares; a method only supplies a model that knows its losses.

Model protocol (an `nn.Module`):
    model.modalities                      names of the corpus modalities it reads
    model.losses(batch, step) -> dict     {name: scalar tensor}; the loss minimised is their sum (weights inside)
    model.estimators() -> dict            optional: {name: module with `learning_loss(x, y)`}: MI estimators (CLUB)
                                          with their own Adam, kept out of the main optimiser; an estimator
                                          may define `fit_inputs(x, y)`, called once per batch to put its
                                          inputs in the form its `learning_loss` is cheapest on (CLUB: distinct
                                          code rows)
    model.clip_groups() -> list           optional: parameter groups clipped separately (as coded: per module)

Inside `losses`, after its forward, a model calls `step.fit_estimators({name: (x, y), ...})`: the trainer then
runs `mi_steps` Adam steps (lr `mi_lr`) of those estimators on the detached pairs of this batch, so the bounds the
model adds next come from freshly fitted estimators (DCID: 5 steps, lr 1e-3) and the encoder runs once per batch.
The estimators are fitted jointly (one summed loss, one Adam): Adam is per-parameter and the estimators share no
parameters, so this equals one optimiser per estimator at a third of the dispatch cost.

Determinism: `torch.manual_seed(seed)` at the start (dropout), a local `torch.Generator` for every other draw
(anchors, permutations, code resets; handed to the model as `step.generator`), data order from (seed, epoch).
Each finished epoch is checkpointed into `ctx.pretrain_dir` (model, optimisers, both RNG states); a rerun with the
same `resume_tag` continues from the last finished epoch and ends with the same numbers as an uninterrupted run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from benchmark.atomic import atomic_open
from benchmark.convergence import diagnose

from .precision import DTYPES, autocast, full_precision, grad_scaler, upcast

CHECKPOINT_FORMAT = 1


@dataclass
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float
    clip: float | None = 0.5
    seed: int = 0
    dtype: str = "float32"        # a precision name (precision.py): float32, float64, bf16-mixed, fp16-mixed
    mi_steps: int = 5
    mi_lr: float = 1e-3
    resume_tag: str = ""          # identity of the run (config, data, seed); checkpoints with another tag are ignored
    name: str = "pretraining"     # progress-bar label


@dataclass
class Step:
    """What a model's `losses` may use besides the batch."""

    epoch: int
    index: int                                   # global step, from 0
    generator: torch.Generator | None = None
    fit: Callable[[Mapping[str, tuple[Tensor, Tensor]]], None] | None = None

    def fit_estimators(self, pairs: Mapping[str, tuple[Tensor, Tensor]]) -> None:
        """Fit the named estimators on this batch's (x, y) pairs (no-op outside the trainer)."""
        if self.fit is not None and pairs:
            self.fit(pairs)


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)   # per epoch: mean of every loss, "total", "seconds"
    start_epoch: int = 0                                # epochs found finished in a checkpoint
    steps: int = 0


def training_summary(history: list[dict]) -> dict:
    """Per-epoch losses (wall time left out: identical runs differ in it) and the convergence diagnostic of
    `benchmark.convergence` (tables mark unconverged cells). It is a loss diagnostic; the budget study's probe
    scores are the real test."""
    losses = [{k: v for k, v in h.items() if k != "seconds"} for h in history]
    totals = [h.get("total", float("nan")) for h in history]
    out: dict = {"epochs": len(history), "final_losses": losses[-1] if losses else {}, "loss_history": losses}
    out.update(diagnose(totals))
    return out


def codebook_usage(model: nn.Module, batches: int) -> float | None:
    """Share of codes any modality picked during the last `batches` training batches, averaged over the model's
    EMA codebooks (read off their dead-code age counters: no extra pass); None for models without one."""
    ages = [m.unused for m in model.modules() if isinstance(getattr(m, "unused", None), Tensor)]
    if not ages or batches < 1:
        return None
    return round(float(torch.stack([(a < batches).float().mean() for a in ages]).mean()), 4)


def estimators_of(model: nn.Module) -> dict[str, nn.Module]:
    return dict(model.estimators()) if hasattr(model, "estimators") else {}


def main_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every trainable parameter except the MI estimators' (they have their own optimisers)."""
    skip = {id(p) for est in estimators_of(model).values() for p in est.parameters()}
    return [p for p in model.parameters() if id(p) not in skip and p.requires_grad]


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam; the fused kernel when available (far fewer dispatches per step on small CPU models)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=bool(params))
    except (RuntimeError, TypeError):     # a dtype/device without a fused kernel
        return torch.optim.Adam(params, lr=lr)


class EstimatorFitter:
    """Fits MI estimators by likelihood on the current batch (`steps` Adam steps at `lr`), on detached inputs."""

    def __init__(self, estimators: Mapping[str, nn.Module], steps: int, lr: float):
        self.estimators = dict(estimators)
        self.steps = int(steps)
        params = [p for e in self.estimators.values() for p in e.parameters()]
        self.optimizer = adam(params, lr) if params else None
        for est in self.estimators.values():           # the main loss must not reach estimator weights
            est.requires_grad_(False)

    @full_precision    # likelihood fits stay in full precision under mixed-precision training
    def __call__(self, pairs: Mapping[str, tuple[Tensor, Tensor]]) -> None:
        chosen = {k: (self.estimators[k], *self._inputs(self.estimators[k], x.detach(), y.detach()))
                  for k, (x, y) in pairs.items()}
        for est, _, _ in chosen.values():
            est.requires_grad_(True)
        with torch.enable_grad():
            for _ in range(self.steps):
                self.optimizer.zero_grad(set_to_none=True)
                sum(est.learning_loss(x, y) for est, x, y in chosen.values()).backward()
                self.optimizer.step()
        for est, _, _ in chosen.values():
            est.requires_grad_(False)

    @staticmethod
    def _inputs(estimator: nn.Module, x: Tensor, y: Tensor) -> tuple:
        """The estimator's own form of its inputs for the `steps` fits on one batch (computed once), if it has one."""
        prepare = getattr(estimator, "fit_inputs", None)
        return prepare(x, y) if prepare is not None else (x, y)

    def state_dict(self) -> dict:
        return self.optimizer.state_dict() if self.optimizer is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state)


def to_tensors(batch: Mapping[str, Any], modalities: Iterable[str], dtype: torch.dtype, device: str) -> dict:
    """Numpy corpus batch -> `{modality: tensor}` in the model's dtype/device (the index column is dropped)."""
    return {m: torch.as_tensor(np.asarray(batch[m])).to(device=device, dtype=dtype) for m in modalities}


def train_step(model: nn.Module, batch: dict[str, Tensor], optimizer: torch.optim.Optimizer, step: Step,
               clip: float | None, clip_groups: list[list[nn.Parameter]], precision: str = "float32",
               scaler: torch.amp.GradScaler | None = None) -> tuple[dict[str, Tensor], Tensor]:
    """One optimisation step: losses (estimators fitted inside; under autocast for the mixed precisions),
    backward (through the loss scaler for fp16), per-group clipping on unscaled gradients, Adam."""
    optimizer.zero_grad(set_to_none=True)
    with autocast(precision, next(iter(batch.values())).device):
        losses = model.losses(batch, step)
    total = sum(upcast(v) for v in losses.values())
    if not torch.isfinite(total):
        bad = [k for k, v in losses.items() if not torch.isfinite(v)]
        raise FloatingPointError(f"pretraining loss is not finite at epoch {step.epoch + 1}, step {step.index} "
                                 f"(terms: {', '.join(bad)}); try a smaller lr or dtype=float64")
    (scaler.scale(total) if scaler is not None else total).backward()
    if scaler is not None:
        scaler.unscale_(optimizer)
    if clip:
        for group in clip_groups:
            torch.nn.utils.clip_grad_norm_(group, clip)
    if scaler is not None:
        scaler.step(optimizer)     # skips the step when an inf/nan gradient shows the scale is too large
        scaler.update()
    else:
        optimizer.step()
    return losses, total


def epoch_seed(seed: int, epoch: int) -> int:
    """Data-order seed of one epoch: depends on (seed, epoch) only, so a resumed run sees the same batches."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


# --------------------------------------------------------------------------- checkpoints
def _checkpoint_path(directory: Path, epoch: int) -> Path:
    return directory / f"epoch-{epoch:04d}.pt"


def find_checkpoint(directory: Path | None, tag: str, max_epoch: int) -> dict | None:
    """The newest checkpoint in `directory` written by a run with `tag` and at most `max_epoch` epochs done."""
    if directory is None or not Path(directory).is_dir():
        return None
    for path in sorted(Path(directory).glob("epoch-*.pt"), reverse=True):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:          # a torn or foreign file: ignore it, an older one may still serve
            state = None
        if not isinstance(state, dict) or not isinstance(state.get("epoch"), int):
            from benchmark.notice import warn
            warn(f"{path}: not a checkpoint (unreadable or foreign); ignored, an older one or a fresh start serves")
            continue
        if state.get("tag") == tag and state.get("format") == CHECKPOINT_FORMAT and state["epoch"] <= max_epoch:
            return state
    return None


def save_checkpoint(directory: Path, state: dict) -> Path:
    """Atomically write `epoch-XXXX.pt`, then drop older epochs of the same directory."""
    directory.mkdir(parents=True, exist_ok=True)
    path = _checkpoint_path(directory, state["epoch"])
    with atomic_open(path) as fh:
        torch.save(state, fh)
    for old in directory.glob("epoch-*.pt"):
        if old != path:
            old.unlink(missing_ok=True)
    return path


# --------------------------------------------------------------------------- the loop
def train(model: nn.Module, corpus, config: TrainConfig, ctx) -> TrainResult:
    """Pretrain `model` on `corpus` for `config.epochs` epochs (resuming from `ctx.pretrain_dir` when possible)."""
    device = getattr(ctx, "device", "cpu") or "cpu"
    dtype = DTYPES[config.dtype]
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    modalities = tuple(model.modalities)
    params = main_parameters(model)
    optimizer = adam(params, config.lr)
    scaler = grad_scaler(config.dtype, device)
    fitter = EstimatorFitter(estimators_of(model), config.mi_steps, config.mi_lr)
    clip_groups = [list(g) for g in model.clip_groups()] if hasattr(model, "clip_groups") else [params]
    directory = Path(ctx.pretrain_dir) if getattr(ctx, "pretrain_dir", None) else None
    result = TrainResult()

    state = find_checkpoint(directory, config.resume_tag, config.epochs)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        fitter.load_state_dict(state["estimators"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if device.startswith("cuda") and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device=torch.device(device))
        result.start_epoch, result.steps, result.history = state["epoch"], state["steps"], list(state["history"])
        ctx.log(f"{config.name}: resumed after epoch {state['epoch']} from {directory}")

    n_batches = -(-len(corpus) // config.batch_size)
    model.train()
    for epoch in range(result.start_epoch, config.epochs):
        t0 = time.perf_counter()
        sums: dict[str, Tensor] = {}
        count = 0
        batches = corpus.iter_batches(config.batch_size, seed=epoch_seed(config.seed, epoch), shuffle=True,
                                      modalities=modalities)
        for raw in ctx.progress(batches, description=f"{config.name} epoch {epoch + 1}/{config.epochs}",
                                total=n_batches):
            batch = to_tensors(raw, modalities, dtype, device)
            step = Step(epoch, result.steps, generator, fitter)
            losses, total = train_step(model, batch, optimizer, step, config.clip, clip_groups, config.dtype, scaler)
            for k, v in {**losses, "total": total}.items():
                sums[k] = sums.get(k, 0.0) + v.detach()
            count += 1
            result.steps += 1
        record = {k: float(v) / max(count, 1) for k, v in sums.items()}
        usage = codebook_usage(model, count)
        if usage is not None:
            record["codebook_usage"] = usage
        record["seconds"] = round(time.perf_counter() - t0, 3)
        result.history.append(record)
        ctx.log(f"{config.name} epoch {epoch + 1}/{config.epochs}: total {record.get('total', float('nan')):.4f} "
                f"({record['seconds']:.1f}s)")
        ctx.epoch_done(epoch + 1, config.epochs, record["seconds"])
        if directory is not None:
            save_checkpoint(directory, {
                "format": CHECKPOINT_FORMAT, "tag": config.resume_tag, "epoch": epoch + 1, "steps": result.steps,
                "history": result.history, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "estimators": fitter.state_dict(), "generator": generator.get_state(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(torch.device(device)) if device.startswith("cuda") else None})
    model.eval()
    return result
