"""Onset power of the gap's fixed-sequence test, alone and in a family of curves, against the issue's reference.

Not a speed benchmark: the figures of docs/statistics.md §3 (issue 23: "the onset test's power is ≥ 0.9×
the fixed-sequence reference at 6, 8 and 12 seeds").  One data set: AR(1) per-seed curves (``tests/gap_curves.py``, the
design of tests/test_gap.py: 30 checkpoints, training loss 2 → 0.1 recorded with relative noise 0.01, validation
loss ``0.3 + x + seed effect + AR(1) noise``, ``rho = 0.9``, sd 0.05), paired STL and MTL runs; MTL adds
``d_z`` per-level sds of the paired differences from checkpoint 3 on.  Counted per data set, at level
``alpha``:

- **reference**: the issue's fixed-sequence test on the true per-checkpoint differences with the exact
  sign-flip p-value per level (``scipy.stats.permutation_test``-equivalent enumeration of ``2^n`` flips);
- **alone**: the pipeline's onset (:func:`~mtlens.analysis.gap.gap_from_checkpoints`, fixed bound 2);
- **in a family**: the same curve with ``--curves − 1`` null curves of the same design, the family's
  skewness bound applied (:func:`~mtlens.analysis.gap.gap_family`'s first step), onset at ``alpha``
  (not with ``--curves 1``).

``--designs`` takes ``pairs:d_z`` pairs; the default is tests/test_gap.py's, and the issue's own grid is
``--designs 6:1 6:1.5 6:2 8:1 8:1.5 8:2 12:1 12:1.5 12:2``.

``.venv/bin/python benchmarks/gap_onset_power.py --trials 120``
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from mtlens.analysis.gap import bound_of_gaps, gap_from_checkpoints

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from gap_curves import ar1_study  # noqa: E402  (the tests' generator of synthetic gap curves)

DESIGNS = ("6:1.5", "8:1", "12:0.8")
"""``pairs:d_z``: the settings of tests/test_gap.py's onset power test."""


def sign_flip_onset(d: np.ndarray, alpha: float) -> int | None:
    """The reference: fixed sequence from the last level with the exact two-sided sign-flip p-value of the
    mean per level (all ``2^n`` patterns)."""
    n = d.shape[0]
    patterns = np.array(list(itertools.product([-1.0, 1.0], repeat=n)))
    null = np.abs(patterns @ d) / n  # (2^n, L)
    p = (null >= np.abs(d.mean(axis=0)) * (1 - 1e-9)).mean(axis=0)
    onset = None
    for j in range(d.shape[1] - 1, -1, -1):
        if p[j] > alpha or np.sign(d[:, j].mean()) != np.sign(d[:, -1].mean()):
            break
        onset = j
    return onset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=120)
    parser.add_argument("--curves", type=int, default=12)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--designs", nargs="+", default=DESIGNS, help="pairs:d_z")
    args = parser.parse_args()
    for design in args.designs:
        seeds, d_z = int(design.split(":")[0]), float(design.split(":")[1])
        rng = np.random.default_rng(seeds)
        counts, bounds = np.zeros(3), []
        for _ in range(args.trials):
            wide, d = ar1_study(rng, seeds, d_z * 0.05 * np.sqrt(2), 3, loss_noise=(0.01, 0.01))
            result = gap_from_checkpoints(wide, "t", stability=False)
            nulls = [
                gap_from_checkpoints(ar1_study(rng, seeds, 0.0, 3, loss_noise=(0.01, 0.01))[0], "t", stability=False)
                for _ in range(args.curves - 1)
            ]
            bound = bound_of_gaps([result, *nulls])
            bounds.append(bound.value)
            counts += [
                sign_flip_onset(d, args.alpha) is not None,
                result.persistent_from(args.alpha) is not None,
                result.with_bound(bound).persistent_from(args.alpha) is not None,
            ]
        reference, alone, family = 100 * counts / args.trials
        in_family = (
            f" | in a family of {args.curves} {family:.1f}% ({family / reference:.2f}x; "
            f"median bound {np.median(bounds):.2f})"
        )
        print(
            f"{seeds} pairs, d_z {d_z}: reference {reference:.1f}% | alone {alone:.1f}% ({alone / reference:.2f}x)"
            + (in_family if args.curves > 1 else ""),
            flush=True,
        )


if __name__ == "__main__":
    main()
