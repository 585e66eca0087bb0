"""YAML as the project reads it (cards, grids, spec values, generator knobs): the safe subset, floats also in
exponent form without a dot (`3e-1`, `1e-3`), which YAML 1.1 reads as strings but users write as floats.

Base layer: the registry, the spec grammar and the size bounds (which the data layer uses for generator knobs)
all parse through here, so a value reads the same wherever it is written.
"""
from __future__ import annotations

import re
from typing import Any

import yaml


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):   # type: ignore[misc]
    """The safe loader (libyaml's C parser when PyYAML has it), with exponent floats."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
                              list("-+0123456789."))


def load_yaml(text: str):
    """yaml.safe_load through libyaml's C parser when PyYAML has it (much faster, and every CLI start reads every
    card and grid), the pure-Python one otherwise; both accept the same safe subset (+ exponent floats)."""
    return yaml.load(text, Loader=_Loader)


def parse_value(text: str) -> Any:
    """An override value as YAML reads it, with floats in exponent form (`3e-1`) read as floats; text that is no
    YAML scalar or list stays text."""
    try:
        value = load_yaml(text)
    except (yaml.YAMLError, ValueError):  # ValueError: e.g. an integer beyond Python's digit limit
        return text
    return text if isinstance(value, (dict,)) else value


def parse_number(text: str) -> int | float | None:
    """`text` as an int or a float (YAML forms, `1e3`, `3e-1`), None when it is not a number."""
    value = parse_value(text.strip())
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
