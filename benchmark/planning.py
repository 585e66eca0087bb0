"""Checks that need more than one option at a time, moved from inside a cell to planning.

Each of these used to fail only after a pretraining was written (TOC's `q` against the code width, a corpus
without the modalities a method pairs, `cpc_horizon` beyond the clips' T) or after some cells of `--task all`
had run (a direction whose modality the method cannot encode). `runner.plan` calls `check_against_world`, so a
run that cannot succeed exits 2 before any world is generated (for what the specs alone decide) or before any
cell (for what the world decides).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from .contracts import UserError

CODE_WIDTH_KEYS = ("code_dim", "dim")   # the option that sets a method's code width (codebook methods; tiny)


def _settings(method) -> Mapping[str, Any]:
    from . import spec as specs
    return specs._preset_settings(method, method.base.cfg) or method.base.cfg


def _code_width(method) -> int | None:
    settings = _settings(method)
    return next((settings[k] for k in CODE_WIDTH_KEYS if isinstance(settings.get(k), int)), None)


def check_refiners(methods: Iterable) -> None:
    """TOC's `q` in 1..code width (a codebook never has more dimensions than the method's code width)."""
    for method in methods:
        for refiner in method.refiners:
            q = refiner.cfg.get("q")
            if refiner.name != "toc" or q is None:
                continue
            width = _code_width(method)
            if q < 1 or (width is not None and q > width):
                span = f"1..{width}" if width is not None else ">= 1"
                raise UserError(f"toc: q must be in {span} (the code width of {method.base.canonical()}), got q={q}")


def task_modalities(task) -> set[str] | None:
    """The modalities a task's `directions` read (source and target), or None for tasks without directions."""
    if "directions" not in task.component.cfg:
        return None
    says = getattr(task.component.entry.load(), "modalities", None)     # a plugin may implement Task directly
    return says(task.component.cfg) if says is not None else None


def check_against_world(methods: list, tasks: list, world) -> None:
    """Checks of the specs together, then (when the world is open) of the specs against the corpus."""
    check_refiners(methods)
    if world is None or getattr(world, "root", None) is None:
        return
    if not any(t.component.entry.needs_pretrained for t in tasks):
        return
    corpus = world.corpus()
    steps = {m: int(corpus.feature_shape(m)[0]) for m in corpus.modalities}
    for method in methods:
        obj = method.base.entry.load()
        settings = _settings(method)
        encodes = set(getattr(obj, "encodes", None) or corpus.modalities) & set(corpus.modalities)
        if hasattr(obj, "modalities_of"):            # the method's own corpus checks (paired modalities, same T)
            names = obj.modalities_of(corpus)
            shapes = {m: tuple(corpus.feature_shape(m)) for m in names}
            getattr(obj, "check_shapes", lambda *a: None)(shapes, settings)
            encodes = set(names)
        horizon = settings.get("cpc_horizon")
        if settings.get("cpc") and isinstance(horizon, int) and steps and horizon + 2 > min(steps.values()):
            raise UserError(f"{method.base.name}: cross-modal CPC with cpc_horizon={horizon} needs clips of at "
                            f"least {horizon + 2} steps, the corpus has T={min(steps.values())} (or set cpc=false)")
        for task in tasks:
            if not task.component.entry.needs_pretrained:
                continue
            needed = task_modalities(task)
            missing = sorted((needed or set()) - encodes)
            if missing:
                raise UserError(f"method '{method.base.name}' has no {', '.join(missing)} encoder (it encodes "
                                f"{', '.join(sorted(encodes))}), which task '{task.canonical()}' reads; choose "
                                f"other directions (e.g. {task.name}@directions=...) or leave the task out")
        _check_task_memory(method, tasks, world, steps)


def _check_task_memory(method, tasks: list, world, steps: Mapping[str, int]) -> None:
    from .bounds import ENCODE_BATCH, check_memory, method_terms, task_terms
    width = _code_width(method) or 0
    t = max(steps.values(), default=1)
    for task in tasks:
        if not task.component.entry.needs_pretrained:
            continue
        clips, raw = 0, 0
        for name in task.component.entry.datasets:
            ff = world.open(name)
            clips += max((ff.n(m) for m in ff.modalities), default=0)
            raw = max([raw] + [min(ff.n(m), ENCODE_BATCH) * math.prod(ff.feature_shape(m)) * 4
                               for m in ff.modalities])
        terms = {**method_terms(_settings(method), steps=t), **task_terms(task.component.cfg, clips, t, width),
                 "one encode batch of raw features (declared shape)": raw}
        check_memory(f"{method.base.canonical()} on {task.canonical()}", terms)
