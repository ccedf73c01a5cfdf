"""Size and power of the corruptions experiment's test (``corruption_tests``: MTL − STL drop, paired by seed, BH).

Not a speed benchmark: the figures of docs/assumptions.md (feature transfer under corruptions).  Each
simulated study is a table of linear-probe accuracies of ``tests/corruption_studies.py`` (seeds × 2 tasks,
one STL and one MTL encoder per seed and task, the 10 corruptions at severities 1-5), tested as the report
tests it: :func:`~mtlens.analysis.assumptions.corruption_tests` at ``alpha``, one family of 20 (task,
corruption) rows with one skewness bound, Benjamini–Hochberg.  Per cell, over studies:

- **null cells** (no difference in the drop; normal, or the MTL encoder's robustness skewed): ``any`` the
  share of tables with any row rejected (every row is a true null, so this is BH's FDR), ``rows`` the
  share of rows rejected;
- **power cells** (MTL loses ``delta`` more under every corruption of task 0, or under one corruption of
  it, ``lone``): the share of true rows rejected, the share of tables with any of them rejected, and the
  false discovery proportion (null rows rejected / rows rejected, 0 without rejections) averaged.

``delta`` is in units of the paired difference's sd (``d_z``).

``.venv/bin/python benchmarks/corruption_test_rates.py --studies 400``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mtlens.analysis.assumptions import corruption_tests
from mtlens.data.corruptions import CORRUPTIONS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from correlation_claim_rates import rate  # noqa: E402  (this folder's sibling script)

from corruption_studies import DIFFERENCE_SD, corruption_study  # noqa: E402  (the tests' generator)

TASKS = 2


def rejections(accuracy, alpha: float) -> np.ndarray:
    """``(tasks, corruptions)`` in the order of ``CORRUPTIONS``: which rows of the report's table are
    rejected at FDR ``alpha``."""
    table = corruption_tests(accuracy, alpha)
    adjusted = table.pivot(index="task", columns="corruption", values="p_adjusted")[list(CORRUPTIONS)]
    return adjusted.to_numpy(float) <= alpha


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=400)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seeds", type=int, nargs="+", default=(6, 8))
    parser.add_argument(
        "--d-z", type=float, nargs="+", default=(1.5, 2.5), help="true differences, every corruption of task 0"
    )
    parser.add_argument("--lone-d-z", type=float, default=4.0, help="true difference, one corruption of task 0")
    args = parser.parse_args()
    rng = np.random.default_rng(2026)
    print(f"{args.studies} studies per cell, alpha {args.alpha}, {TASKS} tasks x 10 corruptions per table")
    for seeds in args.seeds:
        for skewed in (False, True):
            tables = rows = 0
            for _ in range(args.studies):
                rejected = rejections(corruption_study(rng, seeds, TASKS, skewed=skewed), args.alpha)
                tables, rows = tables + rejected.any(), rows + rejected.sum()
            name = "skewed (MTL robustness Exp(1) - 1)" if skewed else "normal"
            rows_rate = rate(rows, args.studies * rejected.size)
            print(f"null, {name}, {seeds} seeds: any {rate(tables, args.studies)}; rows {rows_rate}")
        cells = [(f"d_z {d} on task 0's 10 corruptions", np.s_[0, :], d) for d in args.d_z]
        for name, true, d_z in [*cells, (f"lone d_z {args.lone_d_z} on one corruption", np.s_[0, 0], args.lone_d_z)]:
            delta = np.zeros((TASKS, 10))
            delta[true] = d_z * DIFFERENCE_SD
            found = tables = 0
            fdp = []
            for _ in range(args.studies):
                rejected = rejections(corruption_study(rng, seeds, TASKS, delta), args.alpha)
                found, tables = found + rejected[true].sum(), tables + rejected[true].any()
                fdp.append((rejected & (delta == 0)).sum() / max(rejected.sum(), 1))
            print(
                f"{name}, {seeds} seeds: true rows rejected {rate(found, args.studies * (delta != 0).sum())}; "
                f"any true row {rate(tables, args.studies)}; mean false discovery proportion {100 * np.mean(fdp):.1f}%"
            )


if __name__ == "__main__":
    main()
