"""Distributed executors for users who outgrow one machine: Ray and Slurm (through submitit).

Both run exactly the cells `local` runs, through the same `runner._pool_worker` (specs travel as canonical
strings, the store is shared storage), so keys and numbers are identical. Scheduling is two-phase: one cell per
distinct pretraining first (that is the expensive node), then every dependent cell, which finds its model in
the pretraining cache. The engines are optional extras: `pip install .[ray]` / `pip install .[slurm]`.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from . import runner
from .contracts import UserError


def die_with_parent(parent_pid: int, poll_s: float = 0.5) -> None:
    """Pool-worker initializer: the worker exits when its parent does (even after kill -9 of the parent), so a
    killed grid never leaves orphans computing cells (and, once they are gone, the resource tracker exits too).

    Linux: the kernel sends SIGKILL on the parent's death (prctl PR_SET_PDEATHSIG); everywhere: a daemon thread
    that polls the parent PID and exits the process when it changed."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)   # PR_SET_PDEATHSIG = 1
        except Exception:  # noqa: BLE001 - the watch thread below still covers it
            pass
    if os.getppid() != parent_pid:   # the parent died before the prctl above took effect
        os._exit(1)

    def watch():
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent_pid:
                os._exit(1)
    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def run(kind: str, cells: list, store, options, args, ui) -> list:
    done, cells = runner.answer_cached(cells, store, options, ui)
    if not cells:
        return done
    if kind == "ray":
        return done + run_ray(cells, store, options, args, ui)
    if kind == "slurm":
        return done + run_slurm(cells, store, options, args, ui)
    raise UserError(f"unknown executor '{kind}'")


def run_ray(cells, store, options, args, ui) -> list:
    try:
        import ray
    except ModuleNotFoundError:
        raise UserError("--executor ray needs Ray: pip install '.[ray]'") from None
    started = False
    if not ray.is_initialized():
        kwargs = {"address": args.address} if getattr(args, "address", None) else {
            "num_cpus": max(1, args.workers), "include_dashboard": False}
        ray.init(log_to_driver=False, **kwargs)
        started = True
    gpus = 1 if options.device.startswith("cuda") else 0
    remote = ray.remote(num_cpus=1, num_gpus=gpus)(runner._pool_worker)
    outcomes = []
    try:
        for phase in runner.phases(cells):
            futures = {remote.remote(runner.worker_payload(c, store, options, 1)): c for c in phase}
            pending = list(futures)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                cell = futures[done[0]]
                try:
                    outcome = runner.outcome_of(cell, ray.get(done[0]))
                except Exception as exc:  # noqa: BLE001 - a crashed task is a failed cell
                    outcome = runner.Outcome(cell, "failed", error=f"ray task failed: {exc}")
                ui.done(outcome)
                outcomes.append(outcome)
    finally:
        if started:
            ray.shutdown()
    return outcomes


def run_slurm(cells, store, options, args, ui) -> list:
    try:
        import submitit
    except ModuleNotFoundError:
        raise UserError("--executor slurm needs submitit: pip install '.[slurm]'") from None
    folder = Path(store.root) / "slurm" / "%j"
    cluster = getattr(args, "slurm_cluster", None)  # None = auto-detect; "debug"/"local" for tests
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = {"timeout_min": getattr(args, "slurm_time", 60), "cpus_per_task": 2}
    if executor.cluster == "slurm":
        if getattr(args, "slurm_partition", None):
            params["slurm_partition"] = args.slurm_partition
        params["gpus_per_node"] = getattr(args, "slurm_gpus", 0)
        params["slurm_array_parallelism"] = max(1, args.workers)
    executor.update_parameters(**params)
    outcomes = []
    for phase in runner.phases(cells):
        if not phase:
            continue
        jobs = executor.map_array(runner._pool_worker, [runner.worker_payload(c, store, options, 2) for c in phase])
        for cell, job in zip(phase, jobs):
            try:
                outcome = runner.outcome_of(cell, job.result())
            except Exception as exc:  # noqa: BLE001
                outcome = runner.Outcome(cell, "failed", error=f"slurm job failed: {exc}")
            ui.done(outcome)
            outcomes.append(outcome)
    return outcomes
