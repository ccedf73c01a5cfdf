"""Explaining transfer: the optimization effect, the unit table, correlations with bootstrap
CIs, and the Elich et al. summaries, on synthetic trajectories with known answers."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from correlation_studies import study_units
from mtlens.analysis.alignment import (
    alignment_distributions,
    alignment_summary,
    magnitude_ratio_summary,
    optimizer_comparison,
    optimizers_compared,
)
from mtlens.analysis.correlation import (
    UNIT_CENTRE,
    UNIT_CLUSTER,
    UNIT_SLOTS,
    correlate,
    correlation_table,
    difference_tests,
    unit_table,
)
from mtlens.analysis.inference import (
    BOUND_MISS,
    N_REFERENCE,
    SkewnessBound,
    bh_level,
    family_skewness_bound,
    hall_critical,
    hall_detectable_effect,
    hall_p_value,
    skewness_of,
)
from mtlens.analysis.optimization import loss_ratio_curves, optimization_effect, optimization_tests, steps_to_loss
from mtlens.store import ROW_COLUMNS

TASK_INFO = {("syn", t): {"selection_metric": "loss", "lower_is_better": {"loss": True}} for t in ("a", "b")}


def rows_of(run_id: str, mode: str, method: str, seed: int, task: str, steps, quantities: dict) -> pd.DataFrame:
    """Tidy rows of one run and task: ``quantities`` maps a name to values at ``steps``."""
    steps = np.asarray(steps)
    frames = [
        pd.DataFrame(
            {
                "run_id": run_id,
                "setting": "syn",
                "mode": mode,
                "method": method,
                "seed": seed,
                "task": task,
                "step": steps,
                "epoch": steps / 10.0,
                "quantity": name,
                "value": np.broadcast_to(np.asarray(values, float), steps.shape),
            }
        )
        for name, values in quantities.items()
    ]
    return pd.concat(frames, ignore_index=True)[ROW_COLUMNS]


# -- optimization effect ----------------------------------------------------------------------------------


def test_loss_ratio_at_equal_steps_interpolates_the_stl_curve():
    # STL loss linear in the step (interpolation is exact); MTL recorded at other steps, exp(0.1) times higher.
    stl_steps, mtl_steps = np.arange(0, 101, 10), np.arange(5, 100, 10)
    stl = rows_of("s0", "stl", "sum", 0, "a", stl_steps, {"train/loss": 2 - stl_steps / 100})
    mtl = rows_of("m0", "mtl", "sum", 0, "a", mtl_steps, {"train/loss": (2 - mtl_steps / 100) * np.exp(0.1)})
    curves = loss_ratio_curves(pd.concat([stl, mtl]))
    assert curves["step"].tolist() == mtl_steps.tolist()
    np.testing.assert_allclose(curves["log_ratio"], 0.1, rtol=1e-12)


def test_optimization_effect_summaries_match_numpy():
    steps = np.arange(0, 201, 5)
    rows, expected = [], {}
    for seed, (a, b) in enumerate([(0.3, -0.5), (-0.2, 0.4)]):
        stl_loss = np.exp(-steps / 80) + 0.05
        ratio = a + b * steps / steps.max()
        rows += [
            rows_of(f"s{seed}", "stl", "sum", seed, "a", steps, {"train/loss": stl_loss}),
            rows_of(f"m{seed}", "mtl", "pcgrad", seed, "a", steps, {"train/loss": stl_loss * np.exp(ratio)}),
        ]
        early = steps <= 0.25 * steps.max()
        expected[seed] = (ratio[early].mean(), ratio.mean(), ratio[-1])
    # An MTL run with no STL run of the same seed is not paired with another seed's STL run.
    rows.append(rows_of("m9", "mtl", "pcgrad", 9, "a", steps, {"train/loss": np.ones_like(steps)}))
    effect = optimization_effect(pd.concat(rows), early_fraction=0.25).set_index("seed")
    assert sorted(effect.index) == [0, 1]
    for seed, (early, mean, final) in expected.items():
        np.testing.assert_allclose(
            effect.loc[seed, ["log_ratio_early", "log_ratio_mean", "log_ratio_final"]],
            [early, mean, final],
            rtol=1e-10,
            atol=1e-12,
        )
        assert effect.loc[seed, "ratio_final"] == pytest.approx(np.exp(final))
    with pytest.raises(ValueError, match="early_fraction"):
        optimization_effect(pd.concat(rows), early_fraction=0)


def test_optimization_summaries_share_one_grid_per_task():
    """A third seed whose runs were recorded only to step 100 (of 200): every unit of the task averages over
    the steps all units have (0 ... 100), so no unit's mean covers another stage of training than the rest."""
    steps = np.arange(0, 201, 5)
    rows = []
    for seed, last in ((0, 200), (1, 200), (2, 100)):
        kept = steps[steps <= last]
        stl_loss = np.exp(-kept / 80) + 0.05
        rows += [
            rows_of(f"s{seed}", "stl", "sum", seed, "a", kept, {"train/loss": stl_loss}),
            rows_of(f"m{seed}", "mtl", "sum", seed, "a", kept, {"train/loss": stl_loss * np.exp(kept / 200)}),
        ]
    effect = optimization_effect(pd.concat(rows), early_fraction=0.5).set_index("seed")
    common = steps[steps <= 100] / 200  # the log-ratio at the shared steps
    for seed in (0, 1, 2):
        assert effect.loc[seed, "n_steps"] == len(common)
        assert effect.loc[seed, "log_ratio_mean"] == pytest.approx(common.mean(), rel=1e-12)
        assert effect.loc[seed, "log_ratio_final"] == pytest.approx(0.5, rel=1e-12)


def test_a_seed_with_two_runs_of_one_kind_is_not_merged_into_one_unit():
    """Seed 0 has a second MTL run of the method (other ``method_options``, training 3× slower) and seed 1 a
    second STL run of the task: neither seed is a unit (the transfer table's rule: exactly one run of each
    kind per seed), so the doubled seeds' curves are not concatenated into one unit of twice the steps."""
    steps = np.arange(0, 101, 10)
    stl_loss = np.exp(-steps / 50) + 0.05
    rows = [rows_of(f"s{seed}", "stl", "sum", seed, "a", steps, {"train/loss": stl_loss}) for seed in (0, 1, 2)] + [
        rows_of(f"m{seed}", "mtl", "sum", seed, "a", steps, {"train/loss": stl_loss}) for seed in (0, 1, 2)
    ]
    rows.append(rows_of("m0-other", "mtl", "sum", 0, "a", steps, {"train/loss": 3 * stl_loss}))
    rows.append(rows_of("s1-again", "stl", "sum", 1, "a", steps, {"train/loss": 2 * stl_loss}))
    effect = optimization_effect(pd.concat(rows)).set_index("seed")
    assert effect.index.tolist() == [2]
    assert effect.loc[2, "n_steps"] == len(steps) and effect.loc[2, "log_ratio_mean"] == pytest.approx(0.0, abs=1e-12)


def test_steps_to_loss_finds_the_first_step_at_or_below_each_level():
    steps = np.arange(0, 50, 5)
    loss = np.array([3.0, 2.0, 2.5, 1.0, 0.9, 0.5, 0.6, 0.4, 0.3, 0.2])
    table = steps_to_loss(rows_of("r", "stl", "sum", 0, "a", steps, {"train/loss": loss}), [2.0, 0.55, 0.01])
    assert table["step"].iloc[:2].tolist() == [5.0, 25.0] and np.isnan(table["step"].iloc[2])
    assert table["epoch"].iloc[1] == 2.5


# -- the unit table ------------------------------------------------------------------------------------------


def synthetic_study(seeds=(0, 1, 2)) -> tuple[pd.DataFrame, dict]:
    """STL per task and one MTL run per seed with known transfer, gap, factor differences and conflict."""
    steps = np.arange(0, 101, 10)
    train = np.exp(-steps / 30) + 0.01
    rows, truth = [], {}
    for seed in seeds:
        for task_index, task in enumerate(("a", "b")):
            stl_test, mtl_test = 1.0 + 0.1 * seed, 0.9 + 0.05 * task_index
            gap = 0.02 * (seed + 1) * (1 if task == "a" else -1)
            coherence, fisher_early, fisher_late, sharp = 0.3, 5.0, 1.0, 0.2
            d_coh, d_fisher, d_sharp = 0.01 * seed, 0.5 * (seed - task_index), -0.03 * task_index
            val = np.log(train) + 3.0  # linear in log training loss: the gap interpolates exactly
            common = {"train/loss": train, "val/loss": val, "test/loss": val}
            stl = rows_of(
                f"stl-{task}-{seed}",
                "stl",
                "sum",
                seed,
                task,
                steps,
                {
                    **common,
                    "test/loss": np.where(steps == 100, stl_test, 9.0),
                    "probe/grad_coherence": coherence,
                    "probe/sharpness": sharp,
                    "probe/fisher_trace": np.where(steps / 10.0 <= 1.0, fisher_early, fisher_late),
                },
            )
            mtl = rows_of(
                f"mtl-{seed}",
                "mtl",
                "sum",
                seed,
                task,
                steps,
                {
                    "train/loss": train,
                    "val/loss": val + gap,
                    "test/loss": np.where(steps == 100, mtl_test, 9.0),
                    "probe/grad_coherence": coherence + d_coh,
                    "probe/sharpness": sharp + d_sharp,
                    "probe/fisher_trace": np.where(steps / 10.0 <= 1.0, fisher_early + d_fisher, fisher_late),
                },
            )
            rows += [stl, mtl]
            truth[(task, seed)] = {
                "transfer_pct": -100 * (mtl_test - stl_test) / stl_test,
                "gap_mean": gap,
                "coherence_diff": d_coh,
                "fisher_early_diff": d_fisher,
                "sharpness_diff": d_sharp,
            }
        cosine = np.linspace(-0.2, 0.4, len(steps)) + 0.1 * seed
        rows.append(rows_of(f"mtl-{seed}", "mtl", "sum", seed, "a|b", steps, {"probe/conflict_cosine": cosine}))
        rows.append(
            rows_of(
                f"mtl-{seed}", "mtl", "sum", seed, "*", steps, {"probe/conflict_fraction": (cosine < 0).astype(float)}
            )
        )
        for task in ("a", "b"):
            truth[(task, seed)] |= {"conflict_cosine": cosine.mean(), "conflict_fraction": (cosine < 0).mean()}
    return pd.concat(rows, ignore_index=True), truth


def test_unit_table_has_one_row_per_mtl_unit_with_known_values():
    # Validation loss is lowest at the last step, so every run selects step 100 for its test metric.
    rows, truth = synthetic_study()
    units = unit_table(rows, TASK_INFO, early_epoch=1.0).set_index(["task", "seed"])
    assert len(units) == 6 and set(units["method"]) == {"sum"}
    assert set(units["transfer_reference"]) == {"same seed"}
    for key, expected in truth.items():
        for column, value in expected.items():
            assert units.loc[key, column] == pytest.approx(value, abs=1e-9), (key, column)
    np.testing.assert_allclose(units["log_ratio_mean"], 0.0, atol=1e-12)


def test_unit_table_pairs_a_seed_only_with_one_run_of_each_kind():
    """Seed 0 has a second MTL run of the method (other options), seed 1 a second STL run of the task: neither
    seed gives a unit (the first averaged two configurations into one unit or listed it twice; the second made
    unit_table raise, then gave a unit against the other seeds' STL mean)."""
    steps = np.arange(0, 101, 10)

    def run(run_id: str, mode: str, seed: int, scale: float) -> pd.DataFrame:
        loss = np.exp(-steps / 50) + 0.05
        values = {"train/loss": scale * loss, "val/loss": scale * (loss + 0.1), "test/loss": scale * (loss + 0.1)}
        return rows_of(run_id, mode, "sum", seed, "a", steps, values)

    rows = [run(f"s{seed}", "stl", seed, 1.0) for seed in range(3)] + [
        run(f"m{seed}", "mtl", seed, 1.0) for seed in range(3)
    ]
    rows += [run("m0-other", "mtl", 0, 3.0), run("s1-again", "stl", 1, 2.0)]
    units = unit_table(pd.concat(rows), TASK_INFO).set_index("seed")
    assert units.index.tolist() == [2]
    assert units.loc[2, ["gap_mean", "log_ratio_mean"]].tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
    assert units.loc[2, "transfer_reference"] == "same seed"
    # per task: MTL runs {a, b} and {a, c} of one method and seed share task a only; b and c keep their units
    two = [run(f"s{t}{seed}", "stl", seed, 1.0).assign(task=t) for t in "abc" for seed in range(3)]
    for seed in range(3):
        two += [run(f"ab{seed}", "mtl", seed, 1.0).assign(task=t) for t in "ab"]
        two += [run(f"ac{seed}", "mtl", seed, 1.0).assign(task=t) for t in "ac"]
    info = {("syn", t): TASK_INFO[("syn", "a")] for t in "abc"}
    assert sorted(unit_table(pd.concat(two), info)["task"].unique()) == ["b", "c"]


def test_a_probe_value_that_is_not_finite_leaves_its_unit_without_that_factor():
    """A probe that returned NaN (or inf) at some steps of one run has no mean over that run's training: the
    unit's factor is NaN (the mean of the other steps covered another part of training than the paired run's);
    every other unit and factor keeps its known value, and the figures' n counts only finite values."""
    from mtlens.render.charts import mean_band

    rows, truth = synthetic_study()
    mtl1 = (rows["run_id"] == "mtl-1") & (rows["step"] > 0)
    rows.loc[mtl1 & (rows["quantity"] == "probe/grad_coherence") & (rows["task"] == "a"), "value"] = np.nan
    rows.loc[mtl1 & (rows["quantity"] == "probe/conflict_cosine") & (rows["step"] == 50), "value"] = np.inf
    units = unit_table(rows, TASK_INFO, early_epoch=1.0).set_index(["task", "seed"])
    assert np.isnan(units.loc[("a", 1), "coherence_diff"]) and np.isnan(units.loc[("a", 1), "conflict_cosine"])
    assert np.isnan(units.loc[("b", 1), "conflict_cosine"])  # one cosine of the pair a|b
    emptied = {(("a", 1), "coherence_diff"), (("a", 1), "conflict_cosine"), (("b", 1), "conflict_cosine")}
    for key, expected in truth.items():
        for column, value in expected.items():
            if (key, column) not in emptied:
                assert units.loc[key, column] == pytest.approx(value, abs=1e-9), (key, column)
    coherence = rows[(rows["quantity"] == "probe/grad_coherence") & (rows["mode"] == "mtl") & (rows["task"] == "a")]
    band = mean_band(coherence, ["task"], "step").set_index("step")
    assert band.loc[0, "n"] == 3 and (band.loc[10:, "n"] == 2).all()


def test_unit_table_without_probes_leaves_factor_columns_empty():
    rows, _ = synthetic_study(seeds=(0,))
    units = unit_table(rows[~rows["quantity"].str.startswith("probe/")], TASK_INFO)
    assert len(units) == 2 and units["transfer_pct"].notna().all()
    assert units[["fisher_early_diff", "coherence_diff", "sharpness_diff", "conflict_cosine"]].isna().all().all()
    assert correlation_table(units).empty


# -- correlations and the bootstrap -------------------------------------------------------------------------


def bivariate(n: int, rho: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    xy = np.random.default_rng(seed).multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
    return xy[:, 0], xy[:, 1]


def test_correlate_matches_scipy_and_its_interval_covers_the_truth():
    x, y = bivariate(400, 0.8, seed=1)
    result = correlate(x, y)
    pearson, spearman = stats.pearsonr(x, y), stats.spearmanr(x, y)
    assert result["n"] == 400
    assert result["pearson_r"] == pytest.approx(pearson.statistic, rel=1e-12)
    assert result["spearman_rho"] == pytest.approx(spearman.statistic, rel=1e-12)
    # r = 0.8 with 400 points: no permutation of 9,999 reaches it, so p is the smallest possible.
    assert result["pearson_p"] == result["spearman_p"] == result["min_p"] == pytest.approx(1 / 10_000)
    assert result["pearson_low"] < 0.8 < result["pearson_high"]
    assert result["pearson_low"] < result["pearson_r"] < result["pearson_high"]
    assert result["spearman_low"] < result["spearman_rho"] < result["spearman_high"]
    # Independent points: the jackknife interval is close to Fisher's normal-theory interval.
    z, half = np.arctanh(pearson.statistic), stats.norm.ppf(0.975) / np.sqrt(400 - 3)
    assert result["pearson_low"] == pytest.approx(np.tanh(z - half), abs=0.02)
    assert result["pearson_high"] == pytest.approx(np.tanh(z + half), abs=0.02)


def studentized(x: np.ndarray, y: np.ndarray) -> float:
    """DiCiccio & Romano's studentized correlation of independent points, from its definition."""
    u, v = x - x.mean(), y - y.mean()
    return float(np.sum(u * v) / np.sqrt(np.sum((u * v) ** 2)))


def test_permutation_p_values_equal_a_brute_force_exact_permutation_test():
    x, y = bivariate(6, 0.6, seed=3)  # 6! = 720 permutations: exact
    result = correlate(x, y)
    orders = [list(order) for order in itertools.permutations(range(6))]
    for kind, transform in (("pearson", lambda a: a), ("spearman", stats.rankdata)):
        a, b = transform(x), transform(y)
        observed = abs(studentized(a, b))
        permuted = np.array([abs(studentized(a[order], b)) for order in orders])
        assert result[f"{kind}_p"] == pytest.approx(np.mean(permuted >= observed - 1e-12))
    assert result["min_p"] == pytest.approx(1 / 720)


def test_cluster_permutation_p_values_are_calibrated_when_units_share_a_cluster():
    """Clusters of 4 units (methods sharing one STL run): the factor and the target both carry a strong
    cluster effect but are independent.  A p-value that treats the 4 units as independent rejects far
    too often; the cluster permutation keeps the false-positive rate at alpha."""
    rng = np.random.default_rng(0)
    naive, clustered = [], []
    for _ in range(200):
        groups = np.repeat(np.arange(12), 4)
        x = rng.normal(size=12)[groups] + 0.3 * rng.normal(size=48)
        y = rng.normal(size=12)[groups] + 0.3 * rng.normal(size=48)
        result = correlate(x, y, groups, seed=int(rng.integers(1 << 30)), n_perm=999)
        clustered.append(result["pearson_p"] <= 0.05)
        naive.append(stats.pearsonr(x, y).pvalue <= 0.05)
    low, high = stats.binomtest(int(np.sum(clustered)), len(clustered)).proportion_ci(method="exact")
    assert low <= 0.05 <= high and np.mean(clustered) <= 0.10
    assert np.mean(naive) > 0.25


def study_design(rng: np.random.Generator, tasks: int, rho: float = 0.0, task_means: bool = True) -> pd.DataFrame:
    """A unit table of ``tasks`` tasks x 6 seeds x 3 methods as a study makes it: the MTL run (seed, method)
    adds one effect to every task's factor and target, the STL run (task, seed) one to every method's target,
    tasks differ in the means of both (``task_means``), and the run and unit effects of factor and target
    have correlation ``rho``: the correlation of the task-centred units is ``(1 + 0.25) rho / 2``."""
    t, s, m = (a.ravel() for a in np.meshgrid(np.arange(tasks), np.arange(6), np.arange(3), indexing="ij"))
    run = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=(6, 3))
    own = rng.multivariate_normal([0, 0], [[0.25, 0.25 * rho], [0.25 * rho, 0.25]], size=len(t))
    stl = rng.normal(size=(2, tasks, 6)) * np.sqrt(0.75)  # each variable's variance: 1 + 0.25 + 0.75
    mean = 2.0 * t if task_means else 0.0 * t
    return pd.DataFrame(
        {
            "setting": "syn",
            "task": np.array(["a", "b", "c"])[t],
            "seed": s,
            "method": np.array(["sum", "pcgrad", "mgda"])[m],
            "factor": mean + run[s, m, 0] + own[:, 0] + stl[0, t, s],
            "target": mean + run[s, m, 1] + own[:, 1] + stl[1, t, s],
        }
    )


def test_correlations_keep_their_level_under_shared_runs_and_task_means():
    """Issue 23: with (setting, task, seed) clusters and uncentred data, shared MTL runs and task-level
    means gave 11–47% false positives; (setting, seed) clusters, centring within (setting, task) and the
    studentized permutation keep the rate <= 6.5% (2 and 3 tasks x 6 seeds x 3 methods)."""
    rng = np.random.default_rng(23)
    rejected, old = [], []
    for i in range(160):
        units = study_design(rng, tasks=2 + i % 2)
        table = correlation_table(units, pairs=[("factor", "target")], n_perm=999).iloc[0]
        rejected += [table["pearson_p"] <= 0.05, table["spearman_p"] <= 0.05]
        old_clusters = units[["task", "seed"]].astype(str).agg("/".join, axis=1)
        old.append(correlate(units["factor"], units["target"], old_clusters, n_perm=199)["pearson_p"] <= 0.05)
    assert np.mean(rejected) <= 0.065
    assert np.mean(old) > 0.3  # the design it replaces: task means count as a correlation


def test_uncorrelated_but_dependent_data_is_not_rejected():
    """Spread of the target growing with |factor| (zero correlation, not independence): the plain
    permutation of r tests independence and rejects too often; the studentized one keeps its level."""
    rng = np.random.default_rng(7)
    studentized_p, plain = [], []
    orders = np.vstack([np.arange(30), rng.permuted(np.tile(np.arange(30), (199, 1)), axis=1)])
    for _ in range(300):
        x = rng.normal(size=30)
        y = 2 * np.abs(x) * rng.normal(size=30) + 0.2 * rng.normal(size=30)
        studentized_p.append(correlate(x, y, n_perm=199, seed=int(rng.integers(1 << 30)))["pearson_p"] <= 0.05)
        r = np.abs((x - x.mean())[orders] @ (y - y.mean()))  # |r| up to a common positive factor
        plain.append(np.mean(r >= r[0] * (1 - 1e-12)) <= 0.05)
    assert np.mean(studentized_p) <= 0.065
    assert np.mean(plain) > np.mean(studentized_p) + 0.03


def test_correlation_intervals_cover_the_truth_under_the_study_design():
    """The jackknife (leave-one-seed-out) interval covers the true within-task correlation in >= 93% of
    simulated studies (the cluster-bootstrap percentile interval covered 90–93%)."""
    rng = np.random.default_rng(5)
    covered = []
    for i in range(160):
        rho = (0.0, 0.8)[i % 2]
        row = correlation_table(study_design(rng, tasks=3, rho=rho), pairs=[("factor", "target")], n_perm=9).iloc[0]
        covered.append(row["pearson_low"] <= 1.25 * rho / 2 <= row["pearson_high"])
    assert np.mean(covered) >= 0.93


def test_jackknife_interval_is_reproducible_and_wider_with_fewer_points():
    x, y = bivariate(200, 0.5, seed=2)
    first, again = correlate(x, y, n_perm=99, seed=3), correlate(x, y, n_perm=99, seed=3)
    assert first == again
    few = correlate(x[:25], y[:25], n_perm=99, seed=3)
    assert few["pearson_high"] - few["pearson_low"] > 1.5 * (first["pearson_high"] - first["pearson_low"])


def test_settings_on_other_scales_weigh_by_their_units_not_their_scale():
    """Two settings, the second's values 10× larger (another metric or data set): each variable is scaled within
    its setting, so r is the unit-weighted mean of the settings' own correlations and nothing (r, rho, p,
    interval) depends on the ratio of the scales; scaled over both at once, the large setting carried nearly all
    of r and of its jackknife, and the 95% interval missed 6.7% at 3 seeds per setting."""
    rng = np.random.default_rng(8)
    a = study_units(rng, 2, 4, r=0.6).assign(setting="A")
    b = study_units(rng, 2, 4, r=-0.2).assign(setting="B")
    results = []
    for scale in (1.0, 10.0):
        units = pd.concat([a, b.assign(factor=scale * b["factor"], target=scale * b["target"])], ignore_index=True)
        labels = {
            name: units[list(columns)].astype(str).agg("/".join, axis=1).to_numpy()
            for name, columns in (("groups", UNIT_CLUSTER), ("centre", UNIT_CENTRE), ("slots", UNIT_SLOTS))
        }
        results.append(
            correlate(units["factor"], units["target"], seed=0, n_perm=999, strata=units["setting"], **labels)
        )
    keys = ["pearson_r", "spearman_rho", "pearson_p", "pearson_low", "pearson_high", "spearman_low"]
    assert [results[0][k] for k in keys] == pytest.approx([results[1][k] for k in keys], rel=1e-9)
    own = [correlate(s["factor"], s["target"], centre=s["task"], n_perm=1)["pearson_r"] for s in (a, b)]
    assert results[1]["pearson_r"] == pytest.approx(np.mean(own), rel=1e-9)


def test_cluster_interval_does_not_count_duplicated_points_as_evidence():
    # Each of 30 points appears 5 times: leaving out a cluster leaves out one original point, so the
    # clustered interval is the original one exactly; treating the copies as points pretends n = 150.
    x, y = bivariate(30, 0.5, seed=6)
    groups = np.repeat(np.arange(30), 5)
    xs, ys = np.repeat(x, 5), np.repeat(y, 5)
    original = correlate(x, y, n_perm=99)
    clustered = correlate(xs, ys, groups, n_perm=99)
    naive = correlate(xs, ys, n_perm=99)
    width = {
        name: r["pearson_high"] - r["pearson_low"]
        for name, r in (("original", original), ("clustered", clustered), ("naive", naive))
    }
    assert clustered["n"] == 150 and clustered["n_groups"] == 30
    assert clustered["pearson_r"] == pytest.approx(original["pearson_r"])
    assert width["clustered"] == pytest.approx(width["original"], rel=1e-9)
    assert width["naive"] < 0.7 * width["clustered"]


def test_correlate_drops_non_finite_pairs_and_degenerate_input():
    x, y = bivariate(20, 0.3, seed=0)
    x[3], y[7] = np.nan, np.inf
    assert correlate(x, y, n_perm=99)["n"] == 18
    assert correlate(x, y, n_perm=99)["pearson_r"] == pytest.approx(
        stats.pearsonr(np.delete(x, [3, 7]), np.delete(y, [3, 7]))[0]
    )
    assert np.isnan(correlate([1, 2], [3, 4])["pearson_r"])
    assert np.isnan(correlate(np.ones(10), np.arange(10.0))["spearman_rho"])


def test_a_pair_without_a_coefficient_has_no_floor():
    """A factor constant within every centring group (task) is all zero once centred: no r, no test, so no
    smallest attainable p either (a finite min_p counted the pair in the family's size, which BH does not)."""
    units = study_units(np.random.default_rng(1), 2, 6)
    constant = np.where(units["task"] == "a", 1.0, 2.0)
    labels = {
        name: units[list(columns)].astype(str).agg("/".join, axis=1).to_numpy()
        for name, columns in (("groups", UNIT_CLUSTER), ("centre", UNIT_CENTRE), ("slots", UNIT_SLOTS))
    }
    result = correlate(constant, units["target"], n_perm=99, strata=units["setting"], **labels)
    assert np.isnan(result["pearson_p"]) and np.isnan(result["min_p"])
    assert np.isfinite(correlate(units["factor"], units["target"], n_perm=99, **labels)["min_p"])


def test_correlation_table_pairs_factors_with_targets():
    rows, _ = synthetic_study(seeds=(0, 1, 2, 3))
    units = unit_table(rows, TASK_INFO)
    table = correlation_table(units).set_index(["x", "y"])
    assert ("coherence_diff", "transfer_pct") in table.index
    assert ("m_coherence_diff", "transfer_pct") not in table.index  # no m-coherence probe: no points
    assert np.isnan(table.loc[("conflict_cosine", "log_ratio_mean"), "pearson_r"])  # constant optimization effect
    row = table.loc[("fisher_early_diff", "gap_mean")]
    assert row["n"] == 8 and row["n_groups"] == 4  # clusters: the seeds (a run is shared by both tasks)
    assert row["min_p"] == pytest.approx(1 / 24)  # the 4! permutations of the seeds
    centred = units.groupby("task")[["fisher_early_diff", "gap_mean"]].transform(lambda c: c - c.mean())
    assert row["pearson_r"] == pytest.approx(stats.pearsonr(centred["fisher_early_diff"], centred["gap_mean"])[0])
    # The intervals are at BH's level over the table, R · alpha / m (Benjamini & Yekutieli 2005; m: the pairs
    # whose min_p can reach alpha), and --alpha reaches them: at alpha 0.2 they are narrower than at 0.05 by
    # the ratio of the t quantiles (G − 1 = 3 df) on Fisher's z scale
    for at, table_at in ((0.05, table), (0.2, correlation_table(units, alpha=0.2).set_index(["x", "y"]))):
        level = bh_level(table_at["pearson_p"].to_numpy(float), at, table_at["min_p"].to_numpy(float))
        assert (table_at["pearson_confidence"] == 1 - level).all()
    narrow = correlation_table(units, alpha=0.2).set_index(["x", "y"]).loc[("fisher_early_diff", "gap_mean")]
    quantile = [stats.t.ppf((1 + c) / 2, 3) for c in (narrow["pearson_confidence"], row["pearson_confidence"])]
    z, ratio = np.arctanh(row["pearson_r"]), quantile[0] / quantile[1]
    assert ratio < 1
    for end in ("pearson_low", "pearson_high"):
        assert np.arctanh(narrow[end]) - z == pytest.approx(ratio * (np.arctanh(row[end]) - z), rel=1e-9)


# -- Elich et al. --------------------------------------------------------------------------------------------


def test_alignment_distributions_and_summaries():
    steps = np.arange(0, 40, 10)
    rows = pd.concat(
        [
            rows_of(
                "m0",
                "mtl",
                "sum",
                0,
                "a|b",
                steps,
                {"probe/conflict_cosine": [-0.5, -0.1, 0.2, 0.4], "probe/magnitude_ratio": [10.0, 10.0, 0.1, 1.0]},
            ),
            rows_of(
                "s0",
                "stl",
                "sum",
                0,
                "a",
                steps,
                {
                    "probe/intra_cosine_subbatch": [0.5, 0.6, 0.7, -0.2],
                    "probe/intra_cosine_classgroup": [0.1, 0.1, 0.1, 0.1],
                },
            ),
            # Intra-task cosines of an MTL run are not part of the STL distribution.
            rows_of("m0", "mtl", "sum", 0, "a", steps, {"probe/intra_cosine_subbatch": [9.0] * 4}),
        ]
    )
    dist = alignment_distributions(rows)
    summary = alignment_summary(dist).set_index("kind")
    assert summary.loc["inter-task (MTL)", "n"] == 4 and summary.loc["inter-task (MTL)", "fraction_negative"] == 0.5
    assert summary.loc["intra-task, sub-batches (STL)", "mean"] == pytest.approx(np.mean([0.5, 0.6, 0.7, -0.2]))
    assert summary.loc["intra-task, sub-batches (STL)", "median"] == pytest.approx(0.55)
    ratios = magnitude_ratio_summary(rows).iloc[0]
    assert ratios["pair"] == "a|b" and ratios["median_abs_log10"] == pytest.approx(1.0)
    assert ratios["median_ratio"] == pytest.approx(np.median([10, 10, 0.1, 1]))


def test_optimizer_comparison_groups_runs_by_optimizer_and_momentum():
    steps = np.arange(0, 30, 10)
    rows, index = [], []
    results = {("adam", 0.0): [0.30, 0.34], ("sgd", 0.0): [0.50, 0.56], ("sgd", 0.9): [0.40, 0.42]}
    for (optimizer, momentum), values in results.items():
        for seed, value in enumerate(values):
            run_id = f"{optimizer}-{momentum}-{seed}"
            rows.append(
                rows_of(
                    run_id,
                    "stl",
                    "sum",
                    seed,
                    "a",
                    steps,
                    {"val/loss": [3.0, 1.0, 2.0], "test/loss": [9.0, value, 9.0]},
                )
            )
            index.append({"run_id": run_id, "optimizer": optimizer, "momentum": momentum, "lr": 0.01})
    # Adam at a second learning rate is its own row, not pooled with lr 0.01
    rows.append(
        rows_of("adam-lr", "stl", "sum", 0, "a", steps, {"val/loss": [3.0, 1.0, 2.0], "test/loss": [9, 0.9, 9]})
    )
    index.append({"run_id": "adam-lr", "optimizer": "adam", "momentum": 0.0, "lr": 0.1})
    index = pd.DataFrame(index)
    full = optimizer_comparison(index, pd.concat(rows), TASK_INFO)
    assert full.set_index(["optimizer", "lr"]).loc[("adam", 0.1), "mean"] == pytest.approx(0.9)
    table = full[full["lr"] == 0.01].set_index(["optimizer", "momentum"])
    assert optimizers_compared(index) and not optimizers_compared(index[index["optimizer"] == "adam"])
    for key, values in results.items():
        assert table.loc[key, "mean"] == pytest.approx(np.mean(values))
        assert table.loc[key, "std"] == pytest.approx(np.std(values, ddof=1))
        assert table.loc[key, "n"] == 2


def test_optimizer_section_never_pools_runs_of_other_configurations_as_seeds(tmp_path):
    """Audit D 2026-12-06: in a loss-scale store (one seed, five scales c, Adam and SGD) the Adam vs SGD table
    pooled the five scales as "n=5 runs (seeds)"; each scale is its own configuration (setting label)."""
    from types import SimpleNamespace

    from mtlens.report.alignment import optimizer_section

    steps = np.arange(0, 30, 10)
    rows, index = [], []
    for optimizer in ("adam", "sgd"):
        for c, value in (("1", 0.3), ("10", 0.5), ("100", 0.7)):
            run_id = f"{optimizer}-{c}"
            rows.append(
                rows_of(run_id, "stl", "sum", 0, "a", steps, {"val/loss": [3.0, 1.0, 2.0], "test/loss": [9, value, 9]})
            )
            scales = f'{{"a": {c}}}'
            index.append(
                {"run_id": run_id, "optimizer": optimizer, "momentum": 0.0, "lr": 0.01, "task_loss_scales": scales}
            )
    store = SimpleNamespace(task_info=lambda: TASK_INFO)
    optimizer_section(pd.DataFrame(index), pd.concat(rows), store, tmp_path)
    table = pd.read_csv(tmp_path / "tables" / "optimizers.csv")
    assert len(table) == 3 and table["setting"].nunique() == 3  # one row per scale, not one pooled row
    assert all("(n=1)" in value for value in [*table["adam"], *table["sgd (momentum 0)"]])
    assert sorted(float(v.split()[0]) for v in table["adam"]) == [0.3, 0.5, 0.7]


def _family(*rows: np.ndarray) -> SkewnessBound:
    """The skewness bound of a table's family of rows (each a sample of per-seed differences)."""
    return family_skewness_bound([skewness_of(r) for r in rows], [len(r) for r in rows])


def _hall_p(values: np.ndarray, family: SkewnessBound) -> float:
    """The paired test's p-value from Hall's statistic written out here (scipy's skewness rescaled to the
    ddof-1 sd) and the least-favourable reference of ``inference.hall_p_value`` under the family's bound."""
    n = len(values)
    s, g = values.mean() / values.std(ddof=1), stats.skew(values) * ((n - 1) / n) ** 1.5
    hall = np.sqrt(n) * (s + g * s**2 / 3 + g**2 * s**3 / 27 + g / (6 * n))
    return float(hall_p_value(np.array([hall]), n, family)[0])


def _detectable(values: np.ndarray, family: SkewnessBound, alpha: float = 0.05, power: float = 0.8) -> float:
    """The paired test's detectable difference: ``d(n, c) * sd`` with ``d`` the standardized difference Hall's
    test detects with ``power`` at its critical value (its power is checked by simulation in test_inference)."""
    n = len(values)
    return hall_detectable_effect(n, hall_critical(n, alpha, family), power) * np.std(values, ddof=1)


def test_optimization_tests_are_paired_t_tests_of_the_per_seed_log_ratios():
    effect = pd.DataFrame(
        {
            "setting": "s",
            "task": ["t"] * 6 + ["u"] * 6,
            "method": "sum",
            "seed": list(range(6)) * 2,
            "log_ratio_early": [-0.3, -0.2, -0.25, -0.1, -0.4, -0.15] + [0.1, -0.1, 0.05, 0.0, -0.05, 0.2],
            "log_ratio_final": np.linspace(-0.1, 0.1, 12),
        }
    )
    table = optimization_tests(effect).set_index("task")
    family = _family(*(effect.loc[effect["task"] == task, "log_ratio_early"].to_numpy() for task in ("t", "u")))
    for task in ("t", "u"):
        values = effect.loc[effect["task"] == task, "log_ratio_early"].to_numpy()
        assert table.loc[task, "log_ratio_early_p"] == pytest.approx(_hall_p(values, family))
        # the interval's lower end is the shift the test just rejects at 0.05
        assert _hall_p(values - table.loc[task, "log_ratio_early_low"], family) == pytest.approx(0.05, abs=2e-3)
        detectable = _detectable(values, family)
        assert table.loc[task, "log_ratio_early_min_detectable"] == pytest.approx(detectable, rel=1e-5)
    # every seed optimized faster under MTL: below the 2/64 floor of 6 sign-flipped seeds
    assert table.loc["t", "log_ratio_early_p"] < 2 / 64
    assert table.loc["t", "log_ratio_early_high"] < 0 < table.loc["u", "log_ratio_early_high"]
    assert np.allclose(table["log_ratio_early_p_adjusted"], stats.false_discovery_control(table["log_ratio_early_p"]))
    assert np.allclose(table["min_p"], 1 / (1 + N_REFERENCE) + BOUND_MISS)  # the floor of a family-bound p-value
    # --alpha reaches the table: a 99% interval is wider
    wide = optimization_tests(effect, alpha=0.01).set_index("task")
    assert wide.loc["t", "log_ratio_early_low"] < table.loc["t", "log_ratio_early_low"]


def test_each_optimization_column_is_a_family_with_its_own_skewness_bound():
    """48 tasks x 8 seeds: symmetric early log-ratios narrow their family's bound below 2, skewed final ones
    (Exp(1) − 1) keep it at 2; the table shows each column's bound, the one its p-values were computed under."""
    rng = np.random.default_rng(5)
    tasks = np.repeat([f"t{k}" for k in range(48)], 8)
    effect = pd.DataFrame(
        {
            "setting": "s",
            "task": tasks,
            "method": "sum",
            "seed": np.tile(np.arange(8), 48),
            "log_ratio_early": rng.standard_normal(len(tasks)),
            "log_ratio_final": rng.exponential(1.0, len(tasks)) - 1.0,
        }
    )
    table = optimization_tests(effect)
    for column in ("log_ratio_early", "log_ratio_final"):
        family = _family(*(frame[column].to_numpy() for _, frame in effect.groupby("task")))
        assert (table[f"{column}_skewness_bound"] == family.value).all()
        values = effect.loc[effect["task"] == "t0", column].to_numpy()
        assert table.loc[table["task"] == "t0", f"{column}_p"].iloc[0] == pytest.approx(_hall_p(values, family))
    assert table["log_ratio_early_skewness_bound"].iloc[0] < 2 == table["log_ratio_final_skewness_bound"].iloc[0]


def test_difference_tests_test_each_probe_difference_over_seeds():
    units = pd.DataFrame(
        {
            "setting": "s",
            "task": "t",
            "method": "sum",
            "seed": range(7),
            "fisher_early_diff": [1.0, 2.0, 1.5, 0.5, 1.2, 0.8, 1.1],
            "coherence_diff": [0.1, -0.2, 0.05, -0.1, 0.0, 0.2, np.nan],
        }
    )
    table = difference_tests(units, ["fisher_early_diff", "coherence_diff", "sharpness_diff"]).set_index("difference")
    assert list(table.index) == ["fisher_early_diff", "coherence_diff"]  # no sharpness column: left out
    fisher = units["fisher_early_diff"].to_numpy()
    family = _family(fisher, units["coherence_diff"].dropna().to_numpy())
    assert table.loc["fisher_early_diff", "p_value"] == pytest.approx(_hall_p(fisher, family))
    assert (table["skewness_bound"] == family.value).all()
    assert table.loc["coherence_diff", "n_seeds"] == 6 and table.loc["coherence_diff", "p_value"] > 0.5
    assert table.loc["fisher_early_diff", "min_detectable"] == pytest.approx(_detectable(fisher, family), rel=1e-5)
    assert table.loc["fisher_early_diff", "skewness"] == pytest.approx(stats.skew(fisher))
    assert np.allclose(table["p_adjusted"], stats.false_discovery_control(table["p_value"]))
