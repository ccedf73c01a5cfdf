"""Atomic file writes: write to a temporary file in the same directory, then ``os.replace``.

A process killed at any moment leaves either the old file or the new one, never a
partial file (``os.replace`` is atomic on POSIX within one file system).  A kill between
creating the temporary file and the replace leaves a ``.<name>.<random>.tmp`` file
(:data:`TMP_SUFFIX`) behind; the store removes those of a run when it next takes the
run's lock and ``mtlens runs --check`` names any it finds.

Files get the permissions of any file the process creates, ``0o666 & ~umask``: the temporary
file is created with mode ``0o666`` and the kernel applies the umask (``tempfile.mkstemp`` would
leave it ``0o600``, unreadable to the colleagues or cluster workers sharing a store; reading the
umask to ``chmod`` afterwards cost a ``/proc`` read per write).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"
"""Suffix of the temporary files of :func:`atomic_write` (their names start with a dot)."""


def _create_tmp(path: Path) -> Path:
    """A new empty ``.<name>.<random>.tmp`` file next to ``path``, mode ``0o666 & ~umask``."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}{TMP_SUFFIX}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` and atomically move the result to ``path`` (mode ``0o666 & ~umask``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_tmp(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_json(path: Path, obj: Any) -> dict[str, Any]:
    """Atomically write ``obj`` as JSON; ``{"size", "sha256"}`` of the bytes written."""
    return atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``: every output file (reports, tables, figures, CSVs)."""
    atomic_write(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> dict[str, Any]:
    """Atomically write ``data`` to ``path``; ``{"size", "sha256"}`` of ``data`` (what a run's status records)."""
    atomic_write(Path(path), lambda tmp: tmp.write_bytes(data))
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
