"""Executors: train many run configs, serially, in local worker processes, or on Ray.

All executors share one scheduling loop (:meth:`Executor.run`):

* complete runs (``finished``/``diverged`` in the store) are never submitted again, so
  rerunning after a crash finishes only what is missing;
* a run another process is training (its lock is held) is put back in the queue and
  tried again after ``retry_delay`` seconds: it is waited for, never assumed done;
* a failing run is marked ``failed`` in the store with its error and the rest go on;
* a worker that dies (e.g. ``SIGKILL``) loses only its current run, which resumes from
  its last checkpoint on the next attempt; after ``max_attempts`` lost attempts the run is
  marked ``failed`` (it is retried when the sweep is run again);
* a local worker whose driver dies stops at once, quietly (its run, left ``interrupted``,
  resumes from its last checkpoint when the sweep is rerun);
* Ctrl-C (``SIGINT``) stops the driver, which stops its workers (they ignore ``SIGINT`` themselves, so
  one message is printed, not one traceback per worker) and raises :class:`RunsInterrupted` naming
  the runs in flight: each stays ``interrupted`` and resumes from its last checkpoint when the
  command is rerun, which also removes whatever the stopped writes left.

Every run sets its own torch thread count (``config.threads``), so results do not depend on
the executor or the number of workers.

Runs with ``pack_size`` > 1 are grouped into packs (:func:`~mtlens.orchestration.packs.group_into_packs`);
a pack is one job, trained by one worker (:func:`~mtlens.training.pack.train_pack`).  Its members
are reported one by one; a member another process holds is put back in the queue on its own (it
trains unpacked when its turn comes), and a worker that dies loses the attempt of every member
of its pack, which is retried as the same pack.

Trajectory rows are written only by the store, under the run's lock, so any number of
executors and processes may share one store.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

import pandas as pd
import torch

from mtlens.errors import DamagedStoreError, MtlensError
from mtlens.orchestration.packs import group_into_packs
from mtlens.orchestration.progress import RunProgress
from mtlens.orchestration.study import cached_setting, mark_failed, train_one, train_pack_one
from mtlens.plugins import load_plugins, requested_plugins
from mtlens.settings import Setting
from mtlens.store import RunState, RunStore
from mtlens.training.config import RunConfig
from mtlens.training.handle import clean_complete_run
from mtlens.training.trainer import train_run


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_job(
    configs: Sequence[dict[str, Any]],
    store_root: str,
    settings: dict[tuple[str, str], Setting],
    train: Callable[..., str] = train_run,
) -> list[dict[str, str]]:
    """Train one run (with ``train``), or several as one pack, in the current process:
    ``{"run_id", "state", "message"}`` per run (never raises)."""
    run_configs = [RunConfig.model_validate(config) for config in configs]
    store, setting = RunStore(store_root), cached_setting(run_configs[0], settings)
    if len(run_configs) == 1:
        outcomes = [train_one(run_configs[0], store, setting, train=train)]
    else:
        outcomes = train_pack_one(run_configs, store, setting)
    return [
        {"run_id": config.run_id, "state": state, "message": message}
        for config, (state, message) in zip(run_configs, outcomes)
    ]


class RunsInterrupted(KeyboardInterrupt):
    """Ctrl-C while runs were training: ``run_ids`` were stopped (each resumes from its last checkpoint
    when the command is rerun) and ``not_started`` runs had not started."""

    def __init__(self, run_ids: Sequence[str], not_started: int = 0):
        super().__init__(run_ids, not_started)
        self.run_ids, self.not_started = list(run_ids), not_started

    def __str__(self) -> str:
        stopped = f"interrupted {len(self.run_ids)} runs ({', '.join(self.run_ids)})" if self.run_ids else "interrupted"
        waiting = f", {self.not_started} not started" if self.not_started else ""
        return f"{stopped}{waiting}; rerun the same command to resume them from their last checkpoints"


@dataclass(eq=False)
class Job:
    """One run, or a pack of runs, to train and the attempts lost so far to dying workers."""

    configs: list[RunConfig]
    lost: int = 0
    not_before: float = 0.0
    errors: list[str] = field(default_factory=list)


@dataclass
class WorkerLost:
    """The outcome of a job whose worker died before reporting."""

    reason: str


class Executor:
    """Base class: the shared scheduling loop over a backend's ``_start/_submit/_wait/_stop``.

    Workers start on the first :meth:`run` and stay up for later ones until :meth:`close`
    (use the executor as a context manager).
    """

    retry_delay: float = 1.0
    max_attempts: int = 2

    @property
    def slots(self) -> int:
        """How many runs may be in flight at once."""
        raise NotImplementedError

    def _start(self, store: RunStore) -> None:
        """Start the workers unless they are running."""
        raise NotImplementedError

    def _submit(self, job: Job, store: RunStore) -> None:
        raise NotImplementedError

    def _wait(self, timeout: float) -> list[tuple[Job, list[dict[str, str]] | WorkerLost]]:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the workers."""
        self._stop()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def run(
        self, configs: Sequence[RunConfig], store: RunStore, progress: bool = True, desc: str = "runs"
    ) -> pd.DataFrame:
        """Train ``configs`` (duplicates by run id once); one row per run: ``run_id, state, message``."""
        unique = list({c.run_id: c for c in configs}.values())
        results: dict[str, dict[str, str]] = {}
        for config in unique:
            if store.is_done(config.run_id, deep=True):
                clean_complete_run(store, config.run_id)
                status = store.status(config.run_id)
                assert status is not None  # is_done has just read its done state
                results[config.run_id] = {
                    "run_id": config.run_id,
                    "state": status["state"],
                    "message": status.get("message", ""),
                }
        pending = [config for config in unique if config.run_id not in results]
        queue: deque[Job] = deque(Job(group) for group in group_into_packs(pending))
        bar = RunProgress(len(unique), len(results), desc, progress)
        running: dict[str, None] = {}  # run ids in flight, in submission order (named if Ctrl-C stops them)
        in_flight = 0
        if queue:
            self._start(store)
        try:
            while queue or in_flight:
                now = time.monotonic()
                for _ in range(len(queue)):
                    if in_flight >= self.slots:
                        break
                    job = queue.popleft()
                    if job.not_before > now:
                        queue.append(job)
                        continue
                    for config in job.configs:  # before submitting: a serial executor trains it in _submit
                        running[config.run_id] = None
                        bar.started(config.run_id)
                    self._submit(job, store)
                    in_flight += 1
                if not in_flight:  # only runs locked by other processes are left
                    time.sleep(max(0.0, min(j.not_before for j in queue) - now))
                    continue
                for job, outcome in self._wait(timeout=self.retry_delay):
                    in_flight -= 1
                    if isinstance(outcome, WorkerLost):
                        outcome = self._lost(job, outcome, store)
                        if outcome[0]["state"] == "lost":  # try the job (the pack) again at once
                            queue.append(job)
                            continue
                    for config, result in zip(job.configs, outcome):
                        running.pop(config.run_id, None)
                        if result["state"] == "locked":  # try again after a delay, on its own
                            queue.append(Job([config], not_before=time.monotonic() + self.retry_delay))
                            continue
                        results[result["run_id"]] = result
                        bar.ended(
                            config.run_id,
                            result["state"],
                            _recorded_step(store, config.run_id),
                            _state_counts(results.values()),
                        )
                bar.running(lambda: {run_id: _recorded_step(store, run_id) for run_id in running})
        except KeyboardInterrupt:
            with _ignoring_sigint():  # a second Ctrl-C does not interrupt the stopping of the workers
                self.close()
            stopped = list(running)
            raise RunsInterrupted(stopped, len(unique) - len(results) - len(stopped)) from None
        except BaseException:
            self.close()
            raise
        finally:
            bar.close(_state_counts(results.values()) if results else "")
        return pd.DataFrame.from_records([results[c.run_id] for c in unique], columns=["run_id", "state", "message"])

    def _lost(self, job: Job, lost: WorkerLost, store: RunStore) -> list[dict[str, str]]:
        """Count a lost attempt of the job: retry (state ``lost``) or, after ``max_attempts``, mark its runs
        failed, but for a pack member that ended before the worker was lost (its stored done state, which
        :meth:`~mtlens.training.handle.RunHandle.record_failure` leaves alone).  One outcome per run of the job."""
        job.lost += 1
        job.errors.append(lost.reason)
        if job.lost < self.max_attempts:
            return [{"run_id": c.run_id, "state": "lost", "message": lost.reason} for c in job.configs]
        message = f"worker lost {job.lost} times: " + "; ".join(job.errors)
        outcomes = []
        for config in job.configs:
            mark_failed(store, config, message)
            done = store.done_state(config.run_id)
            outcomes.append(
                {"run_id": config.run_id, "state": done or RunState.FAILED, "message": "" if done else message}
            )
        return outcomes


@contextmanager
def _ignoring_sigint() -> Iterator[None]:
    """Ignore ``SIGINT`` for the duration (in the main thread; elsewhere signals cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _recorded_step(store: RunStore, run_id: str) -> int | None:
    """The last step run ``run_id`` has recorded (its status file), ``None`` if it has none (yet)."""
    try:
        status = store.status(run_id)
    except DamagedStoreError:  # progress is no reason to stop: the run's own handling reports it
        return None
    return None if status is None else status.get("step")


def _state_counts(results: Any) -> str:
    counts = pd.Series([r["state"] for r in results]).value_counts()
    return " ".join(f"{state}={n}" for state, n in counts.items())


class SerialExecutor(Executor):
    """Trains in this process, one run at a time; ``train`` may be replaced (e.g. in tests)."""

    def __init__(self, train: Callable[..., str] = train_run):
        self.train = train
        self._done: list[tuple[Job, list[dict[str, str]] | WorkerLost]] = []
        self._settings: dict[tuple[str, str], Setting] = {}

    @property
    def slots(self) -> int:
        return 1

    def _start(self, store: RunStore) -> None:
        pass

    def _submit(self, job: Job, store: RunStore) -> None:
        configs = [c.model_dump() for c in job.configs]
        self._done.append((job, run_job(configs, str(store.root), self._settings, self.train)))

    def _wait(self, timeout: float) -> list[tuple[Job, list[dict[str, str]] | WorkerLost]]:
        done, self._done = self._done, []
        return done

    def _stop(self) -> None:
        pass


def worker_devices(device: str | None, workers: int, n_gpus: int | None = None) -> list[str | None]:
    """The device of each of ``workers`` local workers: ``cuda`` (no index) spreads them over the
    ``n_gpus`` visible GPUs (default ``torch.cuda.device_count()``), worker ``i`` on
    ``cuda:(i % n_gpus)``, so several workers share each GPU; any other device (``cpu``,
    ``cuda:N``) is shared by all of them; ``None`` keeps each run's own ``device``."""
    if device != "cuda":
        return [device] * workers
    n_gpus = torch.cuda.device_count() if n_gpus is None else n_gpus
    if n_gpus < 1:
        raise MtlensError("--device cuda: no CUDA device is visible to this process")
    return [f"cuda:{i % n_gpus}" for i in range(workers)]


def _exit_when_parent_dies() -> None:
    """Watch the driver from a daemon thread and end this worker at once when it dies (e.g. ``kill -9``):
    the run in hand stays resumable from its checkpoint (its lock is released with the process)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="mtlens-driver-watch").start()


def _worker_main(conn: Connection, device: str | None, plugins: Sequence[str] = ()) -> None:
    """A local worker: load the driver's user ``plugins`` (:func:`~mtlens.plugins.load_plugins`), then
    train the jobs it receives (on ``device`` if given) until the driver closes the pipe or dies.

    The device does not enter a run's id or trajectory (kernels are deterministic on every
    device), so which worker, and how many workers share a GPU, never changes the results.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle: it stops the workers
    _exit_when_parent_dies()
    load_plugins(plugins)
    settings: dict[tuple[str, str], Setting] = {}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the driver is gone
            return
        if message is None:
            return
        configs, store_root = message
        result = run_job([{**c, "device": device or c["device"]} for c in configs], store_root, settings)
        try:
            conn.send(result)
        except OSError:  # BrokenPipeError: the driver is gone; the run is already recorded in the store
            return


class LocalExecutor(Executor):
    """``workers`` long-lived worker processes (spawned); each run sets its own torch thread count.

    ``workers=None`` uses one worker per available core.  Each worker keeps the settings
    it has built, so a setting's data is loaded once per worker.  With ``device`` every run
    trains on its worker's device (:func:`worker_devices`): ``--workers 8 --device cuda``
    puts 8 runs at a time on one GPU, or spreads them over the visible GPUs.
    """

    def __init__(self, workers: int | None = None, device: str | None = None):
        self.workers = max(1, workers or available_cores())
        self.devices = worker_devices(device, self.workers)
        self._context = multiprocessing.get_context("spawn")
        self._idle: list[tuple[Any, Connection]] = []
        self._busy: dict[Connection, tuple[Any, Job]] = {}
        self._device_of: dict[Connection, str | None] = {}

    @property
    def slots(self) -> int:
        return self.workers

    def _spawn(self, device: str | None) -> tuple[Any, Connection]:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_worker_main, args=(child, device, requested_plugins()), daemon=True)

        process.start()
        child.close()
        self._device_of[parent] = device
        return process, parent

    def _respawn(self, process: Any, conn: Connection) -> tuple[Any, Connection]:
        """A new worker on the device of the dead one."""
        process.join()
        conn.close()
        return self._spawn(self._device_of.pop(conn))

    def _start(self, store: RunStore) -> None:
        if not self._idle and not self._busy:
            self._idle = [self._spawn(device) for device in self.devices]

    def _submit(self, job: Job, store: RunStore) -> None:
        process, conn = self._idle.pop()
        message = ([c.model_dump() for c in job.configs], str(store.root))
        try:
            conn.send(message)
        except OSError:  # the idle worker died: start another one
            process, conn = self._respawn(process, conn)
            conn.send(message)
        self._busy[conn] = (process, job)

    def _wait(self, timeout: float) -> list[tuple[Job, list[dict[str, str]] | WorkerLost]]:
        sentinels = [process.sentinel for process, _ in self._busy.values()]
        ready = wait([*self._busy, *sentinels], timeout=timeout)
        conns = {conn for conn, (process, _) in self._busy.items() if conn in ready or process.sentinel in ready}
        outcomes: list[tuple[Job, list[dict[str, str]] | WorkerLost]] = []
        for conn in conns:
            process, job = self._busy.pop(conn)
            try:
                outcomes.append((job, conn.recv()))
                self._idle.append((process, conn))
            except (EOFError, OSError):
                process.join()
                outcomes.append((job, WorkerLost(f"worker process {process.pid} died (exit code {process.exitcode})")))
                self._idle.append(self._respawn(process, conn))
        return outcomes

    def _stop(self) -> None:
        """Idle workers exit; busy ones (only when the driver itself fails) are terminated, their runs resumable."""
        for _, conn in self._idle:
            try:
                conn.send(None)
            except OSError:
                pass
        for process, _ in self._busy.values():
            process.terminate()
        for process, _ in [*self._idle, *self._busy.values()]:
            process.join(timeout=10)
        self._idle, self._busy, self._device_of = [], {}, {}


def run_configs(
    configs: Sequence[RunConfig],
    store: RunStore,
    progress: bool = True,
    train: Callable[..., str] = train_run,
    executor: Executor | None = None,
) -> pd.DataFrame:
    """Train ``configs`` with ``executor`` (e.g. a :class:`LocalExecutor` of N worker processes, which the caller
    opened and closes), by default in this process (:class:`SerialExecutor` of ``train``): complete runs are
    skipped, runs another process is training are waited for, a failing run is marked ``failed`` and the rest
    go on.  One row per run: ``run_id, state, message``."""
    if executor is not None:
        return executor.run(configs, store, progress)
    with SerialExecutor(train) as serial:
        return serial.run(configs, store, progress)
