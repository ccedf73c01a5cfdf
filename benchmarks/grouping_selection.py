"""The grouping table's exhaustive best on simulated stores: bias of its test Δm, size and power of its tests.

Not a speed benchmark: the figures of docs/grouping.md ("The exhaustive best").  Each store
(``tests/grouping_stores.py``): every group of ``--tasks`` tasks trained at ``--seeds`` seeds, each run's test and
validation error ``0.20`` + a seed effect (sd 0.03, shared by the seed's runs) + run noise (sd 0.004) whose
validation and test parts correlate ``rho`` (one trained model read twice).  Per ``rho`` of ``--rhos``:

- **null**: no grouping differs from another or from STL (truth: Δm 0 for every grouping);
- **better**: the groups of one grouping (the first two tasks | the rest) ``--gain`` lower in error on validation
  and test, every other run as on the null: its Δm is ``100 gain / 0.20`` points against STL and against
  all-together, every other grouping's 0 or less.

``--skewed`` draws every noise term from a shifted exponential (skewness 2) instead of a normal.

Counted over ``--stores`` stores, for the row whose ``choice`` starts with "exhaustive best" of
:func:`~mtlens.analysis.grouping.grouping_table` (no predictor): its mean test Δm and ``vs_all`` (on the null both
should be 0), how often ``p_vs_stl`` and ``p_vs_all`` are at most ``--alpha`` (size on the null, power on
``better``), how often its intervals cover the truth on the null, and how often it reads the better grouping.  The
script reads only the table, so the same command measures any version of the code (docs/grouping.md: the version
before cross-fitting against the current one).

``.venv/bin/python benchmarks/grouping_selection.py --stores 400``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mtlens.analysis.grouping import grouping_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from grouping_stores import MU, grouping_values  # noqa: E402  (the tests' generator of grouping stores)


def best_rows(
    tasks: list[str], seeds: int, stores: int, rho: float, gain: float, seed: int, skewed: bool = False
) -> pd.DataFrame:
    """The exhaustive best's row of ``stores`` simulated stores."""
    rng = np.random.default_rng(seed)
    half = len(tasks) // 2
    better = {"+".join(tasks[:half]): gain, "+".join(tasks[half:]): gain}
    rows = []
    for _ in range(stores):
        table = grouping_table(grouping_values(rng, tasks, seeds, better, rho, skewed=skewed), tasks, 2, {})
        rows.append(table[table["choice"].str.startswith("exhaustive best")].iloc[0])
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--stores", type=int, default=200)
    parser.add_argument("--rhos", type=float, nargs="+", default=[0.0, 0.9])
    parser.add_argument("--gain", type=float, default=0.006)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skewed", action="store_true", help="run noise skewed (shifted exponential, skewness 2)")
    args = parser.parse_args()
    tasks = [chr(ord("a") + k) for k in range(args.tasks)]
    target = f"{'+'.join(tasks[: args.tasks // 2])} | {'+'.join(tasks[args.tasks // 2 :])}"
    truth = 100 * args.gain / MU
    print(
        f"{args.tasks} tasks, {args.seeds} seeds, {args.stores} stores per line; better grouping {target}: +{truth:.2f}"
    )
    for rho in args.rhos:
        for name, gain in (("null", 0.0), ("better", args.gain)):
            start = time.perf_counter()
            rows = best_rows(tasks, args.seeds, args.stores, rho, gain, args.seed, args.skewed)
            se = rows["delta_m"].std() / np.sqrt(len(rows))
            rejects = {p: float((rows[p] <= args.alpha).mean()) for p in ("p_vs_stl", "p_vs_all")}
            line = (
                f"rho {rho:.2f} {name:6s}: mean delta_m {rows['delta_m'].mean():+.3f} (se {se:.3f}), "
                f"mean vs_all {rows['vs_all'].mean():+.3f}; p_vs_stl <= {args.alpha:g} {rejects['p_vs_stl']:.3f}, "
                f"p_vs_all <= {args.alpha:g} {rejects['p_vs_all']:.3f}"
            )
            if gain == 0:
                covers = [((rows[f"{c}_low"] <= 0) & (0 <= rows[f"{c}_high"])).mean() for c in ("delta_m", "vs_all")]
                line += f"; coverage of 0 {covers[0]:.3f} / {covers[1]:.3f}"
            else:
                line += f"; reads {target} on every seed in {(rows['grouping'] == target).mean():.3f}"
            print(f"{line} ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
