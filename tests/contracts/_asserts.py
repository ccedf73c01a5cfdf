"""Named assertions of the contract suite, shared by every subject (trainer, pack, Recorder) and case."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _subjects import Subject

from mtlens import RunStore
from mtlens.cli import main
from mtlens.errors import DamagedStoreError, MtlensError

KEY = ["task", "step", "quantity"]


def rows(store: RunStore, run_id: str) -> pd.DataFrame:
    return store.trajectory(run_id).sort_values(KEY).reset_index(drop=True)


def assert_same_rows(store: RunStore, subject: Subject, reference: pd.DataFrame) -> None:
    """The target run is finished with exactly the reference's rows (keys equal, no row lost or doubled;
    values equal, within the subject's tolerance)."""
    assert store.status(subject.target)["state"] == "finished"
    got = rows(store, subject.target)
    assert not got.duplicated(KEY).any()
    pd.testing.assert_frame_equal(got.drop(columns="value"), reference.drop(columns="value"))
    np.testing.assert_allclose(got["value"], reference["value"], rtol=subject.rtol, atol=subject.atol)


def assert_check_names(store: RunStore, run_id: str, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``mtlens runs --check`` exits 1 and names the file ``name`` of run ``run_id``; no traceback."""
    capsys.readouterr()
    assert main(["runs", "--store", str(store.root), "--check"]) == 1
    out, err = capsys.readouterr()
    assert str(store.run_dir(run_id) / name) in out, out
    assert "Traceback" not in out + err


def assert_check_clean(store: RunStore, capsys: pytest.CaptureFixture[str]) -> None:
    """``mtlens runs --check`` exits 0: nothing damaged, no leftover part or temporary file."""
    capsys.readouterr()
    assert main(["runs", "--store", str(store.root), "--check"]) == 0, capsys.readouterr().out


def assert_no_wrong_number(
    store: RunStore, subject: Subject, reference: pd.DataFrame, intact: RunStore | None = None
) -> None:
    """What a report would read of the damaged run: either the index leaves it out (not ``finished``), or reading
    its rows is refused with one line naming the run, or the rows are exactly the reference's; and an index
    that shows it ``finished`` shows it as in the ``intact`` store (its config columns: what the report groups by)."""
    index = store.runs().set_index("run_id")
    if subject.target not in index.index or index.loc[subject.target, "state"] != "finished":
        return
    if intact is not None:
        shown = intact.runs().set_index("run_id").loc[subject.target]
        pd.testing.assert_series_equal(index.loc[subject.target], shown)
    try:
        got = rows(store, subject.target)
    except DamagedStoreError as err:
        assert_one_line(err)
        assert subject.target in str(err)
        return
    pd.testing.assert_frame_equal(got, reference)


def assert_one_line(error: BaseException) -> None:
    """A user error the CLI prints as one line (an :class:`MtlensError` whose message has no line break)."""
    assert isinstance(error, MtlensError), repr(error)
    assert "\n" not in str(error).strip(), str(error)
