"""The one way files are published: write a temp file in the target folder, fsync, `os.replace`.

A reader (or a process killed mid-write) therefore sees the old file or the new one, never half of one. Every
writer of the project goes through here, so temp names, permissions and clean-up are the same everywhere:

- temp name `.<name>.<random>.<pid>.tmp` beside the target (same file system, so the rename is atomic; the PID
  lets `locks.sweep_tmp` remove what a killed writer left behind);
- published files get the mode a plain `open()` would give (0666 minus the umask) — `mkstemp` makes 0600, and
  results, figures and feature files are meant to be shared;
- on any exception the temp file is removed and the target is left as it was.

No project imports here (methods/ and tasks/ use it too, below the harness).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator

_UMASK: int | None = None


def _published_mode() -> int:
    """0666 minus this process's umask (read once: os.umask can only be read by setting it)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_path(path: str | Path, fsync: bool = True) -> Iterator[Path]:
    """A temp path beside `path` for writers that want a file name (h5py, matplotlib); published on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".{os.getpid()}.tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, _published_mode())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", fsync: bool = True) -> Iterator[IO]:
    """An open file whose content replaces `path` when the block ends without an exception
    (`torch.save(state, fh)`, `np.savez(fh, ...)`, `fh.write(text)`)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files (mode 'w' or 'wb'), got {mode!r}")
    with atomic_path(path, fsync=False) as tmp:
        with open(tmp, mode) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """`write(temp_path)` then publish: for library savers that take a path."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_csv(path: str | Path, rows: list[dict]) -> None:
    """Rows of one shape as CSV, the header from the first row's keys."""
    import csv
    import io
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Indented, key-sorted JSON with a final newline (numpy scalars/arrays and paths converted)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj):
    try:
        import numpy as np
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
