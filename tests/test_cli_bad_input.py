"""Bad input: one clear line on stderr, exit status 2, nothing written, before any training.

Each case runs the CLI in-process on a fresh temporary directory (also the working directory, so
default output paths land there too) and checks: status 2, exactly one non-empty line on stderr that
names the offending flag, key or file, no traceback, nothing on stdout, and the same files under the
directory before and after (no store, report or run was created).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from mtlens.cli import main
from mtlens.errors import MtlensError
from mtlens.orchestration.study import train_one
from mtlens.store import RunStore
from mtlens.training.config import parse_config, resolve_config

STUDY = ["study", "digits_pair", "--store", "{tmp}/store", "--quiet"]
SWEEP = ["sweep", "digits_pair", "--store", "{tmp}/store", "--quiet"]
REPORT = ["report", "--store", "{tmp}/filled", "--out", "{tmp}/report"]
CALIBRATE = ["calibrate", "digits_pair", "--store", "{tmp}/store", "--quiet"]
EXPORT = ["export", "--store", "{tmp}/filled", "--to", "mlflow", "--quiet"]

CASES = {
    # malformed, unreadable or misplaced input files
    "set-malformed-yaml": ([*STUDY, "--set", "lr=[1"], ["--set lr=[1", "not valid YAML"]),
    "option-malformed-yaml": ([*STUDY, "--option", "n_train={"], ["--option n_train={", "not valid YAML"]),
    "set-without-key": ([*STUDY, "--set", "=3"], ["--set", "key=value"]),
    "config-malformed-yaml": (
        [*STUDY, "--config", "{tmp}/bad.yaml"],
        ["--config", "bad.yaml", "flow sequence at line 2, column 9"],
    ),
    "config-binary": ([*STUDY, "--config", "{tmp}/binary.yaml"], ["--config", "binary.yaml", "not a text file"]),
    "config-directory": ([*STUDY, "--config", "{tmp}/adir"], ["--config", "adir", "is a directory"]),
    "config-missing": ([*STUDY, "--config", "{tmp}/nothing.yaml"], ["--config", "nothing.yaml", "no such file"]),
    "config-not-a-mapping": ([*STUDY, "--config", "{tmp}/list.yaml"], ["--config", "list.yaml", "mapping"]),
    "config-options-not-a-mapping": (
        [*STUDY, "--config", "{tmp}/options.yaml", "--option", "n_train=64"],
        ["setting_options", "mapping"],
    ),
    "grid-malformed-yaml": ([*SWEEP, "--grid", "{tmp}/bad.yaml"], ["--grid", "bad.yaml", "not valid YAML"]),
    "report-out-is-a-file": (["report", "--store", "{tmp}/filled", "--out", "{tmp}/afile"], ["--out", "afile"]),
    "study-report-is-a-file": ([*STUDY, "--report", "{tmp}/afile"], ["--report", "afile"]),
    "study-store-is-a-file": ([*STUDY[:2], "--store", "{tmp}/afile"], ["--store", "afile", "is a file"]),
    "sweep-store-inside-a-file": ([*SWEEP[:2], "--store", "{tmp}/afile/store"], ["--store", "afile", "is a file"]),
    "runs-store-is-a-file": (["runs", "--store", "{tmp}/afile"], ["--store", "afile"]),
    "report-store-is-a-file": (["report", "--store", "{tmp}/afile", "--out", "{tmp}/report"], ["--store", "afile"]),
    "data-root-is-a-file": (["data", "download", "cifar100"], ["MTLENS_DATA", "afile"]),
    "data-root-empty": (["data", "status"], ["$MTLENS_DATA is set but empty"]),
    "data-download-offline": (
        ["data", "download", "cifar100"],
        ["could not download https://www.cs.toronto.edu", "by hand", "{tmp}/data/cifar100"],
    ),
    # numbers out of range
    "seeds-zero": ([*STUDY, "--seeds", "0"], ["--seeds", "'0'", "greater than or equal to 1"]),
    "seeds-negative": ([*STUDY, "--seeds", "-1"], ["--seeds", "'-1'"]),
    "sweep-seeds-zero": ([*SWEEP, "--seeds", "0"], ["--seeds"]),
    "seed-list-negative": ([*STUDY, "--seed-list", "-2"], ["--seed-list", "'-2'", "greater than or equal to 0"]),
    "workers-zero": ([*SWEEP, "--workers", "0"], ["--workers", "'0'"]),
    "workers-negative": ([*SWEEP, "--workers", "-1"], ["--workers", "'-1'"]),
    "threads-zero": ([*STUDY, "--threads", "0"], ["--threads", "'0'", "greater than 0"]),
    "pack-size-zero": ([*STUDY, "--pack-size", "0"], ["--pack-size", "'0'", "greater than 0"]),
    "pack-size-config": ([*STUDY, "--set", "pack_size=-1"], ["pack_size=-1", "greater than 0"]),
    "gpus-per-run-negative": ([*SWEEP, "--gpus-per-run", "-1"], ["--gpus-per-run", "'-1'", "greater than 0"]),
    "lr-inf": ([*STUDY, "--lr", "inf"], ["--lr", "'inf'", "finite"]),
    "lr-nan": ([*STUDY, "--lr", "nan"], ["--lr", "'nan'", "finite"]),
    "lr-negative": ([*STUDY, "--lr", "-0.1"], ["--lr", "'-0.1'", "greater than 0"]),
    "epochs-zero": ([*STUDY, "--epochs", "0"], ["--epochs", "'0'"]),
    "batch-size-negative": ([*STUDY, "--batch-size", "-4"], ["--batch-size", "'-4'"]),
    "momentum-one": ([*STUDY, "--optimizer", "sgd", "--momentum", "1"], ["--momentum", "'1'", "less than 1"]),
    "eval-dense-until-nan": ([*STUDY, "--eval-dense-until-epoch", "nan"], ["--eval-dense-until-epoch", "'nan'"]),
    "probe-growth-inf": ([*STUDY, "--set", "probe_growth=.inf"], ["probe_growth=inf"]),
    "task-loss-scale-nan": ([*STUDY, "--set", "task_loss_scales={a: .nan}"], ["task_loss_scales.a"]),
    "alpha-nan": ([*REPORT, "--alpha", "nan"], ["--alpha", "'nan'"]),
    "alpha-one": ([*REPORT, "--alpha", "1"], ["--alpha", "'1'"]),
    "calibrate-too-few-seeds": ([*CALIBRATE, "--seeds", "3"], ["--seeds", "at least 4 seeds"]),
    "calibrate-alpha-negative": ([*CALIBRATE, "--alpha", "-0.05"], ["--alpha", "'-0.05'"]),
    "calibrate-zero-splits": ([*CALIBRATE, "--splits", "0"], ["--splits", "'0'"]),
    "calibrate-unknown-key": ([*CALIBRATE, "--set", "learning_rate=0.1"], ["learning_rate", "valid keys"]),
    "loss-scales-not-numbers": (
        [*STUDY, "--experiment", "loss-scale", "--experiment-option", "scales=[1,abc]"],
        ["loss-scale", "scales=[1, 'abc']", "valid number"],
    ),
    "loss-scales-inf": (
        [*STUDY, "--experiment", "loss-scale", "--experiment-option", "scales=[1,.inf]"],
        ["scales=[1, inf]", "finite"],
    ),
    "loss-scales-zero": (
        [*STUDY, "--experiment", "loss-scale", "--experiment-option", "scales=[0,1]"],
        ["scales", "greater than 0"],
    ),
    "experiment-option-malformed-yaml": (
        [*STUDY, "--experiment", "loss-scale", "--experiment-option", "scales=[1"],
        ["--experiment-option scales=[1", "not valid YAML"],
    ),
    "unknown-experiment": ([*STUDY, "--experiment", "loss_scale"], ["loss_scale", "loss-scale"]),
    "grouping-one-seed": (
        ["study", "digit_attributes", "--experiment", "grouping", "--seeds", "1", "--store", "{tmp}/store", "--quiet"],
        ["seeds", "the grouping experiment needs at least 2 distinct seeds", "got [0]"],
    ),
    # setting and method options, validated from their signatures before the setting is built
    "option-negative-size": ([*STUDY, "--option", "n_train=-5"], ["n_train=-5", "greater than 0"]),
    "option-fractional-size": ([*STUDY, "--option", "n_val=2.5"], ["n_val=2.5"]),
    "option-bad-variant": ([*STUDY, "--option", "variant=shuffled"], ["variant='shuffled'", "'permuted' or 'same'"]),
    "option-unknown": ([*STUDY, "--option", "n_trian=5"], ["n_trian", "n_train"]),
    "method-option-out-of-range": (
        [*STUDY, "--methods", "cagrad", "--set", "method_options={c: -1}"],
        ["cagrad", "c=-1", "greater than or equal to 0"],
    ),
    "method-option-wrong-type": (
        [*STUDY, "--methods", "dwa", "--set", "method_options={window: many}"],
        ["dwa", "window='many'"],
    ),
    # names and lists
    "methods-only-commas": ([*STUDY, "--methods", ","], ["--methods", "','"]),
    "sweep-methods-empty": ([*SWEEP, "--methods", ""], ["--methods"]),
    "report-methods-only-commas": ([*REPORT, "--methods", ","], ["--methods"]),
    "unknown-method": ([*STUDY, "--methods", "sum,pcgard"], ["pcgard", "pcgrad"]),
    "unknown-setting": (["study", "digits_pairs", "--store", "{tmp}/store"], ["digits_pairs", "digits_pair"]),
    "unknown-config-key": ([*STUDY, "--set", "learning_rate=0.1"], ["learning_rate", "valid keys"]),
    "unknown-optimizer": ([*STUDY, "--optimizer", "adamw"], ["--optimizer", "adamw", "sgd"]),
    "where-without-value": ([*REPORT, "--where", "lr"], ["--where", "key=value"]),
    "where-unknown-column": ([*REPORT, "--where", "learning_rate=0.1"], ["learning_rate", "lr"]),
    "where-column-typo": ([*REPORT, "--where", "optimiser=adam"], ["did you mean 'optimizer'"]),
    "where-value-absent": ([*REPORT, "--where", "optimizer=adamw"], ["--where optimizer", "adamw", "present: adam"]),
    "where-number-expected": ([*REPORT, "--where", "lr=fast"], ["--where lr", "number"]),
    # the 13 inputs issue 24 found wrongly accepted (failed runs, training in the working directory,
    # silent reports, silent duplicates, errors only after a whole calibration)
    "seeds-1e20": ([*STUDY, "--seeds", "1e20"], ["--seeds", "'1e20'", "valid integer"]),
    "seeds-huge": ([*STUDY, "--seeds", str(10**20)], ["--seeds", "less than or equal to 10000"]),
    "seed-2-to-the-64": ([*STUDY, "--seed-list", str(2**64)], ["--seed-list", str(2**64), "less than or equal"]),
    "calibrate-seed-2-to-the-64": ([*CALIBRATE, "--seed-list", str(2**64)], ["--seed-list", str(2**64)]),
    "set-seed-2-to-the-64": ([*SWEEP, "--set", f"probe_sample_size={2**64}", "--seeds", str(2**64)], ["--seeds"]),
    "batch-size-1e12": ([*STUDY, "--batch-size", "1e12"], ["--batch-size", "'1e12'"]),
    "batch-size-above-the-data": (
        [*STUDY, "--batch-size", str(10**12)],
        [f"batch_size={10**12}", "training examples of task", "use at most"],
    ),
    "store-empty": ([*STUDY[:2], "--store", ""], ["--store", "expected a directory, got ''"]),
    "report-unknown-method": ([*REPORT, "--methods", "nosuch"], ["--methods", "'nosuch'", "present"]),
    "report-unknown-setting": ([*REPORT, "--setting", "digits_pairs"], ["--setting", "did you mean 'digits_pair'"]),
    "set-epochs-true": ([*STUDY, "--set", "epochs=true"], ["epochs=True", "not a boolean"]),
    "method-option-true": (
        [*STUDY, "--methods", "dwa", "--set", "method_options={window: true}"],
        ["dwa", "window=True", "not a boolean"],
    ),
    "seed-list-twice": ([*STUDY, "--seed-list", "0", "0"], ["--seed-list", "0 given twice"]),
    "methods-twice": ([*STUDY, "--methods", "sum,sum"], ["--methods", "sum given twice"]),
    "config-duplicate-key": ([*STUDY, "--config", "{tmp}/twice.yaml"], ["--config", "twice.yaml", "key 'lr' twice"]),
    "set-duplicate-key": ([*STUDY, "--set", "task_loss_scales={a: 1, a: 2}"], ["--set", "key 'a' twice"]),
    "option-given-twice": ([*STUDY, "--option", "n_train=5", "--option", "n_train=6"], ["--option n_train", "twice"]),
    "formats-only-commas": ([*REPORT, "--formats", ",,"], ["--formats", "',,'"]),
    "calibrate-store-is-a-file": ([*CALIBRATE[:2], "--store", "{tmp}/afile"], ["--store", "afile", "is a file"]),
    "calibrate-out-is-a-directory": ([*CALIBRATE, "--out", "{tmp}/adir"], ["--out", "adir", "is a directory"]),
    "calibrate-out-inside-a-file": ([*CALIBRATE, "--out", "{tmp}/afile/c.csv"], ["--out", "afile", "is a file"]),
    # issue 26: a store that does not exist, suggestions
    "runs-store-missing": (["runs", "--store", "{tmp}/nope"], ["--store", "nope", "no such directory"]),
    "report-store-missing": (["report", "--store", "{tmp}/nope"], ["--store", "nope", "no such directory"]),
    "unknown-command": (["stduy", "digits_pair"], ["'stduy'", "did you mean 'study'"]),
    "unknown-flag": ([*STUDY, "--seed", "3"], ["--seed"]),
    "unrecognized-flag": ([*STUDY, "--lrate", "0.1"], ["--lrate", "did you mean '--lr'"]),
    "unknown-dataset": (["data", "download", "cifar10"], ["unknown dataset 'cifar10'", "did you mean 'cifar100'"]),
    "address-without-ray": ([*SWEEP, "--address", "host:6379"], ["--address", "ray"]),
    # session 7: inputs that were accepted and then failed every run, or were silently ignored or replaced
    "batch-size-below-a-probe-minimum": (
        [*STUDY, "--batch-size", "1"],
        ["batch_size=1", "probe 'alignment'", "at least 2", "out of probes"],
    ),
    "dry-run-batch-size-below-a-probe-minimum": ([*STUDY, "--batch-size", "1", "--dry-run"], ["batch_size=1"]),
    "grid-batch-size-below-a-probe-minimum": (
        [*SWEEP, "--grid", "{tmp}/batch1.yaml", "--workers", "1"],
        ["batch_size=1", "probe 'alignment'", "at least 2"],
    ),
    "set-setting": ([*STUDY, "--set", "setting=mnist_pair"], ["setting", "SETTING argument", "--set"]),
    "sweep-set-setting": ([*SWEEP, "--set", "setting=mnist_pair"], ["setting", "--set"]),
    "config-names-another-setting": (
        [*STUDY, "--config", "{tmp}/mnist.yaml"],
        ["--config", "mnist.yaml", "'mnist_pair'", "'digits_pair'"],
    ),
    # plan validates exactly what study validates (it checked neither task names nor method options)
    "plan-set-tasks": (["plan", "digits_pair", "--set", "tasks=[zz]"], ["tasks", "set by the study"]),
    "plan-set-setting": (["plan", "digits_pair", "--set", "setting=mnist_pair"], ["setting", "--set"]),
    "plan-unknown-method-option": (
        ["plan", "digits_pair", "--set", "method_options={nosuch: 1}"],
        ["method_options", "nosuch", "valid options"],
    ),
    "plan-method-option-out-of-range": (
        ["plan", "digits_pair", "--methods", "cagrad", "--set", "method_options={c: -1}"],
        ["cagrad", "c=-1", "greater than or equal to 0"],
    ),
    "plan-batch-size-below-a-probe-minimum": (["plan", "digits_pair", "--set", "batch_size=1"], ["batch_size=1"]),
    # two flags for one value (audit A): refused, naming both; one of them was silently dropped
    "seeds-and-seed-list": ([*STUDY, "--seeds", "3", "--seed-list", "1"], ["--seed-list 1", "not with --seeds 3"]),
    "dry-run-seeds-and-seed-list": ([*STUDY, "--dry-run", "--seed-list", "0", "1", "--seeds", "2"], ["--seeds 2"]),
    "experiment-seeds-and-seed-list": (
        [*STUDY, "--experiment", "loss-scale", "--seeds", "2", "--seed-list", "0", "1"],
        ["--seed-list 0 1", "--seeds 2"],
    ),
    "sweep-seeds-and-seed-list": ([*SWEEP, "--seeds", "3", "--seed-list", "1"], ["--seed-list 1", "--seeds 3"]),
    "calibrate-seeds-and-seed-list": (
        [*CALIBRATE, "--seeds", "12", "--seed-list", "0", "1"],
        ["--seed-list 0 1", "--seeds 12"],
    ),
    "set-and-flag": ([*STUDY, "--epochs", "2", "--set", "epochs=1"], ["--set epochs", "--epochs 2"]),
    "dry-run-set-and-flag": ([*STUDY, "--dry-run", "--set", "lr=0.1", "--lr", "0.2"], ["--set lr", "--lr 0.2"]),
    "sweep-set-and-flag": (
        [*SWEEP, "--batch-size", "16", "--set", "batch_size=8"],
        ["--set batch_size", "--batch-size 16"],
    ),
    "calibrate-set-and-flag": ([*CALIBRATE, "--optimizer", "sgd", "--set", "optimizer=adam"], ["--optimizer sgd"]),
    "set-setting-options-and-option": (
        [*STUDY, "--option", "n_train=64", "--set", "setting_options={n_train: 32}"],
        ["--set setting_options", "--option"],
    ),
    "plan-set-setting-options-and-option": (
        ["plan", "digits_pair", "--option", "n_train=64", "--set", "setting_options={n_train: 32}"],
        ["--set setting_options", "--option"],
    ),
    "experiment-option-methods-and-methods": (
        [*STUDY, "--experiment", "optimizers", "--methods", "sum", "--experiment-option", "methods=[pcgrad]"],
        ["--experiment-option methods", "--methods sum"],
    ),
    "export-tensorboard-experiment": (
        ["export", "--store", "{tmp}/filled", "--to", "tensorboard", "--logdir", "{tmp}/tb", "--experiment", "x"],
        ["--experiment x", "only with --to mlflow", "not --to tensorboard"],
    ),
    "export-tensorboard-tracking-uri": (
        ["export", "--store", "{tmp}/filled", "--to", "tensorboard", "--logdir", "{tmp}/tb", "--tracking-uri", "x"],
        ["--tracking-uri x", "only with --to mlflow"],
    ),
    "export-logdir-with-mlflow": ([*EXPORT, "--logdir", "{tmp}/tb"], ["--logdir", "only with --to tensorboard"]),
    "plan-sd-and-store": (["plan", "digits_pair", "--sd", "0.1", "--store", "{tmp}/filled"], ["--sd 0.1", "--store"]),
    "dry-run-with-experiment": ([*STUDY, "--experiment", "loss-scale", "--dry-run"], ["--dry-run", "--experiment"]),
    "experiment-option-without-experiment": (
        [*STUDY, "--experiment-option", "scales=[1]"],
        ["--experiment-option scales=[1]", "only with --experiment"],
    ),
    # a tracking URI MLflow cannot use: one line (it was MLflow's or SQLAlchemy's 40-line traceback)
    "export-mlflow-unknown-scheme": (
        [*EXPORT, "--tracking-uri", "nosuch://x"],
        ["--tracking-uri nosuch://x", "unsupported URI", "sqlite:///PATH/mlflow.db"],
    ),
    "export-mlflow-not-a-database": (
        [*EXPORT, "--tracking-uri", "sqlite:///{tmp}/notdb.db"],
        ["--tracking-uri sqlite:///{tmp}/notdb.db", "file is not a database"],
    ),
    # a directory: MLflow retried for about 50 s, logging 37 lines, before its error
    "export-mlflow-a-directory": (
        [*EXPORT, "--tracking-uri", "sqlite:///{tmp}/filled"],
        ["--tracking-uri sqlite:///{tmp}/filled", "is a directory"],
    ),
    # momentum with an optimizer that ignores it (it changed the run id, not the run)
    "momentum-with-adam": ([*STUDY, "--momentum", "0.5"], ["momentum=0.5", "optimizer 'adam'", "'sgd'"]),
    "sweep-momentum-with-adam": ([*SWEEP, "--momentum", "0.9"], ["momentum=0.9", "optimizer 'adam'"]),
    "plan-momentum-with-adam": (["plan", "digits_pair", "--set", "momentum=0.5"], ["momentum=0.5"]),
    "task-loss-scales-unknown-task": (
        [*STUDY, "--set", "task_loss_scales={c: 2}"],
        ["task_loss_scales", "['c'] are not tasks of setting 'digits_pair'", "['a', 'b']"],
    ),
    # built-in setting options whose accepted value failed every run (a conv of width 0, a canvas pooled to
    # nothing, an empty validation split): refused by their declared constraint
    "digit-attributes-feature-dim-2": (
        ["study", "digit_attributes", "--store", "{tmp}/store", "--quiet", "--option", "feature_dim=2"],
        ["digit_attributes", "feature_dim=2", "greater than or equal to 4"],
    ),
    "multimnist-pool-100": (
        ["study", "multimnist", "--store", "{tmp}/store", "--quiet", "--option", "pool=100"],
        ["multimnist", "pool=100", "less than or equal to 7"],
    ),
    "multimnist-shift-1000": (
        ["study", "multimnist", "--store", "{tmp}/store", "--quiet", "--option", "shift=1000"],
        ["multimnist", "shift=1000", "less than or equal to 28"],
    ),
    "mnist1d-val-fraction-tiny": (
        ["study", "mnist1d_split", "--store", "{tmp}/store", "--quiet", "--option", "val_fraction=0.0001"],
        ["mnist1d_split", "val_fraction=0.0001", "greater than or equal to 0.001"],
    ),
    # outputs inside a run store (audit): a report's figures/ and tables/ in runs/ read as damaged runs, a CSV
    # over store.json left the store unreadable; "filled" has runs but no store.json, "versioned" only store.json
    "report-out-in-store-runs": ([*REPORT[:3], "--out", "{tmp}/filled/runs"], ["--out", "inside the run store"]),
    "report-out-is-the-store": ([*REPORT[:3], "--out", "{tmp}/filled"], ["--out {tmp}/filled: is the run store"]),
    "report-out-in-another-store": ([*REPORT[:3], "--out", "{tmp}/versioned/r"], ["--out", "{tmp}/versioned"]),
    "calibrate-out-onto-store-json": (
        [*CALIBRATE, "--out", "{tmp}/versioned/store.json"],
        ["--out {tmp}/versioned/store.json", "inside the run store {tmp}/versioned"],
    ),
    "calibrate-out-in-its-store": ([*CALIBRATE, "--out", "{tmp}/store/c.csv"], ["--out", "run store {tmp}/store"]),
    "study-report-in-its-store": ([*STUDY, "--report", "{tmp}/store/report"], ["--report", "run store {tmp}/store"]),
    "study-report-in-a-store": ([*STUDY, "--report", "{tmp}/filled/runs"], ["--report", "run store {tmp}/filled"]),
    "experiment-report-in-a-store": (
        [*STUDY, "--experiment", "loss-scale", "--report", "{tmp}/filled/report"],
        ["--report", "inside the run store {tmp}/filled"],
    ),
    "sweep-report-is-its-store": ([*SWEEP, "--report", "{tmp}/store"], ["--report {tmp}/store: is the run store"]),
    "export-logdir-in-the-store": (
        ["export", "--store", "{tmp}/filled", "--to", "tensorboard", "--logdir", "{tmp}/filled/tb"],
        ["--logdir", "inside the run store {tmp}/filled"],
    ),
    "study-store-in-another-store": (
        [*STUDY[:2], "--store", "{tmp}/filled/runs/nested"],
        ["--store", "inside the run store {tmp}/filled"],
    ),
    # an unrecognized flag: hints from the command's own flags, each once, else the list of its flags
    "settings-flag-of-another-command": (
        ["settings", "--option", "third=kmnist"],
        ["mtlens settings: error: unrecognized arguments: --option third=kmnist"],
    ),
    "report-flag-of-another-command": (
        [*REPORT, "--epochs", "3"],
        ["mtlens report: error", "--epochs 3", "the flags of mtlens report are: --alpha, --formats"],
    ),
}


@pytest.fixture
def workdir(cli_workdir: Path) -> Path:
    """:func:`cli_workdir` with the input files of the cases."""
    (cli_workdir / "bad.yaml").write_text("lr: 0.1\nprobes: [conflict\n")
    (cli_workdir / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (cli_workdir / "list.yaml").write_text("- lr\n- 0.1\n")
    (cli_workdir / "options.yaml").write_text("setting_options: 5\n")
    (cli_workdir / "twice.yaml").write_text("lr: 0.1\nepochs: 2\nlr: 0.2\n")
    (cli_workdir / "batch1.yaml").write_text("batch_size: [1, 32]\n")
    (cli_workdir / "mnist.yaml").write_text("setting: mnist_pair\nlr: 0.1\n")
    (cli_workdir / "notdb.db").write_text("not a database\n")
    (cli_workdir / "versioned").mkdir()  # a store with its format version and no runs yet
    (cli_workdir / "versioned" / "store.json").write_text('{"format_version": 2}\n')
    return cli_workdir


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _assert_one_clear_line(err: str, expected: list[str]) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("mtlens")
    for part in expected:
        assert part in lines[0], (part, lines[0])


def _offline(monkeypatch: pytest.MonkeyPatch, workdir: Path) -> None:
    """No network: every URL is redirected to a ``file://`` path that does not exist."""
    real_urlopen = urllib.request.urlopen

    def urlopen(url: str, *args: object, **kwargs: object) -> object:
        return real_urlopen((workdir / "offline" / url.rsplit("/", 1)[-1]).as_uri(), *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    case: str, workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, expected = CASES[case]
    if case.startswith("export-mlflow"):
        pytest.importorskip("mlflow")  # the extra 'mtlens[mlflow]'
    tmp = str(workdir)
    if case == "data-root-is-a-file":
        monkeypatch.setenv("MTLENS_DATA", f"{tmp}/afile")
    if case == "data-root-empty":  # Path("") is the working directory: datasets were looked for and written there
        monkeypatch.setenv("MTLENS_DATA", "")
    if case == "data-download-offline":
        monkeypatch.setenv("MTLENS_DATA", f"{tmp}/data")
        _offline(monkeypatch, workdir)
    before = _listing(workdir)
    status = _run(argv, tmp)
    out, err = capsys.readouterr()
    assert status == 2, err
    _assert_one_clear_line(err, [part.replace("{tmp}", tmp) for part in expected])
    assert out == ""
    assert _listing(workdir) == before


def test_a_flag_hint_names_only_flags_the_command_has_and_each_once(capsys: pytest.CaptureFixture[str]) -> None:
    """``settings --option``: the hint was "did you mean '--option' or '--option' or '--option'?", three other
    commands' flag; ``settings`` has no --option."""
    assert _run(["settings", "--option", "third=kmnist"], "") == 2
    err = capsys.readouterr().err
    assert "'--option'" not in err
    assert _run(["study", "digits_pair", "--lrate", "0.1", "--lrate", "0.2"], "") == 2
    assert capsys.readouterr().err.count("'--lr'") == 1


def _run(argv: list[str], tmp: str) -> int:
    """``main(argv)``, with usage errors (argparse exits) returned as their status."""
    try:
        return main([part.replace("{tmp}", tmp) for part in argv])
    except SystemExit as exit_:
        return int(exit_.code or 0)


def _make_read_only(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``path`` read-only.  root may write anyway, so for root every attempt to create a file in
    ``path`` additionally fails as the kernel would fail it for anyone else (EACCES)."""
    path.chmod(0o555)
    if os.geteuid() != 0:
        return

    def refuse(real):  # type: ignore[no-untyped-def]
        def create(*args, dir=None, **kwargs):  # type: ignore[no-untyped-def]  # noqa: A002
            if dir is not None and Path(dir).resolve().is_relative_to(path.resolve()):
                raise PermissionError(errno.EACCES, "Permission denied", str(dir))
            return real(*args, dir=dir, **kwargs)

        return create

    real_open = os.open

    def open_refusing_creation(file, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if flags & os.O_CREAT and Path(file).resolve().parent.is_relative_to(path.resolve()):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse(tempfile.TemporaryFile))
    monkeypatch.setattr(tempfile, "mkstemp", refuse(tempfile.mkstemp))
    monkeypatch.setattr(os, "open", open_refusing_creation)  # the store's atomic writes create with os.open


def test_read_only_store_is_refused_before_training(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = workdir / "readonly"
    store.mkdir()
    _make_read_only(store, monkeypatch)
    before = _listing(workdir)
    try:
        status = _run(["study", "digits_pair", "--store", f"{store}", "--quiet"], str(workdir))
    finally:
        store.chmod(0o755)
    out, err = capsys.readouterr()
    assert status == 2
    _assert_one_clear_line(err, ["--store", "cannot write in", str(store), "Permission denied"])
    assert _listing(workdir) == before


def test_a_run_that_cannot_be_marked_failed_raises_one_line_naming_the_file(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that turns read-only while a study runs: the run fails on a write, and recording that
    failure fails too; the error the user sees names the file, with no chained PermissionError."""
    store = RunStore(workdir / "store")
    (workdir / "store").mkdir()
    config = resolve_config(parse_config({"setting": "digits_pair", "tasks": ["a"], "epochs": 1}))
    _make_read_only(workdir / "store", monkeypatch)

    def train(config, store, **kwargs):  # type: ignore[no-untyped-def]
        raise PermissionError(errno.EACCES, "Permission denied", str(store.run_dir(config.run_id)))

    try:
        with pytest.raises(MtlensError) as info:
            train_one(config, store, setting=None, train=train)  # type: ignore[arg-type]
    finally:
        (workdir / "store").chmod(0o755)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert f"cannot record run {config.run_id} as failed" in message and str(workdir / "store") in message
    assert "Permission denied" in message
    assert info.value.__suppress_context__ and info.value.__cause__ is None
    assert not [path for path in (workdir / "store").rglob("*") if path.is_file()]


def test_no_traceback_reaches_stderr_of_the_command(tmp_path: Path) -> None:
    """The real command in a subprocess: malformed YAML was a 53-line ParserError traceback."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtlens.cli",
            "study",
            "digits_pair",
            "--set",
            "probes=[fisher",
            "--store",
            str(tmp_path / "store"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "--set probes=[fisher" in result.stderr and "not valid YAML" in result.stderr
    assert list(tmp_path.iterdir()) == []


def _assert_study_refused(workdir: Path, capsys: pytest.CaptureFixture[str], setting: str, expected: list[str]) -> None:
    """``mtlens study SETTING`` (a setting the test registered; unregistered here) exits 2 with one line holding
    ``expected`` and writes nothing."""
    from mtlens.settings import SETTINGS

    before = _listing(workdir)
    try:
        status = _run(["study", setting, "--store", "{tmp}/store", "--quiet"], str(workdir))
    finally:
        SETTINGS.unregister(setting)
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    _assert_one_clear_line(err, expected)
    assert _listing(workdir) == before


def test_a_setting_with_an_empty_split_is_refused_before_training(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A split sized to nothing (a validation fraction of a small task, a carve-out as large as the data) failed
    every run (a mean over no examples); the setting refuses it when built, naming the task and the split."""
    import torch
    from torch import nn

    from mtlens import Setting, Split, TaskData, classification_task, register_setting

    def split(n: int) -> Split:
        return Split(torch.zeros(n, 2), torch.zeros(n, dtype=torch.long))

    @register_setting("test_empty_val")
    def empty_val(n_val: int = 0) -> Setting:
        return Setting(
            name="test_empty_val",
            tasks=(classification_task("a", 2),),
            data={"a": TaskData("blobs", split(8), split(n_val), split(4))},
            encoder=lambda: nn.Linear(2, 4),
            feature_dim=4,
        )

    _assert_study_refused(workdir, capsys, "test_empty_val", ["setting_options of 'test_empty_val'", "no val examples"])


def test_a_setting_factory_that_returns_no_setting_is_one_line_naming_it(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A factory that returned None (a forgotten ``return``) gave ``AttributeError: 'NoneType' object has no
    attribute 'task_names'`` with a full traceback, exit 1: one line naming the setting and what it returned."""
    from mtlens import register_setting

    @register_setting("test_returns_none", data=())
    def returns_none(n: int = 3) -> None:
        return None

    expected = ["setting 'test_returns_none': its factory ", "returns_none returned NoneType (None), not a Setting"]
    _assert_study_refused(workdir, capsys, "test_returns_none", expected)


def test_outputs_beside_a_store_are_written_and_leave_it_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule refuses outputs inside a store only: a report into the store's parent or a folder beside it is
    written, and the store still reads whole (``runs --check`` exits 0)."""
    from report_stores import planted_store

    monkeypatch.chdir(tmp_path)
    store = planted_store(tmp_path / "store", seeds=range(2))
    for out in (tmp_path, tmp_path / "beside"):
        assert main(["report", "--store", str(store.root), "--out", str(out)]) == 0
        assert (out / "report.html").is_file()
    assert main(["runs", "--store", str(store.root), "--check"]) == 0
