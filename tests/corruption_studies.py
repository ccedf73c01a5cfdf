"""Synthetic linear-probe accuracies of the corruptions experiment (``corruption_accuracy``'s columns),
shared by the tests and benchmarks/corruption_test_rates.py.

Per seed ``s`` and task ``t`` one STL and one MTL encoder; encoder ``e`` of mode ``mode`` has clean accuracy
``0.9 + C[s, t] + c[e]`` and, under corruption ``k`` at severity ``v`` in 1..5, accuracy ``clean − drop · v / 3``
with ``drop = 0.1 + W[s, t, k] + U[e] + V[e, k] + delta[t, k] · [mode = mtl]`` (so the mean over severities
is ``clean − drop``): ``C`` (sd 0.01) and ``W`` (sd 0.02) the seed's effects, shared by both encoders of the
seed (what the pairing removes); ``U`` the encoder's robustness (sd 0.01), shared by all its corruptions;
``V`` (sd 0.01) its own per corruption.  The paired difference of one row, ``U_mtl − U_stl + V_mtl − V_stl``,
has sd ``DIFFERENCE_SD`` = 0.02.  ``skewed``: the MTL encoder's robustness is ``0.01 · (Exp(1) − 1)`` in place of
normal (mean zero, right-skewed: now and then an MTL encoder that breaks under every corruption).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mtlens.data.corruptions import CORRUPTIONS, SEVERITIES

DIFFERENCE_SD = 0.02
"""sd of one row's paired MTL − STL difference of the drop."""


def corruption_study(
    rng: np.random.Generator, seeds: int, tasks: int = 2, delta: np.ndarray | float = 0.0, skewed: bool = False
) -> pd.DataFrame:
    """Probe accuracies of ``seeds`` × ``tasks`` paired encoders under every corruption of
    :mod:`mtlens.data.corruptions`; ``delta`` (broadcast to ``(tasks, corruptions)``) the MTL − STL
    difference of the drop (see the module docstring)."""
    names = list(CORRUPTIONS)
    k = len(names)
    delta = np.broadcast_to(np.asarray(delta, float), (tasks, k))
    clean = 0.9 + rng.normal(0, 0.01, (seeds, tasks, 1)) + rng.normal(0, 0.01, (seeds, tasks, 2))
    robustness = rng.normal(0, 0.01, (seeds, tasks, 2))
    if skewed:
        robustness[..., 1] = 0.01 * (rng.exponential(1.0, (seeds, tasks)) - 1.0)
    drop = (
        0.1
        + rng.normal(0, 0.02, (seeds, tasks, 1, k))
        + robustness[..., None]
        + rng.normal(0, 0.01, (seeds, tasks, 2, k))
        + np.stack([np.zeros_like(delta), delta], axis=1)
    )  # (seeds, tasks, mode, corruption)
    s, t, m, c, v = (
        a.ravel() for a in np.meshgrid(*map(np.arange, (seeds, tasks, 2, k)), np.asarray(SEVERITIES), indexing="ij")
    )
    corrupted = clean[s, t, m] - drop[s, t, m, c] * v / 3
    s0, t0, m0 = (a.ravel() for a in np.meshgrid(*map(np.arange, (seeds, tasks, 2)), indexing="ij"))
    mode = np.array(["stl", "mtl"])
    task = np.array([f"task_{i}" for i in range(tasks)])

    def frame(
        s: np.ndarray, t: np.ndarray, m: np.ndarray, corruption: np.ndarray, severity: np.ndarray, accuracy: np.ndarray
    ) -> pd.DataFrame:
        run = np.where(
            m == 0, np.char.add(np.char.add("stl-", task[t]), "-" + s.astype(str)), np.char.add("mtl-", s.astype(str))
        )
        return pd.DataFrame(
            {
                "run_id": run,
                "setting": "syn",
                "mode": mode[m],
                "seed": s,
                "task": task[t],
                "corruption": corruption,
                "severity": severity,
                "accuracy": accuracy,
            }
        )

    return pd.concat(
        [
            frame(s0, t0, m0, np.full(len(s0), "none"), np.zeros(len(s0), int), clean[s0, t0, m0]),
            frame(s, t, m, np.array(names)[c], v, corrupted),
        ],
        ignore_index=True,
    )
