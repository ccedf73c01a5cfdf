"""Extending mtlens from user code: an aggregator, a dataset with a setting, and an experiment are
each one registered object in one module (the user's), trained, stored and reported end to end.
(A user's probe: tests/test_probe_plugins.py.)"""

from __future__ import annotations

import re

import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from mtlens import RunStore, parse_config, train_run
from mtlens.aggregators import METHODS, Aggregate, Aggregator, aggregation_factory, register_method
from mtlens.cli import main
from mtlens.data.registry import DATASETS, DatasetSpec, register_dataset, require_dataset
from mtlens.errors import ConfigError
from mtlens.experiments import EXPERIMENTS, Experiment, plan_runs, register_experiment
from mtlens.render import Section, table_html
from mtlens.report.study_report import write_report
from mtlens.settings import SETTINGS, Setting, Split, TaskData, register_setting
from mtlens.tasks import classification_task
from mtlens.training.config import resolve_config


class LargestGradient(Aggregator):
    """A user's aggregator: ``scale`` times the task gradient of largest norm."""

    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def _aggregate(self, matrix: Tensor) -> Aggregate:
        weights = torch.zeros(len(matrix), dtype=matrix.dtype, device=matrix.device)
        weights[int(matrix.norm(dim=1).argmax())] = self.scale
        return Aggregate(weights @ matrix, weights)


def test_a_users_aggregator_is_one_registered_class(tmp_path, tiny, request):
    register_method("largest")(aggregation_factory(LargestGradient))
    request.addfinalizer(lambda: METHODS.unregister("largest"))
    with pytest.raises(ConfigError, match=r"method 'largest' has no option\(s\) \['c'\]; valid options: \['scale'\]"):
        parse_config({**tiny, "method": "largest", "method_options": {"c": 1}})
    config = parse_config({**tiny, "method": "largest", "method_options": {"scale": 0.5}})
    store = RunStore(tmp_path)
    assert train_run(config, store, progress=False) == "finished"
    rows = store.trajectory(resolve_config(config).run_id)
    assert set(rows["method"]) == {"largest"}
    weights = rows[rows["quantity"] == "method/weight"]
    # The aggregation records its task weights (averaged between records): they sum to `scale`.
    assert len(weights) > 0 and weights.groupby("step")["value"].sum().round(6).eq(0.5).all()
    baseline = parse_config({**tiny, "method": "sum"})
    train_run(baseline, store, progress=False)
    other = store.trajectory(resolve_config(baseline).run_id)
    final = rows["step"].max()
    pick = lambda frame: frame[(frame["step"] == final) & (frame["quantity"] == "train/loss")]["value"].to_numpy()  # noqa: E731
    assert not (pick(rows) == pick(other)).all()  # a different method trains differently


@pytest.fixture
def user_dataset_and_setting(tmp_path, monkeypatch, request):
    """A user's dataset (files under the data root) and the setting that reads it, in one module."""
    monkeypatch.setenv("MTLENS_DATA", str(tmp_path / "data"))
    spec = register_dataset(
        DatasetSpec(
            name="user_blobs",
            description="two Gaussian blobs per task",
            files=("blobs.pt",),
            size_bytes=1,
            instructions="Run make_blobs().",
        )
    )

    @register_setting("user_blobs_pair", data=(spec.name,))
    def user_blobs_pair(n: int = 60) -> Setting:
        """Two 3-way classification tasks on the user's blobs."""
        x, y = torch.load(require_dataset(spec.name) / "blobs.pt")
        x, y = x[: 3 * n], y[: 3 * n]
        third = len(x) // 3
        splits = [Split(x[i * third : (i + 1) * third], y[i * third : (i + 1) * third]) for i in range(3)]
        data = {t: TaskData("blobs", *splits) for t in ("a", "b")}
        return Setting(
            "user_blobs_pair",
            (classification_task("a", 3), classification_task("b", 3)),
            data,
            lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU()),
            8,
        )

    request.addfinalizer(lambda: (DATASETS.unregister("user_blobs"), SETTINGS.unregister("user_blobs_pair")))
    return tmp_path / "data" / "user_blobs"


def test_a_users_dataset_and_setting_are_one_registration_each(user_dataset_and_setting, tmp_path, capsys):
    argv = [
        "study",
        "user_blobs_pair",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--batch-size",
        "20",
        "--set",
        "probes=[]",
        "--store",
        str(tmp_path / "store"),
        "--quiet",
    ]
    assert main(argv) == 2  # missing data: one message naming the directory, nothing trained
    assert f"dataset 'user_blobs' (two Gaussian blobs per task) is missing from {user_dataset_and_setting}" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "store").exists()
    assert main(["data", "status"]) == 0 and "user_blobs" in capsys.readouterr().out
    # The setting's one data declaration puts its state into `mtlens settings`.
    assert main(["settings"]) == 0
    listed = capsys.readouterr().out
    assert re.search(r"^user_blobs_pair +missing ", listed, re.M)
    assert f"data: user_blobs: missing: expected at {user_dataset_and_setting}; Run make_blobs()." in listed
    user_dataset_and_setting.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (400,), generator=generator)
    torch.save(
        (torch.randn(400, 4, generator=generator) + labels[:, None].float(), labels),
        user_dataset_and_setting / "blobs.pt",
    )
    assert main(["settings"]) == 0
    listed = capsys.readouterr().out
    assert re.search(r"^user_blobs_pair +found ", listed, re.M)
    assert f"data: user_blobs: found at {user_dataset_and_setting}\n" in listed
    assert main(argv) == 0
    runs = RunStore(tmp_path / "store").runs()
    assert sorted(runs["mode"]) == ["mtl", "stl", "stl"] and set(runs["state"]) == {"finished"}


def _lr_plan(base, setting, seeds, lrs: list[float] = (1e-3, 1e-2)):
    """A user's experiment: MTL runs at each learning rate."""
    return plan_runs(
        "lr-pair",
        base,
        setting,
        [({"seed": s, "lr": float(lr), "probes": []}, {"label": f"lr={lr:g}"}) for s in seeds for lr in lrs],
    )


def _lr_section(store, index, manifest, rows, out_dir, setting) -> str:
    final = rows[rows["quantity"] == "val/loss"].sort_values("step").groupby(["run_id", "task"]).tail(1)
    table = (
        final.merge(manifest[["run_id", "label"]], on="run_id")
        .groupby(["label", "task"], as_index=False)["value"]
        .mean()
    )
    return table_html(table, out_dir, f"lr_pair_{setting}", "Final validation loss per learning rate.")


def test_a_users_experiment_is_one_registered_object(tmp_path, request, capsys):
    register_experiment(Experiment("lr-pair", "Two learning rates", _lr_plan, _lr_section))
    request.addfinalizer(lambda: EXPERIMENTS.unregister("lr-pair"))
    common = [
        "study",
        "digits_pair",
        "--experiment",
        "lr-pair",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--option",
        "n_train=96",
        "--option",
        "n_val=48",
        "--option",
        "n_test=48",
        "--set",
        "train_eval_size=32",
        "--store",
        str(tmp_path / "store"),
        "--quiet",
    ]
    assert main([*common, "--experiment-option", "lr=[0.01]"]) == 2
    assert (
        "experiment 'lr-pair' has no option(s) ['lr'] (did you mean 'lrs'?); valid options: ['lrs']"
        in capsys.readouterr().err
    )
    assert main([*common, "--experiment-option", "lrs=[1e-3,3e-2]", "--report", str(tmp_path / "report")]) == 0
    manifest = RunStore(tmp_path / "store").table("experiment-lr-pair-digits_pair")
    assert sorted(manifest["label"]) == ["lr=0.001", "lr=0.03"] and sorted(manifest["lr"]) == [1e-3, 3e-2]
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Two learning rates (digits_pair)" in html and "lr=0.03" in html
    table = pd.read_csv(tmp_path / "report" / "tables" / "lr_pair_digits_pair.csv")
    assert len(table) == 4 and table["value"].notna().all()
    # The report's --alpha reaches a section builder that takes one; the experiment's section above, written
    # without one, still renders.
    seen = []

    def with_alpha(store, index, rows, out_dir, alpha):
        seen.append(alpha)
        return [Section("FDR", f"<p>tested at FDR {alpha:g}</p>", "fdr")]

    page = write_report(RunStore(tmp_path / "store"), tmp_path / "report-10", alpha=0.1, extra_sections=[with_alpha])
    assert seen == [0.1] and "tested at FDR 0.1" in page.read_text() and "lr=0.03" in page.read_text()


def test_runs_an_experiments_analysis_trains_join_its_results_and_exit_status(
    tmp_path, request, capsys, monkeypatch, run_configs_calls
):
    """An analysis step that trains more runs (as the grouping experiment trains its chosen groupings) trains
    them through the ``train`` it is given: with the plan's progress setting (``--quiet``: none), and a run of
    it that fails is in ``mtlens study``'s summary and makes it exit 1 naming the run."""
    from mtlens.training import trainer

    extra_ids: list[str] = []

    def analyze(plan, store, setting, train):
        config = plan.configs[0].model_copy(update={"lr": 0.02})
        extra_ids.append(config.run_id)
        table = train([config])
        assert list(table["run_id"]) == [config.run_id]

    def plan(base, setting, seeds):
        return plan_runs("lr-more", base, setting, [({"seed": s, "probes": []}, {}) for s in seeds])

    register_experiment(Experiment("lr-more", "More learning rates", plan, _lr_section, analyze))
    request.addfinalizer(lambda: EXPERIMENTS.unregister("lr-more"))
    calls = run_configs_calls
    original_train = trainer.TrainingRun.train

    def failing_extra(self, progress):
        if self.config.lr == 0.02:
            raise RuntimeError("out of memory (simulated)")
        return original_train(self, progress)

    monkeypatch.setattr(trainer.TrainingRun, "train", failing_extra)
    argv = ["study", "digits_pair", "--experiment", "lr-more", "--seeds", "1", "--set", "lr=0.001"]
    argv += ["--epochs", "1", "--batch-size", "32", "--option", "n_train=96", "--option", "n_val=48"]
    argv += ["--option", "n_test=48", "--set", "train_eval_size=32", "--store", str(tmp_path / "store")]
    assert main([*argv, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert 'runs: {"finished": 1, "failed": 1}' in err
    assert f"mtlens: 1 of 2 runs did not finish: {extra_ids[0]} (failed)" in err
    assert [progress for _, progress in calls] == [False, False] and calls[1][0] == extra_ids
    calls.clear()
    monkeypatch.setattr(trainer.TrainingRun, "train", original_train)
    assert main(argv) == 0  # the rerun trains the failed run; without --quiet both steps show progress
    assert [progress for _, progress in calls] == [True, True]
    assert RunStore(tmp_path / "store").done_state(extra_ids[0]) == "finished"


def test_the_experiment_flags_help_lists_every_registered_experiment(request, capsys):
    """``study --help`` names the experiments from the registry (built-ins and a user's), not from a hand list
    that had fallen behind (it lacked grouping)."""
    register_experiment(Experiment("lr-pair", "Two learning rates", _lr_plan, _lr_section))
    request.addfinalizer(lambda: EXPERIMENTS.unregister("lr-pair"))
    assert main(["study", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    listed = re.search(r"instead of the STL-vs- ?MTL study: (.*?) \(docs/", out)
    assert listed, out
    assert listed.group(1).replace("- ", "-").split(", ") == EXPERIMENTS.names()
    assert {"grouping", "lr-pair"} <= set(EXPERIMENTS.names())
