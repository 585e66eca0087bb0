"""Registries of methods, refiners and tasks, discovered from YAML cards beside their code.

Each entry is one `<name>.yaml` in `methods/`, `tasks/` (or `benchmark/builtin/` for the test-only toys), or in
a folder added with `include_path` (`--include-path DIR`, `$UNIBENCH_INCLUDE_PATH`, or an installed plugin's
`unibench.methods` / `unibench.tasks` entry point naming a package whose folder holds its cards):

    include: _codebook      # optional: a base card (path relative to this card's folder, or a base card's name)
    name: dcid
    kind: method            # method | refiner | task
    entry: methods.dcid:DCID   # imported only when the entry is used, so `ls` never imports torch
    version: 1              # bump to invalidate every cached cell of this entry
    discrete: true          # methods only
    datasets: [ave]         # tasks only: the world files it reads (part of the cell key via the fingerprint)
    summary: one line for `ls`
    options:                # every config key with its default (type taken from the default)
      scale: {default: default, choices: [default, paper], help: "widths/epochs preset"}
      only1: {default: false, inference_only: true}   # not part of the pretraining cache key

A card's keys override its base's; `options` merge per option (a local `epochs: {help: ...}` keeps the base's
default) and `scales` per preset value. Files whose name starts with `_` are base cards: included, never
registered. Cards are strict: each kind has a fixed set of keys (`CARD_KEYS`, the `Entry` fields), and any other
key is refused with a did-you-mean — a typo such as `dataset:` would otherwise drop the data from the cell key.
The registry, not the class, is where `name`, `entry`, `datasets`, `needs_pretrained`, presets and facts live:
`Entry.load` sets them on the object. Adding a method or task = adding its `.py` and its `.yaml`.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import math
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

from .contracts import UserError
from .yamlio import load_yaml

ROOT = Path(__file__).resolve().parent.parent
SEARCH_DIRS = {
    "method": [ROOT / "methods", ROOT / "benchmark" / "builtin"],
    "refiner": [ROOT / "methods", ROOT / "benchmark" / "builtin"],
    "task": [ROOT / "tasks", ROOT / "benchmark" / "builtin"],
}
INCLUDE_ENV = "UNIBENCH_INCLUDE_PATH"     # extra card folders, os.pathsep-separated (inherited by worker processes)
ENTRY_POINT_GROUPS = ("unibench.methods", "unibench.tasks")
BASE_PREFIX = "_"                         # `_codebook.yaml`: a base card, only ever included
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
    discrete: bool = True                 # methods: codes (TOC applies) or continuous embeddings
    hidden: bool = False                  # test-only toys, left out of `ls` and `--task all`
    facts: dict = field(default_factory=dict)     # release facts the implementation reads (TOC's Q per task)
    validate_hook: str | None = None      # `validate: module:function`, for entries whose class has none
    scales: dict = field(default_factory=dict)    # methods: {preset: settings} the `scale` option picks from
    only_tasks: tuple[str, ...] | None = None     # methods: the only tasks it runs with (vqvae: toc_recon)
    requires_discrete: bool = True        # refiners: refuse continuous methods
    datasets: tuple[str, ...] = ()        # tasks: the world files `evaluate` opens (in the key via the fingerprint)
    needs_pretrained: bool = True         # tasks: false for tasks that train their own model (toc_recon)
    only_methods: tuple[str, ...] | None = None   # tasks: the only methods it runs with
    in_all: bool = True                   # tasks: part of `--task all`

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
        hook = self.validate_hook
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
        """Import and instantiate the implementation (may import torch); the card's facts are set on it."""
        module_name, _, attr = self.entry.partition(":")
        module = _import(module_name, self.path.parent, f"{self.kind} '{self.name}'")
        obj = getattr(module, attr)()
        obj.name, obj.entry = self.name, self.entry
        obj.facts = dict(self.facts)
        if self.kind == "method":
            obj.discrete = self.discrete
            if self.scales:
                obj.scales = self.scales
            obj.inference_only = tuple(n for n, o in self.options.items() if o.inference_only)
        if self.kind == "task":
            obj.datasets, obj.needs_pretrained = self.datasets, self.needs_pretrained
        return obj


def _import(module_name: str, card_dir: Path, owner: str):
    """Import an entry's module; a card from an include folder may name a module beside it (`mine:Cls`) or the
    package it sits in (`mypkg.mine:Cls` from `mypkg/`), importable once that folder is on sys.path."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        top = module_name.partition(".")[0]
        home = next((d for d in (card_dir, card_dir.parent)
                     if (d / f"{top}.py").is_file() or (d / top / "__init__.py").is_file()), None)
        if exc.name != top or home is None or str(home) in sys.path:
            raise UserError(f"{owner} needs module '{exc.name}' (pip install it)") from exc
    sys.path.append(str(home))
    return importlib.import_module(module_name)


def _suggest(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _read_yaml(path: Path) -> dict:
    try:
        card = load_yaml(path.read_text())
    except OSError as exc:
        raise UserError(f"cannot read card {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"bad YAML in {path}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(card, dict):
        raise UserError(f"{path}: a registry card must be a mapping of keys")
    return card


def _option_spec(spec: Any) -> dict:
    """`lr: 0.1` is shorthand for `lr: {default: 0.1}`."""
    return dict(spec) if isinstance(spec, dict) else {"default": spec}


def _find_base(name: str, card_dir: Path) -> Path:
    """`include:` target: a path relative to the including card's folder, else a base card's name in any
    search folder (`_codebook` finds `methods/_codebook.yaml`, also from a plugin's card)."""
    names = [name] if name.endswith((".yaml", ".yml")) else [name, f"{name}.yaml"]
    candidates = [card_dir / n for n in names]
    if "/" not in name:
        candidates += [d / n for kind in SEARCH_DIRS for d in search_dirs(kind) for n in names]
    for path in candidates:
        if path.is_file():
            return path.resolve()
    raise UserError(f"{card_dir}: include '{name}' not found (a path relative to the card, or a base card's name)")


def _load_card(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """The card with its `include:` chain resolved: base keys first, the card's own keys over them, `options`
    merged option by option (a local option's keys over the base option's)."""
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(p.name for p in (*chain, path))
        raise UserError(f"{chain[0]}: include cycle {cycle}")
    card = _read_yaml(path)
    if not isinstance(card.get("options") or {}, dict):
        raise UserError(f"{path}: 'options' must be a mapping of option name to spec")
    scales = card.get("scales") or {}
    if not isinstance(scales, dict) or not all(isinstance(v, dict) for v in scales.values()):
        raise UserError(f"{path}: 'scales' must map each preset name to a mapping of settings")
    includes = card.pop("include", None) or []
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise UserError(f"{path}: 'include' must be a card name or a list of them")
    merged: dict = {}
    for name in includes:
        base = _load_card(_find_base(name, path.parent), (*chain, path))
        merged = _merge(merged, base)
    return _merge(merged, card)


def _merge(base: dict, local: dict) -> dict:
    out = {**base, **{k: v for k, v in local.items() if k not in ("options", "scales")}}
    if "scales" in base or "scales" in local:     # presets merge value by value: a family overrides single keys
        presets = {k: dict(v) for k, v in (base.get("scales") or {}).items()}
        for preset, values in (local.get("scales") or {}).items():
            presets[preset] = {**presets.get(preset, {}), **values}
        out["scales"] = presets
    if "options" in base or "options" in local:
        options = {k: _option_spec(v) for k, v in (base.get("options") or {}).items()}
        for key, spec in (local.get("options") or {}).items():
            options[key] = {**options.get(key, {}), **_option_spec(spec)}
        out["options"] = options
    return out


_COMMON_KEYS = {"name", "kind", "entry", "version", "summary", "options", "hidden", "facts", "validate"}
CARD_KEYS = {      # every key a card of each kind may have (Entry's fields); anything else is refused with a hint
    "method": _COMMON_KEYS | {"discrete", "scales", "only_tasks"},
    "refiner": _COMMON_KEYS | {"requires_discrete"},
    "task": _COMMON_KEYS | {"datasets", "needs_pretrained", "only_methods", "in_all"},
}


def _parse_card(path: Path) -> Entry:
    card = _load_card(path)
    if "name" not in card or "kind" not in card or "entry" not in card:
        raise UserError(f"{path}: a registry card needs keys 'name', 'kind', 'entry'")
    options = {}
    for key, spec in (card.get("options") or {}).items():
        if "default" not in spec:
            raise UserError(f"{path}: option '{key}' has no default (nor does a base card give one)")
        choices = spec.get("choices")
        options[key] = Option(key, spec["default"], tuple(choices) if choices is not None else None,
                              str(spec.get("help", "")), spec.get("type"), bool(spec.get("inference_only", False)),
                              bool(spec.get("nullable", False)))
    kind = card["kind"]
    known = CARD_KEYS.get(kind)
    if known is None:
        raise UserError(f"{path}: kind must be one of {', '.join(CARD_KEYS)}, got {kind!r}"[:300])
    for key in card:
        if key not in known:
            raise UserError(f"{path}: unknown key '{key}' in a {kind} card{_suggest(key, known)} "
                            f"(known: {', '.join(sorted(known))})")

    def names(key: str) -> tuple[str, ...] | None:
        value = card.get(key)
        return None if value is None else tuple(value if isinstance(value, list) else [value])

    return Entry(name=card["name"], kind=kind, entry=card["entry"], version=int(card.get("version", 1)),
                 summary=str(card.get("summary", "")), path=path, options=options,
                 discrete=bool(card.get("discrete", True)), hidden=bool(card.get("hidden", False)),
                 facts=dict(card.get("facts") or {}), validate_hook=card.get("validate"),
                 scales=card.get("scales") or {}, only_tasks=names("only_tasks"),
                 requires_discrete=bool(card.get("requires_discrete", True)), datasets=names("datasets") or (),
                 needs_pretrained=bool(card.get("needs_pretrained", True)), only_methods=names("only_methods"),
                 in_all=bool(card.get("in_all", True)))


# --------------------------------------------------------------------------- where cards are looked for
def include_paths() -> list[Path]:
    """Card folders beyond the package's: `$UNIBENCH_INCLUDE_PATH` (which `include_path` extends, so spawned
    workers see the same registry), then the folders of installed plugins' entry points."""
    env = [Path(p) for p in os.environ.get(INCLUDE_ENV, "").split(os.pathsep) if p]
    for path in env:
        if not path.is_dir():
            raise UserError(f"${INCLUDE_ENV}: '{path}' is not a directory")
    return list(dict.fromkeys([*env, *_plugin_dirs()]))


@lru_cache(maxsize=1)
def _plugin_dirs() -> tuple[Path, ...]:
    """Folders of the packages named by `unibench.methods` / `unibench.tasks` entry points (not imported)."""
    found = []
    for group in ENTRY_POINT_GROUPS:
        for point in importlib.metadata.entry_points(group=group):
            module = point.value.partition(":")[0]
            try:
                spec = importlib.util.find_spec(module)
            except (ImportError, ValueError):
                spec = None
            if spec is None or not (spec.submodule_search_locations or spec.origin):
                raise UserError(f"plugin entry point '{point.name}' ({group}) names module '{module}', "
                                f"which is not importable")
            found.append(Path(next(iter(spec.submodule_search_locations or []), None)
                              or Path(spec.origin).parent))
    return tuple(found)


def search_dirs(kind: str) -> list[Path]:
    return [*SEARCH_DIRS[kind], *include_paths()]


def add_include_path(dirs: Iterable[str | Path]) -> None:
    """Add card folders for this process and the workers it spawns (`--include-path DIR`, repeatable)."""
    added = []
    for directory in dirs:
        path = Path(directory).expanduser().resolve()
        if not path.is_dir():
            raise UserError(f"--include-path '{directory}' is not a directory")
        added.append(str(path))
    if added:
        current = [p for p in os.environ.get(INCLUDE_ENV, "").split(os.pathsep) if p]
        os.environ[INCLUDE_ENV] = os.pathsep.join(dict.fromkeys([*current, *added]))
        entries.cache_clear()


@contextmanager
def include_path(*dirs: str | Path) -> Iterator[None]:
    """`add_include_path` for a `with` block (tests, notebooks): the registry is as before afterwards."""
    before = os.environ.get(INCLUDE_ENV)
    try:
        add_include_path(dirs)
        yield
    finally:
        if before is None:
            os.environ.pop(INCLUDE_ENV, None)
        else:
            os.environ[INCLUDE_ENV] = before
        entries.cache_clear()


@lru_cache(maxsize=None)
def _entries(kind: str, dirs: tuple[Path, ...]) -> dict[str, Entry]:
    found: dict[str, Entry] = {}
    for directory in dirs:
        for path in sorted(Path(directory).glob("*.yaml")):
            if path.name.startswith(BASE_PREFIX):
                continue
            card = _parse_card(path)
            if card.kind != kind:
                continue
            if card.name in found:
                raise UserError(f"duplicate {kind} '{card.name}' in {path} and {found[card.name].path}")
            found[card.name] = card
    return found


def entries(kind: str) -> dict[str, Entry]:
    """All registered entries of one kind, by name (YAML only: no implementation import)."""
    return _entries(kind, tuple(search_dirs(kind)))


def _cache_clear() -> None:
    """Forget parsed cards and plugin folders (after editing a card, installing a plugin, or in tests)."""
    _entries.cache_clear()
    _plugin_dirs.cache_clear()


entries.cache_clear = _cache_clear   # type: ignore[attr-defined]


def get(kind: str, name: str) -> Entry:
    table = entries(kind)
    if name not in table:
        visible = [n for n, e in table.items() if not e.hidden] or list(table)
        raise UserError(f"unknown {kind} '{name}'{_suggest(name, visible)}")
    return table[name]
