"""Kill a training child process mid-run: the loop the resume tests of ``conftest.train_until_killed``
and the contract suite (``tests/contracts``) share."""

from __future__ import annotations

import signal
import subprocess
import time

from mtlens import RunStore
from mtlens.errors import MtlensError


def kill_at_step(
    process: subprocess.Popen, store: RunStore, run_id: str, after_step: int, timeout: float = 120
) -> None:
    """SIGKILL ``process`` as soon as run ``run_id``'s status in ``store`` shows step >= ``after_step`` (polled every
    2 ms; a status read between two writes is read again).  Asserts that the process was still running when killed
    and that the run was unfinished, so a resume test built on it really resumes."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            status = store.status(run_id) if store.run_dir(run_id).exists() else None
        except MtlensError:  # read between two writes of the status file: try again
            status = None
        if status is not None and status["step"] >= after_step:
            break
        time.sleep(0.002)
    assert process.poll() is None, "the training process ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not store.is_done(run_id)
