"""Every file in examples/ runs as given (in a fresh directory, tiny data, seconds) and records STL and MTL runs
that train and that the report's analyses read; the examples import only mtlens's public API; and the
README's snippets of them are excerpts of the files, so the README cannot drift from code that runs."""

from __future__ import annotations

import ast
import gc
import re
import runpy
from pathlib import Path

import pandas as pd
import pytest

import mtlens

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

PUBLIC_MODULES = {"mtlens", "mtlens.integrations.lightning", "mtlens.integrations.huggingface"}
"""What an example may import from mtlens: the package's public names and the callbacks of the integrations."""

CASES = {
    # example: (store, tasks of the MTL run, seeds)
    "plain_loop.py": ("runs/plain-loop", ("a", "b"), 2),
    "lightning_module.py": ("runs/lightning", ("digit", "high"), 1),
    "huggingface_trainer.py": ("runs/hf", ("digit", "high"), 1),
}


def test_every_example_is_tested():
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_imports_only_public_api(name):
    tree = ast.parse((EXAMPLES / name).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    private = {m for m in imported if m.startswith("mtlens") and m not in PUBLIC_MODULES}
    assert not private, f"{name} imports {private}: export what it needs from mtlens"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "mtlens":
            assert all(alias.name in mtlens.__all__ for alias in node.names), name


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_runs_and_trains_paired_runs_the_report_reads(name, tmp_path, monkeypatch):
    store_path, tasks, seeds = CASES[name]
    monkeypatch.chdir(tmp_path)
    gc.freeze()  # accelerate collects garbage at every train(): leave the test session's heap out of it
    try:
        runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    finally:
        gc.unfreeze()
    store = mtlens.RunStore(tmp_path / store_path)
    runs = store.runs()
    assert len(runs) == seeds * (len(tasks) + 1) and set(runs["state"]) == {"finished"}
    assert sorted(runs["mode"]) == ["mtl"] * seeds + ["stl"] * len(tasks) * seeds
    rows = store.trajectories()
    assert not rows.duplicated(["run_id", "task", "step", "quantity"]).any()
    val = rows[rows["quantity"] == "val/loss"].pivot_table(index=["run_id", "task"], columns="step", values="value")
    assert val.columns[0] == 0 and val.notna().all().all()  # evaluated before training and at every epoch end
    # a learning rate that trains: every run's validation loss fell by at least 10% on every task
    assert (val.iloc[:, -1] < 0.9 * val.iloc[:, 0]).all(), val
    # STL and MTL of a seed start from the same weights: equal step-0 losses per task and seed
    start = val[0].rename("start").reset_index().merge(runs[["run_id", "seed"]], on="run_id")
    assert start.groupby(["task", "seed"])["start"].std().max() < 1e-6, start
    transfer = mtlens.load(store).transfer()
    assert set(transfer["task"]) == set(tasks) and (transfer["n_mtl"] == seeds).all()
    # run again, the example skips its complete runs (it raised RecordedRunFinishedError at the first one)
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / store_path).rglob("*") if p.is_file()}
    gc.freeze()
    try:
        runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    finally:
        gc.unfreeze()
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / store_path).rglob("*") if p.is_file()} == written


def excerpts(block: str) -> list[str]:
    """The parts of a README snippet between its ``# ...`` lines (where the snippet leaves code out)."""
    return [part.strip("\n") for part in re.split(r"^ *# \.\.\..*$", block, flags=re.M) if part.strip()]


@pytest.mark.parametrize("name", sorted(CASES))
def test_readme_snippet_is_an_excerpt_of_the_example(name):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if f"examples/{name}" in b]
    assert len(blocks) == 1, f"README needs one snippet of examples/{name} (naming it in its first line)"
    source = (EXAMPLES / name).read_text(encoding="utf-8")
    body = blocks[0].split("\n", 1)[1]  # after the line naming the file
    for part in excerpts(body):
        assert part in source, f"README snippet of {name} differs from the file:\n{part}"


def test_plain_loop_run_again_after_a_crash_trains_only_the_rest(tmp_path, monkeypatch):
    """The README's plain loop, rerun unchanged after one of its runs crashed, skips the finished runs (they
    are not opened, their files untouched), resumes the failed one, and ends with the rows of a store that
    never crashed (audit A: the rerun raised RecordedRunFinishedError at the first finished run)."""
    crash = [(1, ("a", "b"), 16)]  # seed, tasks, step: the MTL run of seed 1 fails in its third evaluation
    opened: list[str] = []
    original_open, original_log = mtlens.Recorder.open, mtlens.Recorder.log

    def recording_open(self):
        opened.append(self.run_id)
        return original_open(self)

    def crashing_log(self, step, split, values, epoch=None):
        if (self.identity.seed, self.identity.tasks, step) in crash:
            raise RuntimeError("injected crash")
        return original_log(self, step, split, values, epoch)

    monkeypatch.setattr(mtlens.Recorder, "open", recording_open)
    monkeypatch.setattr(mtlens.Recorder, "log", crashing_log)

    def run_loop(directory: Path) -> mtlens.RunStore:
        directory.mkdir(exist_ok=True)
        monkeypatch.chdir(directory)
        runpy.run_path(str(EXAMPLES / "plain_loop.py"), run_name="__main__")
        return mtlens.RunStore(directory / "runs/plain-loop")

    with pytest.raises(RuntimeError, match="injected crash"):
        run_loop(tmp_path / "crashed")
    store = mtlens.RunStore(tmp_path / "crashed/runs/plain-loop")
    states = store.runs().set_index("run_id")["state"]
    (failed,) = states.index[states == "failed"]
    assert (states == "finished").sum() == 5
    finished = {run_id: _files(store.run_dir(run_id)) for run_id in states.index[states == "finished"]}

    crash.clear()
    opened.clear()
    store = run_loop(tmp_path / "crashed")
    assert opened == [failed]  # the finished runs were skipped, not opened and not retrained
    assert {run_id: _files(store.run_dir(run_id)) for run_id in finished} == finished
    assert set(store.runs()["state"]) == {"finished"}

    reference = run_loop(tmp_path / "uninterrupted")
    columns = ["run_id", "task", "step", "quantity"]
    rows = store.trajectories().sort_values(columns).reset_index(drop=True)
    expected = reference.trajectories().sort_values(columns).reset_index(drop=True)
    pd.testing.assert_frame_equal(rows, expected)


def _files(directory: Path) -> dict[str, tuple[int, int]]:
    """Each file under ``directory``: its size and modification time in nanoseconds."""
    return {str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.rglob("*")}
