"""Run states: the one definition of the states a run can be in (:class:`RunState`).

It sits below every layer (it imports nothing), so the store, training, the table-in/table-out
analyses and the CLI all compare states as members of this enum, never as text."""

from __future__ import annotations

from enum import Enum


class RunState(str, Enum):
    """Every state a run can be in: the first four are stored in ``status.json``, the last three
    are what the store's index (:meth:`mtlens.store.RunStore.runs`) derives (a ``running`` run whose
    lock nobody holds is ``interrupted``, a run without status ``pending``, a run with a file that
    cannot be trusted ``damaged``).  Members are ``str``, so they compare equal to (and print as)
    the names stored in files and tables."""

    RUNNING = "running"
    FINISHED = "finished"
    DIVERGED = "diverged"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    PENDING = "pending"
    DAMAGED = "damaged"

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)
