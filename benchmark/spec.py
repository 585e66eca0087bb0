"""Spec grammar and canonical, hashable configs.

    method spec := base ['@' overrides] ('+' refiner ['@' overrides])*
    task spec   := name ['@' overrides]
    overrides   := key '=' value (',' key '=' value)*      value parsed as a YAML scalar

`dcid@quantizer=rvq,levels=3+toc@q=128` -> base dcid with two overrides, refined by toc with q=128.
Everything is resolved against the registry defaults *before* hashing, so two spellings of one config
(`dcid` and `dcid@quantizer=vq`) share one cache entry.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

from . import registry
from .contracts import UserError

SCHEMA_VERSION = 1
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def stable_hash(obj: Any, n: int = 16) -> str:
    """sha256 of the canonical JSON of `obj` (sorted keys, no whitespace), first n hex digits."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _parse_value(text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return text if isinstance(value, (dict,)) else value


def parse_overrides(text: str, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if text == "":
        raise UserError(f"malformed spec '{where}': empty override list after '@'")
    for part in text.split(","):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key or not _NAME.match(key):
            raise UserError(f"malformed spec '{where}': expected key=value, got '{part}'")
        if key in out:
            raise UserError(f"malformed spec '{where}': key '{key}' given twice")
        out[key] = _parse_value(value.strip())
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
        return "[" + ";".join(_fmt(v) for v in value) + "]"
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
    text = text.strip()
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
        if rentry.extra.get("requires_discrete", True) and not entry.discrete:
            raise UserError(f"refiner '{rname}' needs a discrete method (a codebook); '{name}' is continuous")
        refiners.append(Component(rentry, rentry.resolve(rover)))
    return MethodSpec(base, tuple(refiners))


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
    name, over = _split_component(text.strip(), text)
    entry = registry.get("task", name)
    return TaskSpec(Component(entry, entry.resolve(over)))


def cell_key(method: MethodSpec, task: TaskSpec, data_fingerprint: str, seed: int) -> str:
    """Cell identity: resolved method + refiners, task config + version, data, seed, schema."""
    return stable_hash({"method": method.resolved(), "task": task.resolved(), "data": data_fingerprint,
                        "seed": int(seed), "schema": SCHEMA_VERSION})


def pretrain_key(method: MethodSpec, corpus_fingerprint: str, seed: int) -> str:
    return stable_hash({"method": method.pretrain_resolved(), "corpus": corpus_fingerprint, "seed": int(seed),
                        "schema": SCHEMA_VERSION})
