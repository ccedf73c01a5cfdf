"""The assumptions study: Adam's loss-scale invariance, experiment configs, end-to-end sections."""

from __future__ import annotations

import torch
from torch import nn

from mtlens.experiments.adam_invariance import invariance_summary, scaled_updates, update_invariance
from mtlens.models import MultiTaskModel
from mtlens.tasks import classification_task


def _two_head_problem():
    torch.manual_seed(0)
    model = MultiTaskModel(
        nn.Sequential(nn.Linear(6, 8), nn.Tanh()), {"a": nn.Linear(8, 3), "b": nn.Linear(8, 4)}
    ).double()
    g = torch.Generator().manual_seed(1)
    xa, xb = torch.randn(16, 6, generator=g).double(), torch.randn(16, 6, generator=g).double()
    ya, yb = torch.randint(0, 3, (16,), generator=g), torch.randint(0, 4, (16,), generator=g)
    task_a, task_b = classification_task("a", 3), classification_task("b", 4)

    def losses(m, step):
        del step
        return {"a": task_a.loss(m(xa, ["a"])["a"], ya).mean(), "b": task_b.loss(m(xb, ["b"])["b"], yb).mean()}

    return model, losses


def test_adam_head_update_is_invariant_to_the_loss_scale_shared_update_is_not():
    model, losses = _two_head_problem()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    # eps tiny relative to sqrt(v_hat) = |c g| >= 1e-3 * |g|: the head updates agree to ~1e-12.
    small = scaled_updates(model, losses, "a", "b", 1e-3, "adam", lr=1e-2, steps=1, eps=1e-16)
    large = scaled_updates(model, losses, "a", "b", 1e3, "adam", lr=1e-2, steps=1, eps=1e-16)
    torch.testing.assert_close(small["head_b"], large["head_b"], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(small["head_a"], large["head_a"], rtol=1e-9, atol=1e-12)
    assert float((small["shared"] - large["shared"]).norm()) > 0.1 * float(small["shared"].norm())
    # SGD: head b's update scales with c exactly (so it is not invariant).
    sgd_small = scaled_updates(model, losses, "a", "b", 1e-3, "sgd", lr=1e-2, steps=1)
    sgd_large = scaled_updates(model, losses, "a", "b", 1e3, "sgd", lr=1e-2, steps=1)
    torch.testing.assert_close(sgd_large["head_b"], 1e6 * sgd_small["head_b"], rtol=1e-9, atol=0)
    # The input model is never changed.
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_invariance_table_and_eps_effect():
    model, losses = _two_head_problem()
    table = update_invariance(
        model, losses, "a", "b", [1e-3, 1.0, 1e3], optimizers=[("adam", 1e-2), ("sgd", 1e-2)], steps=[1, 3], eps=1e-16
    )
    summary = invariance_summary(table).set_index(["optimizer", "steps", "group"])["max_relative_difference"]
    assert table[table["optimizer"] == "sgd"]["eps"].isna().all() and (table.dropna()["eps"] == 1e-16).all()
    assert summary[("adam", 1, "head_b")] < 1e-9 and summary[("adam", 1, "head_a")] < 1e-9
    assert summary[("adam", 1, "shared")] > 0.1 and summary[("adam", 3, "shared")] > 0.1
    assert summary[("sgd", 1, "head_b")] > 100  # ||1e3 d - d|| / ||d||
    # After several steps the heads see a differently moved encoder: only approximately invariant,
    # but far closer than the shared parameters.
    assert summary[("adam", 3, "head_b")] < summary[("adam", 3, "shared")]
    # With Adam's default eps = 1e-8 and a gradient scaled by 1e-3, eps is no longer negligible.
    default_eps = update_invariance(model, losses, "a", "b", [1e-6], optimizers=[("adam", 1e-2)], steps=[1])
    head_b = default_eps[default_eps["group"] == "head_b"]["relative_difference"].iloc[0]
    assert head_b > 1e-4


# -- experiments: configs validated before training, and a tiny end-to-end run of each -------------

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from mtlens import RunStore, Setting, Split, TaskData, register_setting  # noqa: E402
from mtlens.cli import main  # noqa: E402
from mtlens.errors import ConfigError  # noqa: E402
from mtlens.experiments import experiment_plan, run_experiment  # noqa: E402
from mtlens.experiments.base import EXPERIMENTS  # noqa: E402
from mtlens.experiments.loss_scale import LOSS_SCALES  # noqa: E402
from mtlens.experiments.optimizers import OPTIMIZER_LRS  # noqa: E402
from mtlens.orchestration import backends  # noqa: E402
from mtlens.orchestration.backends import make_executor  # noqa: E402
from mtlens.orchestration.executors import LocalExecutor, run_configs  # noqa: E402
from mtlens.orchestration.study import study_configs  # noqa: E402

BASE = {
    "setting": "digits_pair",
    "epochs": 1,
    "batch_size": 32,
    "train_eval_size": 64,
    "setting_options": {"n_train": 128, "n_val": 48, "n_test": 48},
}


def test_experiment_configs():
    plan = experiment_plan("optimizers", BASE, seeds=[0, 1])
    frame = pd.DataFrame(
        [
            {
                "optimizer": c.optimizer,
                "momentum": c.momentum,
                "lr": c.lr,
                "method": c.method,
                "seed": c.seed,
                "mode": c.mode,
                "probes": tuple(c.probes),
            }
            for c in plan.configs
        ]
    )
    assert len(plan.configs) == 2 * 3 * 2 * 2 and set(frame["mode"]) == {"mtl"} and set(frame["probes"]) == {()}
    assert set(frame["method"]) == {"sum", "uw"}
    assert sorted(frame[frame["optimizer"] == "adam"]["lr"].unique()) == list(OPTIMIZER_LRS["adam"])
    assert sorted(frame[(frame["optimizer"] == "sgd")]["momentum"].unique()) == [0.0, 0.9]
    assert list(plan.manifest["run_id"]) == [c.run_id for c in plan.configs]
    assert set(plan.manifest["optimizer"]) == {"adam", "sgd", "sgd_momentum"}

    plan = experiment_plan("loss-scale", BASE, seeds=[0])
    scales = [(c.optimizer, c.task_loss_scales["b"]) for c in plan.configs]
    assert sorted(scales) == sorted((o, c) for o in ("adam", "sgd") for c in LOSS_SCALES)
    assert all(c.method == "sum" and c.loss_scale == 1.0 and c.mode == "mtl" for c in plan.configs)

    plan = experiment_plan("alignment", BASE, seeds=[0])
    assert [(c.mode, tuple(c.tasks), tuple(c.probes)) for c in plan.configs] == [
        ("stl", ("a",), ("conflict", "alignment")),
        ("stl", ("b",), ("conflict", "alignment")),
        ("mtl", ("a", "b"), ("conflict", "alignment")),
    ]
    like = experiment_plan("alignment", BASE, seeds=[0], like_for_like=True)  # the STL runs are the same runs
    assert [c.run_id for c in like.configs[:2]] == [c.run_id for c in plan.configs[:2]]
    assert like.configs[2].probes == ["conflict", "alignment", "inter_alignment"]
    plan = experiment_plan("corruptions", BASE, seeds=[0, 1])
    assert [(c.mode, c.seed) for c in plan.configs] == [("stl", 0), ("stl", 0), ("mtl", 0)] + [
        ("stl", 1),
        ("stl", 1),
        ("mtl", 1),
    ]
    assert all(c.save_selected_models and c.probes == [] for c in plan.configs)


def test_experiment_errors_before_training():
    with pytest.raises(ConfigError, match="unknown experiment"):
        experiment_plan("snow", BASE, [0])
    with pytest.raises(ConfigError, match="optimizer: set by the optimizers experiment"):
        experiment_plan("optimizers", {**BASE, "optimizer": "sgd"}, [0])
    with pytest.raises(ConfigError, match="scaled_task"):
        experiment_plan("loss-scale", BASE, [0], scaled_task="c")
    with pytest.raises(ConfigError, match="epochs"):
        experiment_plan("loss-scale", {**BASE, "epochs": 0}, [0])
    with pytest.raises(ConfigError, match="image inputs"):
        experiment_plan("corruptions", {"setting": "flat_pair"}, [0])
    # Options are the ones each experiment declares (its plan's keyword parameters), nothing else.
    with pytest.raises(
        ConfigError, match=r"experiment 'corruptions' has no option\(s\) \['methods'\]; valid options: none"
    ):
        experiment_plan("corruptions", BASE, [0], methods=["sum"])
    with pytest.raises(ConfigError, match=r"valid options: \['lrs', 'scaled_task', 'scales'\]"):
        experiment_plan("loss-scale", BASE, [0], scale=[1.0])


def test_experiment_options_on_the_command_line_are_checked_before_training(tmp_path, capsys):
    store = tmp_path / "store"
    common = ["--seeds", "1", "--store", str(store), "--quiet"]
    assert main(["study", "digits_pair", "--experiment", "alignment", "--methods", "sum", *common]) == 2
    assert "experiment 'alignment' has no option(s) ['methods']" in capsys.readouterr().err
    assert main(["study", "digits_pair", "--experiment", "loss-scale", "--experiment-option", "scale=2", *common]) == 2
    assert "valid options: ['lrs', 'scaled_task', 'scales']" in capsys.readouterr().err
    assert main(["study", "digits_pair", "--experiment-option", "scales=[1]", *common]) == 2
    assert main(["study", "digits_pair", "--experiment", "alignment", "--workers", "0", *common]) == 2
    assert "--workers" in capsys.readouterr().err
    assert main(["study", "digits_pair", "--experiment", "snow", *common]) == 2
    assert f"unknown experiment 'snow'; available experiments: {', '.join(sorted(EXPERIMENTS.names()))}" in (
        capsys.readouterr().err
    )
    assert not store.exists()


@pytest.mark.parametrize("experiment", [True, False], ids=["experiment", "study"])
def test_runs_trained_by_two_workers_are_those_trained_in_this_process(tmp_path, monkeypatch, experiment):
    """``study [--experiment] --workers 2`` trains the runs in two spawned worker processes: the same run ids, all
    finished, with exactly the trajectories of the runs trained in this process (``run_experiment`` without an
    executor; ``run_configs`` of the study's configs)."""
    options = ["--option", "n_train=128", "--option", "n_val=48", "--option", "n_test=48"]
    common = ["--epochs", "1", "--seeds", "1", "--batch-size", "32", *options, "--set", "train_eval_size=64"]
    flags = ["--experiment", "loss-scale", "--experiment-option", "scales=[1e-3,1e3]"] if experiment else []
    made = []

    def recorded(*args, **kwargs):
        made.append(make_executor(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(backends, "make_executor", recorded)
    workers = RunStore(tmp_path / "workers")
    assert (
        main(["study", "digits_pair", *flags, *common, "--workers", "2", "--store", str(workers.root), "--quiet"]) == 0
    )
    assert [type(e) for e in made] == [LocalExecutor] and made[0].workers == 2
    here = RunStore(tmp_path / "here")
    if experiment:
        plan = experiment_plan("loss-scale", BASE, [0], scales=[1e-3, 1e3])  # the same runs as the command's
        configs = plan.configs
        run_experiment(plan, here, progress=False)
    else:
        configs = study_configs(BASE, [0], ["sum"])
        run_configs(configs, here, progress=False)
    ids = sorted(c.run_id for c in configs)
    assert len(ids) == (4 if experiment else 3) and sorted(workers.runs()["run_id"]) == ids == sorted(
        here.runs()["run_id"]
    )
    assert set(workers.runs()["state"]) == {"finished"}
    for run_id in ids:
        pd.testing.assert_frame_equal(workers.trajectory(run_id), here.trajectory(run_id))


@register_setting("flat_pair")
def _flat_pair() -> Setting:
    """Two classification tasks on flat vectors (not images), for the corruptions check."""
    x, y = torch.randn(40, 6, generator=torch.Generator().manual_seed(0)), torch.arange(40) % 2
    data = {t: TaskData(t, Split(x[:20], y[:20]), Split(x[20:30], y[20:30]), Split(x[30:], y[30:])) for t in "ab"}
    return Setting(
        "flat_pair",
        (classification_task("a", 2), classification_task("b", 2)),
        data,
        lambda: nn.Sequential(nn.Linear(6, 4), nn.ReLU()),
        4,
    )


def test_each_experiment_end_to_end_writes_its_report_section(tmp_path, capsys):
    store, out = tmp_path / "store", tmp_path / "report"
    common = [
        "--epochs",
        "1",
        "--seeds",
        "1",
        "--batch-size",
        "32",
        "--option",
        "n_train=128",
        "--option",
        "n_val=48",
        "--option",
        "n_test=48",
        "--set",
        "train_eval_size=64",
        "--store",
        str(store),
        "--quiet",
    ]
    assert main(["study", "digits_pair", "--experiment", "optimizers", "--methods", "sum", *common]) == 0
    assert (
        main(
            ["study", "digits_pair", "--experiment", "loss-scale", "--experiment-option", "scales=[1e-3,1e3]", *common]
        )
        == 0
    )
    like_for_like = ["--experiment-option", "like_for_like=true"]
    assert main(["study", "digits_pair", "--experiment", "alignment", *like_for_like, *common]) == 0
    assert main(["study", "digits_pair", "--experiment", "corruptions", *common, "--report", str(out)]) == 0
    runs = RunStore(store).runs()
    # The corruptions experiment's runs save their selected models, so none is shared with the others.
    assert len(runs) == 6 + 4 + 3 + 3 and set(runs["state"]) == {"finished"}
    html = (out / "report.html").read_text()
    for title in ("optimizers in MTL", "loss-scale invariance", "gradient alignment", "feature transfer under"):
        assert f"Assumptions: {title}" in html
    # The optimizer and loss-scale grids have MTL runs only: the STL-vs-MTL training figures skip them by name.
    assert "MTL runs without STL runs of the same configuration" in html and "lr=0.1 optimizer=sgd" in html
    # (the probes are not part of a configuration: they change no trajectory bit)
    assert not (out / "figures" / "training_digits_pair-lr-0.1-optimizer-sgd-_sum.vl.json").exists()
    assert (out / "figures" / "training_digits_pair-lr-0.003-save_selected_models-True-_sum.vl.json").exists()
    assert (out / "figures" / "training_digits_pair-lr-0.003-_sum.vl.json").exists()  # the alignment runs'
    assert not list((out / "figures").glob("training_*probes*"))
    tables = out / "tables"
    optimizers = pd.read_csv(tables / "optimizers_digits_pair.csv")
    assert set(optimizers["optimizer"]) == {"adam", "sgd", "sgd_momentum"} and set(optimizers["method"]) == {"sum"}
    assert optimizers["average"].between(0, 1).all()
    scale = pd.read_csv(tables / "loss_scale_digits_pair.csv")
    assert sorted(scale["scale"].unique()) == [1e-3, 1e3] and set(scale["task"]) == {"a", "b"}
    invariance = pd.read_csv(tables / "adam_invariance_digits_pair.csv").fillna({"eps": 0})
    invariance = invariance.set_index(["optimizer", "eps", "steps", "group"])["max_relative_difference"]
    assert invariance[("adam", 1e-16, 1, "head_b")] < 1e-4 and invariance[("adam", 1e-16, 1, "head_a")] == 0
    assert invariance[("adam", 1e-16, 1, "shared")] > 0.1 and invariance[("sgd", 0, 1, "head_b")] > 100
    alignment = pd.read_csv(tables / "alignment_digits_pair.csv")
    assert {
        ("mtl", "probe/conflict_cosine", "a|b"),
        ("stl", "probe/intra_cosine_subbatch", "a"),
        ("stl", "probe/intra_cosine_classgroup", "b"),
        ("mtl", "probe/magnitude_ratio", "a|b"),
        ("mtl", "probe/inter_cosine_subbatch", "a|b"),
    } <= set(zip(alignment["mode"], alignment["quantity"], alignment["task"]))
    assert alignment[alignment["quantity"].str.contains("cosine")]["mean"].between(-1, 1).all()
    kinds = pd.read_csv(tables / "alignment.csv")  # the report's own section: the like-for-like kinds side by side
    assert {"inter-task, sub-batches (MTL)", "intra-task, sub-batches (STL)"} <= set(kinds["kind"])
    corruptions = pd.read_csv(tables / "corruptions_digits_pair.csv")
    assert len(corruptions) == 2 * 2 * 10  # task x encoder x corruption
    assert corruptions["clean"].between(0, 1).all() and corruptions["severity_5"].between(0, 1).all()
    assert (out / "figures" / "corruptions_digits_pair.vl.json").exists()


def test_corruption_analysis_needs_the_selected_models(tmp_path):
    """A run trained without save_selected_models has only its last checkpoint: the analysis says so."""
    from mtlens import parse_config, train_run
    from mtlens.errors import MtlensError
    from mtlens.experiments.corruption_transfer import corruption_accuracy
    from mtlens.settings import load_setting
    from mtlens.training.config import resolve_config

    store = RunStore(tmp_path)
    config = resolve_config(parse_config({**BASE, "tasks": ["a"], "probes": []}))
    train_run(config, store, progress=False)
    manifest = pd.DataFrame({"run_id": [config.run_id], "mode": ["stl"], "seed": [0]})
    setting = load_setting("digits_pair", **BASE["setting_options"])
    with pytest.raises(MtlensError, match="save_selected_models: true"):
        corruption_accuracy(store, manifest, setting)
