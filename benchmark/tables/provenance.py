"""Provenance and writing: the `<name>.meta.json` sidecar (every contributing cell, the code version that
produced it) and the atomic writes of the requested formats."""
from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from ..atomic import atomic_write_json, atomic_write_text
from ..contracts import UserError
from ..results import read_json
from .build import BuiltTable
from .render import SUFFIX, to_latex, to_long_csv, to_markdown
from .text import caption


def _git_now() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parents[2],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def meta(bt: BuiltTable) -> dict:
    """Sidecar naming every contributing cell and the code version(s) that produced them."""
    shas, dirty = set(), False
    for r in bt.used.values():
        env = r.sidecar("env.json")
        if env and env.get("git_sha"):
            shas.add(env["git_sha"])
            dirty |= bool(env.get("git_dirty"))
    source = "results env.json" if shas else "git rev-parse (no sha in the results)"
    if not shas and (now := _git_now()):
        shas.add(now)
    return {
        "table": bt.spec.name, "title": bt.spec.title, "grid": bt.spec.path, "world": bt.index.world,
        "seeds": bt.seeds, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_sha": sorted(shas)[0] if len(shas) == 1 else sorted(shas) or None, "git_dirty": dirty,
        "git_sha_source": source, "caption": caption(bt),
        "cells": sorted(({"key": k, "method": r.method, "task": r.task, "seed": r.seed,
                          "dir": r.directory} for k, r in bt.used.items()),
                        key=lambda c: (c["task"], c["method"], c["seed"])),
        "missing": bt.missing, "duplicates": bt.index.duplicates, "warnings": bt.warnings,
    }


RENDER = {"csv": to_long_csv, "latex": to_latex, "md": to_markdown}


def write(bt: BuiltTable, formats: Iterable[str], out_dir: str | Path) -> list[Path]:
    """Write the requested file formats plus `<name>.meta.json`, each atomically. Returns the paths."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' exists and is not a directory")
    paths = []
    for fmt in formats:
        if fmt in RENDER:
            path = out / f"{bt.spec.name}{SUFFIX[fmt]}"
            atomic_write_text(path, RENDER[fmt](bt))
            paths.append(path)
    if paths:
        path = out / f"{bt.spec.name}.meta.json"
        sidecar = meta(bt)
        if _changed_besides_created(read_json(path), sidecar):   # an unchanged sidecar keeps its bytes (git stays
            atomic_write_json(path, sidecar)                        # clean) when no number, cell or sha moved
        paths.append(path)
    return paths


def _without_created(d: dict) -> dict:
    return json.loads(json.dumps({k: v for k, v in d.items() if k != "created"}, sort_keys=True, default=str))


def _changed_besides_created(old: dict | None, new: dict) -> bool:
    return old is None or _without_created(old) != _without_created(new)
