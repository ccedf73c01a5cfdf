"""The run-life contract, run against the trainer, a pack and the Recorder alike (``_subjects.py``):

* ``kill -9`` at any checkpoint, then a rerun: exactly the rows of an uninterrupted run;
* every damage case (``_cases.py``) of a finished or a killed run is named by ``mtlens runs --check``,
  never becomes a number (the index leaves the run out, or reading it is refused with one line), and a
  rerun heals it: the run ends finished with exactly the uninterrupted rows and the store checks clean;
* a read-only store is refused with one line;
* a rerun removes what interrupted processes leave (temporary files, row parts of a finished run),
  which ``runs --check`` flags until then.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from _asserts import (
    assert_check_clean,
    assert_check_names,
    assert_no_wrong_number,
    assert_one_line,
    assert_same_rows,
    rows,
)
from _cases import CASES, SELECTED, Damage, copy_store, damage_run, read_only, rewrite_rows_validly
from _subjects import SUBJECTS, Subject, run_slowly

from kills import fork, kill_at_step
from mtlens import RunStore
from mtlens.errors import MtlensError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The data cache the whole session shares (as ``tests/conftest.py`` sets it per test), for the module's fixtures
    and the children they fork."""
    data = os.environ.get("MTLENS_TEST_DATA", str(tmp_path_factory.getbasetemp() / "data"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTLENS_DATA", data)
        yield


def kill_during(subject: Subject, store: RunStore, after_step: int = 4) -> None:
    """Run ``subject`` in a child process (forked, :func:`kills.fork`; its own :class:`RunStore` of ``store``'s
    folder) and ``kill -9`` it once its target's status shows ``after_step``."""
    kill_at_step(fork(lambda: run_slowly(subject.name, RunStore(store.root))), store, subject.target, after_step)


@pytest.fixture(scope="module", params=list(SUBJECTS))
def subject(request: pytest.FixtureRequest) -> Subject:
    return SUBJECTS[request.param]


@pytest.fixture(scope="module")
def stores(subject: Subject, data_env: None, tmp_path_factory: pytest.TempPathFactory):
    """``(reference rows, finished store, interrupted store)`` of ``subject``, built once per subject."""
    root = tmp_path_factory.mktemp(subject.name)
    finished = RunStore(root / "finished")
    assert subject.run(finished) == "finished"
    interrupted = RunStore(root / "interrupted")
    kill_during(subject, interrupted)
    return rows(finished, subject.target), finished, interrupted


def rerun(subject: Subject, store: RunStore) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DamagedRunWarning: what the rerun heals
        return subject.run(store)


def test_kill_then_rerun_gives_exactly_the_uninterrupted_rows(subject, stores, tmp_path, capsys):
    reference, _, interrupted = stores
    store = RunStore(copy_store(interrupted.root, tmp_path / "store"))
    assert store.runs().set_index("run_id").loc[subject.target, "state"] == "interrupted"
    assert rerun(subject, store) == "finished"
    assert_same_rows(store, subject, reference)
    assert_check_clean(store, capsys)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_damage_is_named_never_a_number_and_healed_by_a_rerun(subject, stores, case: Damage, tmp_path, capsys):
    assert_damage_named_and_healed(subject, stores, case, tmp_path, capsys)


@pytest.mark.parametrize("subject", [s for s in SUBJECTS if SUBJECTS[s].selected], indirect=True)
@pytest.mark.parametrize("case", SELECTED, ids=str)
def test_damaged_selected_models_are_named_and_healed_by_a_rerun(subject, stores, case: Damage, tmp_path, capsys):
    assert_damage_named_and_healed(subject, stores, case, tmp_path, capsys)


def assert_damage_named_and_healed(subject: Subject, stores, case: Damage, tmp_path: Path, capsys) -> None:
    reference, finished, interrupted = stores
    source = finished if case.stage == "finished" else interrupted
    store = RunStore(copy_store(source.root, tmp_path / "store"))
    name = damage_run(store.run_dir(subject.target), case)

    assert_check_names(store, subject.target, name, capsys)
    assert_no_wrong_number(store, subject, reference, intact=source)
    assert rerun(subject, store) == "finished"
    assert_same_rows(store, subject, reference)
    assert_check_clean(store, capsys)


def test_a_run_without_digests_gets_them_when_rerun_so_a_valid_rewrite_is_caught_after(
    subject, stores, tmp_path, capsys
):
    """A finished run whose status records no digests (as runs written before format version 2): rerunning
    the subject trains nothing and records the digests of its verified files; a valid rewrite of its
    trajectory after that is named, never a number, and healed by the next rerun."""
    reference, finished, _ = stores
    store = RunStore(copy_store(finished.root, tmp_path / "store"))
    run_dir = store.run_dir(subject.target)
    status = json.loads((run_dir / "status.json").read_text())
    (run_dir / "status.json").write_text(json.dumps({k: v for k, v in status.items() if k != "digests"}))
    trajectory = (run_dir / "trajectory.parquet").read_bytes()

    assert rerun(subject, store) == "finished"
    assert (run_dir / "trajectory.parquet").read_bytes() == trajectory  # nothing retrained or rewritten
    assert store.status(subject.target)["digests"] == status["digests"]  # the same digests the run wrote
    rewrite_rows_validly(run_dir / "trajectory.parquet")
    assert_check_names(store, subject.target, "trajectory.parquet", capsys)
    assert_no_wrong_number(store, subject, reference, intact=finished)
    assert rerun(subject, store) == "finished"
    assert_same_rows(store, subject, reference)
    assert_check_clean(store, capsys)


def test_read_only_store_is_refused_with_one_line(subject, stores, tmp_path):
    _, _, interrupted = stores
    store = RunStore(copy_store(interrupted.root, tmp_path / "store"))
    with read_only(store.root), pytest.raises(MtlensError) as error:
        rerun(subject, store)
    assert_one_line(error.value)
    assert "writable" in str(error.value)


def test_leftovers_are_flagged_and_removed_by_a_rerun(subject, stores, tmp_path, capsys):
    """A kill during finalization leaves the finished run's parts; a kill inside an atomic write its temporary file."""
    reference, finished, interrupted = stores
    store = RunStore(copy_store(finished.root, tmp_path / "store"))
    run_dir = store.run_dir(subject.target)
    shutil.copytree(interrupted.run_dir(subject.target) / "parts", run_dir / "parts", dirs_exist_ok=True)
    (run_dir / ".status.json.0123456789ab.tmp").write_text("{")
    assert_check_names(store, subject.target, "parts", capsys)
    assert_check_names(store, subject.target, ".status.json.0123456789ab.tmp", capsys)
    assert rerun(subject, store) == "finished"
    assert_same_rows(store, subject, reference)
    assert_check_clean(store, capsys)
    pd.testing.assert_frame_equal(rows(store, subject.target), reference)
