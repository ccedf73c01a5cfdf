"""Synthetic unit tables of the correlation analysis (docs/statistics.md §6), shared by the tests and
benchmarks/correlation_claim_rates.py.

A study has ``tasks`` tasks × ``seeds`` seeds × 3 methods of one setting.  Every variable of a unit
(task ``t``, seed ``s``, method ``m``) is ``mean_t + R[s, m] + S[t, s] + E[t, s, m]``: ``R`` the MTL run's
effect (shared by every task of the run, variance 1), ``S`` the STL run's (shared by every method's
unit of that task and seed, variance 0.75), ``E`` the unit's own (variance 0.25) and ``mean_t = 2 t``
the task's mean (``task_means``).  Pairs of variables have correlation ``r`` in each of the three
effects, so ``r`` is the correlation of the task-centred units.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

METHODS = ("sum", "pcgrad", "mgda")
VARIANCES = (1.0, 0.75, 0.25)
"""Variances of the MTL run, STL run and unit effects."""


def study_units(
    rng: np.random.Generator,
    tasks: int,
    seeds: int = 6,
    columns: Sequence[str] = ("factor", "target"),
    r: float = 0.0,
    task_means: bool = True,
    shared: bool = True,
    spread: bool = False,
) -> pd.DataFrame:
    """A unit table (columns ``setting, task, seed, method`` and ``columns``) of the module's design.
    The first two ``columns`` have correlation ``r``, every other pair none.  ``shared=False``: every
    effect is the unit's own (variance 2, no clusters); ``spread``: the second column's unit effect is
    scaled by ``|E|`` of the first's (``r = 0``: uncorrelated but dependent, a spread that grows with the
    factor)."""
    t, s, m = (a.ravel() for a in np.meshgrid(np.arange(tasks), np.arange(seeds), np.arange(3), indexing="ij"))
    covariance = np.eye(len(columns))
    covariance[0, 1] = covariance[1, 0] = r
    shapes = [(seeds, 3), (tasks, seeds), (len(t),)] if shared else [(len(t),)] * 3
    run, stl, own = (
        np.sqrt(v) * rng.multivariate_normal(np.zeros(len(columns)), covariance, size=shape)
        for v, shape in zip(VARIANCES, shapes)
    )
    if spread:
        own[:, 1] *= np.abs(own[:, 0]) / np.sqrt(VARIANCES[2])
    effects = (run[s, m], stl[t, s], own) if shared else (run, stl, own)
    values = sum(effects) + (2.0 * t[:, None] if task_means else 0.0)
    units = pd.DataFrame(
        {"setting": "syn", "task": np.array(["a", "b", "c", "d"])[t], "seed": s, "method": np.array(METHODS)[m]}
    )
    return units.assign(**dict(zip(columns, values.T)))
