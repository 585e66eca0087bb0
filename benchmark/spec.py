"""Spec grammar and canonical, hashable configs.

    method spec := base ['@' overrides] ('+' refiner ['@' overrides])*
    task spec   := name ['@' overrides]
    overrides   := key '=' value (',' key '=' value)*      value parsed as a YAML scalar

`dcid@quantizer=rvq,levels=3+toc@q=128` -> base dcid with two overrides, refined by toc with q=128.
Everything is resolved against the registry defaults *before* hashing, so two spellings of one config
(`dcid` and `dcid@quantizer=vq`) share one cache entry.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import bounds, registry
from .contracts import UserError
from .hashing import stable_hash
from .yamlio import parse_value

SCHEMA_VERSION = 1
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
MAX_SPEC_CHARS = 1000            # a whole method or task spec
MAX_VALUE_CHARS = registry.MAX_VALUE_CHARS
MAX_SEED = 2**32 - 1             # numpy's seed range
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_text(text: Any, what: str) -> str:
    """A spec must be a short, printable string (grid YAML can hand us anything)."""
    if not isinstance(text, str):
        raise UserError(f"malformed {what} spec {text!r}: expected a string"[:300])
    if len(text) > MAX_SPEC_CHARS:
        raise UserError(f"malformed {what} spec '{text[:40]}...': {len(text)} characters (at most {MAX_SPEC_CHARS})")
    bad = _CONTROL.search(text)
    if bad:
        raise UserError(f"malformed {what} spec {text[:80]!r}: control character {bad.group()!r} "
                        f"at position {bad.start()}")
    return text


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside brackets and quotes, so list values survive: `a=1,b=[5,10]` -> `a=1`, `b=[5,10]`.
    Unbalanced brackets are left to the value parser (which then reports the malformed value)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth = max(0, depth - 1)
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_overrides(text: str, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if text == "":
        raise UserError(f"malformed spec '{where}': empty override list after '@'")
    for part in split_top_level(text):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key or not _NAME.match(key):
            raise UserError(f"malformed spec '{where}': expected key=value, got '{part}'")
        if key in out:
            raise UserError(f"malformed spec '{where}': key '{key}' given twice")
        if len(value.strip()) > MAX_VALUE_CHARS:
            raise UserError(f"malformed spec '{where[:60]}...': value of '{key}' is {len(value.strip())} characters "
                            f"(at most {MAX_VALUE_CHARS})")
        out[key] = parse_value(value.strip())
    return out


def _split_component(text: str, where: str) -> tuple[str, dict[str, Any]]:
    name, at, rest = text.partition("@")
    name = name.strip()
    if not name or not _NAME.match(name):
        raise UserError(f"malformed spec '{where}': bad name '{name}'")
    return name, (parse_overrides(rest, where) if at else {})


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_fmt(v) for v in value) + "]"   # round-trips: the parser splits outside brackets
    return str(value)


def _canonical_component(entry: registry.Entry, cfg: dict[str, Any]) -> str:
    defaults = entry.defaults()
    changed = [f"{k}={_fmt(v)}" for k, v in sorted(cfg.items()) if defaults.get(k) != v]
    return entry.name + ("@" + ",".join(changed) if changed else "")


@dataclass(frozen=True)
class Component:
    entry: registry.Entry
    cfg: dict

    @property
    def name(self) -> str:
        return self.entry.name

    def resolved(self) -> dict:
        return {"name": self.entry.name, "version": self.entry.version, "cfg": self.cfg}

    def canonical(self) -> str:
        return _canonical_component(self.entry, self.cfg)


@dataclass(frozen=True)
class MethodSpec:
    base: Component
    refiners: tuple[Component, ...] = ()

    @property
    def discrete(self) -> bool:
        return self.base.entry.discrete

    def canonical(self) -> str:
        return "+".join([self.base.canonical()] + [r.canonical() for r in self.refiners])

    def resolved(self) -> dict:
        return {"method": self.base.resolved(), "refiners": [r.resolved() for r in self.refiners]}

    def pretrain_resolved(self) -> dict:
        """What the pretraining cache is keyed by: the base method only (refiners never retrain), without
        inference-only options (e.g. `srcid@only1=true` reuses the `srcid` pretraining)."""
        resolved = self.base.resolved()
        opts = self.base.entry.options
        resolved["cfg"] = {k: v for k, v in resolved["cfg"].items() if not (k in opts and opts[k].inference_only)}
        return resolved

    def pretrain_canonical(self) -> str:
        cfg = {k: v for k, v in self.base.cfg.items() if not self.base.entry.options[k].inference_only}
        defaults = self.base.entry.defaults()
        return _canonical_component(self.base.entry, {**defaults, **cfg})


def parse_method(text: str) -> MethodSpec:
    text = _check_text(text, "method").strip()
    if not text:
        raise UserError("malformed spec '': empty method spec")
    parts = text.split("+")
    if any(not p.strip() for p in parts):
        raise UserError(f"malformed spec '{text}': empty component around '+'")
    name, over = _split_component(parts[0], text)
    entry = registry.get("method", name)
    base = Component(entry, entry.resolve(over))
    refiners = []
    for part in parts[1:]:
        rname, rover = _split_component(part, text)
        rentry = registry.get("refiner", rname)
        if rentry.requires_discrete and not entry.discrete:
            raise UserError(f"refiner '{rname}' needs a discrete method (a codebook); '{name}' is continuous")
        refiners.append(Component(rentry, rentry.resolve(rover)))
    return MethodSpec(base, tuple(refiners))


def with_base_options(text: str, options: dict[str, Any]) -> str:
    """`text` with `options` appended to its base method: each option the base method has and `text` leaves
    unset (a grid's `method_options`, e.g. one budget for every row of an ablation, stated once). Methods
    without the option (chance, cca, raw) are left as they are; an unknown method is left to `parse_method`."""
    text = _check_text(text, "method").strip()
    head, plus, tail = text.partition("+")
    name, at, rest = head.partition("@")
    try:
        entry = registry.get("method", name.strip())
        given = parse_overrides(rest, text) if at else {}
    except UserError:
        return text
    add = [f"{k}={_fmt(v)}" for k, v in options.items() if k in entry.options and k not in given]
    if not add:
        return text
    return head.strip() + ("," if at else "@") + ",".join(add) + plus + tail


def at_smoke_scale(text: str) -> str:
    """`text` at the `smoke` scale preset (`--profile smoke`), unless it names its own scale or budget
    (`dcid@epochs=1` stays as written); methods without presets are left as they are."""
    head = _check_text(text, "method").strip().partition("+")[0]
    name, at, rest = head.partition("@")
    try:
        given = parse_overrides(rest, text) if at else {}
    except UserError:
        return text
    return text if {"scale", "epochs"} & set(given) else with_base_options(text, {"scale": "smoke"})


@dataclass(frozen=True)
class TaskSpec:
    component: Component

    @property
    def name(self) -> str:
        return self.component.name

    def canonical(self) -> str:
        return self.component.canonical()

    def resolved(self) -> dict:
        return self.component.resolved()


def parse_task(text: str) -> TaskSpec:
    _check_text(text, "task")
    name, over = _split_component(text.strip(), text)
    entry = registry.get("task", name)
    return TaskSpec(Component(entry, entry.resolve(over)))


def validate_method(method: MethodSpec) -> None:
    """The sizes' bounds, then the implementations' own range checks (epochs >= 1, levels, TOC's lam, ...): run
    before anything is planned."""
    bounds.check_method(method, _preset_settings(method, method.base.cfg) or method.base.cfg)
    method.base.entry.validate(method.base.cfg)
    for refiner in method.refiners:
        refiner.entry.validate(refiner.cfg)


def validate_task(task: TaskSpec) -> None:
    bounds.check_task(task)
    task.component.entry.validate(task.component.cfg)


def check_seeds(seeds: Any, where: str = "--seeds") -> list[int]:
    """Seeds are integers in [0, 2**32 - 1] (bool and float refused: `true` or `1.5` must not become seed 1)."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise UserError(f"{where}: expected a list of integer seeds, got {seeds!r}"[:300])
    out = []
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int):
            try:
                import numpy as np
                ok = isinstance(seed, np.integer)
            except ImportError:  # pragma: no cover
                ok = False
            if not ok:
                raise UserError(f"{where}: seeds must be integers, got {seed!r}"[:300])
        if not 0 <= int(seed) <= MAX_SEED:
            raise UserError(f"{where}: seeds must be in [0, {MAX_SEED}], got {registry.short_int(int(seed))}")
        out.append(int(seed))
    if not out:
        raise UserError(f"{where}: no seeds given")
    top = bounds.limit("seeds", bounds.CLI_BOUNDS)
    if len(out) > top:
        raise UserError(f"{where}: {len(out)} seeds, at most {top} ({bounds.CLI_BOUNDS['seeds'].why})")
    return out


def cell_key(method: MethodSpec, task: TaskSpec, data_fingerprint: str, seed: int) -> str:
    """Cell identity: the method as it runs (+ refiners), task config + version, data, seed, schema.

    A method with a scale preset is identified by its resolved settings, inference-only options included — so
    a change of the preset (e.g. the default budget) gives new keys instead of serving cells computed under the
    old one, and `dcid` and `dcid@epochs=P` (P the preset) are one cell, as they are one pretraining."""
    return stable_hash({"method": method_identity(method), "task": task.resolved(), "data": data_fingerprint,
                        "seed": int(seed), "schema": SCHEMA_VERSION})


def _preset_settings(method: MethodSpec, cfg: dict) -> dict | None:
    """`cfg` of the base method with its scale preset applied (the method class's `settings`), or None for
    entries without presets (their config is their settings). The one place cell and pretraining keys resolve."""
    resolve = getattr(method.base.entry.load(), "settings", None)
    return None if resolve is None else resolve(cfg)


def method_identity(method: MethodSpec) -> dict:
    base = method.base.resolved()
    settings = _preset_settings(method, base["cfg"])
    if settings is not None:
        base = {"name": base["name"], "version": base["version"], "settings": settings}
    return {"method": base, "refiners": [r.resolved() for r in method.refiners]}


def pretrain_settings(method: MethodSpec) -> dict | None:
    """The base method's settings as they will train: its scale preset applied (so `dcid` and `dcid@epochs=P`
    share one pretraining when P is the preset's budget), inference-only options left out. None for entries
    without presets (their config is their settings)."""
    settings = _preset_settings(method, method.pretrain_resolved()["cfg"])
    if settings is None:
        return None
    opts = method.base.entry.options
    return {k: v for k, v in settings.items() if not (k in opts and opts[k].inference_only)}


def pretrain_key(method: MethodSpec, corpus_fingerprint: str, seed: int) -> str:
    """Pretraining identity: entry name + version + the settings it trains with, corpus, seed, schema."""
    settings = pretrain_settings(method)
    resolved = method.pretrain_resolved()
    if settings is not None:       # entries without presets: their config is their settings
        resolved = {"name": resolved["name"], "version": resolved["version"], "settings": settings}
    return stable_hash({"method": resolved, "corpus": corpus_fingerprint, "seed": int(seed), "schema": SCHEMA_VERSION})
