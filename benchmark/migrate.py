"""Bring an older result store to today's keys, once: the one place that knows keys have changed.

Pretrainings were once keyed by their options as written (`dcid` with `epochs: null`), so the same key stood for
whatever the preset trained at the time (4, 16, 32 epochs). Today a pretraining is keyed by the settings it trains
with. `rekey_pretrainings` moves each finished pretraining of the old kind to the key of what it actually ran — a
`dcid` that trained 16 epochs becomes `dcid@epochs=16`, never today's `dcid` — read from its `meta.json`.

`grid` and `budget` call `migrate` before they run and `gc` calls it always; a marker file (`MARKER`, holding
`VERSION`) makes every later call free, so no run rescans the store. Cells computed under older keys are not
moved here: `gc` moves them out (they are results, not caches).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from . import registry
from . import spec as specs
from .atomic import atomic_write_json
from .contracts import UserError
from .locks import file_lock
from .store import Store

VERSION = 1                       # bump when a new migration step is added
MARKER = "migrated.json"


def read_meta(directory: Path) -> dict | None:
    """A pretraining's `meta.json`, or None when it is missing or not a JSON object."""
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def trained_epochs(meta: dict | None) -> int | None:
    """Epochs a stored pretraining ran (the length of its loss history in `meta.json`), None when unknown. An old
    key hashes the options as written, so `dcid` under a 4- or 16-epoch preset had the same key as under today's:
    only what it ran says which budget it is."""
    try:
        history = meta["diagnostics"]["training"]["loss_history"]
    except (KeyError, TypeError):
        return None
    return len(history) if isinstance(history, list) else None


def current_key(meta: dict) -> str | None:
    """The key a stored pretraining has today (its method at the epochs it trained), None when it cannot be said
    (another card version, an unknown method, a budget left to a preset and no loss history)."""
    entry = registry.get("method", meta["method"]["name"])
    if int(meta["method"]["version"]) != entry.version:
        return None
    cfg = dict(meta["method"]["cfg"])
    if "epochs" in entry.options and cfg.get("epochs") is None:
        cfg["epochs"] = trained_epochs(meta)     # trained under the preset of its day: key it by what it ran
        if cfg["epochs"] is None:
            return None
    method = specs.MethodSpec(specs.Component(entry, entry.resolve(cfg)))
    return specs.pretrain_key(method, meta["corpus"], int(meta["seed"]))


def rekey_pretrainings(store: Store) -> int:
    """Move finished pretrainings to the key of what they ran (idempotent); returns how many moved."""
    moved = 0
    for done in sorted(Path(store.root).glob("pretrain/*/*/complete.json")):
        directory = done.parent
        try:
            key = current_key(read_meta(directory) or {})
        except (ValueError, KeyError, TypeError, UserError):
            continue          # foreign or torn entries are healed where they are used
        target = directory.parent / key if key else None
        if target is not None and key != directory.name and not target.exists():
            with file_lock(directory.parent / f".{directory.name}.lock"):
                os.replace(directory, target)
            moved += 1
    return moved


def migrate(store: Store, force: bool = False) -> int:
    """Run every migration step on `store` unless its marker says this version already did (`force`: run anyway,
    as `gc` does); returns how many entries moved."""
    marker = Path(store.root) / MARKER
    if not force:
        try:
            if json.loads(marker.read_text()).get("version") == VERSION:
                return 0
        except (OSError, ValueError, AttributeError):
            pass
    moved = rekey_pretrainings(store) if (Path(store.root) / "pretrain").is_dir() else 0
    if Path(store.root).is_dir():
        atomic_write_json(marker, {"version": VERSION})
    return moved
