"""Multi-task optimizers inside training: recorded task weights, determinism per seed for the
random methods, exact resume of a stateful method, and the study report per method."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from mtlens import RunStore, parse_config, regression_task, train_run
from mtlens.cli import main
from mtlens.seeding import derived_seed
from mtlens.settings import Setting, Split, TaskData, register_setting
from mtlens.training.config import resolve_config


@register_setting("test_three_regressions")
def _three_regressions() -> Setting:
    """Three linear regression tasks on shared inputs (K = 3, so PCGrad's order is random)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 6, generator=g)
    tasks = ("r0", "r1", "r2")
    data = {}
    for k, name in enumerate(tasks):
        y = x @ torch.randn(6, 1, generator=g) + 0.1 * torch.randn(96, 1, generator=g)
        split = Split(x, (-1) ** k * y)
        data[name] = TaskData("shared", split, split, split)
    return Setting(
        name="test_three_regressions",
        tasks=tuple(regression_task(t) for t in tasks),
        data=data,
        encoder=lambda: torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh()),
        feature_dim=8,
    )


THREE = {
    "setting": "test_three_regressions",
    "epochs": 2,
    "batch_size": 16,
    "train_eval_size": 32,
    "eval_every_steps": 2,
}


def _rows(store: RunStore, config) -> pd.DataFrame:
    return store.trajectory(resolve_config(config).run_id)


@pytest.mark.parametrize("method", ["pcgrad", "graddrop", "rgw", "rlw"])
def test_random_methods_are_deterministic_per_seed(tmp_path, method):
    """Same seed: identical trajectory (weights included); other seed: a different one."""
    config = parse_config({**THREE, "method": method})
    first, second = RunStore(tmp_path / "one"), RunStore(tmp_path / "two")
    train_run(config, first, progress=False)
    train_run(config, second, progress=False)
    a, b = _rows(first, config), _rows(second, config)
    pd.testing.assert_frame_equal(a, b)
    other = parse_config({**THREE, "method": method, "seed": 1})
    train_run(other, first, progress=False)
    c = _rows(first, other)
    assert len(c) == len(a) and not (a["value"].to_numpy() == c["value"].to_numpy()).all()
    weights = a[a["quantity"] == "method/weight"]
    if method == "graddrop":  # mixes coordinates: no task weights
        assert weights.empty
    else:
        assert set(weights["task"]) == {"r0", "r1", "r2"} and 0 not in set(weights["step"])


def test_recorded_weight_is_the_mean_since_the_previous_record(store):
    """RLW's weights do not depend on the model: replay its generator and average per record."""
    raw = {**THREE, "method": "rlw", "seed": 3}
    config = resolve_config(parse_config(raw))
    train_run(config, store, progress=False)
    rows = _rows(store, config)
    weights = rows[rows["quantity"] == "method/weight"].pivot(index="step", columns="task", values="value")
    generator = torch.Generator().manual_seed(derived_seed(3, "method", "rlw"))
    draws = torch.stack(
        [
            torch.softmax(torch.randn(3, generator=generator, dtype=torch.float64), dim=0)
            for _ in range(int(weights.index.max()))
        ]
    )
    previous = 0
    for step in weights.index:
        expected = draws[previous:step].mean(dim=0).numpy()
        assert weights.loc[step, ["r0", "r1", "r2"]].to_numpy() == pytest.approx(expected, rel=1e-6)
        previous = step
    # one weight row per evaluation record after step 0 (probe-only steps record none)
    assert list(weights.index) == sorted(set(rows.loc[rows["quantity"] == "val/loss", "step"]) - {0})


def test_stateful_method_resumes_exactly_after_sigkill(tmp_path, kill_during_training):
    """GradNorm (learned weights with their own Adam state, initial losses) killed mid-run with
    SIGKILL between records: the resumed trajectory, recorded weights included, is identical."""
    # 48 steps, records every 3: killed at step 7 (between records), 41 steps before the run would end
    raw = {**THREE, "method": "gradnorm", "method_options": {"lr": 0.05}, "epochs": 8, "eval_every_steps": 3}
    config = parse_config(raw)
    reference = RunStore(tmp_path / "reference")
    train_run(config, reference, progress=False)

    killed = RunStore(tmp_path / "killed")
    kill_during_training(killed, raw, 7)
    assert train_run(config, killed, progress=False) == "finished"
    resumed, uninterrupted = _rows(killed, config), _rows(reference, config)
    pd.testing.assert_frame_equal(resumed, uninterrupted)
    weights = uninterrupted[uninterrupted["quantity"] == "method/weight"]
    assert weights["value"].nunique() > 3  # GradNorm's weights move, so the check has teeth


def test_study_with_two_methods_reports_each_against_stl(tmp_path):
    store, out = tmp_path / "store", tmp_path / "report"
    argv = [
        "study",
        "digits_pair",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--eval-every-steps",
        "4",
        "--methods",
        "pcgrad,cagrad",
        "--option",
        "n_train=128",
        "--option",
        "n_val=64",
        "--option",
        "n_test=64",
        "--store",
        str(store),
        "--report",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    runs = RunStore(store).runs()
    assert set(runs["state"]) == {"finished"} and sorted(runs[runs["mode"] == "mtl"]["method"]) == ["cagrad", "pcgrad"]

    transfer = pd.read_csv(out / "tables" / "transfer.csv")
    assert sorted(zip(transfer["method"], transfer["task"])) == [
        ("cagrad", "a"),
        ("cagrad", "b"),
        ("pcgrad", "a"),
        ("pcgrad", "b"),
    ]
    html = (out / "report.html").read_text()
    for method in ("pcgrad", "cagrad"):
        for task in ("a", "b"):
            assert f'id="fig-gap_digits_pair_{method}_{task}"' in html
        assert f'id="fig-weights_digits_pair_{method}"' in html
        assert (out / "figures" / f"weights_digits_pair_{method}.vl.json").stat().st_size > 1000

    rows = RunStore(store).trajectories()
    weights = rows[rows["quantity"] == "method/weight"]
    assert set(weights["method"]) == {"pcgrad", "cagrad"} and set(weights["task"]) == {"a", "b"}
    assert (weights["mode"] == "mtl").all()
    table = pd.read_csv(out / "tables" / "method_weights.csv")
    assert sorted(zip(table["method"], table["task"])) == [
        ("cagrad", "a"),
        ("cagrad", "b"),
        ("pcgrad", "a"),
        ("pcgrad", "b"),
    ]
    # CAGrad's weights are (1/K + (c ||g_0|| / ||g_w||) w_dual) / (1 + c^2), w_dual in the simplex
    # (c = 0.5): positive, summing to more than 1 / (1 + c^2).
    cagrad = weights[weights["method"] == "cagrad"]
    assert (cagrad["value"] > 0).all() and (cagrad.groupby("step")["value"].sum() > 1 / 1.25).all()


def test_study_gives_method_options_to_mtl_runs_only():
    from mtlens.orchestration.study import study_configs
    from mtlens.training.config import ConfigError

    base = {"setting": "test_three_regressions", "method_options": {"c": 0.4}}
    configs = study_configs(base, seeds=[0], methods=["cagrad"])
    assert [(c.mode, c.method, c.method_options) for c in configs] == [
        ("stl", "sum", {}),
        ("stl", "sum", {}),
        ("stl", "sum", {}),
        ("mtl", "cagrad", {"c": 0.4}),
    ]
    # STL runs are the same runs as in a study without options, so one store shares them.
    plain = study_configs({"setting": "test_three_regressions"}, seeds=[0], methods=["pcgrad"])
    assert [c.run_id for c in configs[:3]] == [c.run_id for c in plain[:3]]
    with pytest.raises(ConfigError, match=r"method 'pcgrad' has no option\(s\) \['c'\]"):
        study_configs(base, seeds=[0], methods=["cagrad", "pcgrad"])
