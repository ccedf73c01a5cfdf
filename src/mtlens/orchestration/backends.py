"""Choosing an executor by name: ``serial``, ``local`` or ``ray`` (the ``--backend`` flag).

A module of its own so that the executors and the Ray backend do not import each other: the
Ray backend builds on :mod:`mtlens.orchestration.executors`, and only this chooser knows both.
"""

from __future__ import annotations

from mtlens.orchestration.executors import Executor, LocalExecutor, SerialExecutor


def make_executor(backend: str = "local", workers: int | None = None, address: str | None = None,
                  device: str = "cpu") -> Executor:
    """The executor for ``backend``: ``serial``, ``local`` (``workers`` processes) or ``ray``."""
    if backend == "serial" or (backend == "local" and workers == 1):
        return SerialExecutor()
    if backend == "local":
        return LocalExecutor(workers)
    if backend == "ray":
        from mtlens.orchestration.ray_backend import RayExecutor

        return RayExecutor(address=address, workers=workers, device=device)
    raise ValueError(f"unknown backend {backend!r}; use 'serial', 'local' or 'ray'")
