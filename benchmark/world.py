"""Which feature files a run reads: a synthetic profile (generated once, cached) or a user's folder.

Kept apart from the runner so that planning, executors and the budget study share one notion of "the world" and
a worker process can rebuild it from plain values (`WorldChoice.payload`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import spec as specs
from .contracts import UserError
from .locks import outside


@dataclass(frozen=True)
class WorldChoice:
    """Which feature files a run uses: a synthetic profile (generated once, cached) or a user directory."""

    profile: str | None = "default"
    data: str | None = None
    world_seed: int = 0
    cache_root: str = "results/data"

    @property
    def label(self) -> str:
        return f"data:{self.data}" if self.data else f"{self.profile}-s{self.world_seed}"

    def open(self, generate: bool = True, progress=None):
        from tasks.data import ensure_world, open_world  # heavy-ish; only when a world is needed
        if self.data:
            root = Path(self.data)
            if not root.is_dir():
                raise UserError(f"--data '{self.data}' is not a directory (expected a folder of native .h5 files)")
            return open_world(root, scan_cache=Path(self.cache_root) / ".scanned", progress=progress)
        root = Path(self.cache_root) / f"{self.profile}-s{self.world_seed}"
        if not generate and (not (root / ".complete").exists() or outside(Path(self.cache_root), root)):
            return None      # not generated yet (a world linked out of the store is replaced when generated)
        return open_world(ensure_world(self.profile, self.world_seed, self.cache_root, progress=progress),
                          scan_cache=Path(self.cache_root) / ".scanned", progress=progress)

    def payload(self) -> dict:
        """Plain values with absolute paths (`WorldChoice(**payload)` in a worker whose cwd may differ)."""
        return {"profile": self.profile, "data": str(Path(self.data).resolve()) if self.data else None,
                "world_seed": self.world_seed, "cache_root": str(Path(self.cache_root).resolve())}


class NoWorld:
    """Stand-in world for grids whose tasks read no feature files (toc_recon): nothing to generate."""

    root = None

    def open(self, name):
        raise UserError(f"this run reads no feature files, yet '{name}' was requested")

    def fingerprint(self, names) -> str:
        if list(names):
            raise UserError("this run reads no feature files")
        return specs.stable_hash("no-data")

    def corpus(self):
        raise UserError("this run has no pretraining corpus")


def task_datasets(task: specs.TaskSpec) -> tuple[tuple[str, ...], bool]:
    """(datasets the task reads, whether it needs a pretrained model), as its card states them."""
    entry = task.component.entry
    return entry.datasets, entry.needs_pretrained


def needs_world(cells) -> bool:
    """Whether any cell reads a feature file (else `NoWorld` serves and nothing is generated)."""
    for cell in cells:
        datasets, needs_pretrained = task_datasets(cell.task)
        if datasets or needs_pretrained:
            return True
    return False
