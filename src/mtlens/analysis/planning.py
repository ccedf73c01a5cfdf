"""Seed planning: how many seeds a study needs before it trains them (docs/statistics.md §9).

A study's report tests each table as one Benjamini–Hochberg family of ``m`` comparisons at FDR
``alpha`` (transfer: tasks × methods rows).  When only one comparison in the family carries an
effect, BH rejects it only at ``p <= alpha / m``; when all do, at ``p <= alpha``.  For the paired t
test of ``n`` seeds (:mod:`mtlens.analysis.inference`) the standardized difference
``d_z = delta / sigma_d`` detected with power ``1 − beta`` at level ``a`` is

    d_z(n, a) = lambda / sqrt(n),    P(|T| > t_{n−1, 1−a/2}) = 1 − beta,  T ~ nct(n − 1, lambda)

(:func:`~mtlens.analysis.inference.detectable_effect`), so ``d_z(n, alpha / m)`` is the effect any
single verdict needs and ``d_z(n, alpha)`` the one every row shares.  Multiplied by the standard
deviation of the per-seed differences (a pilot's, or a stored study's) it is the difference in the
metric's own units.  The permutation tests of the report have a floor instead: a sign-flip test of
``n`` seeds cannot go below ``2 / 2^n`` (the gap's band) and a correlation permuting ``G`` seeds
below ``1 / G!``; the fewest seeds that reach ``alpha / m`` are given too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mtlens.analysis.inference import detectable_effect


def fewest_sign_flip_seeds(level: float) -> int:
    """The fewest paired seeds whose exact sign-flip p-value can reach ``level``: ``2 / 2^n <= level``."""
    return max(2, math.ceil(math.log2(2 / level) - 1e-12))


def fewest_permuted_seeds(level: float) -> int:
    """The fewest seeds (clusters) whose permutations can give a p-value ``<= level``: ``1 / G! <= level``."""
    g = 2
    while 1 / math.factorial(g) > level:
        g += 1
    return g


def seeds_needed(effect: float, level: float, power: float = 0.8, most: int = 200) -> int | None:
    """The fewest seeds at which the paired t test at ``level`` detects ``effect`` (``d_z``) with
    ``power``; ``None`` beyond ``most``."""
    for n in range(2, most + 1):
        if detectable_effect(n, level, power) <= effect:
            return n
    return None


def seed_plan(
    comparisons: int,
    alpha: float = 0.05,
    seeds: Sequence[int] = (4, 6, 8, 12, 16),
    sd: float | None = None,
    power: float = 0.8,
) -> pd.DataFrame:
    """Per number of seeds ``n``: ``n_seeds, lone_level`` (``alpha / comparisons``), ``d_z_lone`` and
    ``d_z_all`` (the paired t test's detectable ``d_z`` at ``power`` when one / every comparison of the
    family has the effect), ``difference_lone`` and ``difference_all`` (``d_z · sd``; NaN without
    ``sd``), ``sign_flip_min_p`` (``2 / 2^n``) and ``sign_flip_can_reach`` (``2 / 2^n <= alpha /
    comparisons``: a lone gap verdict of the permutation band is possible)."""
    if comparisons < 1:
        raise ValueError(f"comparisons must be >= 1, got {comparisons}")
    lone = alpha / comparisons
    records = []
    for n in seeds:
        d_lone, d_all = detectable_effect(n, lone, power), detectable_effect(n, alpha, power)
        records.append(
            {
                "n_seeds": n,
                "lone_level": lone,
                "d_z_lone": d_lone,
                "d_z_all": d_all,
                "difference_lone": d_lone * sd if sd is not None else np.nan,
                "difference_all": d_all * sd if sd is not None else np.nan,
                "sign_flip_min_p": 2.0 / 2**n,
                "sign_flip_can_reach": 2.0 / 2**n <= lone,
            }
        )
    return pd.DataFrame.from_records(records)


def plan_summary(comparisons: int, alpha: float = 0.05, power: float = 0.8) -> dict[str, int | None]:
    """The seeds a family of ``comparisons`` at FDR ``alpha`` needs: ``t_any`` (2: a t p-value has no
    floor), ``sign_flip`` (:func:`fewest_sign_flip_seeds` at ``alpha / comparisons``), ``correlation``
    (:func:`fewest_permuted_seeds` at ``alpha``), and ``for_d_z_1`` / ``for_d_z_0.5`` (the seeds at which
    a lone effect of ``d_z = 1`` / ``0.5`` is found with ``power``)."""
    lone = alpha / comparisons
    return {
        "t_any": 2,
        "sign_flip": fewest_sign_flip_seeds(lone),
        "correlation": fewest_permuted_seeds(alpha),
        "for_d_z_1": seeds_needed(1.0, lone, power),
        "for_d_z_0.5": seeds_needed(0.5, lone, power),
    }
