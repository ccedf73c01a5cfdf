"""Size and power of the claims of the grouping experiment's Mantel table (``predictor_correlations``).

Not a speed benchmark: the figures of docs/grouping.md ("Does the affinity predict transfer?").  Each table: 6 tasks,
a measured-transfer matrix and the 3 predictors' matrices over the 30 ordered pairs, each with independent task and
pair effects (``structured_matrix`` of tests/mantel_studies.py: what pairs sharing their tasks' runs give), 719
relabellings (all 6!), read by :func:`~mtlens.analysis.correlation.correlation_claim` as the table's claim columns say:

- **null**: every predictor independent of the transfer: the share of tables with any claim "shown" (Pearson or
  Spearman), "test only" and "interval only";
- **power**: TAG's matrix the transfer's plus an independent structured matrix (r about 0.7 over the pairs), the two
  other predictors null: the share of tables that show TAG's Pearson correlation, and that show a null predictor's.

``.venv/bin/python benchmarks/mantel_claim_rates.py --tables 400``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mtlens.analysis.grouping import predictor_correlations

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from mantel_studies import pair_table, structured_matrix  # noqa: E402  (the tests' generator of pairwise matrices)

TASKS = 6


def affinities(rng: np.random.Generator, tag_tracks: bool) -> pd.DataFrame:
    """One affinity table (``source, target, tag, cosine, early_gap, transfer_pct``) as described above."""
    transfer = structured_matrix(rng, TASKS)
    frame = pair_table(transfer, transfer)[["source", "target", "y"]].rename(columns={"y": "transfer_pct"})
    for name in ("tag", "cosine", "early_gap"):
        tracked = transfer if tag_tracks and name == "tag" else 0
        frame[name] = pair_table(structured_matrix(rng, TASKS) + tracked, transfer)["x"]
    return frame


def rate(count: int, trials: int) -> str:
    """``count / trials`` as a percentage with its binomial standard error."""
    share = count / trials
    return f"{100 * share:5.2f}% ± {100 * np.sqrt(share * (1 - share) / trials):4.2f} ({count}/{trials})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=400)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    rng = np.random.default_rng(2026)
    null = np.zeros(3, int)
    for _ in range(args.tables):
        table = predictor_correlations(affinities(rng, False), args.alpha, n_perm=719)
        said = set(table["pearson_claim"]) | set(table["spearman_claim"])
        null += ["shown" in said, "test only" in said, "interval only" in said]
    shown, test_only, interval_only = (rate(c, args.tables) for c in null)
    print(f"null, {args.tables} tables: shown {shown}; test only {test_only}; interval only {interval_only}")
    power = np.zeros(2, int)
    for _ in range(args.tables):
        table = predictor_correlations(affinities(rng, True), args.alpha, n_perm=719).set_index("x")
        power += [table.loc["tag", "pearson_claim"] == "shown", (table["pearson_claim"].drop("tag") == "shown").any()]
    tag, other = (rate(c, args.tables) for c in power)
    print(f"power, {args.tables} tables: TAG's Pearson shown {tag}; a null predictor shown {other}")


if __name__ == "__main__":
    main()
