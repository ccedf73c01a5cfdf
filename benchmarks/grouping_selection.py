"""The grouping table's chosen rows on simulated stores: bias of their test Δm, size and power of their tests.

Not a speed benchmark: the figures of docs/grouping.md ("The exhaustive best", "The predictors' rows,
cross-fitted"). Each store (``tests/grouping_stores.py``): every group of ``--tasks`` tasks trained at ``--seeds``
seeds, each run's test and validation error ``0.20`` + a seed effect (sd 0.03, shared by the seed's runs) + run noise
(sd 0.004) whose validation and test parts correlate ``rho`` (one trained model read twice). Per ``rho`` of ``--rhos``:

- **null**: no grouping differs from another or from STL (truth: Δm 0 for every grouping);
- **better**: the groups of one grouping (the first two tasks | the rest) ``--gain`` lower in error on validation
  and test, every other run as on the null: its Δm is ``100 gain / 0.20`` points against STL and against
  all-together, every other grouping's 0 or less.

``--skewed`` draws every noise term from a shifted exponential (skewness 2) instead of a normal.

Counted over ``--stores`` stores, per row of :func:`~mtlens.analysis.grouping.grouping_table`: the exhaustive
best's (``choice`` :data:`~mtlens.analysis.grouping.BEST_CHOICE`, a table without predictors) and each predictor's of
:data:`PREDICTED` (a table of its own without the best), cross-fitted and, for comparison, chosen from every seed's
affinities and read on the same seeds (the table before 2026-12-06): its mean test Δm and ``vs_all`` (on the null
both should be 0), how often ``p_vs_stl`` and ``p_vs_all`` are at most ``--alpha`` (size on the null, power on
``better``), how often its intervals cover the truth on the null, and how often it reads the better grouping on every
seed.  The best's line reads only the table, so the same command measures any version of the code (docs/grouping.md:
the version before cross-fitting against the current one).

``.venv/bin/python benchmarks/grouping_selection.py --stores 400``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mtlens.analysis.grouping import BEST_CHOICE, grouping_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from grouping_stores import MU, fixed, grouping_values, pair_affinity  # noqa: E402  (the tests' generator of grouping stores)

PREDICTED = {"transfer_pct": "test", "val_transfer": "val"}
"""The predictors measured: the pairwise transfer on the pair runs' test values (``transfer_pct``) and on their
validation values (``val_transfer``: validation only, as ``early_gap``), :func:`grouping_stores.pair_affinity`."""


def choice_rows(
    tasks: list[str], seeds: int, stores: int, rho: float, gain: float, seed: int, skewed: bool = False
) -> dict[str, pd.DataFrame]:
    """Per row of ``stores`` simulated stores: the exhaustive best's (a table without predictors, as measured
    before the predictors were added) and each predictor's of :data:`PREDICTED` in a table of its own (no best),
    cross-fitted (its affinities on each half of the seeds) and ``same seeds`` (its affinities on every seed,
    :func:`grouping_stores.fixed`: the reading before the predictors were cross-fitted)."""
    rng = np.random.default_rng(seed)
    half = len(tasks) // 2
    better = {"+".join(tasks[:half]): gain, "+".join(tasks[half:]): gain}
    rows: dict[str, list[pd.Series]] = {}
    for _ in range(stores):
        values = grouping_values(rng, tasks, seeds, better, rho, skewed=skewed)
        table = grouping_table(values, tasks, 2, {})
        rows.setdefault("exhaustive best", []).append(table[table["choice"] == BEST_CHOICE].iloc[0])
        for name, column in PREDICTED.items():
            source = pair_affinity(values, column)
            for reading, predictor in (("same seeds", fixed(source(range(seeds)))), ("cross-fitted", source)):
                table = grouping_table(values, tasks, 2, {name: predictor}, exhaustive=False)
                rows.setdefault(f"{name} ({reading})", []).append(table.iloc[0])
    return {label: pd.DataFrame(found) for label, found in rows.items()}


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
            for label, rows in choice_rows(tasks, args.seeds, args.stores, rho, gain, args.seed, args.skewed).items():
                se = rows["delta_m"].std() / np.sqrt(len(rows))
                rejects = {p: float((rows[p] <= args.alpha).mean()) for p in ("p_vs_stl", "p_vs_all")}
                line = (
                    f"rho {rho:.2f} {name:6s} {label:28s}: mean delta_m {rows['delta_m'].mean():+.3f} (se {se:.3f}), "
                    f"mean vs_all {rows['vs_all'].mean():+.3f}; p_vs_stl <= {args.alpha:g} "
                    f"{rejects['p_vs_stl']:.3f}, p_vs_all <= {args.alpha:g} {rejects['p_vs_all']:.3f}"
                )
                if gain == 0:
                    covers = [
                        ((rows[f"{c}_low"] <= 0) & (0 <= rows[f"{c}_high"])).mean() for c in ("delta_m", "vs_all")
                    ]
                    line += f"; coverage of 0 {covers[0]:.3f} / {covers[1]:.3f}"
                else:
                    line += f"; reads {target} on every seed in {(rows['grouping'] == target).mean():.3f}"
                print(line, flush=True)
            print(f"({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
