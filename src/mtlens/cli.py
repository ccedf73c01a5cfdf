"""The command line: ``mtlens study | sweep | calibrate | runs | report | export | settings | data``.

Every command validates its whole input before training or writing anything; a bad flag, config
key, file or unknown name exits with status 2 and one line on stderr naming the flag, key or file
and the valid choices, with the nearest valid name suggested.  Each flag is declared once, as a
:class:`Flag` in :data:`COMMANDS`, with the constraint its value meets (a pydantic annotation such
as :data:`~mtlens.registry.SeedCount`, a run-config field's own declaration, a directory, a file,
a list of distinct names) and the flags it does not combine with (:func:`check_combinations`: a value
is never silently dropped for another); the parser, ``--help`` and the generated bad-input test
(``tests/test_param_validation.py``) are all built from those declarations.  Config keys and
registered entries' options are checked by :func:`mtlens.training.config.parse_config` against
their annotations.  User plugins (``--plugin MODULE``, ``$MTLENS_PLUGINS``, the ``mtlens.plugins``
entry points; :mod:`mtlens.plugins`) are loaded before anything is parsed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal, NoReturn, get_args, get_origin, get_type_hints

from mtlens.errors import ConfigError, MtlensError
from mtlens.registry import PositiveCount, PositiveNumber, Probability, Seed, SeedCount, annotated, did_you_mean

DEFAULT_STORE = "runs/mtlens"


def _parse_value(text: str, source: str) -> Any:
    """``key=value`` values are YAML: ``3`` -> int, ``1e-3`` -> float, ``same`` -> str, ``[1e-3, 1]`` -> list;
    malformed YAML raises :class:`ConfigError` naming ``source`` (the flag and key)."""
    from mtlens.training.config import load_yaml_text

    return _numbers(load_yaml_text(text, source))


def _numbers(value: Any) -> Any:
    """``value`` with strings that are numbers as floats, in lists too (YAML 1.1 reads "1e-3" as a string)."""
    if isinstance(value, list):
        return [_numbers(item) for item in value]
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _pairs(items: Sequence[str], flag: str, repeat: bool = False) -> dict[str, Any]:
    """``KEY=VALUE`` items as ``{key: YAML value}``; a key given twice is an error unless ``repeat``
    (then the last value is kept; ``--where`` collects repeated keys itself)."""
    out = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ConfigError(f"{flag} expects key=value, got {item!r}")
        if key.strip() in out and not repeat:
            raise ConfigError(f"{flag} {key.strip()}: given twice")
        out[key.strip()] = _parse_value(value, f"{flag} {item}")
    return out


def base_config(args: argparse.Namespace) -> dict[str, Any]:
    """The raw run config of ``study``, ``sweep``, ``calibrate`` and ``plan``: the ``--config`` file, then
    explicit flags on top (a command without some of these flags: those left out).  The positional SETTING
    is the setting: ``--set setting=...`` and a ``--config`` file naming another setting are refused, not
    silently replaced or followed; so is a ``--set`` key that a flag given on the same line sets (``--epochs 2
    --set epochs=1``, ``--option`` and ``--set setting_options=...``): one of the two values would be dropped."""
    from mtlens.training.config import load_yaml_file, refuse_owned_keys

    raw: dict[str, Any] = {}
    config_file = getattr(args, "config", None)
    if config_file:
        loaded = load_yaml_file(config_file, "--config") or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"--config {config_file}: expected a mapping of config keys, got {type(loaded).__name__}")
        if loaded.get("setting", args.setting) != args.setting:
            raise ConfigError(
                f"--config {config_file}: setting: {loaded['setting']!r}, but the SETTING argument is "
                f"{args.setting!r}; remove setting from the file (the command line names the setting)"
            )
        raw.update(loaded)
    raw["setting"] = args.setting
    flagged: dict[str, str] = {}  # config key -> the flag given for it
    for flag in RUN_CONFIG_FLAGS:  # each run-config flag sets the key it is declared for
        if isinstance(flag.constraint, Declared) and flag.constraint.owner == RUN_CONFIG:
            value = getattr(args, flag.dest, None)
            if value is not None:
                raw[flag.constraint.field] = value
                flagged[flag.constraint.field] = f"{flag.name} {value}"
    if args.option:
        flagged["setting_options"] = "--option"
        if not isinstance(raw.get("setting_options", {}), dict):
            raise ConfigError(
                f"setting_options: expected a mapping of option names to values, got {raw['setting_options']!r}"
            )
        raw["setting_options"] = {**raw.get("setting_options", {}), **_pairs(args.option, "--option")}
    if args.set:
        given = _pairs(args.set, "--set")
        refuse_owned_keys(given, ["setting"], f"the SETTING argument ({args.setting})", "--set")
        twice = sorted(set(given) & set(flagged))
        if twice:
            raise ConfigError(
                f"--set {', '.join(twice)}: also given as {', '.join(flagged[key] for key in twice)}; "
                "give each value once (flag or --set)"
            )
        raw.update(given)
    return raw


def cmd_study(args: argparse.Namespace) -> int:
    from mtlens.orchestration.executors import run_configs
    from mtlens.orchestration.study import study_configs
    from mtlens.store import RunState, RunStore

    if args.experiment:
        return _study_experiment(args)
    seeds = _seeds(args, 3)
    methods = args.methods or ["sum"]
    configs = study_configs(base_config(args), seeds, methods)  # validates everything first
    if args.dry_run:
        return _dry_run(args, configs, seeds, methods)
    store = RunStore(args.store)
    print(
        f"study {args.setting}: {len(configs)} runs ({len(seeds)} seeds; methods {', '.join(methods)}) "
        f"-> store {store.root}",
        file=sys.stderr,
    )
    with contextlib.ExitStack() as stack:
        executor = _local_workers(args, stack, configs[0].device)
        results = run_configs(configs, store, progress=not args.quiet, executor=executor)
    _summarize(results)
    if args.report:
        _write_report(store, args.report, settings=[args.setting], methods=methods)
    return _exit_status(results, (RunState.FAILED, RunState.DIVERGED))


def _local_workers(args: argparse.Namespace, stack: contextlib.ExitStack, device: str) -> Any:
    """``--workers N`` of ``study`` and ``calibrate``: a local executor of N worker processes (``make_executor``),
    entered on ``stack``; ``None`` without the flag (the runs train in this process, on the path they took before
    the flag)."""
    from mtlens.orchestration.backends import make_executor

    return None if args.workers is None else stack.enter_context(make_executor("local", args.workers, device=device))


def _seeds(args: argparse.Namespace, default: int) -> list[int]:
    """``--seed-list``, else the seeds ``0..N-1`` of ``--seeds N`` (``default`` when neither is given; both
    together are refused by their declarations, :func:`check_combinations`)."""
    return list(range(default if args.seeds is None else args.seeds)) if args.seed_list is None else args.seed_list


def _dry_run(args: argparse.Namespace, configs: Sequence[Any], seeds: Sequence[int], methods: Sequence[str]) -> int:
    """``mtlens study ... --dry-run``: the runs the study would train (those not finished in ``--store`` yet)
    and its seed plan (:func:`_print_plan`: at its number of seeds and twice as many; the seed spread from
    ``--store`` where it holds runs of the setting); nothing is trained or written."""
    from mtlens.store import RunState, RunStore

    store = RunStore(args.store)
    index = store.runs() if Path(args.store).is_dir() else None
    finished = set() if index is None or index.empty else set(index.loc[index["state"] == RunState.FINISHED, "run_id"])
    todo = [c for c in configs if c.run_id not in finished]
    print(
        f"dry run of study {args.setting}: {len(configs)} runs ({len(seeds)} seeds; methods {', '.join(methods)}), "
        f"{len(todo)} to train, {len(configs) - len(todo)} already finished in {store.root}; nothing is written"
    )
    for config in todo:
        print(f"  {config.run_id}")
    raw = base_config(args)
    pilot = args.store if index is not None and (index["setting"] == args.setting).any() else None
    _print_plan(raw, methods, sorted({len(seeds), 2 * len(seeds)}), 0.05, pilot)  # the report's default FDR
    return 0


def _summarize(results: Any) -> None:
    from mtlens.store import RunState

    summary = results["state"].value_counts().to_dict()
    print(f"runs: {json.dumps(summary)}", file=sys.stderr)
    for row in results[results["state"] != RunState.FINISHED].itertuples():
        print(f"  {row.run_id}: {row.state} {row.message.splitlines()[0] if row.message else ''}", file=sys.stderr)


def _exit_status(results: Any, problem_states: Sequence[str]) -> int:
    """1, naming the runs, if any run ended in one of ``problem_states`` or not at all; 0 otherwise."""
    from mtlens.store import RunState

    bad = results[
        results["state"].isin(problem_states) | ~results["state"].isin([RunState.FINISHED, RunState.DIVERGED])
    ]
    if bad.empty:
        return 0
    print(
        f"mtlens: {len(bad)} of {len(results)} runs did not finish: "
        + ", ".join(f"{r.run_id} ({r.state})" for r in bad.itertuples()),
        file=sys.stderr,
    )
    return 1


def _write_report(store: Any, out: str, include_unfinished: bool = False, **selection: Any) -> None:
    """Write the report and say on stderr which runs it left out (or analysed although unfinished)."""
    from mtlens.report.study_report import write_report

    path = write_report(
        store, out, include_unfinished=include_unfinished, log=lambda line: print(line, file=sys.stderr), **selection
    )
    print(f"report: {path}")


def _study_experiment(args: argparse.Namespace) -> int:
    """``mtlens study SETTING --experiment NAME``: the runs of one experiment (:mod:`mtlens.experiments`);
    ``--experiment-option KEY=VALUE`` (and ``--methods``, as the option ``methods``) are the experiment's
    options, checked against the options it declares.  Diverged runs are results of an experiment (e.g.
    SGD at a large loss scale): only failed and untrained runs make the exit status non-zero."""
    from mtlens.experiments import EXPERIMENT_SEEDS, experiment_plan, run_experiment
    from mtlens.store import RunState, RunStore

    seeds = _seeds(args, EXPERIMENT_SEEDS)
    options = _pairs(args.experiment_option or [], "--experiment-option")
    if args.methods:
        if "methods" in options:
            raise ConfigError(
                f"--experiment-option methods: also given as --methods {','.join(args.methods)}; give it once"
            )
        options["methods"] = args.methods
    plan = experiment_plan(args.experiment, base_config(args), seeds, **options)  # validates everything first
    store = RunStore(args.store)
    print(
        f"experiment {args.experiment} on {args.setting}: {len(plan.configs)} runs ({len(seeds)} seeds) "
        f"-> store {store.root}",
        file=sys.stderr,
    )
    with contextlib.ExitStack() as stack:  # without --workers: in this process (run_configs' default)
        executor = _local_workers(args, stack, plan.configs[0].device)
        results = run_experiment(plan, store, progress=not args.quiet, executor=executor)
    _summarize(results)
    if args.report:
        _write_report(store, args.report, settings=[args.setting])
    return _exit_status(results, (RunState.FAILED,))


def cmd_calibrate(args: argparse.Namespace) -> int:
    import pandas as pd

    from mtlens.orchestration.calibrate import run_calibration
    from mtlens.store import RunStore

    seeds = _seeds(args, 12)
    store = RunStore(args.store)
    base = base_config(args)
    try:
        with contextlib.ExitStack() as stack:
            result = run_calibration(
                base,
                seeds,
                store,
                args.splits,
                args.alpha,
                progress=not args.quiet,
                log=lambda line: print(line, file=sys.stderr),
                executor=_local_workers(args, stack, base.get("device") or "cpu"),
            )
    except MtlensError as err:
        if isinstance(err, ConfigError):
            raise
        print(f"mtlens calibrate: {err}", file=sys.stderr)
        return 1
    table_format = {"float_format": lambda v: f"{v:.3g}", "index": False}
    half = len(seeds) // 2
    print(
        f"A/A false-positive rates at alpha = {args.alpha:g} ({result.comparisons['split'].nunique()} splits "
        f"of {half} vs {half} STL seeds, no MTL effect; 95% Clopper-Pearson intervals):"
    )
    with pd_options():
        print(result.rates.to_string(**table_format))
        if (result.rates["min_p"] > args.alpha).any():
            print(f"min_p > {args.alpha:g}: with {half} seeds per side such a test can never reject.")
        if len(result.power):
            sizes = ", ".join(f"{t} {q} {v:+.3g}" for (t, q), v in sorted(result.effect.items()))
            print(
                f"\npositive control: per task, the median minimum detectable difference of the paired tests "
                f"spiked into the 'MTL' seeds ({sizes}); rate = detection rate (nominal power 80% paired):"
            )
            print(result.power.drop(columns=["false_positives", "min_detectable"]).to_string(**table_format))
    if args.out:
        from mtlens.store import atomic_write_text

        comparisons = pd.concat(
            [result.comparisons.assign(kind="A/A"), result.detections.assign(kind="positive control")],
            ignore_index=True,
        )
        atomic_write_text(args.out, comparisons.to_csv(index=False))  # a kill leaves the previous file whole
        print(f"comparisons: {args.out}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from mtlens.orchestration.backends import make_executor
    from mtlens.orchestration.grid import load_grid
    from mtlens.orchestration.selection import SelectionCriterion
    from mtlens.orchestration.sweep import run_sweep
    from mtlens.store import RunStore

    seeds = _seeds(args, 3)
    methods = args.methods
    base = base_config(args)
    criterion = SelectionCriterion(metric=args.select_metric, at=args.select_at, combine=args.combine)
    executor = make_executor(args.backend, args.workers, args.address, base.get("device") or "cpu", args.gpus_per_run)
    store = RunStore(args.store)
    result = run_sweep(base, load_grid(args.grid), store, methods, seeds, criterion, executor, progress=not args.quiet)
    with pd_options():
        print(result.selected.drop(columns=["seed_run_ids", "criterion"]).to_string(index=False))
        print(f"selection: {criterion.describe()}")
    print(f"tables: {result.directory}")
    if args.report:
        _write_report(store, args.report, sweep=result.sweep_id)
    else:
        command = f"mtlens report --store {shlex.quote(str(store.root))} --sweep {result.sweep_id}"
        print(f"the selected runs' report: {command}")
    return _sweep_status(result)


def _sweep_status(result: Any) -> int:
    """List the sweep's failed and diverged runs on stderr; 1, naming them, if a run failed or a group has
    no selected grid point (all its grid runs failed or diverged, or none has a finite score) or a seed run of a
    selected point diverged (the sweep could not give the seeds asked for), 0 otherwise.  A diverged grid run
    alone is a result of the sweep (a learning rate too large), not a failure: it is never selected."""
    from mtlens.store import RunState

    problems = result.problems
    for row in problems.itertuples():
        print(f"  {row.run_id} ({row.phase}): {row.state} {row.message}".rstrip(), file=sys.stderr)
    failed = problems[problems["state"] != RunState.DIVERGED]
    unselected = result.selected.loc[result.selected["point"].isna(), "group"].tolist()
    finished = set(result.candidates.loc[result.candidates["state"] == RunState.FINISHED, "group"])
    parts = []
    if len(failed):
        parts.append(f"{len(failed)} runs failed: " + ", ".join(f"{r.run_id} ({r.phase})" for r in failed.itertuples()))
    if unscored := [g for g in unselected if g in finished]:
        parts.append(
            f"no grid point selected for {', '.join(unscored)}: its finished grid runs have no finite score (with "
            "--combine relative a task whose selected STL score is 0, or that has no selected STL run, leaves the "
            "relative improvement undefined: use --combine mean)"
        )
    if unrun := [g for g in unselected if g not in finished]:
        parts.append(f"no grid point selected for {', '.join(unrun)} (every grid run failed or diverged)")
    seeds_diverged = problems[(problems["state"] == RunState.DIVERGED) & (problems["phase"] == "seeds")]
    if len(seeds_diverged):  # the selected configuration did not train on every seed asked for
        parts.append(
            f"{len(seeds_diverged)} seed runs of a selected grid point diverged: " + ", ".join(seeds_diverged["run_id"])
        )
    if not parts:
        return 0
    retry = "; rerun the same command to retry the failed runs" if len(failed) else ""
    print(f"mtlens sweep: {'; '.join(parts)}{retry}", file=sys.stderr)
    return 1


def pd_options() -> Any:
    import pandas as pd

    return pd.option_context("display.width", 200, "display.max_colwidth", 80)


def cmd_runs(args: argparse.Namespace) -> int:
    from mtlens.store import RunState, RunStore

    store = RunStore(args.store)
    if args.check:
        return _check_store(store)
    index = store.runs()
    if index.empty:
        print(f"no runs in {args.store}")
        return 0
    if args.state:
        index = index[index["state"] == args.state]
    columns = [
        "run_id",
        "setting",
        "mode",
        "method",
        "seed",
        "optimizer",
        "lr",
        "batch_size",
        "epochs",
        "state",
        "last_step",
    ]
    print(index.reindex(columns=columns).to_string(index=False))
    if sweeps := store.sweep_ids():
        print(f"sweeps (mtlens report --sweep ID reports one's selected runs): {', '.join(sweeps)}")
    damaged = index[index["state"] == RunState.DAMAGED]
    for row in damaged.itertuples():
        print(f"{row.run_id}: {row.message}", file=sys.stderr)
    return 0


def _check_store(store: Any) -> int:
    """``mtlens runs --check``: read every file of the store; 1 and the list of problems if any."""
    problems = store.check()
    runs = len(store.run_ids())
    if problems.empty:
        print(f"{store.root}: {runs} runs, every file readable, no leftover temporary files")
        return 0
    for row in problems.itertuples():
        print(f"{row.path}: {row.problem}")
    print(
        f"{store.root}: {len(problems)} problems in {problems['run_id'].replace('', None).nunique()} of {runs} "
        f"runs (and outside runs); rerun the study or sweep: it rebuilds a damaged status.json from its "
        "trajectory's end record where that verifies, and retrains what else is damaged",
        file=sys.stderr,
    )
    return 1


def cmd_report(args: argparse.Namespace) -> int:
    from mtlens.store import RunStore

    where: dict[str, list[Any]] = {}
    for item in args.where or []:
        for key, value in _pairs([item], "--where", repeat=True).items():
            where.setdefault(key, []).append(value)
    _write_report(
        RunStore(args.store),
        args.out,
        include_unfinished=args.include_unfinished,
        settings=args.setting or [],
        methods=args.methods or [],
        alpha=args.alpha,
        where=where,
        formats=args.formats or [],
        sweep=args.sweep,
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``mtlens export --to mlflow|tensorboard``: every run of the store into a tracker
    (:mod:`mtlens.integrations.mlflow`, :mod:`mtlens.integrations.tensorboard`); 1, naming them, if runs were
    skipped (damaged, or two series of one name)."""
    from mtlens.store import RunState, RunStore

    if args.to == "tensorboard" and not args.logdir:
        raise ConfigError("--logdir: required with --to tensorboard (the directory `tensorboard --logdir` reads)")
    store = RunStore(args.store)
    if not store.run_ids():
        raise MtlensError(f"no runs in {args.store}: nothing to export")
    log = None if args.quiet else lambda line: print(line, file=sys.stderr)
    if args.to == "mlflow":
        from mtlens.integrations.mlflow import DEFAULT_EXPERIMENT, export_mlflow

        experiment = args.experiment or DEFAULT_EXPERIMENT
        where = f"mlflow experiment {experiment!r}"
        export = lambda: export_mlflow(store, args.tracking_uri, experiment, log=log)  # noqa: E731
    else:
        from mtlens.integrations.tensorboard import export_tensorboard

        where = f"tensorboard logdir {args.logdir}"
        export = lambda: export_tensorboard(store, args.logdir, log=log)  # noqa: E731
    idle = 0
    while True:
        results = export()
        actions: dict[str, int] = {}
        for result in results:
            actions[result.action] = actions.get(result.action, 0) + 1
        print(f"exported {len(results)} runs to {where}: " + ", ".join(f"{n} {a}" for a, n in sorted(actions.items())))
        if args.follow is None:
            break
        # --follow: until no run has been running for two rounds in a row (a study between two runs has none)
        idle = 0 if store.runs()["state"].isin([RunState.RUNNING, RunState.PENDING]).any() else idle + 1
        if idle >= 2:
            break
        time.sleep(args.follow)
    skipped = [r for r in results if r.action == "skipped"]
    for result in skipped:
        print(f"mtlens export: {result.run_id} not exported: {result.message}", file=sys.stderr)
    return 1 if skipped else 0


def cmd_plan(args: argparse.Namespace) -> int:
    """``mtlens plan SETTING``: the seed plan of a study of the setting's tasks with ``--methods``
    (:func:`_print_plan`); nothing is trained or written."""
    raw = base_config(args)  # as study builds it: --set setting=... refused the same way
    _print_plan(raw, args.methods, sorted(set(args.seeds)), args.alpha, args.store, args.sd, args.effect)
    return 0


def _print_plan(
    raw: dict[str, Any],
    methods: Sequence[str] | None,
    seeds: Sequence[int],
    alpha: float,
    store: str | None = None,
    sd: float | None = None,
    effect: float | None = None,
) -> None:
    """Print the seed plan (:func:`mtlens.report.planning.plan_report`) of a study with the raw run config
    ``raw`` (setting and its options, the ``probes`` its runs record) and ``methods`` (default: ``store``'s MTL
    methods, else sum) at each number of ``seeds``; the setting's tasks from ``store``'s runs of it, else from
    the registry; the seed spread from the runs of ``store`` (read only) or a given ``sd`` of the per-seed
    differences of the transfer metric.  The raw config is validated as ``study`` validates it, by the same
    code (:func:`~mtlens.orchestration.study.study_configs` for one seed, once the methods are known); a
    setting known only from ``store``'s runs, whose plugin is not loaded, has only its ``probes`` checked."""
    import pandas as pd

    from mtlens.aggregators import METHODS
    from mtlens.orchestration.study import study_configs
    from mtlens.probes import DEFAULT_PROBES
    from mtlens.report.study_plan import plan_report, stored_spread
    from mtlens.settings import SETTINGS
    from mtlens.training.config import load_configured_setting, parse_config, parse_probes
    from mtlens.training.handle import task_info

    for method in methods or []:
        METHODS.get(method)  # an unknown one: one line naming the valid methods
    registered = raw["setting"] in SETTINGS
    probes = parse_probes(raw.get("probes", list(DEFAULT_PROBES)))
    spread, info = None, {}
    if store is not None:  # the pilot's runs: their task info (a user's own setting too) and seed spread
        from mtlens.report.study_report import report_data, selected_runs
        from mtlens.store import RunState, RunStore

        pilot = RunStore(store)
        present = sorted(pilot.runs().get("setting", pd.Series(dtype=str)).dropna().astype(str).unique())
        if raw["setting"] not in present:
            raise ConfigError(
                f"--store {store}: no runs of setting {raw['setting']!r}{did_you_mean(raw['setting'], present)}; "
                f"settings present: {', '.join(present) or 'none'}"
            )
        selection = selected_runs(pilot, settings=[raw["setting"]])
        damaged = selection.left_out[selection.left_out["state"] == RunState.DAMAGED]
        for row in damaged.itertuples():  # named as the report names them: the spread is of the other runs
            print(f"plan: left out run {row.run_id} of --store {store}: {row.message}", file=sys.stderr)
        data = report_data(pilot, selection, alpha)
        spread = stored_spread(data)
        info = {key: value for key, value in pilot.task_info().items() if key[0] == raw["setting"]}
        methods = methods or sorted(data.rows.loc[data.rows["mode"] == "mtl", "method"].unique())
    methods = methods or ["sum"]
    setting = None
    if registered or not info:  # an unregistered setting fails here, naming the registered ones
        setting = load_configured_setting(parse_config({**raw, "method_options": {}}))
        probes = study_configs(raw, [0], methods, setting)[0].probes  # everything the study would refuse
    if not info:
        assert setting is not None
        info = {(setting.name, task): value for task, value in task_info(setting.tasks).items()}
    if sd is not None:
        spread = pd.DataFrame(
            [{"setting": raw["setting"], "task": "any", "method": "", "quantity": "the transfer metric"}]
        ).assign(n_seeds=pd.NA, source="--sd", sd=sd)
    name, tasks = raw["setting"], [task for _, task in info]
    sentences, plan, table = plan_report(name, info, methods, seeds, alpha, spread, effect, probes)
    print(
        f"seed plan: {name} (tasks {', '.join(tasks)}), MTL methods {', '.join(methods)}, probes "
        f"{', '.join(probes) or 'none'}, FDR {alpha:g} per family, power 80% (docs/statistics.md section 9)"
    )
    print("\n".join(sentences))
    with pd_options():
        columns = ["family", "comparisons", "n_seeds", "min_p", "lone_level", "can_reach", "d_z_lone", "d_z_all"]
        columns += ["r_lone_units", "r_lone_clusters"] if plan["clusters"].notna().any() else []
        print(plan[columns].to_string(index=False, float_format="{:.3g}".format))
        if table is not None:
            print(table.to_string(index=False, float_format="{:.3g}".format))


def cmd_settings(args: argparse.Namespace) -> int:
    from mtlens.settings import SETTINGS, available_settings, data_status, setting_factory

    del args
    for name in available_settings():
        doc = (setting_factory(name).__doc__ or "").strip().splitlines()[0].replace("``", "")
        data = data_status(name)
        state = "missing" if any(d.state == "missing" for d in data) else "/".join(sorted({d.state for d in data}))
        print(f"{name:16s} {state:10s} {doc}\n{'':16s} options: {SETTINGS.describe_options(name) or 'none'}")
        for entry in data:
            print(f"{'':16s} data: {entry.dataset}: {entry.detail}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from mtlens.data.registry import download_dataset, status_table

    if args.data_command == "status":
        print(status_table())
    else:
        path = download_dataset(args.name, log=lambda line: print(line, file=sys.stderr))
        print(f"{args.name}: present in {path}")
    return 0


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr and exit 2, like every other
    input error (``mtlens CMD --help`` shows the usage), with the nearest valid name suggested."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}{self._suggestion(message)}\n")

    def parse_command(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        """``parse_args``, but arguments no parser recognized are reported by the (sub-)command they were
        given to (:func:`_command_parser`), so that its hint names that command's own flags only."""
        args, extras = self.parse_known_args(argv)
        if extras:
            _command_parser(self, args).error(f"unrecognized arguments: {' '.join(extras)}")
        return args

    def _suggestion(self, message: str) -> str:
        """`` (did you mean ...?)`` for an unknown command or choice; for an unrecognized flag, the nearest
        of this parser's own flags (each once), else the list of its flags."""
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            return did_you_mean(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
        unknown = re.search(r"unrecognized arguments: (.*)", message)
        if unknown:
            flags = [f for f in self._option_string_actions if f.startswith("--")]
            given = dict.fromkeys(t.split("=")[0] for t in unknown.group(1).split() if t[:1] == "-")
            hints = "".join(did_you_mean(flag, flags) for flag in given)
            return hints or f"; the flags of {self.prog} are: {', '.join(sorted(flags))}"
        return ""


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub-)command that ``args`` chose below ``parser`` (``parser`` if none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = getattr(args, action.dest, None)
            if chosen in action.choices:
                return _command_parser(action.choices[chosen], args)
    return parser


# -- what a flag's value must be: each constraint parses the text and says what is wrong (argparse turns
# -- an ArgumentTypeError into "argument --flag: <message>", one line, exit 2); ``invalid`` is an example
# -- value that breaks it, which tests/test_param_validation.py feeds every flag.


def _validated(annotation: Any, text: str) -> Any:
    """``text`` read as a value of the pydantic ``annotation`` (lax: ``"3"`` is an int; no inf or NaN)."""
    from pydantic import ConfigDict, TypeAdapter, ValidationError

    try:
        return TypeAdapter(annotation, config=ConfigDict(allow_inf_nan=False)).validate_python(text)
    except ValidationError as err:
        reason = "; ".join(item["msg"] for item in err.errors())
        hint = did_you_mean(text, [str(choice) for choice in _choices(annotation)])
        raise argparse.ArgumentTypeError(f"invalid value {text!r}{hint}: {reason}") from None


def _choices(annotation: Any) -> tuple[Any, ...]:
    """The values of a ``Literal`` or an ``Enum`` (``()`` for other annotations)."""
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return tuple(member.value for member in annotation)
    return ()


def _violation(annotation: Any) -> str:
    """A text that breaks ``annotation``'s declared bound (``Interval``, ``Gt``, ...), else one that is no number."""
    for bound in get_args(annotation)[1:]:
        for attribute, outside in (("gt", 0), ("ge", -1), ("lt", 0), ("le", 1)):
            value = getattr(bound, attribute, None)
            if value is not None:
                return str(value + outside)
    return "nan" if get_args(annotation)[:1] == (float,) else "abc"


@dataclass(frozen=True)
class Typed:
    """A value of a pydantic annotation declared here (``SeedCount``, ``Probability``, ``Literal[...]``)."""

    annotation: Any

    def __call__(self, text: str) -> Any:
        return _validated(self.annotation, text)

    @property
    def choices(self) -> tuple[Any, ...] | None:
        return _choices(self.annotation) or None

    @property
    def invalid(self) -> str:
        return "nosuch" if self.choices else _violation(self.annotation)


@dataclass(frozen=True)
class Declared:
    """A value of a field declared elsewhere (``"mtlens.training.config:RunConfig"``, ``"lr"``), or of a type
    declared elsewhere (an ``Enum``, ``field=""``): that declaration is the one statement of what the flag
    accepts; imported when the flag is used, so that ``--help`` stays light."""

    owner: str
    field: str
    invalid: str

    def annotation(self) -> Any:
        module, name = self.owner.split(":")
        owner = getattr(importlib.import_module(module), name)
        if not self.field:
            return owner
        if hasattr(owner, "model_fields"):  # a pydantic model: the constraints are the field's metadata
            field = owner.model_fields[self.field]
            return annotated(field.annotation, field.metadata)
        return get_type_hints(owner, include_extras=True)[self.field]

    def __call__(self, text: str) -> Any:
        return _validated(self.annotation(), text)

    choices = None


@dataclass(frozen=True)
class Name:
    """A registered name of ``kind`` (setting, dataset, experiment): looked up, with the valid names and the
    nearest one, when the command builds its configs, before anything runs or is written.  ``registry``
    (``"module:ATTRIBUTE"`` of its :class:`~mtlens.registry.Registry`, optional) lets the flag's help list the
    registered names as ``%(registered)s`` (:class:`_RegisteredNames`)."""

    kind: str
    invalid: str = "nosuch"
    registry: str = ""
    choices = None

    def __call__(self, text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"expected a {self.kind} name, got {text!r}")
        return text


@dataclass(frozen=True)
class Names:
    """Comma-separated names, at least one and none twice (``sum,pcgrad``); each checked where it is used
    (registered methods when configs are built; present in the store for ``report``)."""

    example: str
    invalid: str = ","
    choices = None

    def __call__(self, text: str) -> list[str]:
        items = [part.strip() for part in text.split(",") if part.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected comma-separated values such as {self.example}, got {text!r}")
        twice = sorted({item for item in items if items.count(item) > 1})
        if twice:
            raise argparse.ArgumentTypeError(f"{', '.join(twice)} given twice in {text!r}")
        return items


@dataclass(frozen=True)
class KeyValue:
    """``KEY=VALUE`` with a non-empty key; VALUE is YAML, read by the command (:func:`_pairs`)."""

    invalid: str = "novalue"
    choices = None

    def __call__(self, text: str) -> str:
        key, equals, _ = text.partition("=")
        if not equals or not key.strip():
            raise argparse.ArgumentTypeError(f"expects key=value, got {text!r}")
        return text


@dataclass(frozen=True)
class InputFile:
    """A file that exists and is not a directory (its content is checked when it is read, before anything runs)."""

    invalid: str = "{tmp}/nothing.yaml"
    choices = None

    def __call__(self, text: str) -> str:
        path = Path(text)
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: is a directory; expected a file")
        if not path.is_file():
            raise argparse.ArgumentTypeError(f"{text}: no such file")
        return text


def _writable_parent(text: str, path: Path) -> Path:
    """The nearest existing directory at or above ``path``, checked to be a directory this process can create
    files in (by creating and deleting a temporary file, so that a refused command leaves nothing behind)."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        where = "is a file" if existing == path else f"is inside {existing}, which is a file"
        raise argparse.ArgumentTypeError(f"{text} {where}; give a directory (existing or new)")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise argparse.ArgumentTypeError(
            f"cannot write in {existing} ({err.strerror or err}); give a directory you can write to"
        ) from None
    return existing


@dataclass(frozen=True)
class Directory:
    """A directory: one to write in (existing or new, ``writable``; kept out of run stores by
    :func:`check_outputs`) or an existing one to read (a store whose path does not exist is an error, not an
    empty store)."""

    writable: bool
    invalid: str = "{tmp}/afile"
    choices = None

    @property
    def writes(self) -> bool:
        """Whether the command writes under it (:func:`check_outputs`)."""
        return self.writable

    def __call__(self, text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"expected a directory, got {text!r}")
        path = Path(text)
        if self.writable:
            _writable_parent(text, path)
        elif not path.exists():
            raise argparse.ArgumentTypeError(f"{text}: no such directory")
        elif not path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a file; give a directory")
        return text


@dataclass(frozen=True)
class OutputFile:
    """A file to write: not a directory, in a directory that exists or can be created and is writable
    (checked up front, not after the work that produces it)."""

    invalid: str = "{tmp}/adir"
    choices = None
    writes = True
    """The command writes it (:func:`check_outputs`)."""

    def __call__(self, text: str) -> str:
        path = Path(text)
        if not text.strip() or path.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} is a directory; give a file name")
        _writable_parent(text, path.parent)
        return text


def check_combinations(args: argparse.Namespace, flags: Sequence[Flag]) -> None:
    """Refuse flags given together that their :class:`Flag` declarations say do not combine (``excludes``,
    ``only_with``), with a :class:`ConfigError` naming both: neither value is silently dropped."""
    values = {flag.name: getattr(args, flag.dest, None) for flag in flags}
    given = {name: value for name, value in values.items() if value is not None and value is not False}

    def shown(name: str) -> str:
        value = given[name]
        text = " ".join(map(str, value)) if isinstance(value, list) else str(value)
        return name if value is True else f"{name} {text}"

    for flag in flags:
        if flag.name not in given:
            continue
        for other in flag.excludes:
            if other in given:
                raise ConfigError(f"{shown(flag.name)}: not with {shown(other)}; give one of {flag.name} and {other}")
        name, _, value = flag.only_with.partition("=")
        if name and (name not in given or (value and str(given[name]) != value)):
            but = f", not {shown(name)}" if name in given else ""
            raise ConfigError(f"{shown(flag.name)}: only with {name}{f' {value}' if value else ''}{but}")


def check_outputs(args: argparse.Namespace, flags: Sequence[Flag]) -> None:
    """Refuse a path the command would write that is a run store's root or lies inside one, with a
    :class:`ConfigError` naming the flag and the store: written there, a report's ``figures/`` read as damaged
    runs and a CSV replaced ``store.json``.  The one statement of that rule, for every flag whose constraint
    ``writes`` (:class:`Directory` ``writable``, :class:`OutputFile`), checked after parsing and before anything
    is written or trained.  A store is one on disk (:func:`~mtlens.store.enclosing_store`: ``store.json`` or a
    stored run, looked for up to the filesystem root) or the command's own ``--store``, created yet or not.  A
    directory that holds a store (a store root's parent) is fine: what a command writes there lies beside the
    store.  ``--store`` may be a store's root, but not lie inside another store (its runs would be that store's
    damaged ones)."""
    from mtlens.store import enclosing_store

    own = Path(args.store).resolve() if getattr(args, "store", None) else None
    for flag in flags:
        value = getattr(args, flag.dest, None)
        if value is None or not getattr(flag.constraint, "writes", False):
            continue
        path = Path(value).resolve()
        if flag.dest == "store":
            store = enclosing_store(path.parent)
        else:
            store = enclosing_store(path) or (own if own is not None and own in (path, *path.parents) else None)
        if store is not None:
            where = "is" if store == path else "is inside"
            raise ConfigError(
                f"{flag.name} {value}: {where} the run store {store}; write outputs outside run stores "
                "(beside one is fine)"
            )


Constraint = Typed | Declared | Name | Names | KeyValue | InputFile | Directory | OutputFile


@dataclass(frozen=True)
class Flag:
    """One argument of a command, declared once: its name (``--flag`` or a positional name), the constraint its
    value meets (``None``: a switch), help, default, ``many`` (``"+"``: one or more values, none twice;
    ``"append"``: repeatable), and how it combines with the command's other flags: ``excludes``, flags it
    may not be given with (each would drop the other's value), and ``only_with``, the flag (``"--experiment"``)
    or flag value (``"--to=mlflow"``) without which it means nothing (:func:`check_combinations`).  A flag
    named in either has no default, so that given is told from left out.  The parser and
    tests/test_param_validation.py are both built from these."""

    name: str
    constraint: Constraint | None
    help: str | None = None
    default: Any = None
    many: Literal["", "+", "append"] = ""
    metavar: str | None = None
    required: bool = False
    excludes: tuple[str, ...] = ()
    only_with: str = ""

    @property
    def dest(self) -> str:
        """The attribute of the parsed arguments that holds the value."""
        return self.name.lstrip("-").replace("-", "_")

    @property
    def invalid(self) -> str:
        """A value that breaks the constraint (a switch: ``--flag=1``, which a switch does not take)."""
        return f"{self.name}=1" if self.constraint is None else self.constraint.invalid

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        if self.constraint is None:
            parser.add_argument(self.name, action="store_true", help=self.help)
            return
        kwargs: dict[str, Any] = {"type": self.constraint, "help": self.help, "metavar": self.metavar}
        if self.constraint.choices:
            kwargs.update(choices=self.constraint.choices, metavar=None)
        if self.name.startswith("-"):
            kwargs.update(default=self.default, required=self.required)
        if self.many == "+":
            kwargs.update(nargs="+", action=_Distinct)
        elif self.many == "append":
            kwargs["action"] = "append"
        action = parser.add_argument(self.name, **kwargs)
        if isinstance(self.constraint, Name) and self.constraint.registry:
            action.registered = _RegisteredNames(self.constraint.registry)  # type: ignore[attr-defined]


class _RegisteredNames:
    """The names registered in the :class:`~mtlens.registry.Registry` at ``path`` (``"module:ATTRIBUTE"``),
    read only when a help text is formatted (argparse's ``%(registered)s`` calls ``str``): building the
    parser imports nothing, and the help names every entry, built-in or a ``--plugin``'s, and no other."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __str__(self) -> str:
        module, attribute = self.path.split(":")
        return ", ".join(getattr(importlib.import_module(module), attribute).names())


class _Distinct(argparse.Action):
    """Store the list of values, refusing one given twice (``--seed-list 0 0``)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: Any = None) -> None:
        twice = sorted({str(v) for v in values if list(values).count(v) > 1})
        if twice:
            parser.error(f"argument {'/'.join(self.option_strings)}: {', '.join(twice)} given twice")
        setattr(namespace, self.dest, values)


RUN_CONFIG = "mtlens.training.config:RunConfig"

SET = Flag("--set", KeyValue(), "any other run-config key (repeatable)", many="append", metavar="KEY=VALUE")
"""A run-config key by hand (``probes=[fisher,conflict]``): ``study``'s runs, ``plan``'s planned study."""

RUN_CONFIG_FLAGS = [
    Flag("--config", InputFile(), "YAML file with run-config keys (flags override it)"),
    Flag("--optimizer", Declared(RUN_CONFIG, "optimizer", "adamw"), "adam (default) or sgd"),
    Flag("--lr", Declared(RUN_CONFIG, "lr", "-1"), "learning rate > 0 (default: the setting's)"),
    Flag(
        "--momentum",
        Declared(RUN_CONFIG, "momentum", "1"),
        "SGD momentum in [0, 1) (default 0; only with --optimizer sgd)",
    ),
    Flag("--batch-size", Declared(RUN_CONFIG, "batch_size", "0"), "batch size (default: the setting's)"),
    Flag("--epochs", Declared(RUN_CONFIG, "epochs", "0"), "epochs (default: the setting's)"),
    Flag(
        "--eval-every-steps",
        Declared(RUN_CONFIG, "eval_every_steps", "0"),
        "also evaluate every N steps (default: epoch ends only)",
    ),
    Flag(
        "--eval-dense-until-epoch",
        Declared(RUN_CONFIG, "eval_dense_until_epoch", "nan"),
        "evaluate every --eval-every-steps only up to this epoch (dense early)",
    ),
    Flag("--device", Declared(RUN_CONFIG, "device", "[cpu]"), "cpu (default), cuda or cuda:N"),
    Flag(
        "--threads",
        Declared(RUN_CONFIG, "threads", "0"),
        "torch threads per run (default 1; results differ in the last bits between counts, "
        "so a run resumes only under the count it started with)",
    ),
    Flag(
        "--pack-size",
        Declared(RUN_CONFIG, "pack_size", "0"),
        "train up to N compatible runs together as one torch.func pack (default 1: each run on its own; "
        "only sum/mean runs of models without batch norm or dropout pack; see the README, Executors)",
    ),
    Flag("--option", KeyValue(), "a setting option (repeatable)", many="append", metavar="KEY=VALUE"),
    SET,
]
"""The run-config flags shared by ``study``, ``sweep`` and ``calibrate`` (read by :func:`base_config`); each
value is checked against its key's declaration in :class:`~mtlens.training.config.RunConfig`."""

SETTING = Flag("setting", Name("setting"), "setting name (see mtlens settings)")
SEED_LIST = Flag(
    "--seed-list", Typed(Seed), "explicit seeds instead of --seeds (distinct)", many="+", excludes=("--seeds",)
)
QUIET = Flag("--quiet", None, "no progress bars")
LOCAL_WORKERS = Flag(
    "--workers",
    Typed(PositiveCount),
    "local worker processes that train the runs (without it, or 1: in this process; a run's results do not depend "
    "on it)",
)
"""``--workers`` of ``study`` and ``calibrate`` (:func:`_local_workers`); the sweep's own also covers Ray."""


PLUGIN = Flag(
    "--plugin",
    Name("plugin module", invalid="nosuch_plugin_module"),
    "import this module (or .py file) first, so the settings, methods, probes, datasets and experiments "
    "it registers can be named (repeatable; also $MTLENS_PLUGINS, comma-separated, and the 'mtlens.plugins' "
    "entry points of installed packages)",
    argparse.SUPPRESS,
    many="append",
    metavar="MODULE",
)
"""Accepted by every command and sub-command, anywhere on the line; :func:`main` reads it before parsing
(:func:`_plugin_args`) and loads the modules (an unknown module is one line, exit 2)."""

COMMON_FLAGS = [PLUGIN]
"""Flags of the ``mtlens`` parser itself and of every command and sub-command."""


def _store(must_exist: bool = False) -> Flag:
    what = "run store directory (must exist)" if must_exist else "run store directory"
    return Flag("--store", Directory(writable=not must_exist), f"{what} (default {DEFAULT_STORE})", DEFAULT_STORE)


COMMANDS: dict[str, tuple[str, list[Flag]]] = {
    "study": (
        "train STL per task and MTL per method over seeds, then report",
        [
            SETTING,
            Flag("--seeds", Typed(SeedCount), "number of seeds 0..N-1 (default 3; 2 with --experiment)"),
            SEED_LIST,
            Flag(
                "--methods",
                Names("sum,pcgrad"),
                "comma-separated MTL methods (default: sum; with --experiment: the experiment's option "
                "'methods', if it has one)",
            ),
            Flag(
                "--experiment",
                Name("experiment", registry="mtlens.experiments.base:EXPERIMENTS"),
                "run one registered experiment instead of the STL-vs-MTL study: %(registered)s "
                "(docs/assumptions.md, docs/grouping.md; a user's own is registered by its --plugin module)",
            ),
            Flag(
                "--experiment-option",
                KeyValue(),
                "an option of the experiment (repeatable), e.g. scales=[1e-3,1e3] or scaled_task=b",
                many="append",
                metavar="KEY=VALUE",
                only_with="--experiment",
            ),
            LOCAL_WORKERS,
            *RUN_CONFIG_FLAGS,
            _store(),
            Flag("--report", Directory(writable=True), "write the report to this directory when done"),
            Flag(
                "--dry-run",
                None,
                "print the runs the study would train and its seed plan (as mtlens plan; the seed spread from "
                "--store's runs of the setting, if any), then stop: nothing is trained or written",
                excludes=("--experiment",),
            ),
            QUIET,
        ],
    ),
    "sweep": (
        "sweep a hyperparameter grid, select by validation, train the seeds",
        [
            SETTING,
            Flag(
                "--grid",
                InputFile(),
                "YAML file mapping config keys to value lists (default: the paper's lr x batch size)",
            ),
            Flag("--methods", Names("sum,pcgrad"), "comma-separated MTL methods (default: sum)", ["sum"]),
            Flag("--seeds", Typed(SeedCount), "number of seeds 0..N-1 (default 3); the grid uses the first"),
            SEED_LIST,
            Flag(
                "--select-metric",
                Name("validation metric"),
                "validation metric to select by (default: each task's selection metric)",
            ),
            Flag(
                "--select-at",
                Declared("mtlens.orchestration.selection:SelectionCriterion", "at", "middle"),
                "score a run at its best validation checkpoint (best, default) or at its final step (final)",
                "best",
            ),
            Flag(
                "--combine",
                Declared("mtlens.orchestration.selection:SelectionCriterion", "combine", "median"),
                "MTL: mean oriented metric over tasks (mean, default) or mean relative improvement over STL (relative)",
                "mean",
            ),
            *RUN_CONFIG_FLAGS,
            Flag("--backend", Typed(Literal["local", "ray"]), "executor (default local)", "local"),
            Flag(
                "--workers",
                Typed(PositiveCount),
                "local: worker processes (default: one per core; 1 = in-process); ray: CPUs of a local Ray instance",
            ),
            Flag(
                "--address",
                Name("Ray cluster address"),
                "ray: address of an existing cluster (default: start a local instance)",
            ),
            Flag(
                "--gpus-per-run",
                Typed(PositiveNumber),
                "ray with --device cuda: GPUs per run (default 1; 0.25 = four runs per GPU). The local backend "
                "with --device cuda runs its --workers on the GPU(s) (worker i on cuda:i %% n_gpus)",
            ),
            _store(),
            Flag(
                "--report",
                Directory(writable=True),
                "write the report of the selected runs to this directory when done (as mtlens report --sweep)",
            ),
            QUIET,
        ],
    ),
    "calibrate": (
        "A/A check of the report's tests: train STL seeds, split them, print each test's false-positive rate "
        "(docs/statistics.md)",
        [
            SETTING,
            Flag(
                "--seeds",
                Typed(SeedCount),
                "STL seeds 0..N-1 per task (default 12: 6 vs 6, the fewest pairs that can reach 5%%)",
            ),
            SEED_LIST,
            Flag("--splits", Typed(PositiveCount), "A/A splits of the seeds (default 25)", 25),
            Flag("--alpha", Typed(Probability), "test level (default 0.05)", 0.05),
            Flag("--out", OutputFile(), "also write every comparison (split, test, p-value) to this CSV"),
            LOCAL_WORKERS,
            *RUN_CONFIG_FLAGS,
            _store(),
            QUIET,
        ],
    ),
    "plan": (
        "before training: the seeds a study's comparisons need and the effects they detect (docs/statistics.md)",
        [
            SETTING,
            Flag("--option", KeyValue(), "a setting option (repeatable)", many="append", metavar="KEY=VALUE"),
            Flag(
                "--methods",
                Names("sum,pcgrad"),
                "comma-separated MTL methods compared with STL (default: --store's methods for the setting, else sum)",
            ),
            Flag(
                "--seeds", Typed(SeedCount), "numbers of seeds to compare (default 4 6 8 12 16)", [4, 6, 8, 12, 16], "+"
            ),
            Flag("--alpha", Typed(Probability), "FDR of each family (default 0.05)", 0.05),
            Flag(
                "--store",
                Directory(writable=False),
                "a pilot (or earlier study) whose runs of the setting give the seed sd of each comparison, so "
                "that detectable effects are in the metric's units (read only)",
            ),
            Flag(
                "--sd",
                Typed(PositiveNumber),
                "instead of --store: the sd of the per-seed MTL - STL differences of the transfer metric",
                excludes=("--store",),
            ),
            Flag(
                "--effect",
                Typed(PositiveNumber),
                "also give the seeds this effect needs: in the transfer metric's units with --store or --sd "
                "(0.02 = 2 error points), else in seed-sd units (d_z)",
            ),
            SET,
        ],
    ),
    "runs": (
        "list the runs in a store",
        [
            _store(must_exist=True),
            Flag(
                "--state",
                Declared("mtlens.store.run_store:RunState", "", "fnished"),
                "only runs in this state: running, finished, diverged, failed, interrupted ('running' but no "
                "process holds its lock), pending or damaged (mtlens.store.RunState)",
            ),
            Flag(
                "--check",
                None,
                "read every file of the store; list damaged files and leftover temporary files; exit 1 if any",
            ),
        ],
    ),
    "report": (
        "write the HTML report of the runs in a store",
        [
            _store(must_exist=True),
            Flag("--out", Directory(writable=True), "report directory (default reports/mtlens)", "reports/mtlens"),
            Flag("--setting", Names("digits_pair"), "comma-separated settings to include (default: all)"),
            Flag("--methods", Names("sum,pcgrad"), "comma-separated MTL methods to include (default: all)"),
            Flag(
                "--where",
                KeyValue(),
                "keep runs whose run-index column KEY (setting, method, optimizer, lr, seed, state, ...) "
                "equals VALUE; repeatable, repeated keys match any of their values",
                many="append",
                metavar="KEY=VALUE",
            ),
            Flag(
                "--include-unfinished",
                None,
                "also analyse the rows recorded so far by running, interrupted and failed runs "
                "(default: finished runs only; diverged and damaged runs never)",
            ),
            Flag(
                "--alpha",
                Typed(Probability),
                "false discovery rate of each family of tests (gap, transfer, correlations; default 0.05)",
                0.05,
            ),
            Flag(
                "--formats",
                Names("png,svg"),
                "also write static copies of every figure to figures/ in these formats "
                "(comma-separated: png, pdf, svg), rendered offline from the same Vega-Lite specs; pdf also prints "
                "the whole report to report.pdf with headless Chromium",
            ),
            Flag(
                "--sweep",
                Name("sweep id"),
                "only the runs this sweep of the store selected (its id: the folder name in STORE/sweeps/), each MTL "
                "method's selected runs compared with its tasks' selected STL runs whatever their swept values",
            ),
        ],
    ),
    "export": (
        "export every run (config, state, metrics, probe curves) to a tracker",
        [
            _store(must_exist=True),
            Flag(
                "--to",
                Typed(Literal["mlflow", "tensorboard"]),
                "the tracker (pip install 'mtlens[mlflow]' or 'mtlens[tensorboard]')",
                required=True,
            ),
            Flag(
                "--tracking-uri",
                Name("MLflow tracking URI", invalid=""),
                "where the tracker keeps runs: sqlite:///PATH/mlflow.db (a local file, no server) or "
                "http://HOST:PORT (a running mlflow server); default: $MLFLOW_TRACKING_URI, else "
                "sqlite:///mlflow.db here",
                only_with="--to=mlflow",
            ),
            Flag(
                "--experiment",
                Name("MLflow experiment", invalid=""),
                "the MLflow experiment (default mtlens; created if missing)",
                only_with="--to=mlflow",
            ),
            Flag(
                "--logdir",
                Directory(writable=True),
                "tensorboard: the directory to write one run directory per run",
                only_with="--to=tensorboard",
            ),
            Flag(
                "--follow",
                Typed(PositiveNumber),
                "export again every SECONDS while runs are training (a live view of a study or a recorded loop; "
                "each round adds the rows written since, at the runs' checkpoints), until no run is running",
                metavar="SECONDS",
            ),
            Flag("--quiet", None, "no line per run"),
        ],
    ),
    "settings": ("list the registered settings, their options and whether their data is there", []),
}
"""Every command but ``data`` (which has sub-commands): its help line and its flags, in the order of ``--help``."""

DATA_COMMANDS: dict[str, tuple[str, list[Flag]]] = {
    "status": ("list every registered dataset: present/missing, size, path", []),
    "download": (
        "download and verify an openly downloadable dataset",
        [Flag("name", Name("dataset"), "dataset name (see mtlens data status)")],
    ),
}

HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "study": cmd_study,
    "sweep": cmd_sweep,
    "calibrate": cmd_calibrate,
    "plan": cmd_plan,
    "runs": cmd_runs,
    "report": cmd_report,
    "export": cmd_export,
    "settings": cmd_settings,
    "data": cmd_data,
}

DESCRIPTION = """mtlens: single-task vs multi-task training studies, their optimization trajectories and transfer
statistics.

Every command checks its whole input before training or writing anything: a bad flag, config key, file
or unknown name exits with status 2 and one line on stderr naming it and the valid choices.
Run mtlens COMMAND --help for a command's flags."""


def build_parser() -> _Parser:
    """The ``mtlens`` parser, built from :data:`COMMANDS` and :data:`DATA_COMMANDS` (plain-text help)."""
    parser = _Parser(prog="mtlens", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag in COMMON_FLAGS:
        flag.add_to(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for name, (help_line, flags) in COMMANDS.items():
        command = sub.add_parser(name, help=help_line, description=help_line)
        for flag in [*flags, *COMMON_FLAGS]:
            flag.add_to(command)
        command.set_defaults(func=HANDLERS[name])
    data = sub.add_parser(
        "data", help="datasets: where they live, whether present, download them", description="datasets"
    )
    for flag in COMMON_FLAGS:
        flag.add_to(data)
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    for name, (help_line, flags) in DATA_COMMANDS.items():
        command = data_sub.add_parser(name, help=help_line, description=help_line)
        for flag in [*flags, *COMMON_FLAGS]:
            flag.add_to(command)
    data.set_defaults(func=HANDLERS["data"])
    return parser


def _plugin_args(argv: Sequence[str] | None) -> list[str]:
    """The ``--plugin`` values of ``argv`` (default ``sys.argv[1:]``), found before the full parse."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--plugin", action="append", default=[])
    known, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return list(known.plugin)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mtlens`` command; user errors exit 2 with one clear message.  User plugins
    (:func:`mtlens.plugins.load_plugins`) are loaded first, so that every name they register is known."""
    from mtlens.plugins import PluginError, load_plugins

    try:
        load_plugins(_plugin_args(argv))
    except PluginError as err:
        print(f"mtlens: error: {err}", file=sys.stderr)
        return 2
    try:
        args = build_parser().parse_command(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2, its one line already on stderr)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        flags = COMMANDS.get(args.command, ("", []))[1]
        check_combinations(args, flags)
        check_outputs(args, flags)
        return args.func(args)
    except (MtlensError, FileNotFoundError) as err:
        message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        print(f"mtlens {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # Ctrl-C: one line (RunsInterrupted names the runs to resume), no traceback
        print(f"mtlens {args.command}: {str(err) or 'interrupted; rerun the same command to go on'}", file=sys.stderr)
        return 130


__all__ = [
    "COMMANDS",
    "COMMON_FLAGS",
    "DATA_COMMANDS",
    "Flag",
    "base_config",
    "build_parser",
    "check_combinations",
    "check_outputs",
    "main",
]

if __name__ == "__main__":
    sys.exit(main())
