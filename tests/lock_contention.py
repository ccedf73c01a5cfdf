"""Processes probing a run's lock while another takes it: how often a taker is refused though nobody trains
the run (``tests/test_store_lock.py``, ``benchmarks/lock_probes.py``)."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import NamedTuple

from mtlens.store import RunLockedError, RunStore


class Contention(NamedTuple):
    """``takes`` lock takes by one process while ``probers`` processes called ``is_locked`` ``probes`` times
    in all; ``refused`` of the takes were refused (each a false refusal: nobody else takes the lock)."""

    takes: int
    refused: int
    probes: int
    probers: int

    @property
    def refusal_rate(self) -> float:
        return self.refused / self.takes


def _probe(root: str, stop: float, counts: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store, n = RunStore(root), 0
    while time.monotonic() < stop:
        store.is_locked("r")
        n += 1
    counts.put(n)


def lock_contention(root: Path, seconds: float, probers: int = 2) -> Contention:
    """Take and release run ``r``'s lock in ``root`` for ``seconds`` while ``probers`` forked processes probe
    it without a pause (the run's lock file exists from the start)."""
    store = RunStore(root)
    with store.lock("r"):  # creates the lock file the probes open
        pass
    context = multiprocessing.get_context("fork")
    counts: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    stop = time.monotonic() + seconds
    workers = [context.Process(target=_probe, args=(str(root), stop, counts)) for _ in range(probers)]
    for worker in workers:
        worker.start()
    takes = refused = 0
    while time.monotonic() < stop:
        takes += 1
        try:
            with store.lock("r"):
                pass
        except RunLockedError:
            refused += 1
    probes = sum(counts.get(timeout=30) for _ in workers)
    for worker in workers:
        worker.join()
    return Contention(takes, refused, probes, probers)
