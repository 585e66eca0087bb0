"""One `warning: ...` line on stderr, once per message: the counterpart of `UserError` for what does not stop a run.

Base layer, so a task, a method's trainer or the data layer warns without importing the result store or the
terminal display.
"""
from __future__ import annotations

import hashlib
import os
import sys

_WARNED: set[str] = set()
WARNED_ENV = "UNIBENCH_WARNED"   # digests of the warnings printed so far, inherited by the workers a run spawns
MAX_WARNED_ENV = 512
_CONSOLE = []                    # the rich console, made on the first warning


def warn(message: str) -> None:
    """One `warning: ...` line on stderr, once per message in this process and the workers it spawns after
    printing it (a pool worker re-checking a corrupt result must not repeat the parent's warning)."""
    digest = hashlib.sha256(message.encode()).hexdigest()[:12]
    inherited = os.environ.get(WARNED_ENV, "").split(",")
    if message in _WARNED or digest in inherited:
        return
    _WARNED.add(message)
    os.environ[WARNED_ENV] = ",".join([*inherited[-MAX_WARNED_ENV:], digest]).strip(",")
    try:
        from rich.console import Console
        from rich.text import Text
        if not _CONSOLE:
            _CONSOLE.append(Console(stderr=True))
        _CONSOLE[0].print(Text.assemble(("warning", "yellow"), f" {message}"), soft_wrap=True, highlight=False)
    except Exception:  # noqa: BLE001 - a warning must never fail the caller
        sys.stderr.write(f"warning: {message}\n")


def forget_warnings() -> None:
    """Print every warning again (tests that run the CLI several times in one process)."""
    _WARNED.clear()
    os.environ.pop(WARNED_ENV, None)
