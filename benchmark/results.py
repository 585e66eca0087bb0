"""A cell's result as a typed record: what `runner.compute_cell` builds, `result.json` holds and every reader uses.

`to_json` gives exactly the dict written to `result.json` (the store writes it key-sorted, so the bytes are those
of the plain dicts written before this class existed); `from_json` validates a loaded file and migrates older
layouts — the one place that knows them:

- version 0: a file without `schema_version` (hand-made, or from a foreign tool) that holds at least `method`,
  `task`, `seed` and `metrics`; the fields it lacks take their defaults (`task_name` = the task's name, ...);
- version 1: the current layout (every field below).

In every version a `null` mapping (`diagnostics`, `notes`, ...) reads as an empty one, and a field added later
without changing the meaning of the others (`test_sizes`) takes its default when a file lacks it. Keys a file
holds beyond these are kept in `extra` and written back unchanged.

With `--log-samples` a cell folder also holds `samples.npz`: per direction the arrays its metrics were computed
from, stored as `<direction>/<name>` (`write_samples`, `read_samples`, `CellResult.samples()`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .convergence import diagnose

RESULT_SCHEMA = 1   # the result.json layout; not the key schema of spec.SCHEMA_VERSION (that one is hashed)
REQUIRED = ("method", "task", "seed", "metrics")
ADDED = ("test_sizes",)   # fields added within schema 1: written only when set, so older files round-trip as they are
SAMPLES = "samples.npz"


def finite(value) -> float | None:
    """A finite number as float, else None (bools, strings, NaN and inf are no scores)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


@dataclass
class CellResult:
    method: str                                  # canonical method spec (with refiners)
    task: str                                    # canonical task spec
    seed: int
    metrics: dict[str, dict[str, Any]]           # direction -> metric -> value
    test_sizes: dict[str, dict[str, int]] = field(default_factory=dict)   # direction -> {"clips": N, ...}
    key: str | None = None
    method_base: str = ""
    refiners: list[str] = field(default_factory=list)
    discrete: bool | None = None
    task_name: str = ""
    task_version: int = 0
    data_fingerprint: str | None = None
    world: str | None = None
    pretrain_key: str | None = None
    main_metric: str | None = None
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    schema_version: int = RESULT_SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)      # keys of the file this class does not know
    directory: str | None = field(default=None, compare=False)   # the cell folder it was read from (not written)

    # ------------------------------------------------------------------ disk form
    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("extra", "directory")
               and not (f.name in ADDED and not getattr(self, f.name))}
        return {**self.extra, **out}

    @classmethod
    def from_json(cls, data: Any, directory: str | Path | None = None) -> "CellResult":
        """Validate and migrate a loaded result.json (ValueError naming what is wrong)."""
        if not isinstance(data, dict):
            raise ValueError(f"not a result (a JSON {type(data).__name__}, expected an object)")
        absent = [k for k in REQUIRED if k not in data]
        if absent:
            raise ValueError(f"not a result (no {', '.join(absent)})")
        if not isinstance(data["metrics"], dict) or not all(isinstance(v, dict) for v in data["metrics"].values()):
            raise ValueError("not a result (metrics is not {direction: {metric: value}})")
        if isinstance(data["seed"], bool) or not isinstance(data["seed"], int):
            raise ValueError(f"not a result (seed {data['seed']!r} is not an integer)")
        data = _migrate(dict(data))
        known = {f.name for f in fields(cls)} - {"extra", "directory"}
        values = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**values, extra=extra, directory=str(directory) if directory is not None else None)

    # ------------------------------------------------------------------ reading scores
    def metric_name(self, metric: str | None = None) -> str | None:
        """`metric`, or the task's main metric when None."""
        return metric or self.main_metric

    def score(self, direction: str, metric: str | None = None) -> float | None:
        """One finite score (`metric` None = the main metric), or None when the cell does not report it."""
        return finite((self.metrics.get(direction) or {}).get(self.metric_name(metric)))

    def scores(self) -> list[tuple[str, str, float]]:
        """Every finite (direction, metric, value) in file order: the long format of tables and the Python API."""
        return [(direction, metric, v) for direction, values in self.metrics.items()
                for metric, value in (values or {}).items() if (v := finite(value)) is not None]

    def higher_is_better_for(self, metric: str | None = None) -> bool | None:
        name = self.metric_name(metric)
        return bool(self.higher_is_better[name]) if name in (self.higher_is_better or {}) else None

    @property
    def converged(self) -> bool | None:
        """The pretraining's convergence diagnostic (`benchmark.convergence`, recomputed from the stored loss
        history so every cell is judged by the current rule): True / False, None for training-free methods."""
        training = (self.diagnostics or {}).get("training") or {}
        history = training.get("loss_history")
        if history:
            return diagnose([h.get("total", float("nan")) for h in history])["converged"]
        flag = training.get("converged")
        return None if flag is None else bool(flag)

    @property
    def loss_history(self) -> list[dict]:
        """The pretraining's per-epoch mean losses (`diagnostics.training.loss_history`; [] when untrained)."""
        return list(((self.diagnostics or {}).get("training") or {}).get("loss_history") or [])

    def samples(self) -> dict[str, dict[str, Any]]:
        """The per-sample arrays of `--log-samples`, `{direction: {name: ndarray}}` (see the task's `record`);
        FileNotFoundError when the cell was computed without it."""
        if not self.directory:
            raise FileNotFoundError("this result was not read from a cell folder")
        return read_samples(Path(self.directory) / SAMPLES)

    def sidecar(self, name: str) -> dict | None:
        """A JSON file of the cell's folder (`config.json`, `env.json`); None when absent or unreadable."""
        return read_json(Path(self.directory) / name) if self.directory else None

    @property
    def base(self) -> str:
        """The pretrained method: the canonical spec without refiners."""
        return self.method.split("+")[0]


def _migrate(data: dict) -> dict:
    """Older layouts -> the current one (see the module docstring)."""
    for key in ("higher_is_better", "timings", "diagnostics", "notes") + ADDED:
        if data.get(key) is None:
            data.pop(key, None)          # the field's default: an empty mapping
    version = data.get("schema_version", 0)
    if version == 0:
        task = str(data["task"])
        data.setdefault("task_name", task.partition("@")[0])
        data.setdefault("method_base", str(data["method"]).split("+")[0].partition("@")[0])
        data["schema_version"] = RESULT_SCHEMA
    return data


def write_samples(path: Path, samples: dict[str, dict[str, Any]]) -> None:
    """`{direction: {name: array}}` as one compressed npz (atomically; an empty one when no task recorded any)."""
    import numpy as np

    from .atomic import atomic_open
    flat = {f"{direction}/{name}": np.asarray(value) for direction, arrays in samples.items()
            for name, value in arrays.items()}
    with atomic_open(path) as fh:
        np.savez_compressed(fh, **flat)


def read_samples(path: Path) -> dict[str, dict[str, Any]]:
    import numpy as np
    out: dict[str, dict[str, Any]] = {}
    with np.load(path, allow_pickle=False) as data:
        for name in data.files:
            direction, _, array = name.rpartition("/")
            out.setdefault(direction, {})[array] = data[name]
    return out


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def as_results(items) -> list[CellResult]:
    """CellResults from CellResults or plain result.json dicts (tests, notebooks, foreign tools)."""
    return [r if isinstance(r, CellResult) else CellResult.from_json(r) for r in items]
