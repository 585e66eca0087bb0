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
import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from . import __version__
from .atomic import atomic_write_json
from .contracts import UserError
from .locks import file_lock, outside, remove_tree, sweep_tmp, try_lock  # noqa: F401 - store.file_lock etc. stay valid
from .notice import _WARNED, WARNED_ENV, forget_warnings, warn  # noqa: F401 - store.warn etc. stay valid
from .results import CellResult

RESULT, CONFIG, ENV, ERROR = "result.json", "config.json", "env.json", "error.json"


MAX_COMPONENT_BYTES = 160   # folder names from specs longer than this are shortened + hashed (limit is 255)


def _safe(name: str) -> str:
    """A path component from a canonical spec (keeps it readable; '/' cannot occur in specs).

    Names up to MAX_COMPONENT_BYTES are kept as they are (the folders of every normal spec); longer ones become
    their first 100 characters + '~' + a hash of the whole, so no spec can exceed the file system's name limit."""
    safe = name.replace(os.sep, "_") or "_"
    if len(safe.encode()) <= MAX_COMPONENT_BYTES:
        return safe
    digest = hashlib.sha256(safe.encode()).hexdigest()[:16]
    return safe.encode()[:100].decode(errors="ignore") + "~" + digest


def torch_threads() -> int | None:
    """torch's intra-op thread count of this process (recorded in config.json / env.json, never hashed)."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


_ENV_CACHE: dict | None = None
VERSIONS = {"torch": "torch", "numpy": "numpy", "h5py": "h5py", "sklearn": "scikit-learn", "ot": "POT",
            "pandas": "pandas"}                     # env.json key -> distribution (read from metadata, not imported)
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")   # what CPU kernels dispatch on
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def environment() -> dict:
    """Provenance recorded with every cell and pretraining (never hashed): versions, git sha + dirty flag, host,
    the hardware and the thread settings it ran with."""
    global _ENV_CACHE
    if _ENV_CACHE is None:
        import importlib.metadata
        root = Path(__file__).resolve().parent.parent

        def git(*args):
            try:
                return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                      timeout=10).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                return ""

        def version(dist):
            try:
                return importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                return None   # optional; record absence
        _ENV_CACHE = {
            "python": platform.python_version(), "platform": platform.platform(), "host": platform.node(),
            "unibench": __version__, "git_sha": git("rev-parse", "HEAD") or None,
            "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            **{key: version(dist) for key, dist in VERSIONS.items()},
        }
    return {**_ENV_CACHE, "torch_threads": torch_threads(),
            "thread_env": {v: os.environ[v] for v in THREAD_VARS if v in os.environ},
            "cpu": cpu_info(), **accelerator_info()}


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict:
    """CPU model, cores (all / usable by this process) and the ISA extensions BLAS and oneDNN kernels pick
    between; `isa` None where /proc/cpuinfo is absent (not Linux)."""
    model, flags = platform.processor() or None, None
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break   # the first processor's block holds both
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model, "cores": os.cpu_count(), "usable_cores": usable,
            "isa": None if flags is None else [f for f in ISA_FLAGS if f in flags]}


_ACCELERATOR: dict | None = None


def accelerator_info() -> dict:
    """CUDA availability, version and GPU names, from the torch already imported (None where torch is not loaded:
    this never imports it)."""
    global _ACCELERATOR
    torch = sys.modules.get("torch")
    if torch is None:
        return {"cuda_available": None}
    if _ACCELERATOR is None:
        available = bool(torch.cuda.is_available())
        _ACCELERATOR = {"cuda_available": available, "cuda_version": torch.version.cuda,
                        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
                        if available else []}
    return dict(_ACCELERATOR)


def read_result(path: Path) -> tuple[CellResult | None, str | None]:
    """(result, None) for a valid result.json, (None, reason) for a missing, unreadable, oversized or foreign one."""
    from . import bounds
    try:
        size, top = path.stat().st_size, bounds.limit("result_bytes", bounds.FILE_BOUNDS)
        if size > top:
            return None, f"{size} bytes, at most {top} ({bounds.FILE_BOUNDS['result_bytes'].why})"
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"unreadable ({type(exc).__name__}: {str(exc)[:120]})"
    try:
        return CellResult.from_json(data, directory=path.parent), None
    except ValueError as exc:
        return None, str(exc)


class Store:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"results path '{self.root}' exists and is not a directory")

    def ensure(self) -> None:
        """Create the store folder (a UserError naming it when that is impossible, e.g. under /proc)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.root, prefix=".write-test.", suffix=f".{os.getpid()}.tmp")
            probe.close()
        except OSError as exc:
            raise UserError(f"--results '{self.root}' cannot be used as a result store: "
                            f"{exc.strerror or type(exc).__name__}") from None

    def sweep(self) -> int:
        """Remove what killed processes left behind: half-generated worlds (`data/.<world>.*.tmp/`, when no one
        holds that world's lock) and feature-cache temp files of dead PIDs. Cell and pretraining folders are swept
        under their own locks when next used. Returns how many entries were removed."""
        removed = 0
        data = self.root / "data"
        try:
            partial = sorted(p for p in data.glob(".*.tmp") if p.is_dir())
        except OSError:
            partial = []
        for path in partial:
            world = path.name[1:].split(".")[0]
            lock = try_lock(data / f".{world}.lock")
            if lock is None:
                continue   # being generated right now
            try:
                with contextlib.suppress(OSError):
                    remove_tree(path)
                removed += 1
            finally:
                lock.close()
        for folder in self.root.glob("features/*/*"):
            removed += sweep_tmp(folder, any_writer=False)
        return removed

    def inside(self, path: Path) -> Path:
        """`path`, after checking that no symbolic link on its way leads out of the store (UserError naming it):
        nothing is written, locked or deleted outside `--results`."""
        link = outside(self.root, path)
        if link is not None:
            raise UserError(f"{link} is a symbolic link out of the store {self.root}; the store never writes, "
                            f"locks or deletes outside itself (remove the link)")
        return path

    # cells -------------------------------------------------------------------------------------------
    def cell_dir(self, task: str, method: str, key: str) -> Path:
        return self.inside(self.root / "cells" / _safe(task) / _safe(method) / key)

    def load_result(self, task: str, method: str, key: str) -> CellResult | None:
        """The cell's result, or None when it is missing; an unreadable or foreign result.json counts as missing
        (with a one-line warning) so the cell is recomputed and the file replaced."""
        path = self.cell_dir(task, method, key) / RESULT
        data, problem = read_result(path)
        if problem:   # resolved, as a pool worker's store path is: it names it as its parent does (one warning)
            warn(f"{path.resolve()}: {problem}; treated as missing (recomputed)")
        return data

    def write_result(self, cell_dir: Path, result: CellResult, config: dict, env: dict) -> None:
        """config and env first, result.json last: its presence is what marks the cell complete."""
        atomic_write_json(cell_dir / CONFIG, config)
        atomic_write_json(cell_dir / ENV, env)
        with contextlib.suppress(FileNotFoundError):
            (cell_dir / ERROR).unlink()
        atomic_write_json(cell_dir / RESULT, result.to_json())

    def write_error(self, cell_dir: Path, error: dict) -> None:
        atomic_write_json(cell_dir / ERROR, error)

    @contextlib.contextmanager
    def lock(self, cell_dir: Path):
        """The cell's lock. When bad input (a UserError) stops the cell before it wrote anything, the lock file
        and the folders made for it are removed again, so a refused run leaves the store as it was."""
        lock_path = cell_dir.parent / f".{cell_dir.name}.lock"
        existed = lock_path.parent.exists()
        try:
            with file_lock(lock_path):
                yield
        except UserError:
            if not cell_dir.exists():
                with contextlib.suppress(OSError):
                    lock_path.unlink()
                if not existed:
                    for folder in (cell_dir.parent, cell_dir.parent.parent, cell_dir.parent.parent.parent):
                        with contextlib.suppress(OSError):
                            folder.rmdir()   # only when empty
            raise

    def results(self) -> list[CellResult]:
        """Every valid cell result (with its `directory`), sorted by path for stable output; unreadable or foreign
        result.json files are skipped with a one-line warning."""
        out = []
        cells = self.root / "cells"
        if not cells.exists():
            return out
        for path in sorted(cells.glob("*/*/*/" + RESULT)):
            link = outside(self.root, path)
            if link is not None:
                warn(f"skipping {path}: {link} is a symbolic link out of the store")
                continue
            data, problem = read_result(path)
            if problem:
                warn(f"skipping {path}: {problem}")
                continue
            out.append(data)
        return out

    def errors(self) -> list[dict]:
        out = []
        for path in sorted((self.root / "cells").glob("*/*/*/" + ERROR)):
            if not (path.parent / RESULT).exists():
                try:
                    data = json.loads(path.read_text())
                except (OSError, UnicodeDecodeError, ValueError):
                    continue
                if isinstance(data, dict):
                    data["_dir"] = str(path.parent)
                    out.append(data)
        return out

    # pretraining cache -----------------------------------------------------------------------------
    def pretrain_dir(self, method: str, key: str) -> Path:
        """The pretraining's folder; it and the `model` and `checkpoints` folders written into it are checked
        for links out of the store."""
        directory = self.root / "pretrain" / _safe(method) / key
        for sub in ("model", "checkpoints"):
            self.inside(directory / sub)
        return directory
