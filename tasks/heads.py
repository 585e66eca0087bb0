"""Linear-probe heads on a frozen representation, and the two protocols that train, select and report them.

Heads are the released scripts' `Semantic_Decoder` (clip classification) and `Semantic_Decoder_AVVP` (per-second
multi-label), trained with their settings: Adam (lr 4e-4), batch 80, gradient-norm clip 0.5, MultiStepLR
[10, 20, 30] x 0.5 (docs/ORIGINAL_CODE.md §1.5). One head is trained per *source* modality and scored on every target
of that source, so `V->A` and `V->V` share a head (as in the released scripts) and cost one training.

Protocols (docs/PAPERS.md "Protocol"):
- `clean` (default): train on the source's train split, keep the epoch with the best score on the source's
  *val* split (early stopping after `patience` epochs without improvement), report that head on the targets.
- `reference`: train for all `epochs`, score every target after every epoch and keep, per target, the epoch
  with the best target score -- model selection on the reported data, as the released scripts do. (They also
  leave the encoder in train mode, i.e. dropout on, while producing training features; a frozen `Pretrained`
  has no such mode, so that part is not reproduced.)
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from benchmark.contracts import RunContext, Task, UserError

from . import metrics
from .common import direction_modalities, parse_directions, sources

PREDICT_BATCH = 4096


# --------------------------------------------------------------------------- modules
def _init_linear(layer: nn.Linear, generator: torch.Generator) -> nn.Linear:
    """PyTorch's default Linear init, drawn from `generator` so a head is reproducible from its seed alone."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    bound = 1.0 / math.sqrt(layer.in_features)
    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return layer


def _linear(d_in: int, d_out: int, generator: torch.Generator) -> nn.Linear:
    return _init_linear(torch.nn.utils.skip_init(nn.Linear, d_in, d_out), generator)


class ClipHead(nn.Module):
    """`[N, T, D] -> [N, C]`: per-second Linear D->H, max over T, Linear H->C (no activation: the max over
    time is the non-linearity, as in the released `Semantic_Decoder`)."""

    def __init__(self, d_in: int, hidden: int, n_out: int, generator: torch.Generator):
        super().__init__()
        self.frame = _linear(d_in, hidden, generator)
        self.classifier = _linear(hidden, n_out, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.frame(x).max(dim=1).values)


class FrameHead(nn.Module):
    """`[N, T, D] -> [N, T, K]` logits: per-second Linear D->H, Linear H->K (`Semantic_Decoder_AVVP`)."""

    def __init__(self, d_in: int, hidden: int, n_out: int, generator: torch.Generator):
        super().__init__()
        self.frame = _linear(d_in, hidden, generator)
        self.classifier = _linear(hidden, n_out, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.frame(x))


# --------------------------------------------------------------------------- problems
@dataclass
class Labeled:
    x: np.ndarray   # [N, T, D] frozen features
    y: np.ndarray   # [N] int class (clip problems) or [N, T, K] {0,1} (frame problems)


@dataclass(frozen=True)
class Problem:
    """What differs between clip classification and per-second event detection."""

    kind: str                                                   # "clip" | "frame"
    n_out: int
    score: Callable[[np.ndarray, np.ndarray], dict[str, float]]  # (logits, y) -> metrics in %, during selection
    select: str                                                 # metric maximised for model selection
    balanced: bool = False                                      # frame: BCE positive weight neg/pos per class
    tune: Callable[[np.ndarray, np.ndarray], float] | None = None   # (val logits, val y) -> decision threshold
    report: Callable[[float], Callable[[np.ndarray, np.ndarray], dict]] | None = None  # threshold -> scorer

    def head(self, d_in: int, hidden: int, generator: torch.Generator) -> nn.Module:
        return (ClipHead if self.kind == "clip" else FrameHead)(d_in, hidden, self.n_out, generator)

    def loss(self, logits: torch.Tensor, y: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "clip":
            return nn.functional.cross_entropy(logits, y)
        return nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight)

    def pos_weight(self, y: np.ndarray) -> torch.Tensor | None:
        """Per-column BCE positive weight neg/pos (clipped to [1, MAX_POS_WEIGHT]; background column 1) from the
        training labels: with ~2 % positive (second, class) pairs an unweighted head learns to say "nothing"."""
        if self.kind != "frame" or not self.balanced:
            return None
        flat = np.asarray(y, dtype=np.float64).reshape(-1, y.shape[-1])
        pos = flat.sum(0)
        weight = np.clip((len(flat) - pos) / np.maximum(pos, 1.0), 1.0, MAX_POS_WEIGHT)
        weight[-1] = 1.0
        return torch.as_tensor(weight, dtype=torch.float32)

    def target_tensor(self, y: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(y, dtype=torch.long if self.kind == "clip" else torch.float32)


MAX_POS_WEIGHT = 100.0


def classification(n_classes: int) -> Problem:
    """Clip classification, cross-entropy on `labels/clip`, accuracy."""
    return Problem("clip", n_classes, lambda logits, y: {"acc": metrics.accuracy(y, logits.argmax(-1))}, "acc")


def detection_report(threshold: float) -> Callable[[np.ndarray, np.ndarray], dict[str, float]]:
    """Scorer of the clean protocol at a decision threshold (on logits): micro P/R/F1 over event classes, the
    threshold-free mAP, and the floors of these labels (all-positive F1, chance mAP) so no number is read alone."""
    def score(logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
        return {**metrics.segment_prf(y, logits > threshold), "mAP": metrics.mean_average_precision(y, logits),
                **metrics.detection_floors(y)}
    return score


def event_detection(n_out: int, protocol: str, batch_size: int, reference_select: str,
                    balanced: bool = True, threshold: str = "val") -> Problem:
    """Per-second multi-label over `n_out` = C+1 columns (background last), BCE.

    clean: the head is trained with a per-class positive weight (`balanced`); its decision threshold is the one
    that maximises the source's val micro F1 (`threshold=val`; `fixed` = sigmoid > 0.5: F1 at a fixed 0.5
    collapses to 0 as an unweighted head learns the ~2 % positive rate), and the epoch is selected on that tuned
    val F1 (one global threshold needs scores comparable across classes, which per-class mAP does not see). Reported:
    micro P/R/F1 over event classes (background excluded), mAP, and the floors (`detection_report`).
    reference: the released scripts' batch-averaged P/R with background (`metrics.reference_prf`) at sigmoid >
    0.5, unweighted BCE, selected on `reference_select`.
    """
    if protocol == "reference":
        return Problem("frame", n_out,
                       lambda logits, y: metrics.reference_prf(y, logits > 0, batch_size), reference_select)
    def select(logits, y):
        return {"f1": metrics.best_f1(y, logits)[1] if threshold == "val" else metrics.segment_prf(y, logits > 0)["f1"]}
    return Problem("frame", n_out, select, "f1",
                   balanced=balanced,
                   tune=(lambda logits, y: metrics.best_f1(y, logits)[0]) if threshold == "val" else None,
                   report=detection_report)


# --------------------------------------------------------------------------- training
def check_head_options(cfg: Mapping[str, Any], task: str) -> None:
    """UserErrors for head options no run can use (the registry already checked their types)."""
    for key, low in (("epochs", 1), ("patience", 1), ("batch_size", 1)):
        if cfg[key] < low:
            raise UserError(f"task '{task}': option '{key}' must be >= {low}, got {cfg[key]}")
    if not cfg["lr"] > 0:
        raise UserError(f"task '{task}': option 'lr' must be > 0, got {cfg['lr']}")
    if cfg.get("min_hidden") is not None and cfg["min_hidden"] < 1:
        raise UserError(f"task '{task}': option 'min_hidden' must be >= 1, got {cfg['min_hidden']}")
    if cfg["hidden"] is not None and cfg["hidden"] < 1:
        raise UserError(f"task '{task}': option 'hidden' must be >= 1 or null, got {cfg['hidden']}")


def head_generator(seed: int, name: str) -> torch.Generator:
    """A CPU generator for one head's init and shuffles: fixed by (seed, head name), independent of global RNG."""
    state = np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


@torch.no_grad()
def predict(head: nn.Module, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Head outputs for `[N, T, D]` features, in batches, eval mode."""
    head.eval()
    outs = [head(torch.from_numpy(x[i:i + PREDICT_BATCH]).to(device)).float().cpu().numpy()
            for i in range(0, len(x), PREDICT_BATCH)]
    return np.concatenate(outs)


def fit(head: nn.Module, data: Labeled, problem: Problem, cfg: Mapping[str, Any], generator: torch.Generator,
        ctx: RunContext, description: str, after_epoch: Callable[[int], bool]) -> int:
    """Train `head` on `data`; `after_epoch(epoch)` returning True stops early. Returns the epochs run."""
    device = ctx.device or "cpu"
    x = torch.from_numpy(np.ascontiguousarray(data.x)).to(device)
    y = problem.target_tensor(data.y).to(device)
    pos_weight = problem.pos_weight(data.y)
    pos_weight = pos_weight.to(device) if pos_weight is not None else None
    optimizer = torch.optim.Adam(head.parameters(), lr=cfg["lr"])
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg["lr_milestones"]),
                                                     gamma=cfg["lr_gamma"])
    epochs = ctx.progress(range(cfg["epochs"]), description=description, total=cfg["epochs"])
    run = 0
    try:
        for epoch in epochs:
            head.train()
            order = torch.randperm(len(x), generator=generator).to(device)
            for start in range(0, len(x), cfg["batch_size"]):
                batch = order[start:start + cfg["batch_size"]]
                loss = problem.loss(head(x[batch]), y[batch], pos_weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(head.parameters(), cfg["grad_clip"])
                optimizer.step()
            scheduler.step()
            run = epoch + 1
            if after_epoch(epoch):
                break
    finally:
        close = getattr(epochs, "close", None)
        if close is not None:
            close()
    return run


def head_width(cfg: Mapping[str, Any], d_in: int) -> int:
    """`hidden`, or the input width but never below `min_hidden` (the released rule hidden = input width at D = 256,
    where every input is >= 128 wide; at a narrower D it keeps TOC's Q from also shrinking the head)."""
    return int(cfg["hidden"]) if cfg["hidden"] else max(int(d_in), int(cfg.get("min_hidden") or 1))


def transfer(train: Labeled, val: Labeled | None, targets: Mapping[str, Labeled], problem: Problem,
             cfg: Mapping[str, Any], seed: int, ctx: RunContext, name: str) -> dict[str, dict[str, float]]:
    """Train one head on `train` and report it on each target `{direction: Labeled}` under `cfg["protocol"]`.

    Returns `{direction: metrics}`. Records the chosen epochs in `ctx.notes["heads"][name]`.
    """
    if len(train.x) == 0:
        raise UserError(f"{name}: the training split is empty")
    generator = head_generator(seed, name)
    device = ctx.device or "cpu"
    head = problem.head(train.x.shape[-1], head_width(cfg, train.x.shape[-1]), generator).to(device)
    description = f"{name} head"
    notes = ctx.notes.setdefault("heads", {})

    if cfg["protocol"] == "reference":
        best: dict[str, tuple[float, dict, int, np.ndarray | None]] = {d: (-math.inf, {}, -1, None) for d in targets}

        def score_targets(epoch: int) -> bool:
            for direction, target in targets.items():
                logits = predict(head, target.x, device)
                scores = problem.score(logits, target.y)
                if scores[problem.select] > best[direction][0]:
                    best[direction] = (scores[problem.select], scores, epoch, logits)
            return False

        run = fit(head, train, problem, cfg, generator, ctx, description, score_targets)
        notes[name] = {"epochs_run": run, "best_epoch": {d: b[2] for d, b in best.items()}}
        for direction, target in targets.items():
            record(ctx, direction, problem, best[direction][3], target.y, 0.0)
        return {d: b[1] for d, b in best.items()}

    if val is None or len(val.x) == 0:
        raise UserError(f"{name}: the validation split is empty (needed for model selection)")
    chosen = {"score": -math.inf, "epoch": -1, "state": None}

    def early_stop(epoch: int) -> bool:
        score = problem.score(predict(head, val.x, device), val.y)[problem.select]
        if score > chosen["score"]:
            chosen.update(score=score, epoch=epoch,
                          state={k: v.detach().clone() for k, v in head.state_dict().items()})
        return epoch - chosen["epoch"] >= cfg["patience"]

    run = fit(head, train, problem, cfg, generator, ctx, description, early_stop)
    head.load_state_dict(chosen["state"])
    notes[name] = {"epochs_run": run, "best_epoch": chosen["epoch"], "val_" + problem.select: chosen["score"]}
    score, threshold = problem.score, 0.0
    if problem.report is not None:
        threshold = problem.tune(predict(head, val.x, device), val.y) if problem.tune is not None else 0.0
        notes[name]["threshold_logit"] = threshold if math.isfinite(threshold) else None
        score = problem.report(threshold)
    out = {}
    for direction, target in targets.items():
        logits = predict(head, target.x, device)
        out[direction] = score(logits, target.y)
        record(ctx, direction, problem, logits, target.y, threshold)
    return out


def record(ctx: RunContext, direction: str, problem: Problem, logits: np.ndarray | None, y: np.ndarray,
           threshold: float) -> None:
    """The test-set size of one direction (clip problems: and the number of classes, so chance is known where the
    cell is read) and, with `--log-samples`, what its metrics were computed from, in the
    target split's order: clip problems `scores` [N, C] logits, `pred` (their argmax), `target` [N]; frame problems
    `scores` [N, T, K] logits, `pred` = scores > `threshold` (the decision threshold on logits), `target` {0,1}."""
    if logits is None:         # reference protocol that never scored (cannot happen with epochs >= 1)
        return
    if problem.kind == "clip":
        ctx.record(direction, {"clips": len(y), "classes": problem.n_out}, scores=logits, pred=logits.argmax(-1),
                   target=np.asarray(y))
    else:
        ctx.record(direction, {"clips": y.shape[0], "seconds": y.shape[0] * y.shape[1]}, scores=logits,
                   pred=logits > threshold, target=np.asarray(y, dtype=np.uint8), threshold=np.float64(threshold))


# --------------------------------------------------------------------------- the task base
class HeadTask(Task):
    """A task that trains one head per source modality and reports it on each target (ave, avvp, ave_avvp,
    ucf_vgg): the option checks and the source -> targets loop live here; a subclass only says how to read its
    labelled splits and which `Problem` it poses. Its card includes `tasks/_head.yaml`."""

    directions: tuple[str, ...] = ("V->A", "A->V", "V->V", "A->A")

    def validate(self, cfg):
        check_head_options(cfg, self.name)
        parse_directions(cfg["directions"], self.directions, self.name)

    def modalities(self, cfg):
        return direction_modalities(cfg["directions"], self.directions, self.name)

    def transfer_all(self, cfg, seed: int, ctx: RunContext, problem: Problem,
                     source: Callable[[str, str], Labeled], target: Callable[[str], Labeled]) -> dict[str, dict]:
        """`{direction: metrics}` in the order asked: per source modality, a head trained on `source(m, "train")`,
        selected on `source(m, "val")` (clean protocol), scored on `target(m')` for each of its directions."""
        directions = parse_directions(cfg["directions"], self.directions, self.name)
        out = {}
        for src, group in sources(directions).items():
            val = source(src, "val") if cfg["protocol"] == "clean" else None
            targets = {d.label: target(d.target) for d in group}
            out.update(transfer(source(src, "train"), val, targets, problem, cfg, seed, ctx,
                                name=f"{self.name}/{src}"))
        return {d.label: out[d.label] for d in directions}
