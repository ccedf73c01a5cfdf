"""Seed planning (issue 23.5): the seeds a family needs and the effects they detect, against simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mtlens.analysis.inference import detectable_effect, hall_p_value, hall_statistic
from mtlens.analysis.planning import (
    fewest_permuted_seeds,
    fewest_sign_flip_seeds,
    plan_summary,
    seed_plan,
    seeds_needed,
)
from mtlens.cli import main


def test_floors_of_the_permutation_tests():
    assert fewest_sign_flip_seeds(0.05) == 6  # 2/2^6 = 0.031
    assert fewest_sign_flip_seeds(0.05 / 4) == 8  # the demo's 4 gap curves: 2/2^7 = 0.0156 > 0.0125
    assert fewest_permuted_seeds(0.05) == 4  # 1/4! = 0.042; 1/3! = 0.17
    assert 2 / 2 ** fewest_sign_flip_seeds(0.001) <= 0.001 < 2 / 2 ** (fewest_sign_flip_seeds(0.001) - 1)


def test_the_planned_effect_is_found_with_the_planned_power():
    """6 comparisons at FDR 0.05 with 8 seeds: a lone effect of d_z_lone is found at level 0.05/6 in 80 ± 3%."""
    plan = seed_plan(6, 0.05, seeds=[8], sd=0.02).iloc[0]
    assert plan["lone_level"] == pytest.approx(0.05 / 6) and plan["difference_lone"] == pytest.approx(
        plan["d_z_lone"] * 0.02
    )
    rng = np.random.default_rng(0)
    d = rng.normal(plan["d_z_lone"], 1.0, (20_000, 8))
    # the report's paired test (Hall's statistic, least-favourable reference: inference.pointwise_p)
    mean, sd = d.mean(axis=1), d.std(axis=1, ddof=1)
    p = hall_p_value(hall_statistic(mean, sd, stats.skew(d, axis=1) * (7 / 8) ** 1.5, 8), 8)
    power = np.mean(p <= 0.05 / 6)
    assert 0.77 <= power <= 0.83
    assert plan["d_z_all"] < plan["d_z_lone"] and bool(plan["sign_flip_can_reach"])  # 2/2^8 <= 0.05/6


def test_seeds_needed_is_the_first_number_of_seeds_that_suffices():
    n = seeds_needed(1.0, 0.05 / 6)
    assert n is not None and detectable_effect(n, 0.05 / 6) <= 1.0 < detectable_effect(n - 1, 0.05 / 6)
    assert seeds_needed(1e-3, 0.05, most=50) is None
    summary = plan_summary(6)
    assert summary["sign_flip"] == 8 and summary["for_d_z_1"] == n and summary["t_any"] == 2


def test_plan_command_prints_the_plan_and_rejects_bad_input(capsys):
    assert main(["plan", "--tasks", "2", "--methods", "2", "--seeds", "6", "8", "--sd", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "4 transfer comparisons" in out and "sign-flip band 8" in out and "difference_lone" in out
    assert main(["plan", "--alpha", "2"]) == 2
    assert "--alpha" in capsys.readouterr().err
