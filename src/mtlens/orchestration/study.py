"""The STL-vs-MTL study: which runs it needs, and running them.

For every seed, the study trains one STL run per task (linear scalarization, which is
plain single-task training with one head) and one MTL run per method, all with the same
optimizer, learning rate, batch size and number of steps.  Every config is validated
and resolved before the first run starts, so a bad key fails before any training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mtlens.settings import Setting, load_setting
from mtlens.store import RunLockedError, RunState, RunStore
from mtlens.training.config import (
    ConfigError,
    ResolvedRunConfig,
    RunConfig,
    load_configured_setting,
    new_run_config,
    parse_config,
    refuse_owned_keys,
)
from mtlens.training.pack import train_pack
from mtlens.training.trainer import failure_message, mark_failed, train_run

STUDY_OWNED_KEYS = ("tasks", "seed", "method")
"""Keys the study sets itself (STL per task, MTL per method, one run per seed)."""


def study_configs(
    base: dict[str, Any], seeds: Sequence[int], methods: Sequence[str] = ("sum",), setting: Setting | None = None
) -> list[ResolvedRunConfig]:
    """Resolved configs of the study: for each seed, STL per task and MTL per method.

    ``base`` is a raw config dict (``setting`` and any overrides); it must not set
    ``tasks``, ``seed`` or ``method``, which the study sets.  Its ``method_options`` go to
    every MTL run (STL runs are plain training without options); for different options per
    method, run one study per method on the same store, which shares the STL runs.
    """
    refuse_owned_keys(base, STUDY_OWNED_KEYS, "the study itself")
    for what, values in (("seeds", [str(seed) for seed in seeds]), ("methods", list(methods))):
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise ConfigError(f"{what}: {', '.join(twice)} given twice")
    template = parse_config({**base, "method_options": {}})
    setting = setting or load_configured_setting(template)
    configs = []
    for seed in seeds:
        for task in setting.task_names:
            raw = {**base, "tasks": [task], "seed": seed, "method": "sum", "method_options": {}}
            configs.append(new_run_config(raw, setting))
        for method in methods:
            configs.append(new_run_config({**base, "seed": seed, "method": method}, setting))
    return configs


def train_one(
    config: RunConfig, store: RunStore, setting: Setting, progress: bool = False, train: Callable[..., str] = train_run
) -> tuple[str, str]:
    """Train one config and return ``(state, message)``; never raises for a failing run.

    A run that raises is marked ``failed`` in the store with its error (:func:`train_run` has done so
    already; marking again covers any other ``train``, and is idempotent); a run another process holds
    gives ``("locked", ...)`` and is left alone (try again later).
    """
    run_id = config.run_id
    try:
        state, message = train(config, store, setting=setting, progress=progress), ""
    except RunLockedError as err:
        return "locked", str(err)
    except Exception as err:  # a failing run is recorded and the sweep goes on
        mark_failed(store, config, failure_message(err))
        return RunState.FAILED, f"{type(err).__name__}: {err}"
    if state != RunState.FINISHED:
        message = (store.status(run_id) or {}).get("message", "")
    return state, message


def train_pack_one(
    configs: Sequence[RunConfig], store: RunStore, setting: Setting, progress: bool = False
) -> list[tuple[str, str]]:
    """Train ``configs`` as one pack (:func:`~mtlens.training.pack.train_pack`); ``(state, message)`` per
    config, as :func:`train_one` gives it: a member that raised is marked ``failed`` with its error (the
    others go on), one another process holds is ``locked``; never raises for a failing run."""
    try:
        outcomes = train_pack(configs, store, setting=setting, progress=progress)
    except Exception as err:  # the pack could not be set up: every member failed with this error
        outcomes = {c.run_id: err for c in configs}
    results = []
    for config in configs:
        outcome = outcomes[config.run_id]
        if isinstance(outcome, RunLockedError):
            results.append(("locked", str(outcome)))
        elif isinstance(outcome, Exception):
            mark_failed(store, config, failure_message(outcome))
            results.append((RunState.FAILED, f"{type(outcome).__name__}: {outcome}"))
        else:
            message = "" if outcome == RunState.FINISHED else (store.status(config.run_id) or {}).get("message", "")
            results.append((outcome, message))
    return results


def cached_setting(config: RunConfig, cache: dict[tuple[str, str], Setting]) -> Setting:
    """The config's setting, built once per (name, options) in ``cache``."""
    key = (config.setting, repr(sorted(config.setting_options.items())))
    if key not in cache:
        cache[key] = load_setting(config.setting, **config.setting_options)
    return cache[key]
