"""Held-out check of the gap's onset test on real runs of a setting the test suite does not name.

Not a speed benchmark: issue 23's "Done when" for the gap, measured on ``mnist1d_split`` (the tests use
``digits_pair`` and ``mnist_pair``).  STL runs of 12 seeds per task are trained (or reused from
``--store``); ``--splits`` distinct A/A splits pair 6 seeds relabelled "MTL" with 6 STL seeds (the
paired design of :mod:`mtlens.analysis.calibration`).  Per split:

- **A/A**: no effect; a false onset is a ``p_persistent <= alpha`` of one curve (task x measure), and a
  family claim is any onset shown after :func:`~mtlens.analysis.gap.gap_family` over the split's curves.
  For comparison, the exact sign-flip (unpaired: label permutation) test of the end level, the
  per-level test before the t test, on the same curves.
- **A/A skewed**: the same paired split with mean-zero, right-skewed per-seed shifts added to the "MTL"
  runs' measures at every checkpoint: ``--skew`` seed sd times ``(E − 1)``, ``E ~ Exponential(1)``
  (skewness 2), one draw per (seed, task, measure): the null "MTL does not change the mean" without
  the symmetry of an exchangeable A/A pair (issue 23.6).
- **A/A unbalanced**: unpaired splits of 3 "MTL" seeds against the 9 others (Welch's t per level).
- **spike**: a persistent gap of ``--effect`` seed standard deviations (the across-seed sd of the
  measure over the 12 STL runs, median over the checkpoints from epoch 1 on, per task) added to the
  "MTL" runs' validation loss (``--measures val/loss``, or also the error) at every checkpoint from
  epoch ``--from-epoch`` on.  Counted: an onset of the right sign on a spiked curve (per curve), an
  onset shown after the family control, and, for reference, the plain paired t test
  (``scipy.stats.ttest_rel``) of the measure at the last checkpoint.

Prints one line per count with its share and Clopper–Pearson interval, and for each null the share of
curves whose ``p_persistent`` reaches ``alpha / 4`` and ``alpha / 2`` (the levels Benjamini–Hochberg over a
split's 4 curves tests the smallest p-values at: a family claim needs one of them there).
``.venv/bin/python benchmarks/gap_heldout.py --store /tmp/gap_heldout``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from mtlens.analysis.calibration import GAP_MEASURES, aa_rows, aa_splits
from mtlens.analysis.gap import gap_family, generalization_gap
from mtlens.analysis.inference import clopper_pearson
from mtlens.orchestration.executors import run_configs
from mtlens.orchestration.study import study_configs
from mtlens.store import RunStore

CONFIG = {"setting": "mnist1d_split", "epochs": 4, "eval_every_steps": 5, "probes": [], "train_eval_size": 400}
"""Short runs: 25 steps per epoch (1,600 training examples per task, batch 64), 21 checkpoints."""


def seed_sd(rows: pd.DataFrame, measure: str, from_epoch: float) -> dict[str, float]:
    """Per task: the median over checkpoints at ``epoch >= from_epoch`` of the across-seed sd of ``measure``."""
    chosen = rows[(rows["quantity"] == measure) & (rows["epoch"] >= from_epoch)]
    return chosen.groupby(["task", "step"])["value"].std(ddof=1).groupby("task").median().to_dict()


def spike(rows: pd.DataFrame, sizes: dict[tuple[str, str], float], from_epoch: float) -> pd.DataFrame:
    """``rows`` with ``sizes[(task, measure)]`` added to the MTL-labelled runs' values from ``from_epoch`` on."""
    key = pd.Series(list(zip(rows["task"], rows["quantity"], strict=True)), index=rows.index)
    shift = key.map(sizes).fillna(0.0).to_numpy(float, copy=True)
    shift *= ((rows["mode"] == "mtl") & (rows["epoch"] >= from_epoch)).to_numpy()
    return rows.assign(value=rows["value"].to_numpy(float) + shift)


def skewed(rows: pd.DataFrame, sds: dict[tuple[str, str], float], skew: float, seed: int | list[int]) -> pd.DataFrame:
    """``rows`` with ``skew * sds[(task, measure)] * (E − 1)`` added to the MTL-labelled runs' values at
    every checkpoint, ``E ~ Exponential(1)`` drawn once per (seed, task, measure)."""
    rng = np.random.default_rng(seed)
    key = pd.Series(list(zip(rows["seed"], rows["task"], rows["quantity"], strict=True)), index=rows.index)
    draws = {k: skew * sds[k[1:]] * (rng.exponential() - 1.0) for k in pd.unique(key) if k[1:] in sds}
    shift = key.map(draws).fillna(0.0).to_numpy(float) * (rows["mode"] == "mtl").to_numpy()
    return rows.assign(value=rows["value"].to_numpy(float) + shift)


def last_checkpoint_t(rows: pd.DataFrame, task: str, measure: str) -> float:
    """p-value of the paired t test of ``measure`` at each run's last checkpoint (pairs by seed)."""
    chosen = rows[(rows["task"] == task) & (rows["quantity"] == measure)]
    last = chosen.sort_values("step").groupby(["mode", "seed"])["value"].last().unstack("mode")
    return float(stats.ttest_rel(last["mtl"], last["stl"]).pvalue)


def share(name: str, hits: int, total: int) -> str:
    low, high = clopper_pearson(hits, total)
    return f"{name:<58} {hits:>4}/{total:<4} = {hits / max(total, 1):6.1%}  (95% CI {low:.1%}-{high:.1%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--splits", type=int, default=50)
    parser.add_argument("--effect", type=float, default=2.0, help="spiked gap in seed standard deviations")
    parser.add_argument("--from-epoch", type=float, default=1.0)
    parser.add_argument("--measures", nargs="+", default=["val/loss"], choices=GAP_MEASURES)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--skew", type=float, default=2.0, help="skewed null's shift in seed standard deviations")
    parser.add_argument(
        "--draw-seed",
        type=int,
        default=None,
        help="another set of the skewed null's shifts (default: split i's seed i)",
    )
    args = parser.parse_args()

    seeds = list(range(12))
    results = run_configs(study_configs(CONFIG, seeds, methods=()), RunStore(args.store), progress=False)
    if (results["state"] != "finished").any():
        raise SystemExit(f"runs not finished: {results[results['state'] != 'finished']['run_id'].tolist()}")
    rows = RunStore(args.store).trajectories(results["run_id"].tolist())
    tasks = sorted(rows["task"].unique())
    sizes = {
        (task, measure): args.effect * sd
        for measure in args.measures
        for task, sd in seed_sd(rows, measure, args.from_epoch).items()
    }
    sds = {(task, m): sd for m in GAP_MEASURES for task, sd in seed_sd(rows, m, 0.0).items()}
    counts = dict.fromkeys(
        ("aa curves", "aa onsets", "aa sign-flip", "aa splits", "aa family claims", "spiked curves")
        + ("spiked onsets", "last t", "spiked family onsets", "skewed curves", "skewed onsets", "skewed sign-flip")
        + ("skewed splits", "skewed family claims", "unbalanced curves", "unbalanced onsets", "unbalanced sign-flip")
        + ("unbalanced splits", "unbalanced family claims"),
        0,
    )
    levels, persistent_p = [], {"aa": [], "skewed": [], "unbalanced": []}
    unbalanced = aa_splits(seeds, args.splits, seed=2, first_size=3)
    for i, (first, second) in enumerate(aa_splits(seeds, args.splits, seed=1)):
        null = aa_rows(rows, first, second, paired=True)
        designs = [("aa", null), ("spiked", spike(null, sizes, args.from_epoch))]
        designs.append(
            ("skewed", skewed(null, sds, args.skew, seed=i if args.draw_seed is None else [i, args.draw_seed]))
        )
        if i < len(unbalanced):
            designs.append(("unbalanced", aa_rows(rows, *unbalanced[i], paired=False)))
        for name, data in designs:
            results_of, keys = [], []
            for task in tasks:
                for measure in GAP_MEASURES:
                    result = generalization_gap(data, task, measure, alpha=args.alpha, stability=False)
                    if result is None or result.test is None:
                        continue
                    results_of.append(result)
                    keys.append((task, measure))
            shown, table = gap_family(results_of, args.alpha)
            levels.append(len(results_of[0].levels))
            for (task, measure), result, row in zip(keys, results_of, table.itertuples(), strict=True):
                if name != "spiked":
                    persistent_p[name].append(result.p_persistent)
                    counts[f"{name} curves"] += 1
                    counts[f"{name} onsets"] += result.onset is not None
                    counts[f"{name} sign-flip"] += result.final_test.p_any <= args.alpha
                elif (task, measure) in sizes:
                    counts["spiked curves"] += 1
                    counts["spiked onsets"] += result.onset is not None and result.onset["sign"] > 0
                    counts["spiked family onsets"] += row.direction == "MTL worse"
                    counts["last t"] += last_checkpoint_t(data, task, measure) <= args.alpha
            if name != "spiked":
                counts[f"{name} splits"] += 1
                counts[f"{name} family claims"] += any(r.onset is not None for r in shown)
    print(
        f"mnist1d_split, {args.splits} paired A/A splits of 12 STL seeds (6 vs 6), alpha {args.alpha}, "
        f"{int(np.median(levels))} loss levels per curve (median); spike: {args.effect} seed sd into "
        f"{', '.join(args.measures)} from epoch {args.from_epoch:g} "
        f"({', '.join(f'{t} {m}: {v:.4g}' for (t, m), v in sizes.items())})"
    )
    for name, label in (("aa", "A/A"), ("skewed", f"A/A skewed ({args.skew:g} sd)"), ("unbalanced", "A/A 3 vs 9")):
        print(share(f"{label}: false onsets per curve", counts[f"{name} onsets"], counts[f"{name} curves"]))
        flips, exact = counts[f"{name} sign-flip"], "label permutation" if name == "unbalanced" else "sign-flip"
        print(share(f"{label}: same, exact {exact} test at the end", flips, counts[f"{name} curves"]))
        print(
            share(
                f"{label}: splits with any onset after the family control",
                counts[f"{name} family claims"],
                counts[f"{name} splits"],
            )
        )
        for divisor in (4, 2):
            level = args.alpha / divisor
            hits = int(np.sum(np.array(persistent_p[name]) <= level))
            print(share(f"{label}: curves with p_persistent <= {level:g}", hits, len(persistent_p[name])))
    print(share("spike: onset found (per spiked curve, right sign)", counts["spiked onsets"], counts["spiked curves"]))
    print(share("spike: onset shown after the family control", counts["spiked family onsets"], counts["spiked curves"]))
    print(share("spike: paired t test at the last checkpoint (reference)", counts["last t"], counts["spiked curves"]))


if __name__ == "__main__":
    main()
