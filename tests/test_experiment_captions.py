"""The experiments' captions are built from their data: none states a finding its numbers do not show."""

import itertools

import numpy as np
import pandas as pd
import pytest

from mtlens.analysis.assumptions import corruption_tests
from mtlens.experiments.loss_scale import invariance_caption, loss_scale_caption


def _curves(spread: dict[str, float]) -> pd.DataFrame:
    """Validation error per (optimizer, task, c, epoch) whose last epoch moves with c by ``spread[optimizer]``."""
    records = [
        {
            "optimizer": optimizer,
            "task": task,
            "scale": scale,
            "epoch": epoch,
            "value": 0.5 - 0.1 * epoch + (spread[optimizer] * k if epoch == 2 else 0.0),
            "n": 2,
        }
        for optimizer, task, (k, scale), epoch in itertools.product(
            spread, ("a", "b"), enumerate((1e-3, 1.0, 1e3)), (0, 1, 2)
        )
    ]
    return pd.DataFrame.from_records(records)


def test_loss_scale_caption_reports_the_measured_spread_not_a_fixed_finding():
    # The paper's claim is false here: Adam's lines move with c, SGD's do not.
    caption = loss_scale_caption(_curves({"adam": 0.1, "sgd": 0.0}))
    assert "stay together" not in caption and "SGD's change with c" not in caption
    assert "adam: task a 0.3 to 0.5 (spread 0.2 over 3 values of c)" in caption
    assert "sgd: task a 0.3 to 0.3 (spread 0 over 3 values of c)" in caption
    assert "descriptive, no test" in caption
    assert "Measured" not in loss_scale_caption(_curves({"adam": 0.0}).iloc[:0])


def _check(adam_head: float, adam_shared: float, sgd_head: float) -> pd.DataFrame:
    records = []
    for optimizer, eps, values in (
        ("adam", 1e-16, {"head_a": 0.0, "head_b": adam_head, "shared": adam_shared}),
        ("sgd", float("nan"), {"head_a": 0.0, "head_b": sgd_head, "shared": 1.0}),
    ):
        for steps, (group, value), scale in itertools.product((1, 10), values.items(), (1e-3, 1.0, 1e3)):
            records.append(
                {
                    "optimizer": optimizer,
                    "lr": 1e-3,
                    "eps": eps,
                    "steps": steps,
                    "group": group,
                    "scale": scale,
                    "update_norm": 1.0,
                    "relative_difference": 0.0 if scale == 1.0 else value,
                    "setting": "s",
                    "task_a": "a",
                    "task_b": "b",
                }
            )
    return pd.DataFrame.from_records(records)


def test_invariance_caption_reports_the_measured_values_not_a_fixed_finding():
    # Adam's heads are far from invariant here and SGD's head_b does not move with c: the caption must
    # not say otherwise.
    caption = invariance_caption(_check(adam_head=0.7, adam_shared=0.0, sgd_head=0.0), "s")
    assert "~0 on both heads" not in caption and "exact invariance" not in caption
    assert "large on the shared encoder" not in caption
    assert "adam (eps 1e-16): heads up to 0.7, shared encoder 0" in caption
    assert "sgd: heads up to 0, shared encoder 1" in caption
    assert "Measured after 1 step(s)" in caption


def _accuracy(mtl_extra_drop: float, seeds: int = 6) -> pd.DataFrame:
    """Probe accuracies of paired STL and MTL encoders: the MTL encoder loses ``mtl_extra_drop`` more
    under ``blur`` (severity s costs 0.02 s, plus a seed effect shared by both encoders of a seed)."""
    rng = np.random.default_rng(0)
    records = []
    for seed in range(seeds):
        shared = rng.normal(0, 0.01)
        for mode in ("stl", "mtl"):
            noise = rng.normal(0, 0.002)
            for corruption, severity in [("none", 0), *((c, s) for c in ("blur", "noise") for s in range(1, 6))]:
                extra = mtl_extra_drop if mode == "mtl" and corruption == "blur" else 0.0
                value = 0.9 - 0.02 * severity - (extra + shared + noise) * (severity > 0)
                records.append(
                    {
                        "run_id": f"{mode}-{seed}",
                        "setting": "s",
                        "mode": mode,
                        "seed": seed,
                        "task": "a",
                        "corruption": corruption,
                        "severity": severity,
                        "accuracy": value,
                    }
                )
    return pd.DataFrame.from_records(records)


def test_corruption_drop_difference_is_tested_paired_by_seed():
    tests = corruption_tests(_accuracy(0.05), 0.05).set_index("corruption")
    blur, noise = tests.loc["blur"], tests.loc["noise"]
    assert blur["design"] == "paired" and blur["n_mtl"] == blur["n_stl"] == 6
    assert blur["delta"] == pytest.approx(0.05, abs=0.005) and 0 < blur["delta_low"] <= blur["delta_high"]
    assert blur["p_adjusted"] <= 0.05
    # No difference: the interval covers 0 and the test agrees with it.
    assert noise["delta_low"] <= 0 <= noise["delta_high"] and noise["p_value"] > 0.05
    # The seed effect shared by both encoders of a seed cancels in the pairing: the paired interval is
    # far narrower than the seed-to-seed spread of either encoder's drop.
    assert blur["delta_high"] - blur["delta_low"] < 0.01


def test_corruptions_section_shows_the_test_and_labels_the_descriptive_table(tmp_path):
    from mtlens.experiments.corruptions import corruptions_section

    accuracy = _accuracy(0.05)

    class Store:
        def table_names(self, prefix):
            return ["corruptions-s"]

        def table(self, name):
            return accuracy

    manifest = pd.DataFrame({"run_id": accuracy["run_id"].unique()})
    html = corruptions_section(Store(), pd.DataFrame(), manifest, pd.DataFrame(), tmp_path, "s", alpha=0.05)
    assert "Descriptive, no test" in html and "MTL − STL drop" in html and "paired by seed" in html
    assert (tmp_path / "tables" / "corruptions_tests_s.csv").exists()
