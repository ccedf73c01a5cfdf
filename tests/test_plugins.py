"""User plugins on the command line: ``--plugin MODULE``, ``$MTLENS_PLUGINS`` and the ``mtlens.plugins``
entry points of installed packages register settings, probes and methods before any name is parsed,
in the CLI process and in the executor's worker processes; a plugin that fails to load is one line,
exit 2."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mtlens import RunStore, parse_config, plugins
from mtlens.cli import main
from mtlens.orchestration.executors import LocalExecutor
from mtlens.plugins import ENV_VAR, PluginError, load_plugins, requested_plugins
from mtlens.settings import SETTINGS

PLUGIN_PACKAGE = Path(__file__).parent / "fixtures" / "plugin_pkg"

SETTING_PLUGIN = '''
import torch
from torch import nn

from mtlens.settings import Setting, Split, TaskData, register_setting
from mtlens.tasks import classification_task


@register_setting("{name}")
def blobs(n: int = 40) -> Setting:
    """{doc}"""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (3 * n,), generator=generator)
    inputs = torch.randn(3 * n, 4, generator=generator) + labels[:, None].float()
    splits = [Split(inputs[i * n : (i + 1) * n], labels[i * n : (i + 1) * n]) for i in range(3)]
    return Setting(
        "{name}",
        (classification_task("a", 3), classification_task("b", 3)),
        {{"a": TaskData("blobs", *splits), "b": TaskData("blobs", *splits)}},
        lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU()),
        8,
    )
'''


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch, request):
    """A directory for a test's plugin modules; every setting and module they add is removed afterwards."""
    directory = tmp_path / "plugins"
    directory.mkdir()
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(plugins, "_REQUESTED", [])  # what workers are told to load: this test's plugins only
    monkeypatch.delenv(ENV_VAR, raising=False)
    before_settings, before_modules = set(SETTINGS.names()), set(sys.modules)

    def clean() -> None:
        for name in set(SETTINGS.names()) - before_settings:
            SETTINGS.unregister(name)
        for name in set(sys.modules) - before_modules:
            if getattr(sys.modules[name], "__file__", "") and str(directory) in str(sys.modules[name].__file__):
                del sys.modules[name]

    request.addfinalizer(clean)
    return directory


def write_plugin(directory: Path, module: str, setting: str) -> Path:
    path = directory / f"{module}.py"
    path.write_text(SETTING_PLUGIN.format(name=setting, doc=f"Blobs of the plugin {module}."))
    return path


def test_plugin_flag_env_var_and_current_directory_make_a_setting_known_to_every_command(
    plugin_dir, monkeypatch, capsys
):
    assert main(["settings"]) == 0 and "file_blobs" not in capsys.readouterr().out
    path = write_plugin(plugin_dir, "file_ext", "file_blobs")
    # A .py file, after the command or before it.
    assert main(["settings", "--plugin", str(path)]) == 0
    assert "file_blobs       undeclared Blobs of the plugin file_ext." in capsys.readouterr().out  # no data=
    # A module name found in the current directory (a console script does not search it by itself).
    write_plugin(plugin_dir, "cwd_ext", "cwd_blobs")
    monkeypatch.chdir(plugin_dir)
    assert main(["--plugin", "cwd_ext", "settings"]) == 0 and "cwd_blobs" in capsys.readouterr().out
    # The environment variable: comma-separated modules, for every command.
    write_plugin(plugin_dir, "env_a", "env_a_blobs")
    write_plugin(plugin_dir, "env_b", "env_b_blobs")
    monkeypatch.setenv(ENV_VAR, "env_a, env_b")
    assert main(["settings"]) == 0
    listed = capsys.readouterr().out
    assert "env_a_blobs" in listed and "env_b_blobs" in listed
    # A study of the plugin's setting is validated against the setting's options (refused: nothing trained).
    store = plugin_dir / "store"
    assert main(["study", "env_a_blobs", "--option", "m=3", "--store", str(store), "--quiet"]) == 2
    assert "setting 'env_a_blobs' has no option(s) ['m']; valid options: ['n']" in capsys.readouterr().err
    assert not store.exists()
    # Workers of the local executor get the modules named by --plugin (files as absolute paths).
    assert str(path) in requested_plugins() and "cwd_ext" in requested_plugins()


@pytest.mark.parametrize(
    "source, expected",
    [
        ("raise RuntimeError('no GPU here')\n", r"RuntimeError: no GPU here \(at .*broken\.py:1\)"),
        ("import not_a_module_anywhere\n", r"ModuleNotFoundError: No module named 'not_a_module_anywhere' \(at .*:1\)"),
        ("def f(:\n", "SyntaxError: "),
        (  # a built-in's name: the user's setting was dropped or replaced it, depending on the import order
            "from mtlens.settings import register_setting\n\n@register_setting('digits_pair')\ndef mine():\n    pass\n",
            r"ConfigError: setting 'digits_pair' is registered already, by mtlens\.settings\.embedded\.digits_pair; "
            r"broken\.mine cannot take its name: register it under another name \(at .*broken\.py:3\)",
        ),
        (  # the method replaced the built-in, and the built-in's stored runs were reported as the user's
            "from mtlens.aggregators import METHODS, LinearScalarization\n\n"
            "class Mine(LinearScalarization):\n    pass\n\nMETHODS.register('sum', Mine)\n",
            r"ConfigError: method 'sum' is registered already, by mtlens\.aggregators\._scalarization\."
            r"LinearScalarization; broken\.Mine cannot take its name: .*\(at .*broken\.py:6\)",
        ),
    ],
    ids=["raises", "missing-import", "syntax", "built-in-setting-name", "built-in-method-name"],
)
def test_a_plugin_that_fails_to_load_is_one_line_naming_it_and_exit_2(plugin_dir, capsys, source, expected):
    path = plugin_dir / "broken.py"
    path.write_text(source)
    assert main(["settings", "--plugin", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"mtlens: error: plugin '{path}' (--plugin) failed to load: ")
    assert re.search(expected, err)


def test_a_missing_plugin_module_or_file_names_where_it_was_given(plugin_dir, monkeypatch, capsys):
    monkeypatch.chdir(plugin_dir)
    monkeypatch.setenv(ENV_VAR, "no_such_plugin")
    assert main(["settings"]) == 2
    assert capsys.readouterr().err == (
        "mtlens: error: plugin 'no_such_plugin' ($MTLENS_PLUGINS) failed to load: "
        "ModuleNotFoundError: No module named 'no_such_plugin'\n"
    )
    monkeypatch.delenv(ENV_VAR)
    with pytest.raises(PluginError, match=r"plugin 'gone\.py' \(--plugin\) failed to load: FileNotFoundError"):
        load_plugins(["gone.py"])


@pytest.mark.integration
def test_local_workers_load_the_plugins_of_the_driver(plugin_dir, tmp_path):
    path = write_plugin(plugin_dir, "worker_ext", "worker_blobs")
    load_plugins([str(path)])
    config = parse_config({"setting": "worker_blobs", "epochs": 1, "batch_size": 20, "probes": []})
    store = RunStore(tmp_path / "store")
    with LocalExecutor(workers=1) as executor:  # one spawned worker process: it knows only what it imports
        results = executor.run([config], store, progress=False)
    assert list(results["state"]) == ["finished"], results["message"].tolist()


def install_plugin_package(tmp_path: Path) -> Path:
    """``pip install --target`` of the example plugin package (a copy: the build leaves files in its source);
    offline, no dependencies, no build isolation (setuptools of this environment)."""
    source = tmp_path / "plugin_pkg"
    shutil.copytree(PLUGIN_PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
        + ["--no-build-isolation", "--no-index", "--target", str(target), str(source)],
        check=True,
        capture_output=True,
    )
    assert (target / "mtlens_blobs-0.1.0.dist-info" / "entry_points.txt").exists()
    return target


# One fresh process runs the commands (one import of torch for all three): each must exit 0.
COMMANDS = """
import json, sys
from mtlens import plugins
from mtlens.cli import main
for argv in json.loads(sys.argv[1]):
    print("$ mtlens", *argv, flush=True)
    if main(argv) != 0:
        sys.exit(f"mtlens {argv[0]} failed")
"""


@pytest.mark.integration
def test_an_installed_plugin_package_works_in_settings_study_and_report(tmp_path):
    site = install_plugin_package(tmp_path)
    store, report = tmp_path / "store", tmp_path / "report"
    commands = [
        ["settings"],
        ["study", "plugin_blobs", "--seeds", "1", "--epochs", "1", "--batch-size", "20", "--methods", "largest"]
        + ["--set", "probes=[head_l1]", "--store", str(store), "--quiet"],
        ["report", "--store", str(store), "--out", str(report)],
    ]
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop(ENV_VAR, None)
    done = subprocess.run(
        [sys.executable, "-c", COMMANDS, json.dumps(commands)], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "plugin_blobs     none       Two 3-way tasks on Gaussian blobs" in done.stdout
    assert "data: -: reads no dataset (generates its inputs)" in done.stdout  # the package's data=() declaration
    runs = RunStore(store).runs()
    assert sorted(runs["mode"]) == ["mtl", "stl", "stl"] and set(runs["state"]) == {"finished"}
    assert set(runs.loc[runs["mode"] == "mtl", "method"]) == {"largest"}
    # The plugin's probe has its rows in the store and its row of panels in the report's probe figure.
    rows = RunStore(store).trajectories()
    assert set(rows.loc[rows["quantity"] == "probe/head_l1", "task"]) == {"a", "b"}
    spec = json.loads((report / "figures" / "probes_plugin_blobs_largest.vl.json").read_text())
    assert "probe/head_l1" in json.dumps(spec)
    assert "probe/head_l1" in (report / "report.html").read_text()
