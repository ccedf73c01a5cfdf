"""Synthetic paired gap curves with a known answer: AR(1) per-seed noise and a gap from a given checkpoint on
(tests/test_gap.py's onset and level tests, and benchmarks/gap_onset_power.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def ar1(rng: np.random.Generator, n: int, k: int, rho: float = 0.9) -> np.ndarray:
    """``n`` stationary AR(1) series of length ``k`` with unit variance."""
    e = np.empty((n, k))
    e[:, 0] = rng.standard_normal(n)
    for j in range(1, k):
        e[:, j] = rho * e[:, j - 1] + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    return e


def ar1_study(
    rng: np.random.Generator,
    seeds: int,
    gap: float,
    onset: int,
    k: int = 30,
    noise: float = 0.05,
    loss_noise: tuple[float, float] = (0.0, 0.0),
) -> tuple[pd.DataFrame, np.ndarray]:
    """Paired runs in wide checkpoint form: true training loss ``x_k`` from 2 to 0.1 over ``k``
    checkpoints; G = 0.3 + x + seed effect + AR(1) noise (sd ``noise``), MTL adds ``gap`` from checkpoint
    ``onset`` on.  The recorded training loss is ``x * exp(sd * z)`` with sd ``loss_noise`` (STL, MTL).
    Also returns the per-seed difference curves at the true checkpoints (the reference's input)."""
    x = np.geomspace(2.0, 0.1, k)
    seed_effect = 0.1 * rng.standard_normal((seeds, 1))
    frames, values = [], {}
    for mode, sd, shift in (("stl", loss_noise[0], 0.0), ("mtl", loss_noise[1], gap)):
        values[mode] = 0.3 + x + seed_effect + noise * ar1(rng, seeds, k) + shift * (np.arange(k) >= onset)
        recorded = x * np.exp(sd * rng.standard_normal((seeds, k)))
        frames.append(
            pd.DataFrame(
                {
                    "mode": mode,
                    "run_id": np.repeat([f"{mode}{s}" for s in range(seeds)], k),
                    "seed": np.repeat(np.arange(seeds), k),
                    "step": np.tile(np.arange(k), seeds),
                    "epoch": np.tile(np.arange(k) / 3.0, seeds),
                    "train/loss": recorded.ravel(),
                    "val/loss": values[mode].ravel(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True), values["mtl"] - values["stl"]


def unpaired_runs(values: dict[str, np.ndarray], x: np.ndarray, steps_per_epoch: float) -> pd.DataFrame:
    """Checkpoint rows of runs whose seeds do not match (MTL seeds offset by 100): ``values[mode]`` is the
    ``(n, k)`` validation loss of ``n`` runs at the training losses ``x`` (``(k,)``, one per step)."""
    frames = []
    for mode, v in values.items():
        n, k = v.shape
        frames.append(
            pd.DataFrame(
                {
                    "mode": mode,
                    "run_id": np.repeat([f"{mode}{s}" for s in range(n)], k),
                    "seed": np.repeat(np.arange(n) + (100 if mode == "mtl" else 0), k),
                    "step": np.tile(np.arange(k), n),
                    "epoch": np.tile(np.arange(k) / steps_per_epoch, n),
                    "train/loss": np.tile(x, n),
                    "val/loss": v.ravel(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
