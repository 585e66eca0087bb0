"""Content hashing for keys (cells, pretrainings, resume tags, feature caches): one canonical form everywhere.

Base layer: methods hash their resume tags with it, the harness its cell and pretraining keys, so a key is the
same whichever layer computes it.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any


def stable_hash(obj: Any, n: int = 16) -> str:
    """sha256 of the canonical JSON of `obj` (sorted keys, no whitespace), first n hex digits."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]
