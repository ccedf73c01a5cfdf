"""Where mtlens keeps datasets and caches (the one data-root rule every reader follows)."""

from __future__ import annotations

import os
from pathlib import Path

from mtlens.errors import ConfigError


def data_root() -> Path:
    """Where mtlens keeps datasets and caches: ``$MTLENS_DATA`` or ``~/.cache/mtlens``; an empty
    ``$MTLENS_DATA`` (which ``Path`` would read as the current directory) or a path to something that
    is not a directory raises :class:`ConfigError`."""
    if os.environ.get("MTLENS_DATA", "unset").strip() == "":
        raise ConfigError(
            "$MTLENS_DATA is set but empty; set it to a directory (existing or new), or unset it to use ~/.cache/mtlens"
        )
    root = Path(os.environ.get("MTLENS_DATA", Path.home() / ".cache" / "mtlens"))
    blocking = next((p for p in (root, *root.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        where = "is" if blocking == root else f"is inside {blocking}, which is"
        source = "$MTLENS_DATA" if "MTLENS_DATA" in os.environ else "the default data root"
        raise ConfigError(f"{source} {root} {where} a file; set MTLENS_DATA to a directory (existing or new)")
    return root
