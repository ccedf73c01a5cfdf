"""Evaluation of tasks sharing an input source: one encoder pass per source and split, the
numbers bit-identical to evaluating each task alone."""

from __future__ import annotations

import dataclasses

import pandas as pd
import torch

from mtlens import RunStore, parse_config, train_run
from mtlens.models import build_model
from mtlens.settings import Setting, Split, TaskData, register_setting
from mtlens.tasks import binary_task, classification_task, regression_task
from mtlens.tasks.metrics import binary_f1, pearson
from mtlens.training.config import resolve_config
from mtlens.training.evaluate import evaluate_task, evaluate_tasks, train_eval_rows
from mtlens.training.handle import Checkpoint

EVAL_FORWARDS = {"count": 0}


def _counting_encoder() -> torch.nn.Module:
    """An MLP encoder counting its forward passes in eval mode (evaluation passes)."""
    encoder = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU())

    def count(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if not module.training:
            EVAL_FORWARDS["count"] += 1

    encoder.register_forward_hook(count)
    return encoder


def _tasks() -> tuple:
    """Tasks of every evaluation path: per-example metrics, a summed and a concatenated corpus metric."""
    return (
        dataclasses.replace(binary_task("b"), corpus_metrics={"f1": binary_f1()}),
        classification_task("c", 3),
        dataclasses.replace(regression_task("r"), corpus_metrics={"pearson": pearson()}),
        binary_task("alone"),
    )


@register_setting("test_shared_source")
def _shared_source_setting(n_train: int = 120) -> Setting:
    """Three tasks reading one source ``"shared"`` and one task with its own source."""
    g = torch.Generator().manual_seed(0)
    sizes = {"train": n_train, "val": 70, "test": 50}
    splits = {}
    for source in ("shared", "other"):
        x = {s: torch.randn(n, 6, generator=g) for s, n in sizes.items()}
        splits[source] = x
    targets = {
        "b": lambda n: torch.randint(0, 2, (n,), generator=g),
        "c": lambda n: torch.randint(0, 3, (n,), generator=g),
        "r": lambda n: torch.randn(n, 1, generator=g),
        "alone": lambda n: torch.randint(0, 2, (n,), generator=g),
    }
    data = {
        task: TaskData(source, **{s: Split(splits[source][s], targets[task](n)) for s, n in sizes.items()})
        for task, source in (("b", "shared"), ("c", "shared"), ("r", "shared"), ("alone", "other"))
    }
    return Setting(name="test_shared_source", tasks=_tasks(), data=data, encoder=_counting_encoder, feature_dim=16)


def test_shared_pass_equals_each_task_alone_and_runs_the_encoder_once_per_batch():
    setting = _shared_source_setting()
    model = build_model(setting.encoder, setting.feature_dim, setting.tasks, seed=3)
    shared = [t for t in setting.tasks if setting.data[t.name].source == "shared"]
    rows = torch.tensor([0, 3, 4, 9, 17, 18, 40, 41, 42, 77, 100, 119])
    for split_name, pass_rows in (("train", rows), ("val", None), ("test", None)):
        pairs = [(t, setting.data[t.name].split(split_name)) for t in shared]
        EVAL_FORWARDS["count"] = 0
        together = evaluate_tasks(model, pairs, torch.device("cpu"), pass_rows, batch_size=16)
        n = len(pass_rows) if pass_rows is not None else len(pairs[0][1])
        assert EVAL_FORWARDS["count"] == -(-n // 16)
        for task, split in pairs:
            alone = evaluate_task(model, task, split, torch.device("cpu"), pass_rows, batch_size=16)
            assert list(together[task.name]) == task.metric_names
            assert together[task.name] == alone  # exact: same batches, same sums in the same order


def _run_rows(store: RunStore, config) -> pd.DataFrame:
    rows = store.trajectory(config.run_id)
    return rows[rows["quantity"].str.match(r"(train|val|test)/")]


def test_trainer_records_one_pass_per_source_and_split_with_the_per_task_numbers(tmp_path):
    raw = {"setting": "test_shared_source", "epochs": 1, "batch_size": 40, "probes": [], "train_eval_size": 500}
    config = resolve_config(parse_config(raw))
    setting = _shared_source_setting()
    EVAL_FORWARDS["count"] = 0
    store = RunStore(tmp_path / "store")
    assert train_run(config, store, setting=setting, progress=False) == "finished"
    # 2 records (step 0 and the epoch end) x 2 sources x (train 120 + val 70 + test 50 rows, in batches of 512)
    assert EVAL_FORWARDS["count"] == 2 * 2 * 3
    # The recorded numbers are those of evaluating each task alone on the final weights.
    state = Checkpoint.load(store.checkpoint_path(config.run_id)).state
    model = build_model(setting.encoder, setting.feature_dim, setting.tasks, config.seed)
    model.load_state_dict(state["model"])
    rows = _run_rows(store, config)
    last = rows[rows["step"] == rows["step"].max()].set_index(["task", "quantity"])["value"]
    for task in setting.tasks:
        data = setting.data[task.name]
        train_rows = train_eval_rows(data.train, config.train_eval_size, task.name)
        for split_name, subset in (("train", train_rows), ("val", None), ("test", None)):
            alone = evaluate_task(model, task, data.split(split_name), torch.device("cpu"), subset)
            for name, value in alone.items():
                assert last[task.name, f"{split_name}/{name}"] == value


def test_training_subsets_drawn_per_task_get_their_own_pass(tmp_path):
    """With a training subset smaller than the split, each task's subset differs (it is drawn
    per task, so that recorded numbers never change): the training split then takes one
    pass per task, validation and test still one per source."""
    raw = {"setting": "test_shared_source", "epochs": 1, "batch_size": 40, "probes": [], "train_eval_size": 30}
    config = resolve_config(parse_config(raw))
    EVAL_FORWARDS["count"] = 0
    state = train_run(config, RunStore(tmp_path / "store"), setting=_shared_source_setting(), progress=False)
    assert state == "finished"
    assert EVAL_FORWARDS["count"] == 2 * (4 + 2 + 2)
