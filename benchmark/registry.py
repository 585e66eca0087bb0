"""Registries of methods, refiners and tasks, discovered from YAML cards beside their code.

Each entry is one `<name>.yaml` in `methods/`, `tasks/` (or `benchmark/builtin/` for the test-only toys):

    name: dcid
    kind: method            # method | refiner | task
    entry: methods.dcid:DCID   # imported only when the entry is used, so `ls` never imports torch
    version: 1              # bump to invalidate every cached cell of this entry
    discrete: true          # methods only
    summary: one line for `ls`
    options:                # every config key with its default (type taken from the default)
      scale: {default: default, choices: [default, paper], help: "widths/epochs preset"}
      only1: {default: false, inference_only: true}   # not part of the pretraining cache key

Adding a method or task = adding its `.py` and its `.yaml`; nothing else is edited.
"""
from __future__ import annotations

import difflib
import importlib
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .contracts import UserError

ROOT = Path(__file__).resolve().parent.parent
SEARCH_DIRS = {
    "method": [ROOT / "methods", ROOT / "benchmark" / "builtin"],
    "refiner": [ROOT / "methods", ROOT / "benchmark" / "builtin"],
    "task": [ROOT / "tasks", ROOT / "benchmark" / "builtin"],
}
_TYPES = {"bool": bool, "int": int, "float": float, "str": str, "list": list, "dict": dict}
MAX_VALUE_CHARS = 200      # longest string / list rendering an option value may have
MAX_LIST_ITEMS = 64
INT_LIMIT = 2**63          # option integers must fit in int64 (|v| < 2**63)


def short_int(value: int) -> str:
    """An integer for a message (str() refuses those beyond Python's 4300-digit limit)."""
    try:
        text = str(value)
    except ValueError:
        return "an integer of more than 4300 digits"
    return text if len(text) <= 24 else f"{text[:12]}... ({len(text)} digits)"


def _check_scalar(value: Any, where: str) -> None:
    """Bounds every override value obeys, whatever its option's type: int64 ints, finite floats, short strings."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if not -INT_LIMIT < value < INT_LIMIT:
            raise UserError(f"{where}: integer {short_int(value)} is out of range (|value| < 2**63)")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise UserError(f"{where}: expected a finite number, got {value!r}")
    elif isinstance(value, str):
        if len(value) > MAX_VALUE_CHARS:
            raise UserError(f"{where}: value is {len(value)} characters long (at most {MAX_VALUE_CHARS})")
    elif isinstance(value, (list, tuple)):
        if len(value) > MAX_LIST_ITEMS:
            raise UserError(f"{where}: list has {len(value)} items (at most {MAX_LIST_ITEMS})")
        for item in value:
            if isinstance(item, (list, tuple, dict)):
                raise UserError(f"{where}: nested lists are not supported, got {item!r}"[:300])
            _check_scalar(item, where)
    elif isinstance(value, dict):
        raise UserError(f"{where}: mappings are not supported as option values")


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    choices: tuple | None = None
    help: str = ""
    type: str | None = None  # explicit type name; else inferred from default (None default = any)
    inference_only: bool = False  # changes how a trained model is used, not the training (kept out of pretrain keys)
    nullable: bool = False        # `null` is accepted (always true when the default is null)

    def coerce(self, value: Any, owner: str) -> Any:
        """Check one override value against the option, converting int->float where harmless."""
        _check_scalar(value, f"{owner}: option '{self.name}'")
        if self.choices is not None and value not in self.choices:
            raise UserError(f"{owner}: option '{self.name}' must be one of {list(self.choices)}, got {value!r}")
        tname = self.type or (type(self.default).__name__ if self.default is not None else None)
        if value is None:
            if self.default is None or self.nullable or (self.choices is not None and None in self.choices):
                return value
            raise UserError(f"{owner}: option '{self.name}' cannot be null (expects {tname or 'a value'}, "
                            f"default {self.default!r})")
        if tname is None:
            return value
        want = _TYPES.get(tname)
        if want is None:
            return value
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if want is int and isinstance(value, bool):
            raise UserError(f"{owner}: option '{self.name}' expects int, got {value!r}")
        if want is list and isinstance(value, tuple):
            return list(value)
        if not isinstance(value, want):
            raise UserError(f"{owner}: option '{self.name}' expects {tname}, got {value!r}")
        return value


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    entry: str
    version: int
    summary: str
    path: Path
    options: dict[str, Option] = field(default_factory=dict)
    discrete: bool = True
    hidden: bool = False
    extra: dict = field(default_factory=dict)

    def defaults(self) -> dict[str, Any]:
        return {k: o.default for k, o in self.options.items()}

    def resolve(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """Defaults merged with validated overrides; unknown keys are a UserError with a suggestion."""
        cfg = self.defaults()
        for key, value in overrides.items():
            if key not in self.options:
                hint = _suggest(key, self.options)
                raise UserError(f"unknown option '{key}' for {self.kind} '{self.name}'{hint}; "
                                f"known: {', '.join(sorted(self.options)) or '(none)'}")
            cfg[key] = self.options[key].coerce(value, f"{self.kind} '{self.name}'")
        return cfg

    def validate(self, cfg: dict[str, Any]) -> None:
        """Range checks beyond the types: the implementation's `validate(cfg)` (or the card's `validate:
        module:function` hook, for entries whose class has none). Anything but a UserError becomes one."""
        hook = self.extra.get("validate")
        try:
            if hook:
                module_name, _, attr = str(hook).partition(":")
                fn = getattr(importlib.import_module(module_name), attr)
            else:
                fn = getattr(self.load(), "validate", None)
            if fn is not None:
                fn(cfg)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - a validator tripping over a value is still a bad value
            raise UserError(f"{self.kind} '{self.name}': invalid options ({type(exc).__name__}: {exc})"[:500]) \
                from None

    def load(self):
        """Import and instantiate the implementation (may import torch)."""
        module_name, _, attr = self.entry.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # an optional dependency is missing: say which
            raise UserError(f"{self.kind} '{self.name}' needs module '{exc.name}' (pip install it)") from exc
        obj = getattr(module, attr)()
        obj.name = self.name
        return obj


def _suggest(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _parse_card(path: Path) -> Entry:
    try:
        card = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"bad YAML in {path}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(card, dict) or "name" not in card or "kind" not in card or "entry" not in card:
        raise UserError(f"{path}: a registry card needs keys 'name', 'kind', 'entry'")
    options = {}
    for key, spec in (card.get("options") or {}).items():
        if not isinstance(spec, dict) or "default" not in spec:
            spec = {"default": spec}
        choices = spec.get("choices")
        options[key] = Option(key, spec["default"], tuple(choices) if choices is not None else None,
                              str(spec.get("help", "")), spec.get("type"), bool(spec.get("inference_only", False)),
                              bool(spec.get("nullable", False)))
    known = {"name", "kind", "entry", "version", "summary", "options", "discrete", "hidden"}
    return Entry(name=card["name"], kind=card["kind"], entry=card["entry"], version=int(card.get("version", 1)),
                 summary=str(card.get("summary", "")), path=path, options=options,
                 discrete=bool(card.get("discrete", True)), hidden=bool(card.get("hidden", False)),
                 extra={k: v for k, v in card.items() if k not in known})


@lru_cache(maxsize=None)
def entries(kind: str) -> dict[str, Entry]:
    """All registered entries of one kind, by name (YAML only: no implementation import)."""
    found: dict[str, Entry] = {}
    for directory in SEARCH_DIRS[kind]:
        for path in sorted(directory.glob("*.yaml")):
            card = _parse_card(path)
            if card.kind != kind:
                continue
            if card.name in found:
                raise UserError(f"duplicate {kind} '{card.name}' in {path} and {found[card.name].path}")
            found[card.name] = card
    return found


def get(kind: str, name: str) -> Entry:
    table = entries(kind)
    if name not in table:
        visible = [n for n, e in table.items() if not e.hidden] or list(table)
        raise UserError(f"unknown {kind} '{name}'{_suggest(name, visible)}")
    return table[name]
