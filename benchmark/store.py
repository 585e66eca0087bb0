"""The result store: one directory per cell, written atomically, safe under concurrent writers.

    <root>/cells/<task-canonical>/<method-canonical>/<key>/{result.json, config.json, env.json}
    <root>/cells/.../<key>/error.json          a failed cell (retried on the next run)
    <root>/pretrain/<method>/<key>/            pretraining cache (model + meta + resumable epoch checkpoints)

A cell counts as present only when `result.json` exists; it is the last file written, via temp + rename, so a
process killed at any moment never leaves a partial result. Writers take an exclusive `fcntl` lock per cell, so two
grid processes on the same store compute each cell exactly once.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

from . import __version__
from .contracts import UserError

RESULT, CONFIG, ENV, ERROR = "result.json", "config.json", "env.json", "error.json"


def _safe(name: str) -> str:
    """A path component from a canonical spec (keeps it readable; '/' cannot occur in specs)."""
    return name.replace(os.sep, "_") or "_"


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
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


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (released by the kernel if the holder dies, e.g. kill -9)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


_ENV_CACHE: dict | None = None


def environment() -> dict:
    """Provenance recorded with every cell: versions, git sha + dirty flag, host."""
    global _ENV_CACHE
    if _ENV_CACHE is None:
        root = Path(__file__).resolve().parent.parent

        def git(*args):
            try:
                return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                      timeout=10).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                return ""
        versions = {}
        for mod in ("torch", "numpy", "h5py", "sklearn", "ot", "pandas"):
            try:
                versions[mod] = __import__(mod).__version__
            except Exception:  # noqa: BLE001 - optional; record absence
                versions[mod] = None
        _ENV_CACHE = {
            "python": platform.python_version(), "platform": platform.platform(), "host": platform.node(),
            "unibench": __version__, "git_sha": git("rev-parse", "HEAD") or None,
            "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")), **versions,
        }
    return dict(_ENV_CACHE)


class Store:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"results path '{self.root}' exists and is not a directory")

    # cells -------------------------------------------------------------------------------------------
    def cell_dir(self, task: str, method: str, key: str) -> Path:
        return self.root / "cells" / _safe(task) / _safe(method) / key

    def load_result(self, task: str, method: str, key: str) -> dict | None:
        path = self.cell_dir(task, method, key) / RESULT
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as exc:  # cannot happen with atomic writes; be loud if it does
            raise UserError(f"corrupt result file {path}: {exc}") from exc

    def write_result(self, cell_dir: Path, result: dict, config: dict, env: dict) -> None:
        """config and env first, result.json last: its presence is what marks the cell complete."""
        atomic_write_json(cell_dir / CONFIG, config)
        atomic_write_json(cell_dir / ENV, env)
        with contextlib.suppress(FileNotFoundError):
            (cell_dir / ERROR).unlink()
        atomic_write_json(cell_dir / RESULT, result)

    def write_error(self, cell_dir: Path, error: dict) -> None:
        atomic_write_json(cell_dir / ERROR, error)

    def lock(self, cell_dir: Path):
        return file_lock(cell_dir.parent / f".{cell_dir.name}.lock")

    def results(self) -> list[dict]:
        """Every complete cell's result dict (with `_dir`), sorted by path for stable output."""
        out = []
        cells = self.root / "cells"
        if not cells.exists():
            return out
        for path in sorted(cells.glob("*/*/*/" + RESULT)):
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise UserError(f"corrupt result file {path}: {exc}") from exc
            data["_dir"] = str(path.parent)
            out.append(data)
        return out

    def errors(self) -> list[dict]:
        out = []
        for path in sorted((self.root / "cells").glob("*/*/*/" + ERROR)):
            if not (path.parent / RESULT).exists():
                data = json.loads(path.read_text())
                data["_dir"] = str(path.parent)
                out.append(data)
        return out

    # pretraining cache -----------------------------------------------------------------------------
    def pretrain_dir(self, method: str, key: str) -> Path:
        return self.root / "pretrain" / _safe(method) / key
