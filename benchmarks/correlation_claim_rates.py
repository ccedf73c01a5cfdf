"""Size and power of the report's correlation claim (``correlation_claim`` after BH over the table).

Not a speed benchmark: the figures of docs/statistics.md §6.  Each simulated study is a unit table of
``tests/correlation_studies.py`` (tasks × seeds × 3 methods, shared MTL- and STL-run effects, task
means) with the report's 14 (factor, target) pairs (``DEFAULT_PAIRS``), tested as the report tests them
(:func:`~mtlens.analysis.correlation.correlation_table` at ``alpha``, Pearson) and read by
:func:`~mtlens.analysis.correlation.correlation_claim`.  Per cell, counted over studies:

- **null cells** (every pair uncorrelated): ``found`` the share of tables that state any correlation as
  found (the table's false-positive rate: every pair is a true null, so this is BH's FDR); ``test only``
  and ``interval only`` the share of tables with at least one such disagreement;
- **power cells** (``fisher_early_diff`` vs ``transfer_pct`` at correlation ``r``, the other 13 pairs
  null): the share of tables that state that pair as found, the share where its BH-adjusted permutation
  p alone and its interval alone exclude 0, its disagreements, and the share that state a null pair; then
  ``alone``: the share that state it in a table of that one pair (no family to adjust for).

``.venv/bin/python benchmarks/correlation_claim_rates.py --studies 400``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mtlens.analysis.correlation import CONFLICTS, DEFAULT_PAIRS, FACTORS, correlation_claim, correlation_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from correlation_studies import study_units  # noqa: E402  (the tests' generator of unit tables)

COLUMNS = ("fisher_early_diff", "transfer_pct", *FACTORS[1:], *CONFLICTS, "gap_mean", "log_ratio_mean")
"""Every variable of ``DEFAULT_PAIRS``; the first two (the first pair) carry the correlation of a power cell."""
NULLS = {
    "independent units": {"shared": False, "task_means": False},
    "shared run effects": {"task_means": False},
    "shared runs + task means": {},
    "uncorrelated, spread grows with factor": {"spread": True},
}
"""Null cells: keyword arguments of :func:`study_units` (``r = 0``)."""
DESIGNS = ((2, 6), (3, 6), (2, 8), (3, 8))
"""(tasks, seeds) of the power cells; the null cells use the first and the last."""


def claims(units, alpha: float, n_perm: int, seed: int, pairs=DEFAULT_PAIRS) -> list[tuple[str, bool, bool]]:
    """Per pair of ``pairs`` (in order): its claim, whether its adjusted p is at most ``alpha`` and
    whether its interval excludes 0."""
    table = correlation_table(units, pairs, seed=seed, alpha=alpha, n_perm=n_perm)
    return [
        (
            correlation_claim(row, alpha),
            row["pearson_p_adjusted"] <= alpha,
            not row["pearson_low"] <= 0 <= row["pearson_high"],
        )
        for row in table.to_dict("records")
    ]


def rate(count: int, trials: int) -> str:
    """``count / trials`` as a percentage with its binomial standard error."""
    share = count / trials
    return f"{100 * share:5.1f}% ± {100 * np.sqrt(share * (1 - share) / trials):3.1f} ({count}/{trials})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=400)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--n-perm", type=int, default=999, help="permutations per pair (the report: 9999)")
    parser.add_argument("--r", type=float, nargs="+", default=(0.3, 0.5))
    args = parser.parse_args()
    rng = np.random.default_rng(2026)
    print(f"{args.studies} studies per cell, alpha {args.alpha}, {len(DEFAULT_PAIRS)} pairs, n_perm {args.n_perm}")
    for name, options in NULLS.items():
        for tasks, seeds in (DESIGNS[0], DESIGNS[-1]):
            counts = np.zeros(3, int)
            for _ in range(args.studies):
                units = study_units(rng, tasks, seeds, COLUMNS, **options)
                said = {c for c, *_ in claims(units, args.alpha, args.n_perm, int(rng.integers(1 << 31)))}
                counts += ["shown" in said, "test only" in said, "interval only" in said]
            found, test_only, interval_only = (rate(c, args.studies) for c in counts)
            print(
                f"null, {name}, {tasks} tasks x {seeds} seeds: found {found}; "
                f"test only {test_only}; interval only {interval_only}"
            )
    for r in args.r:
        for tasks, seeds in DESIGNS:
            counts = np.zeros(7, int)
            for _ in range(args.studies):
                units = study_units(rng, tasks, seeds, COLUMNS, r=r)
                seed = int(rng.integers(1 << 31))
                (claim, rejects, excludes), *nulls = claims(units, args.alpha, args.n_perm, seed)
                [(alone, *_)] = claims(units, args.alpha, args.n_perm, seed, DEFAULT_PAIRS[:1])
                counts += [
                    claim == "shown",
                    rejects,
                    excludes,
                    claim == "test only",
                    claim == "interval only",
                    any(c == "shown" for c, *_ in nulls),
                    alone == "shown",
                ]
            shown, rejects, excludes, test_only, interval_only, null_found, alone = (
                rate(c, args.studies) for c in counts
            )
            print(
                f"r = {r}, {tasks} tasks x {seeds} seeds: found {shown}; BH p alone {rejects}; "
                f"interval alone {excludes}; test only {test_only}; interval only {interval_only}; "
                f"a null pair found {null_found}; in a one-pair table {alone}"
            )


if __name__ == "__main__":
    main()
