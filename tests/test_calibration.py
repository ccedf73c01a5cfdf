"""Null calibration and power of the report's tests on real training runs (issue 18's Done-when).

One module-scoped A/A experiment: 12 seeds of tiny STL runs per task of ``digits_pair`` (two
tasks, with the cheap ``coherence`` and ``fisher`` probes, so the probe-difference tests have data),
split 25 times into 6 "MTL" vs 6 STL seeds by :func:`mtlens.orchestration.calibrate.run_calibration`,
the function behind ``mtlens calibrate``.  There is no MTL effect anywhere, so every rejection is a
false positive.  Criterion (the issue's): the 95% Clopper–Pearson interval of the observed rate
reaches down to 5% and the rate is at most 10%.  The same runs then get a known gap spiked into the
"MTL" seeds (the positive control), which the tests must detect.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from correlation_studies import study_units
from mtlens.analysis.calibration import (
    OPTIMIZATION_SUMMARIES,
    PROBE_OF_DIFFERENCE,
    SKEW,
    aa_rows,
    aa_splits,
    skewed_curves,
    skewed_shifts,
    spike_in,
    whole_seed_permutation,
)
from mtlens.analysis.correlation import UNIT_CENTRE, UNIT_CLUSTER, UNIT_SLOTS, correlate, unit_table
from mtlens.analysis.gap import generalization_gap
from mtlens.analysis.inference import scalar_test
from mtlens.analysis.optimization import optimization_effect
from mtlens.cli import main
from mtlens.orchestration.calibrate import run_calibration
from mtlens.store import RunStore

TINY = {
    "setting": "digits_pair",
    "epochs": 2,
    "batch_size": 32,
    "train_eval_size": 128,
    "eval_every_steps": 4,
    "probes": ["coherence", "fisher"],
    "setting_options": {"n_train": 128, "n_val": 64, "n_test": 64},
}
SEEDS = list(range(12))


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("calibration") / "store")
    return store, run_calibration(TINY, SEEDS, store, n_splits=25, progress=False, control_splits=10)


def _within_binomial_noise_of(rate_row: pd.Series, alpha: float = 0.05) -> bool:
    return rate_row["ci_low"] <= alpha and rate_row["rate"] <= 2 * alpha


PAIRED_ONLY = ("optimization effect", "probe difference", "correlation")
"""Tests with one design: the per-seed MTL − STL differences (an unpaired split has no same-seed STL run
to compare with) and the correlations (cluster permutation)."""


DESIGNS = {
    "gap exists": {"paired", "unpaired", "unpaired unbalanced", "paired skewed"},
    "persistent gap (onset)": {"paired", "unpaired", "unpaired unbalanced", "paired skewed"},
    "transfer": {"paired", "unpaired", "unpaired unbalanced", "paired skewed"},
    "optimization effect": {"paired", "paired skewed"},
    "probe difference": {"paired", "paired skewed"},
    "correlation": {"cluster permutation"},
}
"""The designs of each test: the balanced exchangeable splits, the unbalanced unpaired splits (3 vs 9 seeds)
and the paired splits with mean-zero skewed differences (issue 23.6)."""


@pytest.mark.parametrize("test", ["gap exists", "persistent gap (onset)", "transfer", *PAIRED_ONLY])
def test_a_a_false_positive_rate_is_at_most_alpha(calibration, test):
    _, result = calibration
    rows = result.rates[result.rates["test"] == test]
    assert set(rows["design"]) == DESIGNS[test]
    for row in rows.itertuples():
        assert row.comparisons >= 100
        assert row.min_p <= 0.05  # 6 pairs can reach 5% (2/64), so a rate near 0 would mean something
        # the skewed design too: the paired test holds its level for |skewness| <= 2 (docs/statistics.md §2)
        assert _within_binomial_noise_of(pd.Series(row._asdict())), row


def test_a_a_tables_claim_something_at_most_alpha_of_the_time(calibration):
    """The verdicts the report prints (gap onsets, transfer verdicts, BH-adjusted p-values of the
    optimization, probe-difference and correlation tables) come from Benjamini–Hochberg within each
    table; on A/A splits (with permuted factors for the correlations) every table has only true nulls,
    so a table claims anything in at most alpha of the splits."""
    _, result = calibration
    rows = result.rates[result.rates["test"] == "BH verdict"].set_index("design")
    families = result.comparisons.loc[result.comparisons["test"] == "BH verdict", "measure"]
    assert set(families) == {
        "gap table: p_any_adjusted",
        "gap table: onset",
        "transfer table: verdict",
        "optimization table: log_ratio_early_p_adjusted",
        "optimization table: log_ratio_final_p_adjusted",
        "probe differences table: p_adjusted",
        "correlation table: pearson_p_adjusted",
        "correlation table: spearman_p_adjusted",
    }
    # per split: the gap table's two columns, transfer, two optimization summaries, probe differences
    assert rows.loc["paired", "comparisons"] == rows.loc["paired skewed", "comparisons"] == 6 * 25
    assert rows.loc["unpaired", "comparisons"] == rows.loc["unpaired unbalanced", "comparisons"] == 3 * 25
    assert rows.loc["cluster permutation", "comparisons"] == 2 * 5 * 10  # 10 permutations on each of 5 splits
    for design in ("paired", "unpaired", "unpaired unbalanced", "paired skewed", "cluster permutation"):
        assert rows.loc[design, "min_p"] <= 0.05 and _within_binomial_noise_of(rows.loc[design]), rows


def test_positive_control_detects_a_known_gap(calibration):
    """A gap of the median minimum detectable size (80% power, from the A/A seeds' own variance) spiked
    into the 'MTL' seeds: the persistent-gap test finds it in most comparisons (nominal 80%; the normal
    approximation is a little optimistic for 5 degrees of freedom), "gap exists" at least as often."""
    _, result = calibration
    assert set(result.effect) >= {(t, q) for t in ("a", "b") for q in ("val/loss", "val/error", "test/loss")}
    assert all(v > 0 for v in result.effect.values())
    power = result.power.set_index(["test", "design"])["rate"]
    for design in ("paired", "unpaired"):
        assert power[("persistent gap (onset)", design)] >= 0.5
        assert power[("gap exists", design)] >= power[("persistent gap (onset)", design)]
    assert power[("transfer", "paired")] >= 0.5
    controlled = {"log_ratio_early", "log_ratio_final", "fisher_early_diff", "coherence_diff"}
    assert {q for _, q in result.effect} >= controlled
    assert power[("optimization effect", "paired")] >= 0.5 and power[("probe difference", "paired")] >= 0.5


def test_positive_control_spikes_each_task_with_its_own_detectable_difference(calibration):
    """Each (task, quantity) gets its own median detectable difference, so every paired test finds it near
    its nominal 80% in each task.  One size per quantity (the median over both tasks) was found in 40% of task
    b's transfer comparisons, whose seeds spread twice as much as task a's, and in 100% of task a's."""
    _, result = calibration
    paired = result.detections[result.detections["design"] == "paired"]
    by_task = paired.groupby(["test", "task"])["rejected"].mean()
    assert len(by_task) == 2 * 5 and by_task.min() >= 0.6, by_task


def test_the_control_shift_of_log_ratios_and_probe_differences_is_a_spike_into_the_runs(calibration):
    """The positive control adds its effect to the report's optimization and probe-difference tables:
    that is exactly the training loss of the 'MTL' runs times exp(c) at every step and c added to their
    probe values (here checked through the report's own functions on one paired split)."""
    store, _ = calibration
    rows, task_info = store.trajectories(), store.task_info()
    paired = aa_rows(rows, *aa_splits(SEEDS, 1)[0], paired=True)
    scaled = (paired["mode"] == "mtl") & (paired["quantity"] == "train/loss")
    faster = paired.assign(value=np.where(scaled, paired["value"] * np.exp(-0.3), paired["value"]))
    before, after = optimization_effect(paired), optimization_effect(faster)
    for column in OPTIMIZATION_SUMMARIES:
        assert after[column].to_numpy() == pytest.approx(before[column].to_numpy() - 0.3)
    effect = {"coherence_diff": 0.2, "fisher_early_diff": -5.0}
    spiked = spike_in(paired, {(t, PROBE_OF_DIFFERENCE[k]): v for k, v in effect.items() for t in ("a", "b")})
    before, after = unit_table(paired, task_info), unit_table(spiked, task_info)
    for column, shift in effect.items():
        assert after[column].to_numpy() == pytest.approx(before[column].to_numpy() + shift)
    assert after["m_coherence_diff"].to_numpy() == pytest.approx(before["m_coherence_diff"].to_numpy())


def test_a_spiked_in_gap_yields_the_onset_at_the_first_common_level(calibration):
    store, _ = calibration
    rows = store.trajectories()
    first, second = aa_splits(SEEDS, 1)[0]
    paired = aa_rows(rows, first, second, paired=True)
    null = generalization_gap(paired, "a", "val/loss")
    assert null.design == "paired" and null.test.n == 6 and null.test.exact
    big = generalization_gap(spike_in(paired, {("a", "val/loss"): 1.0}), "a", "val/loss")
    assert big.gap["gap"].to_numpy() == pytest.approx(null.gap["gap"].to_numpy() + 1.0)
    assert big.onset is not None and big.onset["sign"] == 1.0 and big.onset["train_loss"] == big.levels[0]
    # the end level's own one-level paired test (no 2/2^6 floor, unlike the exact sign flips it replaced)
    assert big.p_persistent == pytest.approx(scalar_test(big.final_test, 0.05)["p_value"]) and big.p_persistent < 2 / 64


def test_calibrate_command_prints_rates_and_rejects_bad_input(calibration, capsys, tmp_path):
    store, _ = calibration
    args = [
        "calibrate",
        "digits_pair",
        "--seeds",
        "12",
        "--splits",
        "2",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--eval-every-steps",
        "4",
        "--set",
        "train_eval_size=128",
        "--set",
        "probes=[coherence, fisher]",
        "--option",
        "n_train=128",
        "--option",
        "n_val=64",
        "--option",
        "n_test=64",
        "--store",
        str(store.root),
        "--quiet",
        "--out",
        str(tmp_path / "comparisons.csv"),
    ]
    runs_before = set(store.run_ids())
    assert main(args) == 0
    out = capsys.readouterr().out
    assert set(store.run_ids()) == runs_before  # the runs of the fixture are reused, nothing is retrained
    assert "A/A false-positive rates" in out and "positive control" in out
    assert all(test in out for test in ("persistent gap (onset)", "optimization effect", "probe difference"))
    comparisons = pd.read_csv(tmp_path / "comparisons.csv")
    assert set(comparisons["kind"]) == {"A/A", "positive control"} and comparisons["split"].max() == 1
    assert main(["calibrate", "digits_pair", "--seeds", "3", "--store", str(tmp_path / "s")]) == 2
    assert "at least 4 seeds" in capsys.readouterr().err and not (tmp_path / "s").exists()
    assert main(["calibrate", "digits_pair", "--seeds", "3", "--workers", "2", "--store", str(tmp_path / "s")]) == 2
    assert "at least 4 seeds" in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_calibrate_with_two_workers_trains_the_runs_trained_in_this_process(calibration, tmp_path, monkeypatch):
    """``calibrate --workers 2``: the STL runs train in two spawned worker processes, the same runs (ids and
    trajectories) as the fixture's, trained in this process by ``run_calibration`` without an executor."""
    from mtlens.orchestration import backends
    from mtlens.orchestration.backends import make_executor
    from mtlens.orchestration.executors import LocalExecutor

    made = []

    def recorded(*args, **kwargs):
        made.append(make_executor(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(backends, "make_executor", recorded)
    here, _ = calibration
    store = RunStore(tmp_path / "workers")
    flags = ["--epochs", "2", "--batch-size", "32", "--eval-every-steps", "4", "--set", "train_eval_size=128"]
    flags += ["--set", "probes=[coherence, fisher]", "--option", "n_train=128", "--option", "n_val=64"]
    flags += ["--option", "n_test=64", "--store", str(store.root), "--quiet"]
    assert main(["calibrate", "digits_pair", "--seeds", "4", "--splits", "2", "--workers", "2", *flags]) == 0
    assert [type(e) for e in made] == [LocalExecutor] and made[0].workers == 2
    ids = sorted(store.run_ids())
    assert len(ids) == 8 and set(ids) <= set(here.run_ids()) and set(store.runs()["state"]) == {"finished"}
    for run_id in ids:
        pd.testing.assert_frame_equal(store.trajectory(run_id), here.trajectory(run_id))


def test_synthetic_null_curves_with_autocorrelation_keep_the_error_rate():
    """1,000 synthetic paired A/A comparisons whose per-seed difference curves are smooth random functions
    of the loss level (strongly autocorrelated, like interpolated trajectories) with heavy-tailed seed
    effects: both the 'exists' and the 'persistent' test keep their level; the same data at the old
    rule (|gap| > 2 pointwise standard errors for 5 consecutive levels) would flag far more."""
    from mtlens.analysis.inference import paired_max_t

    rng = np.random.default_rng(0)
    grid = np.linspace(0, 1, 200)
    basis = np.stack([np.sin(np.pi * k * grid) / k for k in range(1, 8)])  # (7, 200): smooth curves
    exists = persistent = old_rule = 0
    n = 1000
    for _ in range(n):
        d = rng.standard_t(3, size=(8, 1)) * 0.5 + rng.standard_normal((8, 7)) @ basis
        test = paired_max_t(d)
        exists += test.p_any <= 0.05
        persistent += test.pointwise_p[-1] <= 0.05  # the fixed sequence starts at the end level
        t = d.mean(0) / (d.std(0, ddof=1) / np.sqrt(8))
        run = np.convolve(np.abs(t) > 2, np.ones(5), "valid")
        old_rule += bool((run == 5).any())
    assert exists / n <= 0.065 and persistent / n <= 0.065
    assert old_rule / n > 0.2


@pytest.mark.slow
def test_a_a_false_positive_rates_on_the_demo_setting(tmp_path):
    """The issue's own A/A check, on mnist_pair (the demo setting, where the old onset rule fired in 73% of
    A/A comparisons): 12 seeds of short runs, 25 splits; every test keeps its level."""
    config = {
        "setting": "mnist_pair",
        "epochs": 2,
        "eval_every_steps": 6,
        "probes": [],
        "train_eval_size": 300,
        "setting_options": {"n_train": 300, "n_val": 200, "n_test": 200},
    }
    result = run_calibration(config, SEEDS, RunStore(tmp_path / "store"), n_splits=25, progress=False, control_splits=5)
    assert {"optimization effect", "BH verdict"} <= set(result.rates["test"])  # no probes: no probe differences
    for row in result.rates.itertuples():
        # an unpaired split has three tables (the gap table's two columns, transfer): 75 BH verdicts
        least = 100 if row.test != "BH verdict" else 75
        assert row.comparisons >= least, row
        assert _within_binomial_noise_of(pd.Series(row._asdict())), row


def test_unbalanced_splits_and_skewed_shifts_make_the_nulls_they_claim():
    """The unbalanced splits are a quarter of the seeds against the rest; the skewed shifts have mean 0,
    skewness 2 (exponential) and each group's own scale (times ``skew``), one draw per (group, seed)."""
    splits = aa_splits(range(12), 25, seed=1, first_size=3)
    assert len(splits) == 25 and all(len(a) == 3 and len(b) == 9 and not set(a) & set(b) for a, b in splits)
    n = 20_000
    values = pd.Series(np.r_[np.zeros(n), np.linspace(0, 1, n)])
    groups = pd.Series(["flat"] * n + ["spread"] * n)
    seeds = pd.Series(np.r_[np.arange(n), np.arange(n)])
    shifts = skewed_shifts(values, groups, seeds, 1.5, seed=0)
    assert np.all(shifts[:n] == 0)  # no spread in the group: no shift
    spread = shifts[n:]
    assert abs(spread.mean()) < 0.02 * spread.std()
    assert spread.std() == pytest.approx(1.5 * np.std(np.linspace(0, 1, n), ddof=1), rel=0.03)
    assert pd.Series(spread).skew() == pytest.approx(2.0, abs=0.3)
    # at the default size the paired differences of two independent runs are skewed near the family's bound
    # 2 (2 k^3 / (2 + k^2)^1.5 = 1.68 at k = 4), where Student's t is liberal and the check can fail
    x, y = np.random.default_rng(4).standard_normal((2, n))
    d = x + skewed_shifts(pd.Series(x), pd.Series(["a"] * n), pd.Series(np.arange(n)), SKEW, seed=(0, 1)) - y
    assert pd.Series(d).skew() == pytest.approx(2 * SKEW**3 / (2 + SKEW**2) ** 1.5, abs=0.15)
    assert 2 * SKEW**3 / (2 + SKEW**2) ** 1.5 > 1.5
    # one draw per (group, seed): rows repeating a key get the same shift
    twice = skewed_shifts(pd.concat([values, values]), pd.concat([groups, groups]), pd.concat([seeds, seeds]), 1.5, 0)
    assert np.array_equal(twice[: 2 * n], twice[2 * n :])


def test_the_correlation_null_permutes_whole_seeds_so_a_cluster_blind_test_fails_it():
    """The A/A correlation check permutes the factor by whole (setting, seed) clusters, slot onto slot: every
    seed's units move together to one other seed and keep their (task, method), so the permuted factor keeps
    its task means and what one seed's units share.  Then a test that ignores both (Pearson's p of the raw
    units, no clusters, no centring) is far above 5% on null unit tables with shared runs and task means, and
    the report's test is not; permuted unit by unit (the check before), the blind test also held 5%."""
    rng = np.random.default_rng(11)
    units = study_units(rng, 2, 6)
    labels = {
        name: units[list(columns)].astype(str).agg("/".join, axis=1).to_numpy()
        for name, columns in (("groups", UNIT_CLUSTER), ("centre", UNIT_CENTRE), ("slots", UNIT_SLOTS))
    }
    index = whole_seed_permutation(units, labels, rng)
    moved = units.iloc[index].reset_index(drop=True)
    assert (moved[["task", "method"]] == units[["task", "method"]]).all().all()
    mapping = pd.Series(moved["seed"].to_numpy()).groupby(units["seed"].to_numpy()).unique()
    assert all(len(targets) == 1 for targets in mapping) and sorted(t[0] for t in mapping) == list(range(6))
    blind, report = [], []
    for _ in range(60):
        units = study_units(rng, 2, 6)
        factor = units["factor"].to_numpy()[whole_seed_permutation(units, labels, rng)]
        blind.append(stats.pearsonr(factor, units["target"]).pvalue <= 0.05)
        result = correlate(factor, units["target"], seed=0, n_perm=719, strata=units["setting"], **labels)
        report.append(result["pearson_p"] <= 0.05)
    assert np.mean(blind) >= 0.3 and np.mean(report) <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 60)


def test_skewed_curves_shift_each_mtl_run_by_one_skewed_mean_zero_amount():
    """:func:`skewed_curves` adds one draw per "MTL" run and gap measure to every step of that curve (so
    every training-loss level's paired difference carries it), nothing to STL runs, to the training loss
    or to other quantities; the draws are mean-zero exponential shifts at the seeds' sd of the final value."""
    n_seeds, quantities = 4_000, ["train/loss", "val/loss", "val/error", "test/loss"]
    grid = pd.MultiIndex.from_product(
        [["stl", "mtl"], quantities, range(n_seeds), range(5)], names=["mode", "quantity", "seed", "step"]
    )
    rows = grid.to_frame(index=False).assign(task="a")
    final = 0.1 * rows["seed"] / n_seeds  # the curves fall from 1 to a final value that varies over the seeds
    rows["value"] = 1.0 - rows["step"] / 4 * (1.0 - final)
    shifted = skewed_curves(rows, 1.0, seed=3)
    delta = (shifted["value"] - rows["value"]).to_numpy()
    moved = ((rows["mode"] == "mtl") & rows["quantity"].isin(["val/loss", "val/error"])).to_numpy()
    assert np.all(delta[~moved] == 0)
    per_run = pd.Series(delta[moved]).groupby(
        [rows.loc[moved, "quantity"].to_numpy(), rows.loc[moved, "seed"].to_numpy()]
    )
    assert ((per_run.max() - per_run.min()) < 1e-12).all()  # one shift per run, at every step
    draws = per_run.first()
    sd = np.std(0.1 * np.arange(n_seeds) / n_seeds, ddof=1)
    for quantity in ("val/loss", "val/error"):
        assert abs(draws[quantity].mean()) < 0.05 * sd
        assert draws[quantity].std() == pytest.approx(sd, rel=0.06)
        assert draws[quantity].skew() == pytest.approx(2.0, abs=0.4)
    assert not np.array_equal(draws["val/loss"].to_numpy(), draws["val/error"].to_numpy())
