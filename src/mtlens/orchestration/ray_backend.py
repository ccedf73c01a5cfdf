"""The Ray executor: runs scheduled on a Ray cluster (or a local Ray instance).

Each run is one Ray task with ``num_cpus=cpus_per_run`` (and ``num_gpus=gpus_per_run``, default 1,
on a CUDA device: ``0.25`` puts four runs on each GPU), so Ray places runs by their resource needs; the task
trains into the run store at its path, which must be on a file system every node shares.  Results stream back as
runs complete.  Ray is an optional dependency: ``pip install 'mtlens[ray]'``.
"""

from __future__ import annotations

from typing import Any

from mtlens.errors import ConfigError, MtlensError
from mtlens.orchestration.executors import Executor, Job, WorkerLost, available_cores, run_job
from mtlens.plugins import load_plugins, requested_plugins
from mtlens.settings import Setting
from mtlens.store import RunStore

_SETTINGS: dict[tuple[str, str], Setting] = {}
"""Settings built in this Ray worker process (a worker runs many tasks)."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MtlensError("the Ray backend needs Ray: pip install 'mtlens[ray]' (or pip install 'ray>=2.9')") from None
    return ray


def _ray_train(configs: list[dict[str, Any]], store_root: str, plugins: list[str]) -> list[dict[str, str]]:
    """One run, or one pack of runs, in a Ray worker (the run sets its own torch thread count, ``config.threads``),
    after loading the driver's user ``plugins`` (:func:`~mtlens.plugins.load_plugins`; on a cluster they must be
    importable on every node)."""
    load_plugins(plugins)
    return run_job(configs, store_root, _SETTINGS)


class RayExecutor(Executor):
    """Runs as Ray tasks: ``ray.init(address=address)``, or a local instance with ``workers`` CPUs.

    ``cpus_per_run`` CPUs reserved per run (its torch threads are the config's ``threads``); with
    ``device`` ``cuda`` each run also asks for ``gpus_per_run`` GPUs (default 1; a fraction in
    ``(0, 1)`` shares a GPU among ``1 / gpus_per_run`` runs, and Ray points each run's ``cuda`` at its
    GPU).  Ray's own task retries are off: a lost worker is retried by
    :class:`~mtlens.orchestration.executors.Executor` and resumes from its checkpoint.
    """

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        cpus_per_run: int = 1,
        device: str = "cpu",
        gpus_per_run: float | None = None,
    ):
        self.address, self.workers, self.cpus_per_run = address, workers, cpus_per_run
        gpus = 1.0 if gpus_per_run is None else gpus_per_run
        if not (0 < gpus <= 1 or float(gpus).is_integer()):
            raise ConfigError(f"--gpus-per-run must be a fraction in (0, 1] or a whole number, got {gpus_per_run}")
        self.num_gpus = gpus if device.startswith("cuda") else 0
        self._ray = _import_ray()
        self._refs: dict[Any, Job] = {}
        self._remote: Any = None
        self._started_here = False
        self._slots = 1

    @property
    def slots(self) -> int:
        return self._slots

    def _start(self, store: RunStore) -> None:
        ray = self._ray
        if self._remote is not None:
            return
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.workers or available_cores(), include_dashboard=False, log_to_driver=False)
            self._started_here = True
        # Keep every CPU of the cluster busy, with one run queued behind each slot.
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self._slots = 2 * max(1, cpus // self.cpus_per_run)
        self._remote = ray.remote(num_cpus=self.cpus_per_run, num_gpus=self.num_gpus, max_retries=0)(_ray_train)

    def _submit(self, job: Job, store: RunStore) -> None:
        ref = self._remote.remote([c.model_dump() for c in job.configs], str(store.root.resolve()), requested_plugins())
        self._refs[ref] = job

    def _wait(self, timeout: float) -> list[tuple[Job, list[dict[str, str]] | WorkerLost]]:
        ray = self._ray
        ready, rest = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        if ready and rest:  # everything else already complete, without waiting
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        outcomes: list[tuple[Job, list[dict[str, str]] | WorkerLost]] = []
        for ref in ready:
            job = self._refs.pop(ref)
            try:
                outcomes.append((job, ray.get(ref)))
            except ray.exceptions.RayError as err:  # the worker died, or Ray lost the task
                outcomes.append((job, WorkerLost(f"{type(err).__name__}: {str(err).splitlines()[0]}")))
        return outcomes

    def _stop(self) -> None:
        for ref in self._refs:
            self._ray.cancel(ref, force=True)
        self._refs, self._remote = {}, None
        if self._started_here:
            self._ray.shutdown()
            self._started_here = False
