"""Names of the trajectory quantities the built-in probes write: the one place they are spelled.

Rows of a trajectory carry ``quantity`` names (see :mod:`mtlens.store`); a probe's quantities are
``probe/<name>``.  The probes declare theirs when they register (:func:`mtlens.probes.register_probe`)
and the analyses and report sections that read particular ones import these names.
"""

from __future__ import annotations

PROBE_PREFIX = "probe/"

GRAD_COHERENCE = "probe/grad_coherence"
M_COHERENCE = "probe/m_coherence"
FISHER_TRACE = "probe/fisher_trace"
SHARPNESS = "probe/sharpness"
SHARPNESS_SAM = "probe/sharpness_sam"
GRAD_NORM = "probe/grad_norm"
UPDATE_COSINE = "probe/update_cosine"
CONFLICT_COSINE = "probe/conflict_cosine"
MAGNITUDE_SIMILARITY = "probe/magnitude_similarity"
MAGNITUDE_RATIO = "probe/magnitude_ratio"
CONFLICT_FRACTION = "probe/conflict_fraction"
UPDATE_NORM = "probe/update_norm"
INTRA_COSINE_SUBBATCH = "probe/intra_cosine_subbatch"
INTRA_COSINE_CLASSGROUP = "probe/intra_cosine_classgroup"
INTER_COSINE_SUBBATCH = "probe/inter_cosine_subbatch"
LOOKAHEAD_AFFINITY = "probe/lookahead_affinity"


def probe_quantity(name: str) -> str:
    """The row quantity of a probe value ``name``: ``probe/<name>``."""
    return PROBE_PREFIX + name


# Task names inside row keys and labels.  A task's name is joined with others, or with a split and a metric,
# by these characters, and read back by splitting on them, so no task name may contain one
# (:func:`check_task_name`, which :class:`~mtlens.tasks.Task` and the Recorder apply).

KEY_SEPARATOR = "/"
"""Joins a split, a task and a metric into a logged key (``val/a/loss``) and a quantity's parts (``val/loss``)."""

TASK_PAIR = "|"
"""Joins the two tasks of an unordered pair's rows (the conflict probe's ``a|b``)."""

DIRECTED_PAIR = ">"
"""Joins the two tasks of an ordered pair's rows (the tag probe's ``a>b``: the effect of a's step on b)."""

TASK_GROUP = "+"
"""Joins the tasks trained together in a label (the grouping experiment's groups, the report's ``tasks=a+b``)."""

TASK_LIST = ","
"""Joins a run's tasks in the run index's ``tasks`` column and on the command line (``--tasks a,b``)."""

RUN_ROW = "*"
"""The task of a row about the whole run, not one task (the conflict fraction, a method's own quantities)."""

TASK_NAME_FORBIDDEN = {
    KEY_SEPARATOR: "joins split, task and metric in a key (val/a/loss)",
    TASK_PAIR: "joins the tasks of a pair's rows (a|b)",
    DIRECTED_PAIR: "joins the tasks of an ordered pair's rows (a>b)",
    TASK_GROUP: "joins the tasks of a group (a+b)",
    TASK_LIST: "separates the tasks of a run (a,b)",
    RUN_ROW: "is the task of a per-run row",
}
"""The characters no task name may contain, each with what it means in a row or label: declared once here."""


def check_task_name(name: object) -> None:
    """Raise one-line :class:`ValueError` unless ``name`` is a non-empty string free of every character of
    :data:`TASK_NAME_FORBIDDEN`, naming the task and the first such character it holds."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"task name {name!r}: expected a non-empty string")
    for char, meaning in TASK_NAME_FORBIDDEN.items():
        if char in name:
            raise ValueError(
                f"task name {name!r} contains {char!r}, which {meaning}; "
                f"a task name may contain none of {' '.join(TASK_NAME_FORBIDDEN)}"
            )
