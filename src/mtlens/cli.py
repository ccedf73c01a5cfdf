"""The command line: ``mtlens study | sweep | runs | report | settings | data``.

Every command validates its whole input before training or writing anything; a bad flag, config
key, file or unknown name exits with status 2 and one line on stderr naming the flag, key or file
and the valid choices (flags are checked by their ``type=`` while parsing, config keys by
:func:`mtlens.training.config.parse_config`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from mtlens.errors import ConfigError, MtlensError

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


def _pairs(items: Sequence[str], flag: str) -> dict[str, Any]:
    out = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ConfigError(f"{flag} expects key=value, got {item!r}")
        out[key.strip()] = _parse_value(value, f"{flag} {item}")
    return out


def base_config(args: argparse.Namespace) -> dict[str, Any]:
    """The raw run config of ``study``: the ``--config`` file, then explicit flags on top."""
    from mtlens.training.config import load_yaml_file

    raw: dict[str, Any] = {}
    if args.config:
        loaded = load_yaml_file(args.config, "--config") or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"--config {args.config}: expected a mapping of config keys, got {type(loaded).__name__}")
        raw.update(loaded)
    raw["setting"] = args.setting
    flags = {
        "optimizer": args.optimizer,
        "lr": args.lr,
        "momentum": args.momentum,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "eval_every_steps": args.eval_every_steps,
        "eval_dense_until_epoch": args.eval_dense_until_epoch,
        "device": args.device,
        "threads": args.threads,
        "pack_size": args.pack_size,
    }
    raw.update({k: v for k, v in flags.items() if v is not None})
    if args.option:
        if not isinstance(raw.get("setting_options", {}), dict):
            raise ConfigError(
                f"setting_options: expected a mapping of option names to values, got {raw['setting_options']!r}"
            )
        raw["setting_options"] = {**raw.get("setting_options", {}), **_pairs(args.option, "--option")}
    if args.set:
        raw.update(_pairs(args.set, "--set"))
    return raw


def cmd_study(args: argparse.Namespace) -> int:
    from mtlens.orchestration.executors import run_configs
    from mtlens.orchestration.study import study_configs
    from mtlens.store import RunStore

    if args.experiment:
        return _study_experiment(args)
    if args.experiment_option:
        raise ConfigError("--experiment-option: only with --experiment")
    seeds = list(range(3 if args.seeds is None else args.seeds)) if args.seed_list is None else args.seed_list
    methods = [m for m in (args.methods or "sum").split(",") if m]
    configs = study_configs(base_config(args), seeds, methods)  # validates everything first
    store = RunStore(args.store)
    print(
        f"study {args.setting}: {len(configs)} runs ({len(seeds)} seeds; methods {', '.join(methods)}) "
        f"-> store {store.root}",
        file=sys.stderr,
    )
    results = run_configs(configs, store, progress=not args.quiet)
    _summarize(results)
    if args.report:
        _write_report(store, args.report, settings=[args.setting], methods=methods)
    return _exit_status(results, ("failed", "diverged"))


def _summarize(results: Any) -> None:
    summary = results["state"].value_counts().to_dict()
    print(f"runs: {json.dumps(summary)}", file=sys.stderr)
    for row in results[results["state"] != "finished"].itertuples():
        print(f"  {row.run_id}: {row.state} {row.message.splitlines()[0] if row.message else ''}", file=sys.stderr)


def _exit_status(results: Any, problem_states: Sequence[str]) -> int:
    """1, naming the runs, if any run ended in one of ``problem_states`` or not at all; 0 otherwise."""
    bad = results[results["state"].isin(problem_states) | ~results["state"].isin(["finished", "diverged"])]
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
    from mtlens.store import RunStore

    if args.seed_list is None:
        seeds = list(range(EXPERIMENT_SEEDS if args.seeds is None else args.seeds))
    else:
        seeds = args.seed_list
    options = _pairs(args.experiment_option or [], "--experiment-option")
    if args.methods:
        options["methods"] = [m for m in args.methods.split(",") if m]
    plan = experiment_plan(args.experiment, base_config(args), seeds, **options)  # validates everything first
    store = RunStore(args.store)
    print(
        f"experiment {args.experiment} on {args.setting}: {len(plan.configs)} runs ({len(seeds)} seeds) "
        f"-> store {store.root}",
        file=sys.stderr,
    )
    results = run_experiment(plan, store, progress=not args.quiet)
    _summarize(results)
    if args.report:
        _write_report(store, args.report, settings=[args.setting])
    return _exit_status(results, ("failed",))


def cmd_calibrate(args: argparse.Namespace) -> int:
    import pandas as pd

    from mtlens.orchestration.calibrate import run_calibration
    from mtlens.store import RunStore

    seeds = list(range(args.seeds)) if args.seed_list is None else args.seed_list
    store = RunStore(args.store)
    try:
        result = run_calibration(
            base_config(args),
            seeds,
            store,
            args.splits,
            args.alpha,
            progress=not args.quiet,
            log=lambda line: print(line, file=sys.stderr),
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
            sizes = ", ".join(f"{q} {v:+.3g}" for q, v in result.effect.items())
            print(
                f"\npositive control: the median minimum detectable difference spiked into the 'MTL' seeds "
                f"({sizes}); rate = detection rate (nominal power 80%, paired):"
            )
            print(result.power.drop(columns=["false_positives", "min_detectable"]).to_string(**table_format))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pd.concat(
            [result.comparisons.assign(kind="A/A"), result.detections.assign(kind="positive control")],
            ignore_index=True,
        ).to_csv(args.out, index=False)
        print(f"comparisons: {args.out}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from mtlens.analysis.planning import plan_summary, seed_plan

    comparisons = args.tasks * args.methods
    plan = seed_plan(comparisons, args.alpha, sorted(set(args.seeds)), args.sd)
    need = plan_summary(comparisons, args.alpha)
    print(
        f"{comparisons} transfer comparisons ({args.tasks} tasks x {args.methods} methods), one Benjamini-Hochberg "
        f"family at FDR {args.alpha:g}: a lone effect must reach p <= {args.alpha / comparisons:.3g}.\n"
        f"Seeds any verdict needs: paired t tests (transfer, optimization, probe differences) {need['t_any']}; "
        f"the gap's sign-flip band {need['sign_flip']} (2/2^n <= {args.alpha / comparisons:.3g}); "
        f"a correlation permuting seeds {need['correlation']} (1/G! <= {args.alpha:g}).\n"
        f"A lone effect of d_z = 1 is found with 80% power from {need['for_d_z_1']} seeds, d_z = 0.5 from "
        f"{need['for_d_z_0.5']}.  Detectable effects (80% power) per number of seeds"
        + (f" (difference = d_z x sd {args.sd:g} of the per-seed differences):" if args.sd else ":")
    )
    with pd_options():
        columns = ["n_seeds", "d_z_lone", "d_z_all"] + (["difference_lone", "difference_all"] if args.sd else [])
        print(
            plan[columns + ["sign_flip_min_p", "sign_flip_can_reach"]].to_string(
                index=False, float_format="{:.3g}".format
            )
        )
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from mtlens.orchestration.backends import make_executor
    from mtlens.orchestration.grid import load_grid
    from mtlens.orchestration.selection import SelectionCriterion
    from mtlens.orchestration.sweep import run_sweep
    from mtlens.store import RunStore

    seeds = list(range(args.seeds)) if args.seed_list is None else args.seed_list
    methods = [m for m in args.methods.split(",") if m]
    base = base_config(args)
    criterion = SelectionCriterion(metric=args.select_metric, at=args.select_at, combine=args.combine)
    executor = make_executor(args.backend, args.workers, args.address, base.get("device") or "cpu", args.gpus_per_run)
    store = RunStore(args.store)
    result = run_sweep(base, load_grid(args.grid), store, methods, seeds, criterion, executor, progress=not args.quiet)
    with pd_options():
        print(result.selected.drop(columns=["seed_run_ids", "criterion"]).to_string(index=False))
        print(f"selection: {criterion.describe()}")
        if len(result.problems):
            print("failed or diverged runs:")
            print(result.problems[["run_id", "phase", "state", "message"]].to_string(index=False))
    print(f"tables: {result.directory}")
    return 0


def pd_options() -> Any:
    import pandas as pd

    return pd.option_context("display.width", 200, "display.max_colwidth", 80)


def cmd_runs(args: argparse.Namespace) -> int:
    from mtlens.store import RunStore

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
    damaged = index[index["state"] == "damaged"]
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
        f"runs (and outside runs); rerun the study or sweep to retrain damaged runs",
        file=sys.stderr,
    )
    return 1


def cmd_report(args: argparse.Namespace) -> int:
    from mtlens.store import RunStore

    settings = [s for s in (args.setting or "").split(",") if s]
    methods = [m for m in (args.methods or "").split(",") if m]
    where: dict[str, list[Any]] = {}
    for item in args.where or []:
        for key, value in _pairs([item], "--where").items():
            where.setdefault(key, []).append(value)
    _write_report(
        RunStore(args.store),
        args.out,
        include_unfinished=args.include_unfinished,
        settings=settings,
        methods=methods,
        alpha=args.alpha,
        where=where,
        formats=[f for f in (args.formats or "").split(",") if f],
    )
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    from mtlens.settings import available_settings, setting_factory, setting_options

    del args
    for name in available_settings():
        doc = (setting_factory(name).__doc__ or "").strip().splitlines()[0]
        print(f"{name:16s} {doc}\n{'':16s} options: {setting_options(name)}")
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
    input error (``mtlens CMD --help`` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _probability(text: str) -> float:
    """argparse type: a number strictly between 0 and 1 (a test level or false discovery rate)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def _comma_list(item: Callable[[str], Any], example: str) -> Callable[[str], str]:
    """argparse type: comma-separated items, at least one, each accepted by ``item``; returns the text
    (the command splits it)."""

    def check(text: str) -> str:
        items = [part.strip() for part in text.split(",") if part.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected comma-separated values such as {example}, got {text!r}")
        for part in items:
            item(part)
        return text

    return check


def _directory(writable: bool) -> Callable[[str], str]:
    """argparse type: a directory that exists or can be created (no file in the way); if ``writable``,
    one this process can create files in, tested by creating and deleting a temporary file in the
    nearest existing directory (so a refused command leaves nothing behind)."""

    def check(text: str) -> str:
        path = Path(text)
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not existing.is_dir():
            where = "is a file" if existing == path else f"is inside {existing}, which is a file"
            raise argparse.ArgumentTypeError(f"{text} {where}; give a directory (existing or new)")
        if writable:
            try:
                with tempfile.TemporaryFile(dir=existing):
                    pass
            except OSError as err:
                raise argparse.ArgumentTypeError(
                    f"cannot write in {existing} ({err.strerror or err}); give a directory you can write to"
                ) from None
        return text

    return check


def _add_run_config_flags(parser: argparse.ArgumentParser) -> None:
    """The run-config flags shared by ``study`` and ``sweep`` (read by :func:`base_config`)."""
    parser.add_argument("--config", help="YAML file with run-config keys (flags override it)")
    parser.add_argument("--optimizer", choices=["adam", "sgd"])
    parser.add_argument("--lr", type=float)
    parser.add_argument("--momentum", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--eval-every-steps", type=int, help="also evaluate every N steps (default: epoch ends only)")
    parser.add_argument(
        "--eval-dense-until-epoch",
        type=float,
        help="evaluate every --eval-every-steps only up to this epoch (dense early)",
    )
    parser.add_argument("--device", help="cpu (default), cuda or cuda:N")
    parser.add_argument(
        "--threads",
        type=_positive_int,
        help="torch threads per run (default 1; results differ in the last bits between counts, "
        "so a run resumes only under the count it started with)",
    )
    parser.add_argument(
        "--pack-size",
        type=_positive_int,
        help="train up to N compatible runs together as one torch.func pack (default 1: each run on its own; "
        "only sum/mean runs of models without batch norm or dropout pack; see the README, Executors)",
    )
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="a setting option (repeatable)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="any other run-config key (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mtlens", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    study = sub.add_parser("study", help="train STL per task and MTL per method over seeds, then report")
    study.add_argument("setting", help="setting name (see `mtlens settings`)")
    study.add_argument("--seeds", type=_positive_int, help="number of seeds 0..N-1 (default 3; 2 with --experiment)")
    study.add_argument("--seed-list", type=int, nargs="+", help="explicit seeds instead of --seeds")
    study.add_argument(
        "--methods",
        type=_comma_list(str, "sum,pcgrad"),
        help="comma-separated MTL methods (default: sum; with --experiment: the experiment's option "
        "'methods', if it has one)",
    )
    study.add_argument(
        "--experiment",
        help="run one registered experiment instead of the STL-vs-MTL study: "
        "optimizers, loss-scale, alignment, corruptions (Elich et al.; see "
        "docs/assumptions.md) or a user's own",
    )
    study.add_argument(
        "--experiment-option",
        action="append",
        metavar="KEY=VALUE",
        help="an option of the experiment (repeatable), e.g. scales=[1e-3,1e3] or scaled_task=b",
    )
    _add_run_config_flags(study)
    study.add_argument(
        "--store",
        default=DEFAULT_STORE,
        type=_directory(writable=True),
        help=f"run store directory (default {DEFAULT_STORE})",
    )
    study.add_argument("--report", type=_directory(writable=True), help="write the report to this directory when done")
    study.add_argument("--quiet", action="store_true", help="no progress bars")
    study.set_defaults(func=cmd_study)

    sweep = sub.add_parser("sweep", help="sweep a hyperparameter grid, select by validation, train the seeds")
    sweep.add_argument("setting", help="setting name (see `mtlens settings`)")
    sweep.add_argument(
        "--grid", help="YAML file mapping config keys to value lists (default: the paper's lr x batch size)"
    )
    sweep.add_argument(
        "--methods",
        default="sum",
        type=_comma_list(str, "sum,pcgrad"),
        help="comma-separated MTL methods (default: sum)",
    )
    sweep.add_argument(
        "--seeds", type=_positive_int, default=3, help="number of seeds 0..N-1 (default 3); the grid uses the first"
    )
    sweep.add_argument("--seed-list", type=int, nargs="+", help="explicit seeds instead of --seeds")
    sweep.add_argument("--select-metric", help="validation metric to select by (default: each task's selection metric)")
    sweep.add_argument(
        "--select-at",
        choices=["best", "final"],
        default="best",
        help="score a run at its best validation checkpoint (default) or at its final step",
    )
    sweep.add_argument(
        "--combine",
        choices=["mean", "relative"],
        default="mean",
        help="MTL: mean oriented metric over tasks (default) or mean relative improvement over STL",
    )
    _add_run_config_flags(sweep)
    sweep.add_argument("--backend", choices=["local", "ray"], default="local", help="executor (default local)")
    sweep.add_argument(
        "--workers",
        type=_positive_int,
        help="local: worker processes (default: one per core; 1 = in-process); ray: CPUs of a local Ray instance",
    )
    sweep.add_argument("--address", help="ray: address of an existing cluster (default: start a local instance)")
    sweep.add_argument(
        "--gpus-per-run",
        type=_positive_float,
        help="ray with --device cuda: GPUs per run (default 1; 0.25 = four runs per GPU). The local "
        "backend with --device cuda runs its --workers on the GPU(s) "
        "(worker i on cuda:i %% n_gpus)",
    )
    sweep.add_argument(
        "--store",
        default=DEFAULT_STORE,
        type=_directory(writable=True),
        help=f"run store directory (default {DEFAULT_STORE})",
    )
    sweep.add_argument("--quiet", action="store_true", help="no progress bars")
    sweep.set_defaults(func=cmd_sweep)

    calibrate = sub.add_parser(
        "calibrate",
        help="A/A check of the report's tests: train STL seeds, split them, "
        "print each test's false-positive rate (docs/statistics.md)",
    )
    calibrate.add_argument("setting", help="setting name (see `mtlens settings`)")
    calibrate.add_argument(
        "--seeds",
        type=int,
        default=12,
        help="STL seeds 0..N-1 per task (default 12: 6 vs 6, the fewest pairs that can reach 5%%)",
    )
    calibrate.add_argument("--seed-list", type=int, nargs="+", help="explicit seeds instead of --seeds")
    calibrate.add_argument("--splits", type=_positive_int, default=25, help="A/A splits of the seeds (default 25)")
    calibrate.add_argument("--alpha", type=_probability, default=0.05, help="test level (default 0.05)")
    calibrate.add_argument("--out", help="also write every comparison (split, test, p-value) to this CSV")
    _add_run_config_flags(calibrate)
    calibrate.add_argument("--store", default=DEFAULT_STORE, help=f"run store directory (default {DEFAULT_STORE})")
    calibrate.add_argument("--quiet", action="store_true", help="no progress bars")
    calibrate.set_defaults(func=cmd_calibrate)

    plan = sub.add_parser(
        "plan",
        help="before training: how many seeds a study needs and which effect they detect (docs/statistics.md)",
    )
    plan.add_argument("--tasks", type=_positive_int, default=2, help="tasks of the setting (default 2)")
    plan.add_argument("--methods", type=_positive_int, default=1, help="MTL methods compared with STL (default 1)")
    plan.add_argument(
        "--seeds", type=_positive_int, nargs="+", default=[4, 6, 8, 12, 16], help="numbers of seeds to compare"
    )
    plan.add_argument("--alpha", type=_probability, default=0.05, help="FDR of the family (default 0.05)")
    plan.add_argument(
        "--sd",
        type=_positive_float,
        help="sd of the per-seed MTL - STL differences (a pilot's): also give the detectable difference in its units",
    )
    plan.set_defaults(func=cmd_plan)

    runs = sub.add_parser("runs", help="list the runs in a store")
    runs.add_argument("--store", default=DEFAULT_STORE, type=_directory(writable=False))
    runs.add_argument(
        "--state",
        choices=["running", "finished", "diverged", "failed", "interrupted", "pending", "damaged"],
        help="only runs in this state (interrupted: 'running' but no process holds its lock)",
    )
    runs.add_argument(
        "--check",
        action="store_true",
        help="read every file of the store; list damaged files and leftover temporary files, exit 1 if there are any",
    )
    runs.set_defaults(func=cmd_runs)

    report = sub.add_parser("report", help="write the HTML report of the runs in a store")
    report.add_argument("--store", default=DEFAULT_STORE, type=_directory(writable=False))
    report.add_argument("--out", default="reports/mtlens", type=_directory(writable=True))
    report.add_argument(
        "--setting", type=_comma_list(str, "digits_pair"), help="comma-separated settings to include (default: all)"
    )
    report.add_argument(
        "--methods", type=_comma_list(str, "sum,pcgrad"), help="comma-separated MTL methods to include (default: all)"
    )
    report.add_argument(
        "--where",
        action="append",
        metavar="KEY=VALUE",
        help="keep runs whose run-index column KEY (setting, method, optimizer, lr, seed, state, ...) "
        "equals VALUE; repeatable, repeated keys match any of their values",
    )
    report.add_argument(
        "--include-unfinished",
        action="store_true",
        help="also analyse the rows recorded so far by running, interrupted and failed runs "
        "(default: finished runs only; diverged and damaged runs never)",
    )
    report.add_argument(
        "--alpha",
        type=_probability,
        default=0.05,
        help="false discovery rate of each family of tests (gap, transfer, correlations; default 0.05)",
    )
    report.add_argument(
        "--formats",
        help="also write static copies of every figure to figures/ in these formats "
        "(comma-separated: png, pdf, svg), rendered offline from the same Vega-Lite specs",
    )
    report.set_defaults(func=cmd_report)

    settings = sub.add_parser("settings", help="list the registered settings and their options")
    settings.set_defaults(func=cmd_settings)

    data = sub.add_parser("data", help="datasets: where they live, whether present, download them")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    data_sub.add_parser("status", help="list every registered dataset: present/missing, size, path")
    download = data_sub.add_parser("download", help="download and verify an openly downloadable dataset")
    download.add_argument("name", help="dataset name (see `mtlens data status`)")
    data.set_defaults(func=cmd_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mtlens`` command; user errors exit 2 with one clear message."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (MtlensError, FileNotFoundError) as err:
        message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        print(f"mtlens {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
