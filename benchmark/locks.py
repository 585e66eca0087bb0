"""File locks, dead writers' temp files and safe removal: the file-system primitives below the store.

Base layer: the store, the pretraining cache, the data layer's world generation and the tasks' feature caches all
lock, sweep and remove with these, so none of them needs the result store to do it. Locks are `fcntl` advisory
locks (the kernel releases them when the holder dies, even on kill -9); lock files are never opened through a
symbolic link, and nothing here follows a link out of the folder it was given.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from pathlib import Path
from typing import Iterator

from .contracts import UserError

# temp names that carry their writer's PID: `.name.<random>.<pid>.tmp` (benchmark.atomic, every writer now);
# stores from before it may also hold `epoch-3.tmp<pid>`, `.model.pt.tmp<pid>`, `features-....npz.<pid>.tmp.npz`
_PID_TMP = re.compile(r"(?:\.tmp(\d+)$)|(?:\.(\d+)\.tmp(?:\.npz)?$)")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:   # EPERM: it exists, owned by someone else
        return True
    return True


def sweep_tmp(*directories: Path, any_writer: bool = True) -> int:
    """Remove temp files left by killed writers in `directories` (not recursive).

    A temp name carrying a PID is removed when that process no longer exists; one without a PID only when
    `any_writer` says the caller holds the lock every writer of these folders takes. Returns how many went."""
    removed = 0
    for directory in directories:
        try:
            entries = list(Path(directory).iterdir())
        except OSError:
            continue
        for path in entries:
            name = path.name
            match = _PID_TMP.search(name)
            if not (match or (name.startswith(".") and name.endswith(".tmp"))):
                continue
            pid = next((int(g) for g in match.groups() if g), None) if match else None
            if pid is not None and (pid == os.getpid() or _pid_alive(pid)):
                continue
            if pid is None and not any_writer:
                continue
            if not path.is_file():
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
    return removed


def _open_lock(path: Path):
    """The lock file opened for append, never through a symbolic link (a planted link would create or lock a
    file anywhere the user can write): a link is a UserError naming it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as exc:
        if path.is_symlink():
            raise UserError(f"lock file {path} is a symbolic link; the store never follows links out of itself "
                            f"(remove it)") from None
        raise exc
    return os.fdopen(fd, "a+")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (released by the kernel if the holder dies, e.g. kill -9)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _open_lock(path) as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def try_lock(path: Path):
    """A non-blocking exclusive lock: the open file (close it to release) or None when someone holds it."""
    try:
        fh = _open_lock(path)
    except (OSError, UserError):
        return None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh


def remove_tree(path: Path) -> None:
    """Delete a folder the store owns; a symbolic link is removed itself, never followed (its target may be
    outside the store). An error names the path (rmtree's own messages do not)."""
    path = Path(path)
    try:
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot remove {path}: {exc.strerror or exc}", str(path)) from None


def outside(root: Path, path: Path) -> Path | None:
    """The first symbolic link on the way from `root` down to `path` that leads out of `root`, else None."""
    root = Path(root)
    real_root = root.resolve()
    current = root
    try:
        parts = Path(path).relative_to(root).parts
    except ValueError:
        return Path(path)
    for part in parts:
        current = current / part
        if current.is_symlink() and not current.resolve().is_relative_to(real_root):
            return current
    return None
