"""Seed planning before training: ``mtlens plan`` and ``mtlens study --dry-run`` (docs/statistics.md §9).

**Family sizes.** The report tests each of its tables as one Benjamini–Hochberg family
(:func:`~mtlens.report.study_report.report_families`: transfer, gap, optimization, probe differences,
correlations).  Before training, the sizes and the smallest attainable p-value of each family are read off
the report's own analyses run on a *synthetic* study of the planned design (:func:`planned_rows`: the
setting's tasks and metrics, STL per task and MTL per method for each seed, the quantities of the probes
it records, noise values): whatever the report's tables count as a comparison, the plan counts the same,
with no second definition of the families to keep in step.

**Spread.** With a stored pilot (or an earlier study), the seed spread of each comparison comes from the
stored runs through the report's loaders (:func:`stored_spread`,
:func:`~mtlens.analysis.planning.spread_table`), so the detectable effect is given in the metric's units.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mtlens.analysis.inference import detectable_effect
from mtlens.analysis.planning import POWER, RATIO, detectable_table, family_plan, seeds_needed, spread_table
from mtlens.analysis.transfer import TaskInfo
from mtlens.probes import PROBES
from mtlens.quantities import TASK_PAIR
from mtlens.render.tables import number
from mtlens.report.planning import difference_text, family_sizes
from mtlens.report.study_report import ReportData, report_families

MOST_SEEDS = 32
"""The most seeds :func:`planned_families` tries when looking for the fewest that allow a verdict."""


def planned_rows(
    setting: str,
    task_info: TaskInfo,
    methods: Sequence[str],
    n_seeds: int,
    checkpoints: int = 6,
    seed: int = 0,
    probes: Sequence[str] = (),
) -> pd.DataFrame:
    """Trajectory rows of a synthetic study of ``setting``: per seed ``0..n_seeds-1`` one STL run per task of
    ``task_info`` (keys ``(setting, task)``) and one MTL run per method, each with ``checkpoints``
    evaluations of ``train/``, ``val/`` and ``test/`` for ``loss`` and every metric of the task (the
    quantities a run of the trainer records), filled with noise around a falling training loss, and at each
    checkpoint the quantities the ``probes`` declare (:class:`~mtlens.probes.Probe`): a per-task quantity
    (``plotted_per_task``) one row per task, any other one row per task pair ``"a|b"`` of a run of two or
    more tasks (the conflict probe's pair rows; its per-run rows, keyed ``"*"``, are read per run whatever
    their key).  Only their shape matters: :func:`planned_families` counts the comparisons the report makes
    of them."""
    rng = np.random.default_rng(seed)
    tasks = [task for (name, task) in task_info if name == setting]
    metrics = {
        task: ["loss", *(m for m in task_info[(setting, task)]["lower_is_better"] if m != "loss")] for task in tasks
    }
    declared = [PROBES.get(name) for name in probes]
    runs = [("stl", "sum", [task]) for task in tasks] + [("mtl", method, tasks) for method in methods]
    records = []
    steps = np.arange(checkpoints)

    def noise() -> np.ndarray:
        return rng.standard_normal(checkpoints)

    for s in range(n_seeds):
        for mode, method, run_tasks in runs:
            run_id = f"{setting}-{mode}-{'-'.join(run_tasks) if mode == 'stl' else method}-s{s}"
            series = []
            for task in run_tasks:
                loss = np.exp(-0.5 * steps + 0.05 * noise())
                for split in ("train", "val", "test"):
                    for metric in metrics[task]:
                        base = loss if metric == "loss" else 0.2 + 0.1 * loss
                        value = base * (1.2 if split != "train" else 1.0) + 0.01 * noise()
                        series.append((task, f"{split}/{metric}", value))
            pairs = [TASK_PAIR.join(pair) for pair in itertools.combinations(run_tasks, 2)]
            for probe in declared:
                for quantity in probe.quantities:
                    keys = run_tasks if quantity in probe.plotted_per_task else pairs
                    series += [(key, quantity, noise()) for key in keys]
            records += [
                (run_id, setting, task, mode, method, s, int(k), float(k), quantity, float(v))
                for task, quantity, value in series
                for k, v in zip(steps, value, strict=True)
            ]
    columns = ["run_id", "setting", "task", "mode", "method", "seed", "step", "epoch", "quantity", "value"]
    return pd.DataFrame.from_records(records, columns=columns)


def planned_families(
    setting: str,
    task_info: TaskInfo,
    methods: Sequence[str],
    seeds: Sequence[int],
    alpha: float = 0.05,
    power: float = POWER,
    probes: Sequence[str] = (),
) -> pd.DataFrame:
    """:func:`~mtlens.analysis.planning.family_plan` of the report's families (:func:`family_sizes`) for a
    study of ``setting`` with ``methods`` recording ``probes`` at each number of seeds in ``seeds``, read from
    the report's analyses of :func:`planned_rows`; plus a column ``fewest_seeds``: per family, the fewest seeds
    at which a lone verdict is possible at all (``min_p <= alpha / comparisons``), found by bisection (``min_p``
    falls as seeds are added) from 2 up to the largest of ``seeds`` (doubled up to :data:`MOST_SEEDS` where none of
    ``seeds`` reaches; NaN if none does).  The sizes come from the planned study at one number of seeds
    (they do not change with it), the floors ``min_p`` at each number from a study of the first method
    alone (a floor is a property of one comparison's design)."""

    def sizes(n: int, methods: Sequence[str]) -> pd.DataFrame:
        rows = planned_rows(setting, task_info, methods, n, probes=probes)
        return family_sizes(report_families(ReportData(rows, task_info, alpha)))

    seeds = sorted(set(seeds))
    n_first = max(3, seeds[0])
    full = sizes(n_first, methods).set_index("family")
    comparisons = full["comparisons"]  # the same for any n >= 2
    floors: dict[int, pd.Series] = {}

    def min_p(n: int) -> pd.Series:
        """Each family's smallest attainable p at ``n`` seeds (a property of one row: one method suffices)."""
        if n not in floors:
            floors[n] = sizes(n, methods[:1]).set_index("family")["min_p"]
        return floors[n]

    def reaches(family: str, n: int) -> bool:
        return float(min_p(n).get(family, np.inf)) <= alpha / float(comparisons[family])

    families = pd.DataFrame(
        [
            {
                "family": family,
                "n_seeds": n,
                "comparisons": int(m),
                "min_p": float(min_p(n).get(family, np.nan)),
                # a correlation's units and clusters grow in proportion to the seeds, its centring groups
                # (setting, task) and strata (settings) do not
                "units": full.loc[family, "units"] * n / n_first,
                "clusters": full.loc[family, "clusters"] * n / n_first,
                "centres": full.loc[family, "centres"],
                "strata": full.loc[family, "strata"],
            }
            for n in seeds
            for family, m in comparisons.items()
        ]
    )
    plan = family_plan(families, alpha, power)
    fewest: dict[str, float] = {}
    for family in comparisons.index:
        tried = list(seeds)
        while not reaches(family, tried[-1]) and 2 * tried[-1] <= MOST_SEEDS:
            tried.append(2 * tried[-1])
        if not reaches(family, tried[-1]):
            fewest[family] = np.nan
            continue
        high = min(n for n in tried if reaches(family, n))
        low = max([1, *(n for n in tried if n < high)])  # min_p falls with n: no verdict below high
        while high - low > 1:  # invariant: no verdict at low (or low = 1), a verdict possible at high
            middle = (low + high) // 2
            high, low = (middle, low) if reaches(family, middle) else (high, middle)
        fewest[family] = high
    return plan.assign(fewest_seeds=plan["family"].map(fewest))


def stored_spread(data: ReportData) -> pd.DataFrame:
    """:func:`~mtlens.analysis.planning.spread_table` of a report's data: the transfer metric of each
    (setting, task, method), read from the selected checkpoints the transfer table reads, and the final
    log training-loss ratio of the optimization table."""
    return spread_table(data.selected, data.task_info, data.optimization)


def spread_sentences(table: pd.DataFrame, seeds: Sequence[int], effect: float | None = None) -> list[str]:
    """One sentence per row of a :func:`~mtlens.analysis.planning.detectable_table`: the difference each
    number of seeds detects with 80% power, and the seeds ``seeds_for_effect`` that ``effect`` needs."""
    sentences = []
    for row in table.to_dict("records"):
        who = f"MTL ({row['method']}) vs STL" if row["method"] else "MTL vs STL (from the STL seed spread)"
        found = ", ".join(f"{difference_text(row[f'detectable_n{n}'], row['quantity'])} at {n} seeds" for n in seeds)
        if row["sd"] == 0:
            found = "they do not vary, so no detectable difference can be planned from them"
        elif not np.isfinite(float(row["sd"])):
            found = "too few runs to estimate the seed spread (2 seeds with both modes, or 2 runs of each, needed)"
        over = f"over {row['n_seeds']} seeds, {row['source']}" if pd.notna(row["n_seeds"]) else "given"
        sentence = (
            f"{row['setting']}, task {row['task']}, {who}, {row['quantity']} (sd of the differences "
            f"{number(row['sd'], 2)} {over}): {found}"
        )
        if "seeds_for_effect" in row and row["quantity"] != RATIO and float(row["sd"]) > 0:
            needed = row["seeds_for_effect"]
            sentence += f"; {difference_text(float(effect or np.nan), row['quantity'])} needs " + (
                f"{int(needed)} seeds" if pd.notna(needed) else "more than 200 seeds"
            )
        sentences.append(sentence + ".")
    return sentences


def family_sentences(plan: pd.DataFrame, alpha: float) -> list[str]:
    """The plan of each family (:func:`planned_families`) in words: its size and lone level, the fewest
    seeds any verdict needs and what binds there, and the detectable ``d_z`` at each number of seeds."""
    sentences = []
    for family, rows in plan.groupby("family", sort=False):
        first = rows.iloc[0]
        m, lone = int(first["comparisons"]), float(first["lone_level"])
        fewest = first["fewest_seeds"]
        if pd.isna(fewest):
            need = f"no lone verdict is possible with up to {MOST_SEEDS} seeds"
        elif pd.notna(first["clusters"]):
            need = (
                f"any verdict needs {int(fewest)} seeds (the smallest p-value of permuting whole seeds, "
                f"1 / (number of permutations), reaches alpha / m only from there)"
            )
        elif int(fewest) == 2:
            d2 = detectable_effect(2, lone, POWER)
            need = (
                f"any verdict needs 2 seeds (its p-value's floor, {number(float(rows['min_p'].max()), 2)}, does not "
                f"fall with the seeds and is below alpha / m; df = n − 1 >= 1 for its interval), and power binds: "
                f"at 2 seeds a lone effect must be d_z = {number(d2, 3)}"
            )
        else:
            need = (
                f"any verdict needs {int(fewest)} seeds (its smallest attainable p-value reaches "
                f"alpha / m only from there)"
            )
        if pd.notna(first["clusters"]):
            found = ", ".join(
                f"{number(r['r_lone_units'], 2)} to {number(r['r_lone_clusters'], 2)} at {int(r['n_seeds'])}"
                if r["can_reach"]
                else f"none at {int(r['n_seeds'])}"
                for r in rows.to_dict("records")
            )
            sentences.append(
                f"{family}: {m} comparisons (Pearson's and Spearman's p-values each one BH family at FDR "
                f"{alpha:g}), so a lone correlation must reach p <= {number(lone, 2)}; {need}. Detectable with 80% "
                f"power (Fisher's z; |r| of the units centred within each task): a lone correlation of {found} "
                f"seeds (the first if a seed's units were independent, the second if they moved as one)."
            )
            continue
        found = ", ".join(
            f"{number(r['d_z_lone'], 3)} at {int(r['n_seeds'])}" if r["can_reach"] else f"none at {int(r['n_seeds'])}"
            for r in rows.to_dict("records")
        )
        every = ", ".join(f"{number(r['d_z_all'], 3)} at {int(r['n_seeds'])}" for r in rows.to_dict("records"))
        approximate = " by the one-level test" if pd.isna(fewest) or int(fewest) > 2 else ""  # a permutation floor
        sentences.append(
            f"{family}: {m} comparisons, one BH family at FDR {alpha:g}, so a lone effect must reach "
            f"p <= {number(lone, 2)}; {need}. Detectable with 80% power{approximate} (d_z, seed-sd of the per-seed "
            f"differences): a lone effect {found} seeds; an effect in every row {every} seeds."
        )
    return sentences


def effect_sentences(plan: pd.DataFrame, effect: float, alpha: float) -> list[str]:
    """``--effect`` without a spread: per family of differences, the seeds a lone effect of ``d_z = effect``
    needs, :func:`~mtlens.analysis.planning.seeds_needed` at ``alpha / m``, and never fewer than the family's
    ``fewest_seeds``: below them its smallest attainable p-value (the sign flips' ``2 / 2^n`` for the gap band)
    cannot reach ``alpha / m``, whatever the effect.  For such a family the ``d_z`` is the one-level test's (the
    band's max-|t| test has less power), as :func:`family_sentences` says."""
    sentences = []
    for family, rows in plan[plan["clusters"].isna()].groupby("family", sort=False):
        first = rows.iloc[0]
        fewest = first["fewest_seeds"]
        if pd.isna(fewest):
            sentences.append(
                f"{family}: no lone verdict is possible with up to {MOST_SEEDS} seeds, whatever the effect."
            )
            continue
        n = seeds_needed(effect, alpha / int(first["comparisons"]))
        floor = int(fewest) > 2  # a p-value floor that falls with the seeds: the band's sign flips
        needed = f"{max(n, int(fewest))} seeds" if n is not None else "more than 200 seeds"
        if floor and n is not None:
            needed = (
                f"at least {needed} (no verdict below {int(fewest)}; the count is the one-level test's, and the "
                f"band's max-|t| test has less power)"
            )
        sentences.append(f"{family}: a lone effect of d_z = {effect:g} needs {needed}.")
    return sentences


def plan_report(
    setting: str,
    task_info: TaskInfo,
    methods: Sequence[str],
    seeds: Sequence[int],
    alpha: float,
    spread: pd.DataFrame | None = None,
    effect: float | None = None,
    probes: Sequence[str] = (),
) -> tuple[list[str], pd.DataFrame, pd.DataFrame | None]:
    """``(sentences, family plan, detectable table)`` of ``mtlens plan`` and ``mtlens study --dry-run``:
    :func:`planned_families` of a study recording ``probes`` in words and, with a ``spread``
    (:func:`stored_spread` of a pilot, or a given sd), its :func:`~mtlens.analysis.planning.detectable_table`
    at the planned transfer family's size (the optimization family's for the log training-loss ratio) with
    ``effect`` in the quantity's units (``--effect`` without a spread: in ``d_z``, per family of differences)."""
    plan = planned_families(setting, task_info, methods, seeds, alpha, probes=probes)
    sentences = family_sentences(plan, alpha)
    if spread is None or spread.empty:
        if effect is not None:
            sentences += effect_sentences(plan, effect, alpha)
        return sentences, plan, None
    sizes = plan.drop_duplicates("family").set_index("family")["comparisons"]
    frames = []
    for quantity_is_ratio, rows in spread.groupby(spread["quantity"] == RATIO, sort=False):
        m = int(sizes.get("optimization" if quantity_is_ratio else "transfer", 1))
        wanted = None if quantity_is_ratio else effect  # --effect is in the transfer metric's units
        frames.append(detectable_table(rows, m, alpha, sorted(set(seeds)), wanted).assign(comparisons=m))
    table = pd.concat(frames, ignore_index=True)
    return sentences + spread_sentences(table, sorted(set(seeds)), effect), plan, table
