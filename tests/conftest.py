"""Shared fixtures: a temporary store, tiny fast run configs on the bundled digits, the SIGKILL harness of the
resume tests; and the marking of the integration layer (see ``INTEGRATION_MODULES``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

if TYPE_CHECKING:
    from mtlens.store import RunStore

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
def cli_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What the command-line input tests refer to: a directory ``adir``, a file ``afile``, a store
    ``filled`` with one (untrained) finished run; ``tmp_path`` as the working directory."""
    from mtlens.store import RunStore
    from mtlens.training.config import parse_config

    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("not a directory\n")
    filled = RunStore(tmp_path / "filled")
    config = parse_config({"setting": "digits_pair", "tasks": ["a"], "epochs": 1, "lr": 1e-3, "batch_size": 32})
    filled.write_config(config.run_id, config.model_dump())
    filled.finalize(config.run_id, "finished", 0)  # a finished run: its (empty) trajectory, then its status
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def run_configs_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], bool]]:
    """Every call of the experiments' ``run_configs`` (still run, without progress output): its run ids and its
    ``progress`` argument, in order."""
    from mtlens.experiments import base as experiments_base

    calls: list[tuple[list[str], bool]] = []
    original = experiments_base.run_configs

    def recording(configs, store, progress=True, **options):
        calls.append(([c.run_id for c in configs], progress))
        return original(configs, store, progress=False, **options)

    monkeypatch.setattr(experiments_base, "run_configs", recording)
    return calls


@pytest.fixture
def tiny() -> dict:
    """A raw config of a very short run on digits_pair (a few seconds), without probes."""
    return {
        "setting": "digits_pair",
        "epochs": 2,
        "batch_size": 32,
        "train_eval_size": 256,
        "probes": [],
        "setting_options": {"n_train": 256, "n_val": 64, "n_test": 64},
    }


# The integration layer: modules whose tests train runs, kill subprocesses, start Ray or Chromium.  `make test-fast`
# (`-m "not integration"`) leaves them out; a new module of that kind adds its name here (or sets
# `pytestmark = pytest.mark.integration` itself).
INTEGRATION_MODULES = frozenset(
    {
        "test_assumptions",
        "test_cli_report",
        "test_compat_store",
        "test_evaluation",
        "test_extending",
        "test_grouping_experiment",
        "test_integrations",
        "test_methods_training",
        "test_probe_plugins",
        "test_probes_runner",
        "test_ray_cluster",
        "test_readme",
        "test_report_explaining",
        "test_resume_kills",
        "test_settings_dense_nlp",
        "test_settings_paper",
        "test_sweep",
        "test_training",
        "test_training_sync",
        "test_devices",
        "test_recorder",
        "test_store_integrity",
        "test_unfinished_runs",
        "test_contracts",
        "test_calibration",
        "test_packs",
        "test_notebook",
        "test_examples",
        "test_export",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__.rsplit(".", 1)[-1] in INTEGRATION_MODULES:
            item.add_marker(pytest.mark.integration)


def train_until_killed(store: RunStore, raw: dict, after_step: int, timeout: float = 120) -> None:
    """Train the raw config ``raw`` into ``store`` in a child process (forked: ``kills.fork``, so it knows what the
    test registered, e.g. its module's own setting) and SIGKILL it as soon as the store's status shows step >=
    ``after_step`` (polled every 2 ms).  Asserts that the run was still unfinished when killed, so a resume test
    built on it really resumes."""
    from kills import fork, kill_at_step
    from mtlens import RunStore, parse_config, train_run
    from mtlens.training.config import resolve_config

    run_id = resolve_config(parse_config(raw)).run_id
    child = fork(lambda: train_run(parse_config(raw), RunStore(store.root), progress=False))
    kill_at_step(child, store, run_id, after_step, timeout)


@pytest.fixture
def kill_during_training() -> Callable[..., None]:
    """:func:`train_until_killed`: the one SIGKILL harness of the resume tests."""
    return train_until_killed
