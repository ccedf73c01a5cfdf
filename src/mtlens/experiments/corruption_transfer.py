"""Feature transfer under common corruptions: linear probes on frozen STL and MTL encoders.

For every finished run of a corruptions experiment and every task ``t`` of the run (the one
task of an STL run, each task of an MTL run): the run's model at task ``t``'s
validation-selected checkpoint (the step of :func:`mtlens.analysis.transfer.selected_checkpoints`,
saved by a run with ``save_selected_models``, as the experiment's runs are) is loaded and its
encoder frozen -- the same checkpoint the transfer table reports; a linear probe
(:func:`mtlens.experiments.linear_probe.fit_linear_probe`) is fitted on the encoder's features
of task ``t``'s clean training images and evaluated on its test images, clean (corruption
``none``, severity 0) and under every corruption of :data:`mtlens.data.corruptions.CORRUPTIONS`
at severities 1..5.  The corruption seed depends only on the corruption's name, so every
encoder is evaluated on exactly the same corrupted images.
"""

from __future__ import annotations

import pandas as pd
import torch

from mtlens.analysis.transfer import selected_checkpoints
from mtlens.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from mtlens.errors import ConfigError
from mtlens.experiments.linear_probe import encode, fit_linear_probe
from mtlens.models import build_model
from mtlens.seeding import derived_seed
from mtlens.settings import Setting
from mtlens.store import RunState, RunStore
from mtlens.training.handle import load_selected_model

PROBE_L2 = 1e-3
"""L2 penalty of the linear probes (on standardized features)."""


def check_image_setting(setting: Setting) -> None:
    """Raise :class:`ConfigError` unless every task has images ``(N, C, H, W)`` and integer class labels."""
    for name in setting.task_names:
        split = setting.data[name].train
        x, y = split.inputs[torch.arange(1)], split.targets[torch.arange(1)]
        if x.dim() != 4 or y.dim() != 1 or torch.is_floating_point(y):
            raise ConfigError(
                f"the corruptions experiment needs image inputs (N, C, H, W) and class labels; "
                f"task {name!r} of {setting.name!r} has inputs {tuple(x.shape[1:])} per example "
                f"and targets of dtype {y.dtype}"
            )


def corruption_seed(name: str) -> int:
    """The seed of corruption ``name`` (the same for every encoder and severity)."""
    return derived_seed(0, "corruption", name)


def corruption_accuracy(
    store: RunStore, manifest: pd.DataFrame, setting: Setting, l2: float = PROBE_L2, device: str = "cpu"
) -> pd.DataFrame:
    """Probe accuracies, one row per (run, task, corruption, severity): columns ``run_id, setting,
    mode, seed, task, corruption, severity, accuracy`` (see the module docstring)."""
    check_image_setting(setting)
    records = []
    test_sets: dict[str, dict[tuple[str, int], torch.Tensor]] = {}
    finished = [
        run_id for run_id in manifest["run_id"] if (store.status(run_id) or {}).get("state") == RunState.FINISHED
    ]
    if finished:
        selected = selected_checkpoints(store.trajectories(finished), store.task_info())
        steps = selected.set_index(["run_id", "task"])["step"]
    for run in manifest[manifest["run_id"].isin(finished)].itertuples():
        tasks = store.config(run.run_id)["tasks"]
        model = build_model(setting.encoder, setting.feature_dim, setting.select(tasks), int(run.seed))
        for task in tasks:
            step = int(steps[(run.run_id, task)])
            weights = load_selected_model(store, run.run_id, task, step)  # verified before it is trusted
            model.load_state_dict(weights)
            encoder = model.encoder.to(device)
            data = setting.data[task]
            train_labels = data.train.targets[torch.arange(len(data.train))]
            test_labels = data.test.targets[torch.arange(len(data.test))]
            n_classes = int(max(train_labels.max(), test_labels.max())) + 1
            probe = fit_linear_probe(encode(encoder, data.train.inputs, device), train_labels, n_classes, l2=l2)
            if task not in test_sets:
                test_sets[task] = _corrupted_test_sets(data.test.inputs[torch.arange(len(data.test))])
            for (corruption, severity), images in test_sets[task].items():
                records.append(
                    {
                        "run_id": run.run_id,
                        "setting": setting.name,
                        "mode": run.mode,
                        "seed": int(run.seed),
                        "task": task,
                        "corruption": corruption,
                        "severity": severity,
                        "accuracy": probe.accuracy(encode(encoder, images, device), test_labels),
                    }
                )
    return pd.DataFrame.from_records(
        records, columns=["run_id", "setting", "mode", "seed", "task", "corruption", "severity", "accuracy"]
    )


def _corrupted_test_sets(images: torch.Tensor) -> dict[tuple[str, int], torch.Tensor]:
    sets = {("none", 0): images}
    for name in CORRUPTIONS:
        for severity in SEVERITIES:
            sets[(name, severity)] = corrupt(images, name, severity, corruption_seed(name))
    return sets
