"""The generalization gap at comparable training loss (Mueller et al.).

For one task, every run (STL or MTL, one seed) gives checkpoints ``k`` with training
loss ``x_k`` (on the fixed training subset) and a generalization measure ``G_k``
(validation loss or error).  The curve ``G(x)`` is built as follows:

1. **Monotonize**: walk the checkpoints in training order and keep only those whose
   training loss is a new running minimum (the first checkpoint is always kept).
2. **Interpolate** ``G`` (and the epoch) linearly in ``log x`` on a common grid ``Lambda``
   of ``n_grid`` log-spaced loss levels covering the overlap of the loss ranges that
   *all* curves of the task reached (both modes, every seed).

At each level ``lambda`` the seeds give means and sample standard deviations
``mu_M, s_M`` (MTL, ``n_M`` seeds) and ``mu_S, s_S`` (STL).  The gap is

    gap(lambda) = mu_M(lambda) - mu_S(lambda)        (negative in loss/error = positive transfer)

and the seed noise is the standard error of that difference,

    noise(lambda) = sqrt(s_M^2 / n_M + s_S^2 / n_S).

The **onset** is the first level, in training order (from high to low training loss),
from which ``|gap| > z * noise`` (``z = noise_multiplier``, default 2) holds with the same
sign for at least ``min_run`` consecutive grid levels (default 5 of 200, so a one-level blip
does not count); it is reported with its sign and with the mean epoch at which the MTL and
the STL runs reached that level.
With a single seed per mode the noise is undefined and no onset is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class GapResult:
    """The gap analysis of one task.

    ``curves`` has one row per (mode, grid level) with columns ``mode, train_loss, mean, std,
    n, epoch``; ``gap`` one row per level with ``train_loss, gap, noise, exceeds``; ``onset``
    is ``None`` or a dict with ``train_loss, gap, sign, epoch_mtl, epoch_stl``.
    """

    task: str
    measure: str
    curves: pd.DataFrame
    gap: pd.DataFrame
    onset: dict[str, float] | None


def monotone_curve(train_loss: np.ndarray, measure: np.ndarray, epoch: np.ndarray) -> tuple[np.ndarray, ...]:
    """Keep the checkpoints (in training order) whose training loss is a new running minimum."""
    keep = np.zeros(len(train_loss), dtype=bool)
    best = np.inf
    for i, x in enumerate(train_loss):
        if np.isfinite(x) and x < best:
            keep[i], best = True, x
    return train_loss[keep], measure[keep], epoch[keep]


def interpolate_at(levels: np.ndarray, train_loss: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Linear interpolation in ``log(train_loss)`` of a monotonized curve; NaN outside its range."""
    order = np.argsort(train_loss)
    log_x, y = np.log(train_loss[order]), values[order]
    out = np.interp(np.log(levels), log_x, y)
    out[(levels < train_loss.min()) | (levels > train_loss.max())] = np.nan
    return out


def generalization_gap(
    runs: pd.DataFrame, task: str, measure: str = "val/loss", n_grid: int = 200, noise_multiplier: float = 2.0,
    min_run: int = 5,
) -> GapResult | None:
    """Gap analysis of ``task`` from tidy trajectory rows of STL and MTL runs.

    ``runs`` holds rows (columns of ``mtlens.store.ROW_COLUMNS``) of any number of runs;
    rows of ``task`` with quantities ``train/loss`` and ``measure`` are used, grouped by
    ``mode`` and ``run_id``.  Returns ``None`` when a mode is missing or the curves'
    training-loss ranges do not overlap.
    """
    rows = runs[(runs["task"] == task) & runs["quantity"].isin(["train/loss", measure])]
    wide = rows.pivot_table(index=["mode", "run_id", "step", "epoch"], columns="quantity", values="value")
    if measure not in wide or "train/loss" not in wide:
        return None
    wide = wide.reset_index().sort_values(["mode", "run_id", "step"])
    curves = {}
    for (mode, run_id), frame in wide.groupby(["mode", "run_id"]):
        curves[(mode, run_id)] = monotone_curve(
            frame["train/loss"].to_numpy(float), frame[measure].to_numpy(float), frame["epoch"].to_numpy(float)
        )
    modes = {mode for mode, _ in curves}
    if modes != {"stl", "mtl"}:
        return None
    low = max(c[0].min() for c in curves.values())
    high = min(c[0].max() for c in curves.values())
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low < high):
        return None
    levels = np.geomspace(high, low, n_grid)  # training order: from high loss to low loss

    stats = {}
    for mode in ("stl", "mtl"):
        members = [c for (m, _), c in curves.items() if m == mode]
        values = np.stack([interpolate_at(levels, c[0], c[1]) for c in members])
        epochs = np.stack([interpolate_at(levels, c[0], c[2]) for c in members])
        std = values.std(axis=0, ddof=1) if len(members) > 1 else np.full(n_grid, np.nan)
        stats[mode] = pd.DataFrame({
            "mode": mode, "train_loss": levels, "mean": values.mean(axis=0), "std": std,
            "n": len(members), "epoch": epochs.mean(axis=0),
        })
    stl, mtl = stats["stl"], stats["mtl"]
    gap = mtl["mean"].to_numpy() - stl["mean"].to_numpy()
    noise = np.sqrt(mtl["std"].to_numpy() ** 2 / mtl["n"].to_numpy() + stl["std"].to_numpy() ** 2 / stl["n"].to_numpy())
    exceeds = np.abs(gap) > noise_multiplier * noise  # False where noise is NaN
    gap_frame = pd.DataFrame({"train_loss": levels, "gap": gap, "noise": noise, "exceeds": exceeds})

    onset = None
    i = first_sustained(exceeds * np.sign(gap), min_run)
    if i is not None:
        onset = {
            "train_loss": float(levels[i]), "gap": float(gap[i]), "sign": float(np.sign(gap[i])),
            "epoch_mtl": float(mtl["epoch"].iloc[i]), "epoch_stl": float(stl["epoch"].iloc[i]),
        }
    return GapResult(task=task, measure=measure, curves=pd.concat([stl, mtl], ignore_index=True),
                     gap=gap_frame, onset=onset)


def first_sustained(signed: np.ndarray, min_run: int) -> int | None:
    """Index where the first run of at least ``min_run`` equal non-zero entries of ``signed`` starts."""
    start = None
    for i, value in enumerate(signed):
        if value != 0 and start is not None and signed[start] == value:
            pass
        else:
            start = i if value != 0 else None
        if start is not None and i - start + 1 >= min_run:
            return start
    return None
