"""Grouping the runs of a sweep or study into packs (:mod:`mtlens.training.pack`).

Runs with ``pack_size`` > 1 that can be packed together (one :func:`~mtlens.training.pack.pack_key`)
are grouped, in the order they come, into packs of up to ``pack_size`` runs; every other run is a
group of its own.  A pack is one job of an executor: one worker (or Ray task) trains its members
together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mtlens.training.config import ResolvedRunConfig, RunConfig
from mtlens.training.pack import pack_key


def group_into_packs(configs: Sequence[RunConfig]) -> list[list[RunConfig]]:
    """``configs`` as a list of groups (packs, or single runs), each group placed where its first
    run was.  Only resolved configs are packed (what the sweep and the study hand over)."""
    groups: list[list[RunConfig]] = []
    open_packs: dict[tuple[Any, ...], list[RunConfig]] = {}
    for config in configs:
        key = pack_key(config) if isinstance(config, ResolvedRunConfig) else None
        if key is None:
            groups.append([config])
            continue
        pack = open_packs.get(key)
        if pack is None or len(pack) >= config.pack_size:
            pack = open_packs[key] = []
            groups.append(pack)
        pack.append(config)
    return groups
