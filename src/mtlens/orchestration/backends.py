"""Choosing an executor by name: ``serial``, ``local`` or ``ray`` (the ``--backend`` flag).

A module of its own so that the executors and the Ray backend do not import each other: the
Ray backend builds on :mod:`mtlens.orchestration.executors`, and only this chooser knows both.
"""

from __future__ import annotations

from mtlens.errors import ConfigError
from mtlens.orchestration.executors import Executor, LocalExecutor, SerialExecutor


def make_executor(
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    device: str = "cpu",
    gpus_per_run: float | None = None,
) -> Executor:
    """The executor for ``backend``: ``serial``, ``local`` (``workers`` processes on ``device``,
    :func:`~mtlens.orchestration.executors.worker_devices`) or ``ray`` (``gpus_per_run`` of a GPU
    per run on a CUDA device)."""
    if gpus_per_run is not None and (backend != "ray" or not device.startswith("cuda")):
        raise ConfigError(
            "--gpus-per-run applies to the ray backend on a CUDA device (--backend ray --device cuda); "
            "the local backend shares a device among --workers processes"
        )
    if address is not None and backend != "ray":
        raise ConfigError(f"--address applies to the ray backend (--backend ray), not to {backend!r}")
    if backend == "serial" or (backend == "local" and workers == 1):
        return SerialExecutor()
    if backend == "local":
        return LocalExecutor(workers, device=device)
    if backend == "ray":
        from mtlens.orchestration.ray_backend import RayExecutor

        return RayExecutor(address=address, workers=workers, device=device, gpus_per_run=gpus_per_run)
    raise ValueError(f"unknown backend {backend!r}; use 'serial', 'local' or 'ray'")
