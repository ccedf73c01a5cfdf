"""Progress of an executor's runs, on a terminal and without one.

On a terminal (stderr is a TTY) a tqdm bar counts the runs.  Without one (a log file, CI, a cluster
job's output) a bar would write nothing useful, so :class:`RunProgress` writes plain lines to stderr
instead, each starting with ``mtlens <desc>:``:

* one line when the work starts (runs to train, runs already complete);
* one line per run started and per run ended (its state and the last step it recorded, the runs done
  so far, elapsed time and the estimated time left);
* while runs train, at most every :data:`INTERVAL_ENV` seconds (default :data:`DEFAULT_INTERVAL`), the
  step each run in progress has recorded (read from its status file, so it works for every executor);
* one line at the end.

The estimated time left is ``elapsed / ended * remaining``, over the runs ended since this process
started (runs found complete cost nothing and do not count).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO

from tqdm.auto import tqdm

INTERVAL_ENV = "MTLENS_PROGRESS_SECONDS"
"""Environment variable: seconds between the lines on the runs in progress (without a terminal)."""

DEFAULT_INTERVAL = 60.0


def duration(seconds: float) -> str:
    """``seconds`` as ``1h02m``, ``3m05s`` or ``12s``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class RunProgress:
    """Progress of ``total`` runs, ``done`` of them complete before the start (see the module docstring).

    Args:
        total: runs in all.
        done: runs already complete.
        desc: what the runs are (``runs``, ``grid``, ``seeds``).
        enabled: ``False``: no output at all (``--quiet``).
        stream: where to write (default ``sys.stderr``); lines when it is not a TTY, a bar when it is.
        clock: seconds, monotonic (a test's fake clock).
    """

    def __init__(
        self,
        total: int,
        done: int = 0,
        desc: str = "runs",
        enabled: bool = True,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.lines = enabled and not _isatty(self.stream)
        self.bar = tqdm(
            total=total,
            initial=done,
            desc=desc,
            disable=not enabled or self.lines,
            dynamic_ncols=True,
            file=self.stream,
        )
        self.total, self.done, self.n_ended, self.desc = total, done, 0, desc
        self.clock = clock
        self.start = self.last = clock()
        self.interval = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL))
        if self.lines:
            self._line(f"{total - done} runs to train, {done} of {total} already complete")

    def started(self, run_id: str) -> None:
        """A run was handed to a worker."""
        if self.lines:
            self._line(f"started {run_id}")

    def ended(self, run_id: str, state: str, step: int | None, counts: str) -> None:
        """A run ended in ``state`` at ``step`` (``None``: unknown); ``counts``: the states so far."""
        self.done += 1
        self.n_ended += 1
        self.bar.update(1)
        self.bar.set_postfix_str(counts)
        if self.lines:
            at = f" at step {step}" if step is not None else ""
            self._line(f"{state} {run_id}{at}; {self.done}/{self.total} done ({counts}); {self._timing()}")

    def running(self, steps: Callable[[], Mapping[str, int | None]]) -> None:
        """The runs in progress and the step each has recorded (``steps()``, called only when a line is due),
        written when no line has been for ``interval`` seconds."""
        if not self.lines or self.clock() - self.last < self.interval:
            return
        recorded = steps()
        if not recorded:
            return
        shown = ", ".join(f"{run_id} at step {step if step is not None else 0}" for run_id, step in recorded.items())
        self._line(f"in progress: {shown}; {self.done}/{self.total} done; {self._timing()}")

    def close(self, counts: str = "") -> None:
        self.bar.close()
        if self.lines:
            self._line(f"{self.done}/{self.total} done{f' ({counts})' if counts else ''} in {self._elapsed()}")

    def _elapsed(self) -> str:
        return duration(self.clock() - self.start)

    def _timing(self) -> str:
        remaining = self.total - self.done
        if not self.n_ended or not remaining:
            return f"elapsed {self._elapsed()}"
        eta = (self.clock() - self.start) / self.n_ended * remaining
        return f"elapsed {self._elapsed()}, about {duration(eta)} left"

    def _line(self, text: str) -> None:
        self.last = self.clock()
        print(f"mtlens {self.desc}: {text}", file=self.stream, flush=True)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


__all__ = ["DEFAULT_INTERVAL", "INTERVAL_ENV", "RunProgress", "duration"]
