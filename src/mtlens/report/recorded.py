"""What the analysed runs recorded, and what each core section of the report needs of it.

A store written by a user's own loop (:class:`~mtlens.training.recorder.Recorder`) holds what the
user logged: maybe no test split, no validation error, no hyperparameter ``momentum``.  The report
reads each run's rows on their own (:func:`read_rows`: a run whose files cannot be read is left out
and named, the others are analysed), and each core section declares the quantities it reads
(:data:`SECTION_INPUTS`); :func:`note_unrecorded` then says, in the section, which of them the runs
did not record and for which tasks: a section with none of an input says what it needs instead of
its (empty) results; one with some tasks missing names them above its results.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import pandas as pd

from mtlens.analysis.transfer import TaskInfo, selection_info
from mtlens.errors import DamagedStoreError
from mtlens.quantities import RUN_ROW, TASK_PAIR
from mtlens.render import Section, not_available
from mtlens.store import RunStore

SECTION_INPUTS: dict[str, tuple[str, ...]] = {
    "summary": ("val/{selection}", "test/{selection}"),
    "transfer": ("val/{selection}", "test/{selection}"),
    "gap": ("train/loss", "val/loss|val/error"),
    "training": ("train/loss",),
    "optimization": ("train/loss",),
    "correlations": ("train/loss", "val/{selection}", "test/{selection}"),
}
"""Section anchor -> the per-task quantities it reads (``a|b``: either will do): ``val/{selection}``
chooses each run's checkpoint (the task's selection metric on the validation split), ``test/{selection}``
is compared at it, the gap and optimization analyses read the training loss (measured on a fixed
training subset) and the gap a validation measure."""

HOW_TO_RECORD = (
    "a loop of your own records them with Recorder.log(step, split, {task: {metric: value}}) "
    "for the splits train, val and test"
)


def read_rows(store: RunStore, run_ids: Sequence[str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """``(rows, unreadable)``: the trajectory rows of the runs ``run_ids`` whose files can be read, and
    per run that cannot (a damaged file, a table missing a column), the store's message naming the run
    and the file.  One run's damage never stops the others from being analysed."""
    frames, unreadable = [], {}
    for run_id in run_ids:
        try:
            frame = store.trajectory(run_id)
        except DamagedStoreError as err:
            unreadable[run_id] = str(err)
            continue
        if len(frame):
            frames.append(frame)
    if not frames:
        return store.trajectories([]), unreadable
    return pd.concat(frames, ignore_index=True), unreadable


def unrecorded_inputs(rows: pd.DataFrame, task_info: TaskInfo, inputs: Sequence[str]) -> dict[str, list[str]]:
    """Per quantity of ``inputs`` (templates of :data:`SECTION_INPUTS`, resolved per task), the tasks
    (``setting: task``) of ``rows`` without any row of it; empty if every task has every input."""
    tasks = rows[~rows["task"].astype(str).str.contains(TASK_PAIR, regex=False) & (rows["task"] != RUN_ROW)]
    recorded = tasks.groupby(["setting", "task"], sort=True)["quantity"].agg(set)
    missing: dict[str, list[str]] = {}
    for (setting, task), quantities in recorded.items():
        selection = selection_info(task_info, setting, task)["selection_metric"]
        for template in inputs:
            alternatives = template.format(selection=selection).split("|")
            if not quantities.intersection(alternatives):
                missing.setdefault(" or ".join(alternatives), []).append(f"{setting}: {task}")
    return missing


def note_unrecorded(sections: Sequence[Section], rows: pd.DataFrame, task_info: TaskInfo) -> list[Section]:
    """``sections`` with a note in each core section (:data:`SECTION_INPUTS`) whose inputs some tasks
    did not record: where no task recorded an input, the note replaces the section's body (whose empty
    results would otherwise read as "no runs"); otherwise it names the tasks left out, above the results."""
    tasks = rows[~rows["task"].astype(str).str.contains(TASK_PAIR, regex=False) & (rows["task"] != RUN_ROW)]
    n_tasks = len(tasks[["setting", "task"]].drop_duplicates())
    noted = []
    for section in sections:
        missing = unrecorded_inputs(rows, task_info, SECTION_INPUTS.get(section.anchor, ()))
        if not missing:
            noted.append(section)
            continue
        absent = [q for q, tasks in missing.items() if len(tasks) == n_tasks]
        partial = {q: tasks for q, tasks in missing.items() if q not in absent}
        recorded = ", ".join(sorted(rows["quantity"].unique())) or "nothing"
        if absent:
            body = not_available(
                f"this section needs {' and '.join(absent)} rows of each task, which no analysed run recorded "
                f"(recorded: {recorded}); {HOW_TO_RECORD}"
            )
        else:
            left_out = "; ".join(f"{q} of {', '.join(tasks)}" for q, tasks in partial.items())
            body = (
                f'<p class="not-recorded">Not recorded, so left out of this section: {html.escape(left_out)}.</p>'
                + section.body
            )
        noted.append(Section(section.title, body, section.anchor))
    return noted
