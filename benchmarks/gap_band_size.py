"""Size and power of "a gap exists" (``p_any``, the simultaneous band) on the nulls where the sign flips and the
label permutation are liberal: skewed paired differences and unequal spreads of unpaired runs.

Not a speed benchmark: the figures of docs/statistics.md §3 ("Where 'a gap exists' holds its level").  Data
(``tests/gap_curves.py``'s AR(1) noise, autocorrelation 0.9, 30 checkpoints, training loss 2 → 0.1 taken as
the levels themselves, so no monotonizing or interpolation enters):

- **paired**: per-seed difference curves ``0.05 (e_MTL − e_STL)`` (AR(1), unit variance each), plus on the
  skewed nulls a per-seed shift ``k · (Exp(1) − 1)`` common to every level (or ``k`` times a standardized shifted
  gamma of skewness 0.5, 1 or 1.5, as the one-level test's family of §2; in the measure's units: the
  seeds' sd of MTL's measure in ``ar1_study`` is ``sqrt(0.1^2 + 0.05^2) = 0.11``, of the differences 0.071),
  and for power ``d_z · 0.05 sqrt(2)`` from checkpoint 3 on.  Tests: the sign-flip max-|t| test
  (:func:`~mtlens.analysis.inference.paired_max_t`, before) and :func:`~mtlens.analysis.inference.paired_band_test`
  (Hall's ``T_H`` against the larger of the sign flips' and a least-favourable simulated tail, after).
- **unpaired**: each run ``0.05 r (c z + 0.5 e)`` (a seed effect ``z``, standard normal, or on the skewed
  nulls of the MTL runs ``±(Exp(1) − 1)``, of weight ``c``, and AR(1) or independent noise ``e`` per level,
  :data:`STRUCTURES`), ``r`` the spread ratio of the MTL runs (1 for STL), plus for power ``gap`` from
  checkpoint 3 on.  Tests: the label permutation of max |Welch t|
  (:func:`~mtlens.analysis.inference.unpaired_max_t`, before), :func:`~mtlens.analysis.inference.unpaired_band_test`
  (the larger of the permutation tail and Bonferroni's bound over the levels of Hsu's p-values,
  :func:`~mtlens.analysis.inference.hsu_bonferroni_maxima`, after) and two candidates not adopted, each taken
  as the larger of its tail and the permutation's: ``pooled copula``, the smallest Hsu p-value against Gaussian
  curves with the pooled correlation of both groups' standardized runs (the band's second reference at
  45a4b58, liberal where 3–6 runs dominate); ``max(perm, PB)``, a parametric bootstrap of max |Welch t| that
  redraws each group at its own size as normal curves with the group's sample covariance (Krishnamoorthy, Lu &
  Mathew 2007, for curves the Gaussian multiplier of Chernozhukov, Chetverikov & Kato 2013).

``PYTHONPATH=src .venv/bin/python benchmarks/gap_band_size.py --trials 400``
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import stats

from mtlens.analysis.inference import paired_band_test, paired_max_t, unpaired_band_test, unpaired_max_t

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from gap_curves import ar1  # noqa: E402  (the tests' AR(1) noise)

LEVELS = 30
BOOTSTRAP = 1_999
"""Simulated data sets per candidate reference of the unpaired candidates."""

PAIRED = (
    ("A/A 6 seeds", 6, 0.0, 2.0, 0.0),
    ("A/A 8 seeds", 8, 0.0, 2.0, 0.0),
    ("A/A 12 seeds", 12, 0.0, 2.0, 0.0),
    ("skewed 0.3, 8 seeds", 8, 0.3, 2.0, 0.0),
    ("skewed 1, 6 seeds", 6, 1.0, 2.0, 0.0),
    ("skewed 1, 8 seeds", 8, 1.0, 2.0, 0.0),
    ("skewed 1, 12 seeds", 12, 1.0, 2.0, 0.0),
    ("skewness 0.5, 8 seeds", 8, 1.0, 0.5, 0.0),
    ("skewness 1, 8 seeds", 8, 1.0, 1.0, 0.0),
    ("skewness 1.5, 8 seeds", 8, 1.0, 1.5, 0.0),
    ("skewness 1, 6 seeds", 6, 1.0, 1.0, 0.0),
    ("skewness 1, 12 seeds", 12, 1.0, 1.0, 0.0),
    ("power d_z 1, 8 seeds", 8, 0.0, 2.0, 1.0),
)
"""``(name, seeds, shift k, skewness of the shift, d_z)``."""

UNPAIRED = (
    ("3 vs 9, equal spread", 3, 9, 1.0, 0.0, 0.0, "seed+AR"),
    ("6 vs 6, equal spread", 6, 6, 1.0, 0.0, 0.0, "seed+AR"),
    ("9 vs 3, equal spread", 9, 3, 1.0, 0.0, 0.0, "seed+AR"),
    ("3 vs 9, MTL 3x spread", 3, 9, 3.0, 0.0, 0.0, "seed+AR"),
    ("4 vs 8, MTL 2x spread", 4, 8, 2.0, 0.0, 0.0, "seed+AR"),
    ("6 vs 6, MTL 3x spread", 6, 6, 3.0, 0.0, 0.0, "seed+AR"),
    ("9 vs 3, MTL 3x spread", 9, 3, 3.0, 0.0, 0.0, "seed+AR"),
    ("3 vs 9, 3x, skewed +", 3, 9, 3.0, 1.0, 0.0, "seed+AR"),
    ("3 vs 9, 3x, skewed -", 3, 9, 3.0, -1.0, 0.0, "seed+AR"),
    ("6 vs 6, 3x, skewed +", 6, 6, 3.0, 1.0, 0.0, "seed+AR"),
    ("4 vs 8, 2x, skewed -", 4, 8, 2.0, -1.0, 0.0, "seed+AR"),
    ("3 vs 9, MTL 5x spread", 3, 9, 5.0, 0.0, 0.0, "seed+AR"),
    ("3 vs 9, 5x, weak seed effect", 3, 9, 5.0, 0.0, 0.0, "weak seed"),
    ("3 vs 12, 5x, AR only", 3, 12, 5.0, 0.0, 0.0, "AR"),
    ("3 vs 12, 5x, independent levels", 3, 12, 5.0, 0.0, 0.0, "iid"),
    ("3 vs 20, 5x, independent levels", 3, 20, 5.0, 0.0, 0.0, "iid"),
    ("4 vs 12, 5x, independent levels", 4, 12, 5.0, 0.0, 0.0, "iid"),
    ("3 vs 9, 5x, MTL iid, STL seed+AR", 3, 9, 5.0, 0.0, 0.0, "MTL iid, STL seed+AR"),
    ("3 vs 9, 5x, MTL seed+AR, STL iid", 3, 9, 5.0, 0.0, 0.0, "MTL seed+AR, STL iid"),
    ("3 vs 30, 10x, same structure", 3, 30, 10.0, 0.0, 0.0, "seed+AR"),
    ("3 vs 30, 10x, MTL iid, STL seed+AR", 3, 30, 10.0, 0.0, 0.0, "MTL iid, STL seed+AR"),
    ("3 vs 30, 10x, MTL iid, STL seed+small", 3, 30, 10.0, 0.0, 0.0, "MTL iid, STL seed+small"),
    ("6 vs 30, 10x, MTL iid, STL seed+AR", 6, 30, 10.0, 0.0, 0.0, "MTL iid, STL seed+AR"),
    ("power 4 vs 8, gap 0.1", 4, 8, 1.0, 0.0, 0.1, "seed+AR"),
    ("power 6 vs 6, gap 0.1", 6, 6, 1.0, 0.0, 0.1, "seed+AR"),
    ("power 6 vs 6, gap 0.2", 6, 6, 1.0, 0.0, 0.2, "seed+AR"),
    ("power 12 vs 12, gap 0.1", 12, 12, 1.0, 0.0, 0.1, "seed+AR"),
    ("power 6 vs 6, independent levels, gap 0.03", 6, 6, 1.0, 0.0, 0.03, "iid"),
)
"""``(name, MTL runs, STL runs, MTL spread ratio, skew of the MTL seed effect (0: normal, ±1: ±(Exp(1) − 1)),
gap, structure)``; the structure (:data:`STRUCTURES`) says how each mode's runs vary along the levels."""

STRUCTURES = {
    "seed+AR": ((1.0, "ar1"), (1.0, "ar1")),
    "weak seed": ((0.3, "ar1"), (0.3, "ar1")),
    "AR": ((0.0, "ar1"), (0.0, "ar1")),
    "iid": ((0.0, "iid"), (0.0, "iid")),
    "MTL iid, STL seed+AR": ((0.0, "iid"), (1.0, "ar1")),
    "MTL seed+AR, STL iid": ((1.0, "ar1"), (0.0, "iid")),
    "MTL iid, STL seed+small": ((0.0, "iid"), (1.0, "small")),
}
"""Per structure, ``(MTL, STL)`` each ``(weight c of the seed effect z, noise e)``: a run is ``0.05 r (c z + 0.5
e)``, ``e`` AR(1) (autocorrelation 0.9), independent per level (``iid``) or a tenth of that (``small``): from
levels that move together to levels that do not, and groups whose correlation along the levels differs."""


def paired_curves(rng: np.random.Generator, seeds: int, shift: float, skewness: float, d_z: float) -> np.ndarray:
    """Per-seed difference curves ``(seeds, LEVELS)`` of one data set (module docstring)."""
    d = 0.05 * (ar1(rng, seeds, LEVELS) - ar1(rng, seeds, LEVELS))
    d += d_z * 0.05 * math.sqrt(2) * (np.arange(LEVELS) >= 3)
    if skewness == 2:
        return d + shift * (rng.exponential(size=(seeds, 1)) - 1)
    a = 4 / skewness**2  # the shifted gamma of that skewness, standardized: Exp(1) - 1 at skewness 2
    return d + shift * (rng.gamma(a, size=(seeds, 1)) - a) / math.sqrt(a)


def unpaired_curves(
    rng: np.random.Generator, n_mtl: int, n_stl: int, ratio: float, skew: float, gap: float, structure: str
) -> tuple[np.ndarray, np.ndarray]:
    """MTL and STL curves ``(n, LEVELS)`` of one data set (module docstring, :data:`STRUCTURES`)."""
    (c_mtl, e_mtl), (c_stl, e_stl) = STRUCTURES[structure]

    def noise(n: int, kind: str) -> np.ndarray:
        if kind == "ar1":
            return ar1(rng, n, LEVELS)
        return rng.standard_normal((n, LEVELS)) * (0.1 if kind == "small" else 1.0)

    effect = rng.standard_normal((n_mtl, 1)) if skew == 0 else skew * (rng.exponential(size=(n_mtl, 1)) - 1)
    mtl = 0.05 * ratio * (c_mtl * effect + 0.5 * noise(n_mtl, e_mtl))
    stl = 0.05 * (c_stl * rng.standard_normal((n_stl, 1)) + 0.5 * noise(n_stl, e_stl))
    return mtl + gap * (np.arange(LEVELS) >= 3), stl


def welch_t(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Welch's t per level over the runs axis (``-2``), any leading axes."""
    se = np.sqrt(x.var(axis=-2, ddof=1) / x.shape[-2] + y.var(axis=-2, ddof=1) / y.shape[-2])
    return (x.mean(axis=-2) - y.mean(axis=-2)) / se


def pooled_copula(x: np.ndarray, y: np.ndarray, observed: np.ndarray, rng: np.random.Generator) -> float:
    """The second, rejected reference of the band (45a4b58): the smallest of the levels' Hsu p-values against
    Gaussian curves whose correlation is pooled from both groups' runs standardized per level."""
    n1, n2 = len(x), len(y)
    units = np.vstack([(a - a.mean(axis=0)) / a.std(axis=0, ddof=1) for a in (x, y)])
    z = np.abs(rng.standard_normal((BOOTSTRAP, n1 + n2)) @ units / math.sqrt(n1 + n2 - 2)).max(axis=1)
    hsu = float((2 * stats.t.sf(observed, min(n1, n2) - 1)).min())
    return (1 + np.sum(2 * stats.norm.sf(z) <= hsu)) / (1 + BOOTSTRAP)


def unpaired_candidates(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    """``p_any`` of the label permutation, of the band test and of the two candidates of the module docstring
    (each the larger of its own tail and the permutation's, as the band takes)."""
    n1, n2 = len(x), len(y)
    observed = np.abs(welch_t(x, y))
    permutation = unpaired_max_t(x, y).p_any
    rx, ry = x - x.mean(axis=0), y - y.mean(axis=0)
    boot_x = rng.standard_normal((BOOTSTRAP, n1, n1)) @ rx / math.sqrt(n1 - 1)
    boot_y = rng.standard_normal((BOOTSTRAP, n2, n2)) @ ry / math.sqrt(n2 - 1)
    boot = np.abs(welch_t(boot_x, boot_y)).max(axis=1)
    bootstrap = (1 + np.sum(boot >= observed.max())) / (1 + BOOTSTRAP)
    return {
        "label permutation": permutation,
        "band test": unpaired_band_test(x, y).p_any,
        "pooled copula": max(permutation, pooled_copula(x, y, observed, rng)),
        "max(perm, PB)": max(permutation, bootstrap),
    }


def rates(trials: int, seed: int, draw: Callable[[np.random.Generator], dict[str, float]], alpha: float) -> str:
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    for _ in range(trials):
        for name, p in draw(rng).items():
            counts[name] = counts.get(name, 0) + (p <= alpha)
    return "  ".join(f"{name} {100 * c / trials:5.1f}%" for name, c in counts.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--only", choices=("paired", "unpaired"), default=None)
    parser.add_argument("--designs", nargs="*", default=[""], help="run the designs whose name contains one of these")
    args = parser.parse_args()
    se = 100 * math.sqrt(args.alpha * (1 - args.alpha) / args.trials)
    print(f"{args.trials} data sets per design, alpha {args.alpha}; level + 2 SE = {100 * args.alpha + 2 * se:.1f}%")
    for i, (name, seeds, shift, skewness, d_z) in enumerate(PAIRED if args.only != "unpaired" else ()):
        if not any(part in name for part in args.designs):
            continue
        start = time.perf_counter()

        def paired(
            rng: np.random.Generator, s: int = seeds, k: float = shift, g: float = skewness, d: float = d_z
        ) -> dict[str, float]:
            curves = paired_curves(rng, s, k, g, d)
            return {"sign flips max|t|": paired_max_t(curves).p_any, "band test": paired_band_test(curves).p_any}

        line = rates(args.trials, 100 + i, paired, args.alpha)
        print(f"paired   {name:24s} {line}  ({time.perf_counter() - start:.0f} s)", flush=True)
    for i, (name, n1, n2, ratio, skew, gap, structure) in enumerate(UNPAIRED if args.only != "paired" else ()):
        if not any(part in name for part in args.designs):
            continue
        start = time.perf_counter()

        def unpaired(
            rng: np.random.Generator,
            a: int = n1,
            b: int = n2,
            r: float = ratio,
            k: float = skew,
            g: float = gap,
            kind: str = structure,
        ) -> dict:
            return unpaired_candidates(*unpaired_curves(rng, a, b, r, k, g, kind), rng)

        line = rates(args.trials, 200 + i, unpaired, args.alpha)
        print(f"unpaired {name:24s} {line}  ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
