"""Derived seeds: every random stream of a run (model init, batches, methods, probes, samples) is
seeded by :func:`derived_seed` from the run seed and a name, so streams never share state and a
run is reproducible from its config alone."""

from __future__ import annotations

import hashlib


def derived_seed(seed: int, *keys: str) -> int:
    """A 63-bit seed derived deterministically from ``seed`` and string keys:
    the first 8 bytes (little endian) of ``sha256("seed:key1:key2...")``, top bit cleared."""
    digest = hashlib.sha256(":".join([str(seed), *keys]).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


__all__ = ["derived_seed"]
