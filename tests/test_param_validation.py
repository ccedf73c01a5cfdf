"""Generated bad-input test (scikit-learn's ``check_param_validation`` is the model): every declared
option of every registry entry (settings, methods, probes, experiments; datasets have names only) and
every flag of every sub-command is fed a value that breaks its declared constraint, through the real
command line.  Each must exit 2 with one line on stderr naming the option or flag, print nothing on
stdout and write nothing.  The cases are generated from the declarations themselves (the registries'
annotations, :data:`mtlens.cli.COMMANDS`), so a new entry, option or flag is covered without editing
this file, and one that declares no constraint fails here."""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from annotated_types import Interval
from pydantic import TypeAdapter, ValidationError

from mtlens.aggregators import METHODS
from mtlens.cli import COMMANDS, COMMON_FLAGS, DATA_COMMANDS, Flag, build_parser, main
from mtlens.data.registry import DATASETS
from mtlens.experiments import EXPERIMENTS
from mtlens.probes import PROBES
from mtlens.registry import Registry, accepts_bool, contains_bool
from mtlens.settings import SETTINGS
from mtlens.training.config import parse_config

STORE = ["--store", "{tmp}/store", "--quiet"]
BASE = {
    "study": ["study", "digits_pair", *STORE],
    "sweep": ["sweep", "digits_pair", *STORE],
    "calibrate": ["calibrate", "digits_pair", *STORE],
    "runs": ["runs", "--store", "{tmp}/filled"],
    "report": ["report", "--store", "{tmp}/filled", "--out", "{tmp}/report"],
    "export": ["export", "--store", "{tmp}/filled", "--to", "tensorboard", "--logdir", "{tmp}/tensorboard"],
    "settings": ["settings"],
    "plan": ["plan", "digits_pair"],
    "data download": ["data", "download", "cifar100"],
}
"""A valid command line of each sub-command, to which one invalid flag is added (or whose positional
argument is replaced)."""


def _flag_cases() -> dict[str, tuple[list[str], str]]:
    cases = {}
    declared = [*((name, flags) for name, (_, flags) in COMMANDS.items())]
    declared += [(f"data {name}", flags) for name, (_, flags) in DATA_COMMANDS.items()]
    for command, flags in declared:
        for flag in [*flags, *COMMON_FLAGS]:
            argv = list(BASE.get(command, command.split()))
            if flag.name.startswith("-"):
                argv += [flag.invalid] if flag.constraint is None else [flag.name, flag.invalid]
            else:  # a positional argument: replace its valid value
                argv[len(command.split())] = flag.invalid
            cases[f"{command} {flag.name}"] = (argv, flag.name)
    return cases


FLAG_CASES = _flag_cases()


def _candidates(annotation: Any) -> list[str]:
    """YAML texts that might break ``annotation``: first the bounds it declares, then general misfits."""
    bounds = []
    for meta in getattr(annotation, "__metadata__", ()):
        for attribute, outside in (("gt", 0), ("ge", -1), ("lt", 0), ("le", 1)):
            if isinstance(getattr(meta, attribute, None), (int, float)):
                bounds.append(str(getattr(meta, attribute) + outside))
    return [*bounds, "nosuch", "-1", "0", "1.5", ".nan", "true", "[nosuch]", "[1]", "[]", "{a: nosuch}"]


def _invalid(annotation: Any) -> str | None:
    """The first candidate that ``annotation`` refuses (as the registry checks: pydantic, no boolean for a number)."""
    adapter = TypeAdapter(annotation)
    for text in _candidates(annotation):
        value = yaml.safe_load(text)
        if contains_bool(value) and not accepts_bool(annotation):
            return text
        try:
            adapter.validate_python(value)
        except ValidationError:
            return text
    return None


ROUTES: dict[str, Any] = {
    "setting": lambda name, option, value: ["study", name, *STORE, "--option", f"{option}={value}"],
    "method": lambda name, option, value: [
        *BASE["study"],
        "--methods",
        name,
        "--set",
        f"method_options={{{option}: {value}}}",
    ],
    "probe": lambda name, option, value: [*BASE["study"], "--set", f"probe_options={{{name}: {{{option}: {value}}}}}"],
    "experiment": lambda name, option, value: [
        *BASE["study"],
        "--experiment",
        name,
        "--experiment-option",
        f"{option}={value}",
    ],
}
"""How a user sets option ``option`` of entry ``name`` of each registry kind on the command line."""

NAME_ROUTES: dict[str, Any] = {
    "setting": lambda name: ["study", name, *STORE],
    "method": lambda name: [*BASE["study"], "--methods", name],
    "probe": lambda name: [*BASE["study"], "--set", f"probes=[{name}]"],
    "experiment": lambda name: [*BASE["study"], "--experiment", name],
    "dataset": lambda name: ["data", "download", name],
}
"""How a user names an entry of each registry kind."""

REGISTRIES: list[Registry[Any]] = [SETTINGS, METHODS, PROBES, EXPERIMENTS, DATASETS]


def _option_cases() -> dict[str, tuple[list[str] | None, str]]:
    cases: dict[str, tuple[list[str] | None, str]] = {}
    for registry in REGISTRIES:
        for name in registry.names():
            typo = f"{name}x"
            cases[f"{registry.kind} {typo}"] = (NAME_ROUTES[registry.kind](typo), f"did you mean '{name}'")
            if registry.kind == "dataset":
                continue  # datasets have a name and no options
            cases[f"{registry.kind} {name} nosuch_option"] = (
                ROUTES[registry.kind](name, "nosuch_option", "1"),
                "nosuch_option",
            )
            for option, annotation in registry.annotations(name).items():
                value = _invalid(annotation)
                argv = None if value is None else ROUTES[registry.kind](name, option, value)
                cases[f"{registry.kind} {name} {option}"] = (argv, f"{option}=")
    return cases


OPTION_CASES = _option_cases()


@pytest.fixture
def workdir(cli_workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """:func:`cli_workdir`, with the data directory inside it (so "nothing written" covers downloads)."""
    monkeypatch.setenv("MTLENS_DATA", str(cli_workdir / "data"))
    return cli_workdir


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _refused(argv: list[str], workdir: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``argv``; assert exit 2, one line on stderr, nothing on stdout, nothing written; return the line."""
    before = _listing(workdir)
    status = main([part.replace("{tmp}", str(workdir)) for part in argv])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, (argv, err)
    assert len(lines) == 1 and "Traceback" not in err and lines[0].startswith("mtlens"), err
    assert out == ""
    assert _listing(workdir) == before
    return lines[0]


@pytest.mark.parametrize("case", list(FLAG_CASES))
def test_every_flag_of_every_command_refuses_an_invalid_value(
    case: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, name = FLAG_CASES[case]
    line = _refused(argv, workdir, capsys)
    invalid = next(part for part in reversed(argv) if part != name).replace("{tmp}", str(workdir))
    assert name in line or invalid in line, line


@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_every_option_of_every_registry_entry_refuses_an_invalid_value(
    case: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, fragment = OPTION_CASES[case]
    assert argv is not None, f"{case}: the option declares no constraint (annotate it: Interval, Literal, ...)"
    line = _refused(argv, workdir, capsys)
    assert fragment in line, line


def test_every_parser_flag_is_declared_once() -> None:
    """Each sub-command's parser has exactly the flags :data:`COMMANDS` declares (a flag added to the parser
    directly, bypassing the declarations, would escape the generated test)."""
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    declared = {**{n: flags for n, (_, flags) in COMMANDS.items()}}
    for name, command in sub.choices.items():
        if name == "data":
            continue
        actual = {a.option_strings[0] if a.option_strings else a.dest for a in command._actions} - {"-h"}
        assert actual == {flag.name for flag in [*declared[name], *COMMON_FLAGS]}, name
    assert set(sub.choices) == {*COMMANDS, "data"}


def test_help_is_plain_text_listing_every_command() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--help"]) == 0
    text = out.getvalue()
    for command in [*COMMANDS, "data"]:
        assert f"\n    {command} " in text or f"\n    {command}\n" in text, command
    for argv in [[], *([command] for command in COMMANDS), ["data"], *(["data", c] for c in DATA_COMMANDS)]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main([*argv, "--help"]) == 0
        for markup in ("``", ":func:", ":class:", ":data:", ":mod:", "`"):
            assert markup not in out.getvalue(), (argv, markup)


def test_the_invalid_values_break_what_they_claim() -> None:
    """The generator is not vacuous: bound-derived candidates sit just outside the bound."""
    from typing import Annotated

    assert _invalid(Annotated[int, Interval(ge=1)]) == "0"
    assert _invalid(Annotated[float, Interval(gt=0, lt=1)]) == "0"
    assert _invalid(int) == "nosuch"
    assert _invalid(Any) is None
    assert isinstance(Flag("--x", None).invalid, str)


def test_declared_choices_name_exactly_what_exists() -> None:
    """Literal choices stated beside the tables they name stay equal to them (a new GLUE task, ResNet depth
    or optimizer variant must be added to both)."""
    from typing import get_args

    from mtlens.data.glue import GLUE_TASKS, GlueTaskName
    from mtlens.experiments.optimizers import OPTIMIZER_LRS, OPTIMIZER_VARIANTS, OptimizerVariant
    from mtlens.models.resnet import STAGE_BLOCKS, ResNetDepth
    from mtlens.settings.mnists import THIRD_TASKS

    assert get_args(GlueTaskName) == tuple(GLUE_TASKS)
    assert get_args(ResNetDepth) == tuple(STAGE_BLOCKS)
    assert get_args(OptimizerVariant) == tuple(OPTIMIZER_VARIANTS) == tuple(OPTIMIZER_LRS)
    assert THIRD_TASKS == ("notmnist", "kmnist")


def test_an_unknown_task_suggests_the_nearest() -> None:
    from mtlens.errors import ConfigError
    from mtlens.training.config import resolve_config

    with pytest.raises(ConfigError, match=r"setting 'digits_pair' \(did you mean 'a'\?\); its tasks are \['a', 'b'\]"):
        resolve_config(parse_config({"setting": "digits_pair", "tasks": ["aa"]}))


VALID_RUN_CONFIG_VALUES = {
    "optimizer": ("sgd", "sgd"),
    "lr": ("0.5", 0.5),
    "momentum": ("0.5", 0.5),
    "batch_size": ("7", 7),
    "epochs": ("3", 3),
    "eval_every_steps": ("4", 4),
    "eval_dense_until_epoch": ("1.5", 1.5),
    "device": ("cpu", "cpu"),
    "threads": ("2", 2),
    "pack_size": ("2", 2),
}


def test_every_run_config_flag_sets_the_key_it_is_declared_for() -> None:
    from mtlens.cli import RUN_CONFIG_FLAGS, Declared, base_config

    keys = {f.constraint.field: f.name for f in RUN_CONFIG_FLAGS if isinstance(f.constraint, Declared)}
    assert set(keys) == set(VALID_RUN_CONFIG_VALUES)
    for key, flag in keys.items():
        text, expected = VALID_RUN_CONFIG_VALUES[key]
        args = build_parser().parse_args(["study", "digits_pair", flag, text])
        raw = base_config(args)
        assert raw[key] == expected and type(raw[key]) is type(expected), (flag, raw)
        assert set(raw) == {"setting", key}


def test_settings_lists_each_option_with_its_declared_constraint(capsys: pytest.CaptureFixture[str]) -> None:
    from typing import Annotated, Literal

    from mtlens.registry import describe

    assert describe(Annotated[int, Interval(gt=0)]) == "int > 0"
    assert describe(Annotated[float, Interval(ge=0, le=1)]) == "float >= 0, <= 1"
    assert describe(Literal["a", "b"] | None) == "'a' | 'b' | None"
    assert describe(list[Annotated[float, Interval(gt=0)]]) == "list[float > 0]"
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "options: variant: 'permuted' | 'same' = 'permuted', n_train: int > 0 = 500" in out
    assert "``" not in out


def test_flags_that_do_not_combine_are_flags_of_their_command_without_defaults() -> None:
    """Each flag of a relation (:attr:`Flag.excludes`, :attr:`Flag.only_with`) is a flag of the same command and
    has no default, so that a flag given is told from one left out (``sweep --seeds`` defaulted to 3: with
    ``--seed-list`` it was either always refused or, as it was, silently dropped)."""
    related = 0
    for command, (_, flags) in COMMANDS.items():
        by_name = {flag.name: flag for flag in flags}
        for flag in flags:
            names = [*flag.excludes, *([flag.only_with.partition("=")[0]] if flag.only_with else [])]
            related += bool(names)
            for name in [flag.name, *names] if names else []:
                assert name in by_name and by_name[name].default is None, (command, flag.name, name)
    assert related >= 8


def test_a_set_key_that_a_flag_gives_too_is_refused_naming_both(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--epochs 2 --set epochs=1`` trained the runs of ``--epochs 1`` (audit A): every run-config flag and
    ``--set`` of its key together are one line, exit 2, naming both."""
    from mtlens.cli import RUN_CONFIG_FLAGS, Declared

    for flag in RUN_CONFIG_FLAGS:
        if isinstance(flag.constraint, Declared):
            key = flag.constraint.field
            text, _ = VALID_RUN_CONFIG_VALUES[key]
            line = _refused([*BASE["study"], "--dry-run", flag.name, text, "--set", f"{key}={text}"], workdir, capsys)
            assert f"--set {key}" in line and f"{flag.name} {text}" in line, line


@pytest.mark.parametrize(
    ("argv", "seeds"),
    [
        (["sweep", "digits_pair", "--store", "{tmp}/s"], [0, 1, 2]),
        (["sweep", "digits_pair", "--store", "{tmp}/s", "--seed-list", "5"], [5]),
        (["calibrate", "digits_pair", "--store", "{tmp}/s"], list(range(12))),
        (["calibrate", "digits_pair", "--store", "{tmp}/s", "--seeds", "4"], [0, 1, 2, 3]),
    ],
)
def test_seeds_left_out_are_the_declared_default(
    argv: list[str], seeds: list[int], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--seeds`` has no parser default (so that it is told from left out, for ``--seed-list``): the command
    applies the default its help states."""
    from mtlens.orchestration import calibrate, sweep

    used: list[list[int]] = []

    def stop(seeds: list[int]) -> None:  # the seeds the command runs, then no training
        used.append(seeds)
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "run_sweep", lambda base, grid, store, methods, seeds, *rest, **kw: stop(seeds))
    monkeypatch.setattr(calibrate, "run_calibration", lambda base, seeds, *rest, **kw: stop(seeds))
    assert main([part.replace("{tmp}", str(workdir)) for part in argv]) == 130
    assert used == [seeds]
