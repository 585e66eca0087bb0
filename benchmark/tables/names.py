"""Canonical spellings of method and task specs as tables, claims and figures look them up in the store.

Strings are matched to results through their canonical form (`spec.parse_method(...).canonical()`), so
`dcid@quantizer=vq` finds the cells stored as `dcid`; entries whose card is not registered fall back to a
syntactic form.
"""
from __future__ import annotations

from .. import registry, spec as specs


def _syntactic(text: str) -> str:
    """Canonical spelling without the registry (overrides sorted, values normalised): for entries whose card
    is not (or no longer) registered. Defaults cannot be dropped here, so grids spell only non-defaults."""
    parts = []
    for part in text.strip().split("+"):
        name, at, rest = part.strip().partition("@")
        over = specs.parse_overrides(rest, text) if at else {}
        parts.append(name.strip() + ("@" + ",".join(f"{k}={specs._fmt(v)}" for k, v in sorted(over.items()))
                                     if over else ""))
    return "+".join(parts)


def canonical_method(text: str) -> str:
    """Canonical method spec as stored in result.json; registry-resolved when every component is registered."""
    names = [p.partition("@")[0].strip() for p in text.strip().split("+")]
    kinds = ["method"] + ["refiner"] * (len(names) - 1)
    if all(n in registry.entries(k) for n, k in zip(names, kinds)):
        return specs.parse_method(text).canonical()
    return _syntactic(text)


def canonical_task(text: str) -> str:
    name = text.strip().partition("@")[0].strip()
    if name in registry.entries("task"):
        return specs.parse_task(text).canonical()
    return _syntactic(text)


# tasks as the tables' column groups print them (grids spell the same: `group: AVE->AVVP`)
TASK_LABELS = {"ave": "AVE", "avvp": "AVVP", "ave_avvp": "AVE->AVVP", "ucf_vgg": "UCF(v)<->VGG(a)",
               "retrieval": "retrieval", "toc_recon": "TOC reconstruction"}


def task_label(task: str) -> str:
    """A task as tables print it (`ave_avvp` -> `AVE->AVVP`), options kept; other tasks by their name."""
    name, at, rest = task.strip().partition("@")
    return TASK_LABELS.get(name.strip(), name.strip()) + (at + rest if at else "")


def mm_direction(direction: str) -> str:
    """The source modality's own direction: 'V->A' -> 'V->V' (SRCID Table I's m->m rows)."""
    src, arrow, _ = direction.partition("->")
    return f"{src}->{src}" if arrow else direction
