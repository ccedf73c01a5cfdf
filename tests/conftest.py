"""Shared fixtures: a temporary store and tiny, fast run configs on the bundled digits."""

from __future__ import annotations

import os

import pytest
import torch

# Keep tests quick and reproducible on the 2-core CI machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_data_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test session caches generated data under its own temporary directory."""
    monkeypatch.setenv("MTLENS_DATA", os.environ.get("MTLENS_TEST_DATA", str(tmp_path_factory.getbasetemp() / "data")))


@pytest.fixture
def store(tmp_path):
    from mtlens.store import RunStore

    return RunStore(tmp_path / "store")


@pytest.fixture
def tiny() -> dict:
    """A raw config of a very short run on digits_pair (a few seconds), without probes."""
    return {"setting": "digits_pair", "epochs": 2, "batch_size": 32, "train_eval_size": 256, "probes": [],
            "setting_options": {"n_train": 256, "n_val": 64, "n_test": 64}}
