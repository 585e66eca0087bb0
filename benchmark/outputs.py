"""Output targets (`--out DIR`, `--out FILE`, `--json FILE`, `--name STEM`) checked before any work.

A command that trains for an hour and then cannot write its table has wasted the hour; one that takes a name
with a `/` writes wherever the name points. Each check raises a one-line UserError naming the option, and
creates nothing (it only sweeps dead writers' temp files): a folder that does not exist yet is fine when its nearest existing ancestor is a writable
folder (the command makes it when it writes).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .contracts import UserError

STEM = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")


def check_stem(name: str, flag: str) -> str:
    """A plain file stem: letters, digits, '_', '-', '.', no path separator, not '.' or '..'."""
    if not isinstance(name, str) or not STEM.match(name) or name in (".", ".."):
        raise UserError(f"{flag} {name!r} must be a plain file name (letters, digits, '_', '-' or '.'; it names "
                        f"files written under --out)"[:300])
    return name


def _writable_ancestor(path: Path, flag: str) -> None:
    ancestor = path
    while not ancestor.exists():
        if ancestor.is_symlink():
            raise UserError(f"{flag} '{path}': {ancestor} is a dangling symbolic link")
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{flag} '{path}': {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"{flag} '{path}': {ancestor} is not writable")


def check_dir(path: str | Path, flag: str) -> Path:
    """A folder the command may write into: an existing writable folder, or one it can create. Temp files that
    killed writers left in it (`.t1.md.<random>.<pid>.tmp` of a dead PID) are swept."""
    from .store import sweep_tmp
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} '{path}' exists and is not a directory")
    _writable_ancestor(path, flag)
    sweep_tmp(path, any_writer=False)
    return path


def check_file(path: str | Path, flag: str) -> Path:
    """A file the command may write (replace): not a folder, in a folder that is or can be made writable."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} '{path}' is a directory (expected a file name)")
    if path.name in ("", ".", ".."):
        raise UserError(f"{flag} '{path}' names no file")
    _writable_ancestor(path.parent, flag)
    return path
