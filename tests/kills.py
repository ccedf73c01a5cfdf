"""Child processes to kill: a function run in a child forked from the test process (:func:`fork`), and the loop
that kills a training child mid-run (:func:`kill_at_step`), which the resume tests of
``conftest.train_until_killed`` and the contract suite (``tests/contracts``) share.

A forked child starts with what the test process has imported (torch, pandas, mtlens) and registered (a test
module's own setting), where a fresh interpreter spends about 4 s of CPU importing them before its first step on the
2-core CI machine.  It is a process of its own all the same: it writes the store through its own file handles, and
a SIGKILL ends it with no cleanup, so what a test then finds in the store is what a killed ``python`` would leave.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path

from mtlens import RunStore
from mtlens.errors import MtlensError


def fork(target: Callable[[], object], stdout: Path | None = None, stderr: Path | None = None) -> BaseProcess:
    """Start ``target()`` in a child forked from this process and return it (``is_alive``, ``join``,
    ``exitcode``).  The child exits 0 when ``target`` returns, with the code of a ``SystemExit`` it raises (e.g.
    ``sys.exit(main(argv))``), and 1 after printing the traceback of any other exception.  ``stdout``, ``stderr``:
    files the child's standard output and error go to (appended), file descriptors 1 and 2 included, so that the
    processes it starts write there too."""

    def child() -> object:
        for path, fd, stream in ((stdout, 1, "stdout"), (stderr, 2, "stderr")):
            if path is not None:
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), fd)
                setattr(sys, stream, open(fd, "w", buffering=1, closefd=False))  # the child's, until it ends
        return target()

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    return process


def kill_at_step(process: BaseProcess, store: RunStore, run_id: str, after_step: int, timeout: float = 120) -> None:
    """SIGKILL ``process`` as soon as run ``run_id``'s status in ``store`` shows step >= ``after_step`` (polled every
    2 ms; a status read between two writes is read again).  Asserts that the process was still running when killed
    and that the run was unfinished, so a resume test built on it really resumes."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.is_alive():
        try:
            status = store.status(run_id) if store.run_dir(run_id).exists() else None
        except MtlensError:  # read between two writes of the status file: try again
            status = None
        if status is not None and status["step"] >= after_step:
            break
        time.sleep(0.002)
    assert process.is_alive(), "the training process ended before it could be killed"
    process.kill()  # SIGKILL
    process.join()
    assert not store.is_done(run_id)
