"""Running many cells: in this process (`local`), in a pool of processes on this machine (`pool`), on Ray or on
Slurm (through submitit).

Every executor runs exactly the cells `local` runs, through `runner.execute_cell` (specs travel as canonical
strings, paths absolute), so keys and numbers are identical. Scheduling is two-phase: one cell per distinct
pretraining first (that is the expensive node), then every dependent cell, which finds its model in the
pretraining cache. Ray and Slurm are optional extras: `pip install .[ray]` / `pip install .[slurm]`.

The pool is hand-written rather than `concurrent.futures` (or loky, whose executor likewise breaks as a whole
when one worker dies): one pipe per worker tells the parent which cell a dead worker held, so a worker killed by
the OOM killer costs that cell alone (recorded failed, the worker replaced, the grid goes on); the same pipe
carries each worker's progress events (pretraining epochs) to the parent's display; and Ctrl-C ends the run at
once — workers ignore SIGINT and are terminated by the parent — instead of waiting for queued work.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable, Iterator

from . import runner
from . import spec as specs
from .contracts import UserError
from .pretraining import pending
from .store import Store
from .world import NoWorld, WorldChoice, needs_world


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run: the workers are gone and every finished cell is kept; the message counts them."""


def die_with_parent(parent_pid: int, poll_s: float = 0.5) -> None:
    """Pool-worker start: the worker exits when its parent does (even after kill -9 of the parent), so a killed
    grid never leaves orphans computing cells (and, once they are gone, the resource tracker exits too).

    Linux: the kernel sends SIGKILL on the parent's death (prctl PR_SET_PDEATHSIG); everywhere: a daemon thread
    that polls the parent PID and exits the process when it changed."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
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


def worker_threads(threads: int) -> None:
    """First thing a job does in a worker: its intra-op thread count (OpenMP too)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    runner.set_threads(threads)


def death_reason(exitcode: int | None) -> str:
    """Why a worker vanished, in words a user can act on (SIGKILL is what the kernel's OOM killer sends)."""
    if exitcode is None or exitcode >= 0:
        return f"worker exited unexpectedly (exit code {exitcode})"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    hint = " (likely out of memory: the kernel's OOM killer sends SIGKILL)" if -exitcode == signal.SIGKILL else ""
    return f"worker killed by {name}{hint}"


# --------------------------------------------------------------------------- the pool
def _worker_main(conn, parent_pid: int) -> None:
    """A pool worker: run (fn, payload) jobs from the pipe, answering each with one ("done", status, value)
    message after any number of ("event", kind, info) messages."""
    die_with_parent(parent_pid)

    def emit(kind: str, **info) -> None:
        conn.send(("event", kind, info))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        fn, payload = job
        try:
            conn.send(("done", "ok", fn(payload, emit)))
        except UserError as exc:
            conn.send(("done", "user", str(exc)))
        except Exception as exc:  # noqa: BLE001 - reported to the parent as this job's failure
            conn.send(("done", "error", f"{type(exc).__name__}: {exc}"))


class _Worker:
    count = 0

    def __init__(self, process, conn):
        self.process, self.conn = process, conn
        _Worker.count += 1
        self.slot = _Worker.count        # names the worker in progress events (a replacement gets a new one)


class Pool:
    """`workers` spawned processes that survive each other: `map` yields every job's answer, a dead worker's job
    as status "died" (the worker is replaced); leaving the `with` block terminates the workers at once."""

    def __init__(self, workers: int, events: Callable[[int, str, dict], None] | None = None):
        self.size = workers
        self.events = events or (lambda slot, kind, info: None)
        self.idle: list[_Worker] = []
        self.busy: dict[_Worker, int] = {}

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        self.close(graceful=kind is None)
        return False

    def _spawn(self) -> _Worker:
        context = mp.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(target=_worker_main, args=(child, os.getpid()), daemon=True)
        with _sigint_ignored():     # inherited: a worker never sees Ctrl-C, the parent ends it
            process.start()
        child.close()
        return _Worker(process, parent)

    def _submit(self, fn, payload) -> _Worker:
        while True:
            worker = self.idle.pop() if self.idle else self._spawn()
            try:
                worker.conn.send((fn, payload))
                return worker
            except OSError:        # it died while idle: replace it
                self._discard(worker)

    def map(self, fn: Callable[[Any, Callable], Any], payloads: list,
            on_start: Callable[[int], None] | None = None) -> Iterator[tuple[int, str, Any]]:
        """(index, status, value) per payload as each finishes: ok (value = fn's result), user (a UserError's
        message), error (an exception outside the job's own handling) or died (value = `death_reason`)."""
        queue = deque(enumerate(payloads))
        while queue or self.busy:
            while queue and len(self.busy) < self.size:
                index, payload = queue.popleft()
                self.busy[self._submit(fn, payload)] = index
                if on_start:
                    on_start(index)
            wait([w.conn for w in self.busy] + [w.process.sentinel for w in self.busy], timeout=1.0)
            for worker in list(self.busy):
                answer = self._drain(worker)
                if answer is None and worker.process.is_alive():
                    continue
                index = self.busy.pop(worker)
                if answer is None:     # dead: a message sent just before dying still counts
                    answer = self._drain(worker) or ("died", death_reason(worker.process.exitcode))
                if answer[0] == "died":
                    self.events(worker.slot, "gone", {})
                    self._discard(worker)
                else:
                    self.idle.append(worker)
                yield (index, *answer)

    def _drain(self, worker: _Worker) -> tuple[str, Any] | None:
        """Forward the worker's pending events; its job's answer when it has sent one."""
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                if message[0] == "event":
                    self.events(worker.slot, message[1], message[2])
                else:
                    return message[1], message[2]
        except (EOFError, OSError):   # the pipe closed: the worker is dead (or dying)
            pass
        return None

    def _discard(self, worker: _Worker) -> None:
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(1)
        worker.conn.close()

    def close(self, graceful: bool = True) -> None:
        """Stop every worker: idle ones are told to exit after a normal end; otherwise (an error, Ctrl-C) all are
        terminated at once, killed if still there after a second — queued jobs are dropped, finished ones kept."""
        workers = self.idle + list(self.busy)
        self.idle, self.busy = [], {}
        with _sigint_ignored():       # a second Ctrl-C must not interrupt the cleanup
            for worker in workers:
                try:
                    if graceful:
                        worker.conn.send(None)
                    else:
                        worker.process.terminate()
                except OSError:
                    pass
            deadline = time.monotonic() + (2.0 if graceful else 1.0)
            for worker in workers:
                worker.process.join(max(0.0, deadline - time.monotonic()))
            for worker in workers:
                if worker.process.is_alive():
                    worker.process.kill()
                    worker.process.join(1)
                worker.conn.close()


class _sigint_ignored:
    """SIGINT ignored inside the block (main thread only; elsewhere signal handlers cannot be changed)."""

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, signal.SIG_IGN)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


# --------------------------------------------------------------------------- cells as jobs
_WORLDS: dict[tuple, Any] = {}   # a worker opens each world once, not once per cell


def open_world(payload: dict | None):
    """The world a payload names, opened once per process (None: the run reads no feature files)."""
    if payload is None:
        return NoWorld()
    ident = tuple(sorted(payload.items()))
    if ident not in _WORLDS:
        _WORLDS.clear()
        _WORLDS[ident] = WorldChoice(**payload).open()
    return _WORLDS[ident]


def cell_payload(cell: runner.Cell, store: Store, options: runner.Options, threads: int, device: str) -> dict:
    """Everything `cell_job` needs, as plain strings and numbers (specs canonical, paths absolute, the cell's key
    and fingerprint as the parent planned them, the device as the parent checked it)."""
    return {"method": cell.method.canonical(), "task": cell.task.canonical(), "seed": cell.seed, "key": cell.key,
            "fingerprint": cell.data_fingerprint, "store": str(Path(store.root).resolve()), "threads": threads,
            "device": device,
            "options": {"overwrite": options.overwrite, "device": options.device, "quiet": True, "threads": threads,
                        "log_samples": options.log_samples},
            "world": options.world.payload() if needs_world([cell]) else None,
            "world_choice": options.world.payload()}


def cell_job(payload: dict, emit: Callable[..., None] | None = None) -> dict:
    """Runs in a worker (pool, Ray, Slurm): rebuild the cell from the payload and run it."""
    worker_threads(payload["threads"])
    options = runner.Options(**{**payload["options"], "world": WorldChoice(**payload["world_choice"])})
    cell = runner.Cell(specs.parse_method(payload["method"]), specs.parse_task(payload["task"]), payload["seed"],
                       key=payload["key"], data_fingerprint=payload["fingerprint"])
    ctx = runner.make_context(payload["device"], events=emit)
    outcome = runner.execute_cell(cell, open_world(payload["world"]), Store(payload["store"]), options, ctx)
    return {"status": outcome.status, "error": outcome.error, "result": outcome.result, "seconds": outcome.seconds}


def outcome_of(cell: runner.Cell, out: dict) -> runner.Outcome:
    return runner.Outcome(cell, out["status"], out["result"], out["error"], out["seconds"])


def record_failure(cell: runner.Cell, store: Store, message: str) -> runner.Outcome:
    """A cell whose worker died or crashed outside the cell's own handling: `error.json` says why, like any
    failed cell (written under the cell's lock, which the dead worker's exit released)."""
    cell_dir = store.cell_dir(cell.task.canonical(), cell.method.canonical(), cell.key)
    with store.lock(cell_dir):
        store.write_error(cell_dir, runner.error_record(cell, message))
    return runner.Outcome(cell, "failed", error=message)


def answer_cached(cells: list, store: Store, options: runner.Options, ui) -> tuple[list, list]:
    """Answer cached (or, with only-cache, missing) cells here so no work starts for them.
    Returns (their outcomes, the cells still to compute); workers re-check under the cell lock anyway."""
    if options.overwrite == "always":
        return [], cells
    outcomes, todo = [], []
    for cell in cells:
        cached = runner.cached_result(cell, store, options)
        if cached is not None or options.overwrite == "only-cache":
            outcome = runner.Outcome(cell, "cached" if cached is not None else "missing", cached)
            ui.done(outcome)
            outcomes.append(outcome)
        else:
            todo.append(cell)
    return outcomes, todo


def phases(cells: list) -> tuple[list, list]:
    """(first cell of every distinct pretraining, all remaining cells): the expensive node runs first, so workers
    never queue on one model's lock."""
    first, rest, seen = [], [], set()
    for cell in cells:
        group = (cell.method.pretrain_canonical(), cell.seed)
        (rest if group in seen else first).append(cell)
        seen.add(group)
    return first, rest


def _in_order(outcomes: list, cells: list) -> list:
    position = {id(cell): i for i, cell in enumerate(cells)}
    return sorted(outcomes, key=lambda o: position.get(id(o.cell), len(cells)))


def interrupted(outcomes: list, total: int, unit: str = "cells") -> Interrupted:
    """The one line Ctrl-C prints: what was finished (and is kept in the store) and what was not."""
    done = [o for o in outcomes if o.status in ("cached", "ran")]
    return Interrupted(f"interrupted: {len(done)} of {total} {unit} finished and kept in the store "
                       f"({sum(o.status == 'ran' for o in done)} computed now); rerun to compute the rest")


# --------------------------------------------------------------------------- executors
def run_local(cells: list, world, store: Store, options: runner.Options, ui, device: str) -> list:
    """In this process, one cell after another (inner progress bars and log lines go to `ui`)."""
    runner.set_threads(options.threads or runner.default_threads())
    outcomes, todo = answer_cached(cells, store, options, ui)
    ui.expect(todo, pending(todo, world, store), 1)
    ctx = runner.make_context(device, progress=ui.inner, log=ui.log,
                              events=lambda kind, **info: ui.event(0, kind, info))
    try:
        for cell in todo:
            ui.start(cell)
            outcome = runner.execute_cell(cell, world, store, options, ctx)
            ui.done(outcome)
            outcomes.append(outcome)
    except KeyboardInterrupt:
        raise interrupted(outcomes, len(cells)) from None
    return _in_order(outcomes, cells)


def run_pool(cells: list, world, store: Store, options: runner.Options, workers: int, ui, device: str) -> list:
    """One process per worker; cells sharing a pretraining serialise on its lock, others run in parallel. A dead
    worker costs its cell (failed, `error.json`); a UserError in a worker stops the run as it would locally."""
    threads = options.threads or max(1, (os.cpu_count() or 1) // workers)
    outcomes, todo = answer_cached(cells, store, options, ui)
    ui.expect(todo, pending(todo, world, store), workers)
    try:
        with Pool(workers, events=ui.event) as pool:
            for phase in phases(todo):
                payloads = [cell_payload(c, store, options, threads, device) for c in phase]
                for index, status, value in pool.map(cell_job, payloads, on_start=lambda i: ui.start(phase[i])):
                    cell = phase[index]
                    if status == "user":
                        raise UserError(value)
                    if status == "ok":
                        outcome = outcome_of(cell, value)
                    else:
                        outcome = record_failure(cell, store, value if status == "died" else f"worker error: {value}")
                    ui.done(outcome)
                    outcomes.append(outcome)
    except KeyboardInterrupt:
        raise interrupted(outcomes, len(cells)) from None
    return _in_order(outcomes, cells)


def run_remote(kind: str, cells: list, store: Store, options: runner.Options, args, ui, device: str) -> list:
    """Ray or Slurm (cached cells answered here first)."""
    done, cells = answer_cached(cells, store, options, ui)
    if not cells:
        return done
    if kind == "ray":
        return done + run_ray(cells, store, options, args, ui, device)
    if kind == "slurm":
        return done + run_slurm(cells, store, options, args, ui, device)
    raise UserError(f"unknown executor '{kind}'")


def run_ray(cells, store, options, args, ui, device: str) -> list:
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
    gpus = 1 if device.startswith("cuda") else 0
    remote = ray.remote(num_cpus=1, num_gpus=gpus)(cell_job)
    outcomes = []
    try:
        for phase in phases(cells):
            futures = {remote.remote(cell_payload(c, store, options, 1, device)): c for c in phase}
            pending_ = list(futures)
            while pending_:
                done, pending_ = ray.wait(pending_, num_returns=1)
                cell = futures[done[0]]
                try:
                    outcome = outcome_of(cell, ray.get(done[0]))
                except Exception as exc:  # noqa: BLE001 - a crashed task is a failed cell
                    outcome = runner.Outcome(cell, "failed", error=f"ray task failed: {exc}")
                ui.done(outcome)
                outcomes.append(outcome)
    finally:
        if started:
            ray.shutdown()
    return outcomes


def run_slurm(cells, store, options, args, ui, device: str) -> list:
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
    for phase in phases(cells):
        if not phase:
            continue
        jobs = executor.map_array(cell_job, [cell_payload(c, store, options, 2, device) for c in phase])
        for cell, job in zip(phase, jobs):
            try:
                outcome = outcome_of(cell, job.result())
            except Exception as exc:  # noqa: BLE001
                outcome = runner.Outcome(cell, "failed", error=f"slurm job failed: {exc}")
            ui.done(outcome)
            outcomes.append(outcome)
    return outcomes
