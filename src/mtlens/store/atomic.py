"""Atomic file writes: write to a temporary file in the same directory, then ``os.replace``.

A process killed at any moment leaves either the old file or the new one, never a
partial file (``os.replace`` is atomic on POSIX within one file system).  A kill between
creating the temporary file and the replace leaves a ``.<name>.<random>.tmp`` file
(:data:`TMP_SUFFIX`) behind; the store removes those of a run when it next takes the
run's lock and ``mtlens runs --check`` names any it finds.

Files get the permissions of any file the process creates, ``0o666 & ~umask``
(``tempfile.mkstemp`` alone would leave them ``0o600``, unreadable to the colleagues or
cluster workers sharing a store).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"
"""Suffix of the temporary files of :func:`atomic_write` (their names start with a dot)."""


def current_umask() -> int:
    """The process's umask, from ``/proc/self/status`` where Linux has it (reading it with
    ``os.umask`` means briefly changing it, which other threads could observe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` and atomically move the result to ``path`` (mode ``0o666 & ~umask``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        try:
            os.fchmod(fd, 0o666 & ~current_umask())
        finally:
            os.close(fd)
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True)))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
