"""Resume under repeated failure: one run killed with SIGKILL several times, at different points of an epoch and
across probe steps, and restarted each time, ends with the trajectory of an uninterrupted run.  Slow (four training
processes): run with ``make test-slow``."""

from __future__ import annotations

import pandas as pd
import pytest

from mtlens import RunStore, parse_config, train_run
from mtlens.training.config import resolve_config

pytestmark = pytest.mark.slow


def test_three_kills_then_resume_equals_uninterrupted_run(tmp_path, tiny, kill_during_training):
    raw = {**tiny, "epochs": 4, "eval_every_steps": 2, "probes": ["coherence", "conflict"], "probe_sample_size": 64}
    config = parse_config(raw)
    run_id = resolve_config(config).run_id
    reference = RunStore(tmp_path / "reference")
    assert train_run(config, reference, progress=False) == "finished"

    killed = RunStore(tmp_path / "killed")
    reached = []
    for after_step in (3, 11, 22):  # mid-epoch, just past an epoch end (8 steps per epoch), late in epoch 3
        kill_during_training(killed, raw, after_step)
        reached.append(killed.status(run_id)["step"])
    assert reached == sorted(reached) and reached[-1] < resolve_config(config).epochs * 8  # each restart resumed

    assert train_run(config, killed, progress=False) == "finished"
    pd.testing.assert_frame_equal(killed.trajectory(run_id), reference.trajectory(run_id))
