"""The paper's hyperparameter protocol: sweep a grid, select by validation, train seeds.

For every **group** -- the STL run of each task and the MTL run of each method --
:func:`run_sweep`

1. trains every grid point at the first seed (the grid phase; all groups in parallel),
2. selects per group the grid point with the best validation score
   (:mod:`mtlens.orchestration.selection`; STL groups first, as MTL's ``relative`` criterion needs them),
3. trains the selected point on every seed (the seeds phase).  The first seed's run is the
   grid run itself (same config, same run id), so it is reused, never retrained.

Every config is validated before the first run.  Complete runs are skipped, so rerunning
a sweep after a crash finishes only what is missing.  The sweep writes, atomically, to
``STORE/sweeps/<sweep_id>/``: ``selected.csv`` (per group: the selected values, score and
seed runs), ``candidates.csv`` (every grid run with its score) and ``problems.csv``
(failed and diverged runs with their errors).  :func:`read_sweep_selection` reads a sweep's selection back,
verified whole first (``mtlens report --sweep``: each group's selected runs compared at their own grid points).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mtlens.errors import ConfigError, DamagedStoreError
from mtlens.orchestration.executors import Executor, SerialExecutor
from mtlens.orchestration.grid import SWEEP_OWNED_KEYS, Grid, check_grid, grid_points
from mtlens.orchestration.selection import SelectionCriterion, score_runs, select_points, task_values
from mtlens.registry import did_you_mean
from mtlens.settings import Setting
from mtlens.store import RunState, RunStore, atomic_write
from mtlens.training.config import (
    ResolvedRunConfig,
    load_configured_setting,
    new_run_config,
    parse_config,
    refuse_owned_keys,
    resolve_config,
)

PROBLEM_STATES = (RunState.FAILED, RunState.DIVERGED)

SELECTED_COLUMNS = ("group", "mode", "task", "method", "grid_runs", "eligible_runs")
"""``selected.csv``'s columns before the grid keys; after them come :data:`SELECTION_COLUMNS`."""

SELECTION_COLUMNS = ("point", "score", "seeds_finished", "seed_run_ids", "criterion")
"""``selected.csv``'s columns after the grid keys (:func:`_summary`)."""

RUN_ID_SEPARATOR = ";"
"""Between the run ids of ``selected.csv``'s ``seed_run_ids``."""


@dataclass
class SweepResult:
    """The tables of one sweep (also saved as CSV in ``directory``)."""

    selected: pd.DataFrame
    candidates: pd.DataFrame
    problems: pd.DataFrame
    directory: Path

    @property
    def sweep_id(self) -> str:
        """The sweep's id (:func:`sweep_id`), its folder's name: ``mtlens report --sweep`` takes it."""
        return self.directory.name


def sweep_id(
    base: dict[str, Any], grid: Grid, methods: Sequence[str], seeds: Sequence[int], criterion: SelectionCriterion
) -> str:
    """``SETTING-HASH`` of everything that defines the sweep."""
    spec = {"base": base, "grid": grid, "methods": list(methods), "seeds": list(seeds), "criterion": asdict(criterion)}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{base['setting']}-{digest}"


def grid_candidates(
    base: dict[str, Any], grid: Grid, methods: Sequence[str], seed: int, setting: Setting | None = None
) -> tuple[pd.DataFrame, dict[str, ResolvedRunConfig]]:
    """Every (group, grid point) at ``seed``, validated and resolved.

    Returns the candidates (``group, mode, task, method, point, run_id`` and one column per
    grid key) and ``run_id -> config``.  Raises :class:`ConfigError` naming a bad key.
    """
    grid = check_grid(grid)
    refuse_owned_keys(base, SWEEP_OWNED_KEYS, "the sweep itself")
    swept = sorted(k for k in set(grid) & set(base) if k != "setting")
    if swept:
        raise ConfigError(f"{', '.join(swept)}: swept by the grid; remove from the base config (or from the grid)")
    if "setting" in grid:
        raise ConfigError("setting: a sweep is over one setting; remove it from the grid")
    setting = setting or load_configured_setting(parse_config(base))
    groups: list[tuple[str, str, str, str, list[str] | None]] = [
        (f"stl:{t}", "stl", t, "sum", [t]) for t in setting.task_names
    ]
    groups += [(f"mtl:{m}", "mtl", "all", m, None) for m in methods]
    records: list[dict[str, Any]] = []
    configs: dict[str, ResolvedRunConfig] = {}
    for group, mode, task, method, tasks in groups:
        for point, values in enumerate(grid_points(grid)):
            raw = {**base, **values, "seed": seed, "method": method, **({"tasks": tasks} if tasks else {})}
            config = new_run_config(raw, setting)
            if config.run_id in configs:  # e.g. lr 0.01 and 1e-2: two points, one run
                first = next(r["point"] for r in records if r["run_id"] == config.run_id)
                raise ConfigError(
                    f"grid points {first} and {point} of {group} are the same run ({config.run_id}): "
                    f"{grid_points(grid)[first]} and {values} train identically; give each value once"
                )
            configs[config.run_id] = config
            records.append(
                {
                    "group": group,
                    "mode": mode,
                    "task": task,
                    "method": method,
                    "point": point,
                    "run_id": config.run_id,
                    **values,
                }
            )
    return pd.DataFrame.from_records(records), configs


def check_criterion(criterion: SelectionCriterion, setting: Setting) -> None:
    """Raise :class:`ConfigError` unless every task records ``val/<criterion.metric>``."""
    if criterion.metric is None:
        return
    for task in setting.tasks:
        valid = ["loss", *task.metrics]
        if criterion.metric not in valid:
            raise ConfigError(
                f"selection metric {criterion.metric!r} is not recorded for task {task.name!r}; valid metrics: {valid}"
            )


def run_sweep(
    base: dict[str, Any],
    grid: Grid,
    store: RunStore,
    methods: Sequence[str] = ("sum",),
    seeds: Sequence[int] = (0, 1, 2),
    criterion: SelectionCriterion = SelectionCriterion(),
    executor: Executor | None = None,
    progress: bool = True,
) -> SweepResult:
    """Sweep ``grid`` for STL per task and MTL per method, select by validation, train ``seeds``.

    ``base`` is a raw config dict (``setting`` and fixed overrides).  See the module docstring.
    """
    if not seeds:
        raise ConfigError("seeds: a sweep needs at least one seed")
    setting = load_configured_setting(parse_config(base))
    check_criterion(criterion, setting)
    candidates, configs = grid_candidates(base, grid, methods, seeds[0], setting)
    seed_configs = {
        run_id: [resolve_config(c.model_copy(update={"seed": s}), setting) for s in seeds]
        for run_id, c in configs.items()
    }
    executor = executor or SerialExecutor()
    with executor:
        grid_results = executor.run(list(configs.values()), store, progress, desc="grid")
        candidates = candidates.merge(grid_results, on="run_id", how="left")
        candidates = _score(candidates, store, criterion)
        selected = select_points(candidates)
        seed_runs = {row.group: seed_configs[row.run_id] for row in selected.itertuples()}
        seed_results = executor.run([c for runs in seed_runs.values() for c in runs], store, progress, desc="seeds")
    summary = _summary(candidates, selected, seed_runs, seed_results, list(grid), criterion)
    problems = pd.concat([grid_results.assign(phase="grid"), seed_results.assign(phase="seeds")], ignore_index=True)
    problems = problems[problems["state"].isin(PROBLEM_STATES)].drop_duplicates("run_id")
    problems = problems.assign(
        message=problems["message"].map(lambda m: (m or "").strip().splitlines()[0] if (m or "").strip() else "")
    )
    directory = store.sweep_dir(sweep_id(base, grid, methods, seeds, criterion))
    for name, table in (("selected", summary), ("candidates", candidates), ("problems", problems)):
        atomic_write(directory / f"{name}.csv", functools.partial(table.to_csv, index=False))
    return SweepResult(summary, candidates, problems.reset_index(drop=True), directory)


def _score(candidates: pd.DataFrame, store: RunStore, criterion: SelectionCriterion) -> pd.DataFrame:
    """Scores of all grid runs: STL groups first, their selection the reference of ``relative``."""
    rows = store.trajectories(list(candidates["run_id"]))
    values = task_values(rows, store.task_info(), criterion)
    stl = score_runs(candidates[candidates["mode"] == "stl"], values, criterion)
    reference = {}
    for row in select_points(stl).itertuples():
        at = values[(values["run_id"] == row.run_id) & (values["task"] == row.task)]
        reference[row.task] = float(at["value"].iloc[0])
    mtl = score_runs(candidates[candidates["mode"] == "mtl"], values, criterion, reference)
    return pd.concat([stl, mtl], ignore_index=True)


def _summary(
    candidates: pd.DataFrame,
    selected: pd.DataFrame,
    seed_runs: dict[str, list[ResolvedRunConfig]],
    seed_results: pd.DataFrame,
    keys: list[str],
    criterion: SelectionCriterion,
) -> pd.DataFrame:
    """One row per group: the selected grid values, score, and the states of its seed runs."""
    states = dict(zip(seed_results["run_id"], seed_results["state"]))
    chosen = selected.set_index("group")
    records = []
    for group, frame in candidates.groupby("group", sort=False):
        first = frame.iloc[0]
        record: dict[str, Any] = {
            "group": group,
            "mode": first["mode"],
            "task": first["task"],
            "method": first["method"],
            "grid_runs": len(frame),
            "eligible_runs": int(frame["eligible"].sum()),
        }
        if group in chosen.index:
            pick = chosen.loc[group]
            runs = seed_runs[group]
            record.update({k: pick[k] for k in keys})
            record.update(
                {
                    "point": int(pick["point"]),
                    "score": float(pick["score"]),
                    "seeds_finished": f"{sum(states.get(c.run_id) == RunState.FINISHED for c in runs)}/{len(runs)}",
                    "seed_run_ids": RUN_ID_SEPARATOR.join(c.run_id for c in runs),
                }
            )
        else:
            record.update({k: None for k in keys})
            record.update(
                {
                    "point": None,
                    "score": None,
                    "seeds_finished": "0/0",
                    "seed_run_ids": "no eligible grid run (all failed or diverged)",
                }
            )
        record["criterion"] = criterion.describe()
        records.append(record)
    return pd.DataFrame.from_records(records, columns=[*SELECTED_COLUMNS, *keys, *SELECTION_COLUMNS])


@dataclass(frozen=True)
class SweepSelection:
    """What a sweep selected, as its ``selected.csv`` says: ``table`` (one row per group), ``tuned`` (the grid
    keys: each group has its own values of them) and ``runs_of`` (per group with a selected point, the seed
    runs of that point)."""

    sweep_id: str
    path: Path
    table: pd.DataFrame
    tuned: tuple[str, ...]
    runs_of: dict[str, tuple[str, ...]]

    @property
    def run_ids(self) -> tuple[str, ...]:
        """The seed runs of every selected point, each once."""
        return tuple(dict.fromkeys(r for runs in self.runs_of.values() for r in runs))

    @property
    def unselected(self) -> list[str]:
        """The groups for which the sweep selected no grid point."""
        return [g for g in self.table["group"] if g not in self.runs_of]


def read_sweep_selection(store: RunStore, sweep: str) -> SweepSelection:
    """The :class:`SweepSelection` of sweep ``sweep`` in ``store``.  Raises :class:`ConfigError` naming the
    sweeps there when it has none of that id, and :class:`DamagedStoreError` naming the file when its
    ``selected.csv`` is not whole (:func:`_verify_selection`) or lacks groups of the sweep's grid
    (:func:`_verify_against_candidates`): a report of part of a selection would compare a silent subset of the
    runs.  Rerunning the sweep command rewrites it, training nothing that is finished."""
    path = store.sweep_dir(sweep) / "selected.csv"
    if not path.is_file():
        present = store.sweep_ids()
        raise ConfigError(
            f"--sweep {sweep}: no sweep of that id in {store.sweeps_dir}; "
            f"sweeps there: {', '.join(present) or 'none'}{did_you_mean(sweep, present)}"
        )
    table = _read_sweep_table(path, dtype={"seed_run_ids": str})
    header = list(table.columns)
    fixed, after = len(SELECTED_COLUMNS), len(SELECTION_COLUMNS)
    tuned = tuple(header[fixed:-after])
    if (tuple(header[:fixed]), tuple(header[-after:])) != (SELECTED_COLUMNS, SELECTION_COLUMNS) or not tuned:
        raise _damaged(
            path,
            f"expected the columns {', '.join(SELECTED_COLUMNS)}, the grid keys, "
            f"{', '.join(SELECTION_COLUMNS)}; found {', '.join(header)}",
        )
    runs_of = _verify_selection(path, table)
    _verify_against_candidates(path, table, runs_of)
    return SweepSelection(sweep, path, table, tuned, runs_of)


def _damaged(path: Path, problem: str) -> DamagedStoreError:
    """The one error for a sweep file that cannot be trusted: it names the file, what is wrong and the cure."""
    return DamagedStoreError(f"{path}: {problem}; rerun the sweep's command to rewrite it")


def _read_sweep_table(path: Path, **options: Any) -> pd.DataFrame:
    """The table ``run_sweep`` wrote to ``path``, or :func:`_damaged`.  ``to_csv`` ends every row with a line
    break, so a file that does not end with one was cut short, maybe inside a cell no other check can doubt."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise _damaged(path, f"cannot be read ({err})") from None
    if not data.endswith(b"\n"):
        raise _damaged(
            path, "ends inside a row (cut short: the sweep ends every row with a line break)" if data else "is empty"
        )
    try:
        return pd.read_csv(io.BytesIO(data), **options)
    except ValueError as err:
        raise _damaged(path, f"cannot be read ({err})") from None


def _whole(value: Any) -> int | None:
    """``value`` as a non-negative whole number (a CSV cell may read as float), or ``None``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() and number >= 0 else None


def _verify_selection(path: Path, table: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """Each selected group's seed runs, once every row of ``selected.csv`` is as :func:`_summary` writes it, else
    :func:`_damaged` naming the first row that is not: each cell but the grid keys' (a grid value may be null),
    ``point`` and ``score`` filled in (both empty exactly where no point was selected: ``seeds_finished`` 0/0),
    ``seeds_finished`` ``k/n`` with ``k <= n``, and as many distinct run ids as ``n``.  A row cut short has
    empty cells after the cut, and one cut inside its run ids fewer ids than its ``seeds_finished`` states."""
    required = (*SELECTED_COLUMNS, "seeds_finished", "seed_run_ids", "criterion")
    if table.empty:
        raise _damaged(path, "lists no group")
    if twice := sorted(set(table["group"][table["group"].duplicated()].dropna())):
        raise _damaged(path, f"lists {', '.join(twice)} more than once")
    runs_of: dict[str, tuple[str, ...]] = {}
    for number, row in enumerate(table.to_dict("records"), start=1):
        where = f"row {number} ({row['group']})" if pd.notna(row["group"]) else f"row {number}"
        if empty := [c for c in required if pd.isna(row[c]) or not str(row[c]).strip()]:
            raise _damaged(path, f"{where} has no {', '.join(empty)}")
        grid_runs, eligible = _whole(row["grid_runs"]), _whole(row["eligible_runs"])
        if not grid_runs or eligible is None or eligible > grid_runs:
            raise _damaged(path, f"{where}: grid_runs {row['grid_runs']}, eligible_runs {row['eligible_runs']}")
        done, _, of = str(row["seeds_finished"]).partition("/")
        finished, seeds = _whole(done), _whole(of)
        if finished is None or seeds is None or finished > seeds:
            raise _damaged(path, f"{where}: seeds_finished {row['seeds_finished']!r} is not k/n with k <= n")
        if pd.isna(row["point"]):
            if pd.notna(row["score"]) or seeds != 0:
                raise _damaged(path, f"{where}: no point selected, yet a score or seeds_finished other than 0/0")
            continue
        point = _whole(row["point"])
        if point is None or point >= grid_runs or pd.isna(row["score"]):
            raise _damaged(path, f"{where}: point {row['point']} of {grid_runs} grid points, score {row['score']}")
        runs = tuple(str(row["seed_run_ids"]).split(RUN_ID_SEPARATOR))
        if len(runs) != seeds or len(set(runs)) != len(runs) or not all(r.strip() for r in runs):
            raise _damaged(
                path, f"{where}: seeds_finished {row['seeds_finished']} but {len(runs)} run ids: {row['seed_run_ids']}"
            )
        runs_of[row["group"]] = runs
    return runs_of


def _verify_against_candidates(path: Path, table: pd.DataFrame, runs_of: dict[str, tuple[str, ...]]) -> None:
    """Raise :func:`_damaged` unless ``selected.csv`` at ``path`` has the groups its sweep's grid implies, as the
    ``candidates.csv`` beside it lists them (one row per group and grid point, written by every sweep):
    every group, each with its ``grid_runs`` and its first seed run the grid run of its point (the grid is
    trained at the first seed).  Rows cut off at a line break leave no trace in ``selected.csv`` alone."""
    beside = path.with_name("candidates.csv")
    if not beside.is_file():
        raise _damaged(beside, f"missing (every sweep writes it beside {path.name})")
    candidates = _read_sweep_table(beside, usecols=["group", "point", "run_id"])
    if candidates.isna().any().any() or not all(_whole(p) is not None for p in candidates["point"]):
        raise _damaged(beside, "a row without its group, point or run_id")
    grid = {
        group: dict(zip(frame["point"].astype(int), frame["run_id"])) for group, frame in candidates.groupby("group")
    }
    listed = set(table["group"])
    if missing := [g for g in grid if g not in listed]:
        raise _damaged(path, f"has no row for {', '.join(missing)}, a group of the sweep's grid in {beside}")
    if extra := sorted(listed - set(grid)):
        raise _damaged(path, f"lists {', '.join(extra)}, no group of the sweep's grid in {beside}")
    for row in table.itertuples():
        points = grid[row.group]
        if row.grid_runs != len(points):
            raise _damaged(path, f"{row.group}: grid_runs {row.grid_runs}, yet {beside} lists {len(points)}")
        if row.group in runs_of and points.get(int(row.point)) != runs_of[row.group][0]:
            raise _damaged(
                path, f"{row.group}: point {int(row.point)}'s first seed run is not that grid point's run in {beside}"
            )
