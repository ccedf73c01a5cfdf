"""The README's promises: its two commands exist and its user-setting and user-probe examples run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_examples_register_a_setting_and_a_probe_and_train(tmp_path, monkeypatch, request):
    readme = (ROOT / "README.md").read_text()
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(python_block(readme, "register_setting"), "README.md", "exec"), namespace)
    index = namespace["store"].runs()
    assert sorted(index["mode"]) == ["mtl", "stl", "stl"] and set(index["state"]) == {"finished"}
    rows = namespace["store"].trajectories()
    assert {"quadrant", "right"} == set(rows.loc[~rows["quantity"].str.startswith("probe/"), "task"])
    assert {"quadrant|right", "*"} <= set(rows["task"])  # the default probes ran

    from mtlens.probes import PROBES

    request.addfinalizer(lambda: PROBES.unregister("head_norm"))
    # the user's probe, on the store of the first
    exec(compile(python_block(readme, "@register_probe"), "README.md", "exec"), namespace)
    rows = namespace["store"].trajectories()
    norms = rows[rows["quantity"] == "probe/head_norm"]
    assert set(norms["task"]) == {"quadrant", "right"} and (norms["value"] > 0).all()
    assert norms["run_id"].nunique() == 1 and len(namespace["store"].runs()) == 4


def python_block(readme: str, marker: str) -> str:
    """The README's one ```python block containing ``marker``."""
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if marker in b]
    assert len(blocks) == 1, marker
    return blocks[0]


def test_readme_loop_snippets_are_short():
    """The README's loops are excerpts of examples/ (tests/test_examples.py runs the files and matches the
    snippets against them): short enough to read."""
    readme = (ROOT / "README.md").read_text()
    for marker in ("examples/plain_loop.py", "examples/lightning_module.py", "examples/huggingface_trainer.py"):
        assert len(python_block(readme, marker).strip().splitlines()) < 45


def test_readme_commands_are_the_makefile_targets():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "make demo" in readme and "make test" in readme
    assert re.search(r"^demo:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_and_grouping_doc_state_digit_attributes_split_sizes_of_the_code():
    """The settings table and docs/grouping.md give the validation and test sizes the setting's factory uses by
    default (the README said 250/1,000 after the code moved to 500/2,000)."""
    import inspect

    from mtlens.settings.digit_attributes import digit_attributes

    defaults = inspect.signature(digit_attributes).parameters
    n_val, n_test = defaults["n_val"].default, defaults["n_test"].default
    lines = (ROOT / "README.md").read_text().splitlines()
    row = next(line for line in lines if line.startswith("| `digit_attributes`"))
    assert f"shared val/test ({n_val:,}/{n_test:,})" in row, row
    grouping = " ".join((ROOT / "docs" / "grouping.md").read_text().split())
    assert f"same {n_val:,} validation and {n_test:,} test images" in grouping
