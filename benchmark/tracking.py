"""Mirror finished cells into experiment trackers (`--log mlflow`): the store stays the source of truth.

A tracker is a class with `open(options, store_root)` and `log_cell(result, directory)` (a `CellResult` and its
cell folder); `open_trackers` builds them from the run options before any work, so a missing package is one `error:` line, and
`observe(ui, trackers)` logs each outcome in the parent process as the executor reports it (local, pool, Ray and
Slurm alike). TensorBoard or W&B would be one more class and one more name in `TRACKERS`.

MLflow: one run per cell in the experiment `unibench`, found again by its `cell_key` tag, so a cached cell is
logged once; a run whose `result_created` tag is not the cell's `created` (the cell was recomputed, or logging
was interrupted) is deleted and logged anew. Params: the cell's `config.json` flattened (`task.cfg.lr`); metrics:
`<direction>.<metric>` (`metric_name`); the pretraining's per-epoch losses as `pretrain.<loss>` at step = epoch;
artifacts: the files of the cell folder.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Iterable

from .contracts import UserError
from .results import CellResult, finite, read_json
from .store import CONFIG, warn

EXPERIMENT = "unibench"
_INVALID = re.compile(r"[^\w.\- :/]")   # what MLflow refuses in metric and param names
_SPELLED = (("<->", "-and-"), ("->", "-to-"), ("@", "_at_"))


def metric_name(direction: str, metric: str) -> str:
    """`V->A`, `acc` -> `V-to-A.acc`; `V<->T`, `R@1` -> `V-and-T.R_at_1` (MLflow allows no `<`, `>` or `@`)."""
    return ".".join(_clean(part) for part in (direction, metric))


def _clean(text: str) -> str:
    for old, new in _SPELLED:
        text = text.replace(old, new)
    return _INVALID.sub("_", text)


def flatten(config: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts -> `{"a.b.c": "value"}`; lists and scalars as JSON text (`null`, `true`, `[10, 20]`)."""
    if isinstance(config, dict):
        out: dict[str, str] = {}
        for key, value in config.items():
            out.update(flatten(value, f"{prefix}{_clean(str(key))}."))
        return out
    return {prefix[:-1]: config if isinstance(config, str) else json.dumps(config, sort_keys=True)}


def tracking_uri(uri: str) -> str:
    """A path or URI as MLflow takes it; for a local file store also MLflow 3's explicit yes to reading and writing
    one (`MLFLOW_ALLOW_FILE_STORE`, else "filesystem tracking backend ... maintenance mode")."""
    if "://" not in uri or uri.startswith("file:"):
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        if "://" not in uri:
            uri = Path(uri).resolve().as_uri()
    return uri


def mlflow_runs(results: str | Path = "results", uri: str | None = None, **search):
    """The runs `--log mlflow` wrote (`<results>/mlruns`, or `uri`) as MLflow's `search_runs` frame: one row per
    cell, tags `tags.cell_key`, `tags.method`, ..., metrics `metrics.V-to-A.acc`, params `params.task.cfg.lr`."""
    try:
        import mlflow
    except ModuleNotFoundError:
        raise UserError("reading MLflow runs needs MLflow: pip install '.[mlflow]' (mlflow-skinny)") from None
    store = Path(results) / "mlruns"
    if uri is None and not store.is_dir():
        raise UserError(f"{store} does not exist (cells are logged there by `run` / `grid` with `--log mlflow`)")
    mlflow.set_tracking_uri(tracking_uri(uri or str(store)))
    return mlflow.search_runs(experiment_names=[EXPERIMENT], **search)


class MLflowTracker:
    name = "mlflow"

    @classmethod
    def open(cls, options, store_root: str | Path) -> "MLflowTracker":
        return cls(options.mlflow_uri or str(Path(store_root) / "mlruns"))

    def __init__(self, uri: str):
        try:
            from mlflow.tracking import MlflowClient
        except ModuleNotFoundError:
            raise UserError("--log mlflow needs MLflow: pip install '.[mlflow]' (mlflow-skinny)") from None
        self.uri = uri = tracking_uri(uri)
        try:
            self.client = MlflowClient(tracking_uri=uri)
            experiment = self.client.get_experiment_by_name(EXPERIMENT)
            self.experiment = experiment.experiment_id if experiment else self.client.create_experiment(EXPERIMENT)
        except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds for a bad or unreachable URI
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise UserError(f"--mlflow-uri '{uri}' cannot be used: {reason}") from None
        self.logged: dict[str, list] = {}      # cell key -> its runs (read once, then kept up to date)
        token = None
        while True:
            page = self.client.search_runs([self.experiment], max_results=1000, page_token=token)
            for run in page:
                if "cell_key" in run.data.tags:
                    self.logged.setdefault(run.data.tags["cell_key"], []).append(run)
            token = page.token
            if not token:
                break

    def log_cell(self, result: CellResult, directory: Path) -> None:
        from mlflow.entities import Metric, Param, RunTag
        runs = self.logged.get(result.key, [])
        if any(r.data.tags.get("result_created") == result.created for r in runs):
            return
        for run in runs:
            self.client.delete_run(run.info.run_id)
        now = int(time.time() * 1000)
        tags = {"cell_key": result.key, "method": result.method, "task": result.task, "seed": str(result.seed),
                "world": str(result.world), "data_fingerprint": str(result.data_fingerprint),
                "pretrain_key": str(result.pretrain_key)}
        run = self.client.create_run(self.experiment, run_name=f"{result.method} × {result.task} × seed {result.seed}",
                                     tags=tags)
        run_id = run.info.run_id
        metrics = [Metric(metric_name(direction, name), value, now, 0)
                   for direction, values in result.metrics.items() for name, raw in values.items()
                   if (value := finite(raw)) is not None]
        metrics += [Metric(f"pretrain.{_clean(name)}", value, now, epoch)
                    for epoch, losses in enumerate(result.loss_history, 1) for name, raw in losses.items()
                    if (value := finite(raw)) is not None]
        params = [Param(k, v[:6000]) for k, v in flatten(read_json(directory / CONFIG) or {}).items()]
        for chunk in _chunks(params, 100):
            self.client.log_batch(run_id, params=chunk)
        for chunk in _chunks(metrics, 1000):
            self.client.log_batch(run_id, metrics=chunk)
        self.client.log_artifacts(run_id, str(directory))
        self.client.log_batch(run_id, tags=[RunTag("result_created", result.created)])   # marks it complete
        self.client.set_terminated(run_id)
        self.logged[result.key] = [self.client.get_run(run_id)]


TRACKERS = {"mlflow": MLflowTracker}


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def open_trackers(options, store_root: str | Path) -> list:
    """The trackers `options.log` asks for (UserError for an unknown name or a missing package)."""
    for name in options.log:
        if name not in TRACKERS:
            raise UserError(f"--log '{name}': unknown tracker (choose from {', '.join(TRACKERS)})")
    return [TRACKERS[name].open(options, store_root) for name in dict.fromkeys(options.log)]


class Observed:
    """A progress UI that also hands every finished cell to the trackers (a tracker failing warns, the grid goes
    on: the cell itself is safely stored)."""

    def __init__(self, ui, trackers: list, store):
        self.ui, self.trackers, self.store = ui, trackers, store

    def done(self, outcome) -> None:
        self.ui.done(outcome)
        result = outcome.result
        if result is None or not self.trackers:
            return
        directory = Path(result.directory) if result.directory else \
            self.store.cell_dir(result.task, result.method, result.key)
        for tracker in self.trackers:
            try:
                tracker.log_cell(result, directory)
            except Exception as exc:  # noqa: BLE001 - logging must not stop the grid
                warn(f"--log {tracker.name}: {outcome.cell.label} not logged ({type(exc).__name__}: {exc})")

    def __getattr__(self, name):
        return getattr(self.ui, name)
