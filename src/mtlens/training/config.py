"""Run configs: validated before any training, with errors that name the offending key.

A :class:`RunConfig` describes one training run.  ``tasks`` with one task is a
single-task (STL) run, with several a multi-task (MTL) run.  ``None`` hyperparameters
take the setting's defaults when the config is resolved (:func:`resolve_config`), so a
stored config always holds the concrete values that were used.

The MTL objective handed to the update method is ``C * sum_t s_t * L_t`` with
``C = loss_scale`` (1 in the paper) and ``s_t = task_loss_scales.get(t, 1)``.  Every key of
``task_loss_scales`` must be a task of the setting; a resolved config keeps the scales of its own tasks
only (the others change nothing), so a study's scales reach its MTL runs and the scaled tasks' STL runs.

Probes (:mod:`mtlens.probes`) are named in ``probes`` and run at the steps of a geometric
schedule: step 0, then the epochs ``probe_first_epoch * probe_growth**k`` and the last step
(:func:`mtlens.training.probe_runner.probe_steps`).  Each probe's options are set in
``probe_options: {probe: {option: value}}``, checked against the probe's signature like
``method_options``.  The older flat keys of the built-in probes' options (``fisher_batch_size``,
``sharpness_batch_size``, ``sharpness_rho``, ``sharpness_steps``, ``alignment_batches``:
:data:`FLAT_PROBE_KEYS`, the one place they are mapped) are still accepted, and a config is
stored and hashed in that flat form wherever it can be (:meth:`RunConfig.to_dict`), so configs
keep the run ids they had before ``probe_options`` existed.  The probe keys change the stored
rows, so they are part of the run identity -- except when ``probes`` is empty: a run without
probes keeps the run id it had before probes existed.

``mixed_precision: bf16`` runs the training forward passes and losses under
``torch.autocast`` with bfloat16 (no loss scaling needed); evaluation stays in float32.

``threads`` is the number of torch intra-op threads the run trains under (default 1, the same
whatever the machine or the number of sweep workers).  Results depend on it in the last bits
(reductions are split differently), so the trainer sets it for the run, records it in the
run's status and checkpoint, and refuses to resume a run under another count.  It is not part
of the run identity (run ids stay what they were before it existed).

``pack_size`` (default 1: every run trains on its own) lets the sweep and study executors train up
to that many compatible runs together as one ``torch.func`` pack (:mod:`mtlens.training.pack`:
which runs are compatible, and the float tolerance within which a packed run's rows equal the
unpacked run's).  Like ``threads`` it says how a run is executed, not what it computes: it is not
part of the run identity, and the status of a run trained in a pack records the pack's size.

``setting_version`` is the setting's :attr:`~mtlens.settings.base.Setting.version`, set when the config is
resolved (``None`` for version 1, so the runs of a setting that never changed keep their ids): a setting whose
construction changed results (``multimnist`` version 2: test digits held out from training) gives its new runs
new ids, while the stored runs of the earlier version, which lack the key, keep theirs and still load and report.

``save_selected_models: true`` keeps, per task, the model weights at the task's
validation-selected checkpoint (the step :func:`mtlens.analysis.transfer.selected_checkpoints`
selects), for analyses of the selected model such as the corruptions experiment; it costs one
model file per task on disk.  Like ``mixed_precision``, it is part of the run identity only
when set.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from mtlens.aggregators import METHODS
from mtlens.errors import ConfigError, MtlensError
from mtlens.probes import DEFAULT_PROBES, PROBES, check_required_probe_options, validate_probe_options
from mtlens.registry import Interval, Seed, accepts_bool, check_name, contains_bool, did_you_mean
from mtlens.settings import SETTINGS, Setting, load_setting

FLAT_PROBE_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "fisher_batch_size": (("fisher", "batch_size"),),
    "sharpness_batch_size": (("sharpness", "batch_size"), ("sharpness_sam", "batch_size")),
    "sharpness_rho": (("sharpness", "rho"), ("sharpness_sam", "rho")),
    "sharpness_steps": (("sharpness", "steps"),),
    "alignment_batches": (("alignment", "batches"),),
}
"""Old flat config key -> the ``(probe, option)`` pairs it sets (both sharpness probes share two)."""

PROBE_KEYS = ("probes", "probe_sample_size", "probe_first_epoch", "probe_growth", "probe_options", *FLAT_PROBE_KEYS)
"""Config keys of the probes (left out of the identity of a run without probes)."""


ProbeFirstEpoch = Annotated[float, Interval(gt=0)]
"""The first epoch of the probe schedule after step 0 (:func:`~mtlens.training.probe_runner.probe_steps`): > 0."""

ProbeGrowth = Annotated[float, Interval(gt=1)]
"""The factor between the probe schedule's epochs: > 1, or the schedule would never reach the last step."""


RUN_ENVIRONMENT_KEYS = ("device", "threads", "pack_size")
"""Config keys that say where and how a run is executed, not what it computes: outside the run
identity, and free to differ from the first stored config when a run is resumed."""


def _probe_default(probe: str, option: str) -> Any:
    return PROBES.options(probe).get(option) if probe in PROBES else None


def flat_probe_options(options: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``(flat keys, the rest)`` of ``probe_options``: the value of every flat key (its first probe's
    option, given or default) and what the flat keys do not say: options without a flat key, and a
    second probe's option where it differs from the flat value.  Parsing both back gives ``options``."""

    def effective(probe: str, option: str) -> Any:
        return options.get(probe, {}).get(option, _probe_default(probe, option))

    flat: dict[str, Any] = {}
    rest: dict[str, dict[str, Any]] = {}
    covered: set[tuple[str, str]] = set()
    for key, ((probe, option), *others) in FLAT_PROBE_KEYS.items():
        flat[key] = effective(probe, option)
        covered |= {(probe, option), *others}
        for other, other_option in others:
            if effective(other, other_option) != flat[key]:
                rest.setdefault(other, {})[other_option] = effective(other, other_option)
    for probe, values in options.items():
        for option, value in values.items():
            if (probe, option) not in covered:
                rest.setdefault(probe, {})[option] = value
    return flat, rest


class RunConfig(BaseModel):
    """One training run.  See the module docstring for the objective."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    setting: str
    setting_options: dict[str, Any] = Field(default_factory=dict)
    tasks: list[str] | None = None
    method: str = "sum"
    method_options: dict[str, Any] = Field(default_factory=dict)
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float | None = Field(default=None, gt=0)
    momentum: float = Field(default=0.0, ge=0, lt=1)
    batch_size: int | None = Field(default=None, gt=0)
    epochs: int | None = Field(default=None, gt=0)
    eval_every_steps: int | None = Field(default=None, gt=0)
    eval_dense_until_epoch: float | None = Field(default=None, gt=0)
    train_eval_size: int = Field(default=1024, gt=0)
    loss_scale: float = Field(default=1.0, gt=0)
    task_loss_scales: dict[str, float] = Field(default_factory=dict)
    seed: Seed = 0
    probes: list[str] = Field(default_factory=lambda: list(DEFAULT_PROBES))
    probe_sample_size: int = Field(default=2048, gt=1)
    probe_first_epoch: ProbeFirstEpoch = 0.5
    probe_growth: ProbeGrowth = 2.0
    probe_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    device: str = "cpu"
    threads: int = Field(default=1, gt=0)
    pack_size: int = Field(default=1, gt=0)
    mixed_precision: Literal["off", "bf16"] = "off"
    save_selected_models: bool = False
    setting_version: int | None = Field(default=None, ge=2)

    @model_validator(mode="before")
    @classmethod
    def _map_flat_probe_keys(cls, raw: Any) -> Any:
        """The old flat probe keys (:data:`FLAT_PROBE_KEYS`) set the ``probe_options`` entries that
        ``probe_options`` itself does not set."""
        if not isinstance(raw, dict) or not set(FLAT_PROBE_KEYS) & set(raw):
            return raw
        raw = dict(raw)
        options = {probe: dict(values) for probe, values in (raw.get("probe_options") or {}).items()}
        for key, targets in FLAT_PROBE_KEYS.items():
            if key not in raw:
                continue
            value = raw.pop(key)
            for probe, option in targets:
                options.setdefault(probe, {}).setdefault(option, value)
        raw["probe_options"] = options
        return raw

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """``epochs: true`` is an error, not ``1`` (pydantic's lax mode would read a boolean as a number)."""
        if info.field_name is not None and contains_bool(value):
            if not accepts_bool(cls.model_fields[info.field_name].annotation):
                raise ValueError("expected a number or text, not a boolean")
        return value

    @field_validator("setting", "method")
    @classmethod
    def _registered(cls, value: str, info: ValidationInfo) -> str:
        """A registered setting or method (the registry's error, a ValueError, lists the valid names); a name
        that could not be registered (:func:`~mtlens.registry.check_name`) is refused as such."""
        check_name(str(info.field_name), value)
        (SETTINGS if info.field_name == "setting" else METHODS).get(value)
        return value

    @field_validator("device")
    @classmethod
    def _usable_device(cls, value: str) -> str:
        try:
            device = torch.device(value)
        except RuntimeError as err:
            raise ValueError(f"{value!r} is not a device; use 'cpu', 'cuda' or 'cuda:N'") from err
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("CUDA was requested but torch.cuda.is_available() is False on this machine")
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"device type {device.type!r} is not supported; use 'cpu' or 'cuda'")
        return value

    @field_validator("probes")
    @classmethod
    def _known_probes(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in PROBES]
        if unknown:
            hint = "".join(did_you_mean(name, PROBES.names()) for name in unknown)
            raise ValueError(f"unknown probe(s) {unknown}{hint}; valid probes are: {', '.join(PROBES.names())}")
        if len(set(value)) != len(value):
            raise ValueError(f"probes {value} name a probe twice")
        return value

    @field_validator("probe_options")
    @classmethod
    def _valid_probe_options(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Each probe's options checked against its signature; values as the probe's annotations type them."""
        checked = {}
        for probe, options in value.items():
            PROBES.get(probe)
            validated = validate_probe_options(probe, options)
            checked[probe] = {option: validated[option] for option in options}
        return checked

    @field_validator("task_loss_scales")
    @classmethod
    def _positive_scales(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not v > 0}
        if bad:
            raise ValueError(f"task loss scales must be > 0, got {bad}")
        return value

    @property
    def mode(self) -> str:
        """``'stl'`` for a one-task run, ``'mtl'`` otherwise (valid once resolved)."""
        return "stl" if self.tasks is not None and len(self.tasks) == 1 else "mtl"

    def to_dict(self) -> dict[str, Any]:
        """The stored form (``config.json``): every field, the probes' options as the old flat keys
        (:func:`flat_probe_options`) and ``probe_options`` only for what those cannot say."""
        data = self.model_dump(
            exclude={"probe_options"} | ({"setting_version"} if self.setting_version is None else set())
        )
        flat, rest = flat_probe_options(self.probe_options)
        data.update(flat)
        if rest:
            data["probe_options"] = rest
        return data

    def probe_settings(self, probe: str) -> dict[str, Any]:
        """Probe ``probe``'s options: its defaults with this config's ``probe_options`` on top."""
        return validate_probe_options(probe, self.probe_options.get(probe))

    def identity(self) -> dict[str, Any]:
        """The fields that define the run's trajectory: :meth:`to_dict` but the device, the thread count
        (which changes only the last bits and is checked on resume instead) and the pack size, without the probe
        keys when ``probes`` is empty, without ``mixed_precision`` when it is ``'off'``, without
        ``save_selected_models`` when it is false and without ``setting_version`` when it is ``None`` (so such
        runs keep the ids they had before those options existed)."""
        exclude = set(RUN_ENVIRONMENT_KEYS) | (set(PROBE_KEYS) if not self.probes else set())
        if self.mixed_precision == "off":
            exclude.add("mixed_precision")
        if not self.save_selected_models:
            exclude.add("save_selected_models")
        return {key: value for key, value in self.to_dict().items() if key not in exclude}

    @property
    def run_id(self) -> str:
        """Readable and unique: ``setting-mode-task-method-sSEED-HASH`` of :meth:`identity`."""
        return make_run_id(self.setting, self.tasks or [], self.method, self.seed, self.identity())


class ResolvedRunConfig(RunConfig):
    """A :class:`RunConfig` after :func:`resolve_config`: ``tasks``, ``lr``, ``batch_size`` and
    ``epochs`` hold the concrete values the run uses (the setting's defaults where the config
    left them ``None``).  Same fields, stored form and run id as the config it came from."""

    tasks: list[str]
    lr: float = Field(gt=0)
    batch_size: int = Field(gt=0)
    epochs: int = Field(gt=0)


def make_run_id(setting: str, tasks: list[str], method: str, seed: int, identity: dict[str, Any]) -> str:
    """``setting-mode-task-method-sSEED-HASH``: ``mode`` is ``stl`` for one task (then ``task`` is its
    name) and ``mtl`` otherwise (``task`` is ``all``); ``HASH`` is the first 10 hex digits of the
    SHA-256 of ``identity`` as sorted JSON.  The trainer and the recorder name runs this way."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    mode = "stl" if len(tasks) == 1 else "mtl"
    which = tasks[0] if mode == "stl" else "all"
    return f"{setting}-{mode}-{which}-{method}-s{seed}-{digest}"


ABSENT_FROM_OLD_CONFIGS: dict[str, Any] = {"probes": []}
"""What a run stored before a config key existed ran with, where it is not the key's default: no probes."""


def _absent_value(key: str) -> Any:
    """The value a run whose stored config lacks ``key`` (written before the key existed) ran with."""
    if key in ABSENT_FROM_OLD_CONFIGS:
        return ABSENT_FROM_OLD_CONFIGS[key]
    if key in FLAT_PROBE_KEYS:
        return _probe_default(*FLAT_PROBE_KEYS[key][0])
    return RunConfig.model_fields[key].get_default(call_default_factory=True)


def same_run_config(stored: Mapping[str, Any], requested: Mapping[str, Any]) -> bool:
    """Whether a stored ``config.json`` describes the run ``requested`` describes (both in the stored form,
    :meth:`RunConfig.to_dict`): equal on every stored key but :data:`RUN_ENVIRONMENT_KEYS`, and each key the
    stored config lacks (it was written by a version before the key existed, e.g. ``mixed_precision``) outside
    the requested run's identity or at the value that version ran with (:func:`_absent_value`).  A stored
    config must not be compared as a whole dict: it would differ from every request by the keys added since,
    and the run could never be resumed or marked failed."""
    identity = RunConfig.model_validate(dict(requested)).identity()
    for key in set(stored) | set(requested):
        if key in RUN_ENVIRONMENT_KEYS:
            continue
        if key in stored:
            if key not in requested or stored[key] != requested[key]:
                return False
        elif key in identity and identity[key] != _absent_value(key):
            return False
    return True


def parse_config(raw: dict[str, Any]) -> RunConfig:
    """Validate a raw dict into a :class:`RunConfig`, raising :class:`ConfigError` naming bad keys, options
    given for probes the run does not run (:func:`refuse_unused_probe_options`) and options a probe requires
    but the config does not give (:func:`~mtlens.probes.base.check_required_probe_options`)."""
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_describe(err)) from None
    refuse_unused_probe_options(raw, config.probes)
    for probe in config.probes:
        check_required_probe_options(probe, config.probe_options.get(probe))
    for key, registry, name, options in (
        ("setting_options", SETTINGS, config.setting, config.setting_options),
        ("method_options", METHODS, config.method, config.method_options),
    ):
        try:
            registry.check_options(name, options)
        except ConfigError as err:
            raise ConfigError(f"{key}: {err}") from None
    return config


def refuse_unused_probe_options(raw: Mapping[str, Any], probes: Sequence[str]) -> None:
    """Raise :class:`ConfigError` where ``raw`` (a user's config) gives ``probe_options`` for a probe that a run
    with ``probes`` does not run: they would change the run's id (:meth:`RunConfig.identity`) but none of its
    results, and the Recorder refuses them too (``RecorderProbes.validated_options``).  The probes of the old
    flat keys (:data:`FLAT_PROBE_KEYS`) are exempt: every stored config writes those keys, run or not, so their
    options are part of every id already and a stored config must still parse.  A run without probes keeps no
    probe key in its identity, so its options are left alone (a study's base config serves runs with and
    without probes)."""
    flat_probes = {probe for targets in FLAT_PROBE_KEYS.values() for probe, _ in targets}
    unused = [p for p in (raw.get("probe_options") or {}) if p not in probes and p not in flat_probes]
    if probes and unused:
        raise ConfigError(
            f"probe_options: options for {unused}, which are not run (probes: {list(probes)}); "
            "remove them or add the probe to probes"
        )


def refuse_owned_keys(
    raw: Mapping[str, Any], owned: Iterable[str], owner: str, source: str = "the base config"
) -> None:
    """Raise :class:`ConfigError` naming the keys of ``raw`` that ``owner`` sets (the study its runs' tasks,
    seeds and methods; the command line its setting), so that none is silently replaced by the other."""
    keys = sorted(set(owned) & set(raw))
    if keys:
        raise ConfigError(f"{', '.join(keys)}: set by {owner}; remove from {source}")


def parse_probes(value: Any) -> list[str]:
    """A raw config's ``probes`` validated alone, by :class:`RunConfig`'s own declaration of the key (for a
    config whose setting is not registered here, e.g. a pilot store's own setting): :class:`ConfigError`
    naming the key otherwise."""
    try:
        checked = RunConfig.__pydantic_validator__.validate_assignment(RunConfig.model_construct(), "probes", value)
    except ValidationError as err:
        raise ConfigError(_describe(err)) from None
    return list(cast(RunConfig, checked).probes)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with a key twice (YAML forbids it; PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):
                continue  # an unhashable key: PyYAML's own error
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"found key {key!r} twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml_text(text: str, source: str) -> Any:
    """``yaml.safe_load(text)``, with a key twice in one mapping an error; malformed YAML raises a one-line
    :class:`ConfigError` naming ``source`` (a file, or a flag and key) and where the problem is."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as err:
        parts = []
        for what, mark in (
            (getattr(err, "context", None), getattr(err, "context_mark", None)),
            (getattr(err, "problem", None), getattr(err, "problem_mark", None)),
        ):
            if what:
                parts.append(what + (f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""))
        raise ConfigError(f"{source}: not valid YAML: {': '.join(parts) or str(err).splitlines()[0]}") from None


def load_yaml_file(path: str | Path, flag: str) -> Any:
    """The YAML document in the file ``path`` given to ``flag``; a missing, unreadable, binary or
    malformed file raises a one-line :class:`ConfigError` naming the flag and the file."""
    source = f"{flag} {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory; expected a YAML file") from None
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not a text file (not UTF-8); expected a YAML file") from None
    except OSError as err:
        raise ConfigError(f"{source}: cannot read it ({err.strerror or err})") from None
    return load_yaml_text(text, source)


def load_configured_setting(config: RunConfig) -> Setting:
    """Build the config's setting; an option value the setting rejects becomes a :class:`ConfigError`."""
    try:
        return load_setting(config.setting, **config.setting_options)
    except (ValueError, TypeError) as err:
        if isinstance(err, MtlensError):
            raise
        raise ConfigError(f"setting_options of {config.setting!r}: {err}") from None


def resolve_config(config: RunConfig, setting: Setting | None = None) -> ResolvedRunConfig:
    """Fill ``None`` fields from the setting and check task names against it; ``task_loss_scales`` keeps the
    scales of the run's own tasks (a key that is no task of the setting is an error)."""
    setting = setting or load_configured_setting(config)
    tasks = list(config.tasks) if config.tasks is not None else setting.task_names
    unknown = [t for t in tasks if t not in setting.task_names]
    if unknown or not tasks or len(set(tasks)) != len(tasks):
        hint = "".join(did_you_mean(task, setting.task_names) for task in unknown)
        raise ConfigError(
            f"tasks: {tasks} is not a non-empty list of distinct tasks of setting {setting.name!r}{hint}; "
            f"its tasks are {setting.task_names}"
        )
    batch_size = config.batch_size if config.batch_size is not None else setting.defaults.batch_size
    smallest = min(tasks, key=lambda task: len(setting.data[task].train))
    if batch_size > len(setting.data[smallest].train):
        raise ConfigError(
            f"batch_size={batch_size}: larger than the {len(setting.data[smallest].train)} training examples of "
            f"task {smallest!r} of setting {setting.name!r}; use at most {len(setting.data[smallest].train)}"
        )
    too_small = [name for name in config.probes if batch_size < PROBES.get(name).min_batch_size]
    if too_small:
        needed = max(PROBES.get(name).min_batch_size for name in too_small)
        which = f"probe {too_small[0]!r} needs" if len(too_small) == 1 else f"probes {too_small} need"
        raise ConfigError(
            f"batch_size={batch_size}: {which} a training batch of at least {needed}; use batch_size {needed} "
            f"or more, or leave {'it' if len(too_small) == 1 else 'them'} out of probes (probes: {config.probes})"
        )
    bad_scales = sorted(set(config.task_loss_scales) - set(setting.task_names))
    if bad_scales:
        hint = "".join(did_you_mean(task, setting.task_names) for task in bad_scales)
        raise ConfigError(
            f"task_loss_scales: {bad_scales} are not tasks of setting {setting.name!r}{hint}; "
            f"its tasks are {setting.task_names}"
        )
    version = None if setting.version == 1 else setting.version
    if config.setting_version is not None and config.setting_version != version:
        raise ConfigError(
            f"setting_version={config.setting_version}: setting {setting.name!r} is built as version "
            f"{setting.version} now; runs of an earlier version load and report but cannot be trained again "
            "(leave setting_version out: it is set from the setting)"
        )
    defaults = setting.defaults
    update = {
        "setting_version": version,
        "tasks": [t for t in setting.task_names if t in tasks],
        # a scale of a task the run does not train changes nothing, so neither the run nor its id: a study's
        # scales apply to its MTL runs and to the STL run of each scaled task
        "task_loss_scales": {t: s for t, s in config.task_loss_scales.items() if t in tasks},
        "lr": config.lr if config.lr is not None else defaults.lr,
        "batch_size": config.batch_size if config.batch_size is not None else defaults.batch_size,
        "epochs": config.epochs if config.epochs is not None else defaults.epochs,
    }
    # What ``config.model_copy(update=update)`` does (no re-validation), into the resolved class.
    return ResolvedRunConfig.model_construct(
        _fields_set=config.model_fields_set | set(update), **{**dict(config), **update}
    )


OPTIMIZERS_WITH_MOMENTUM = ("sgd",)
"""The optimizers that use ``momentum`` (:func:`mtlens.training.trainer.make_optimizer`); Adam ignores it."""


def check_new_config(config: RunConfig) -> None:
    """The checks only a newly requested config gets, not a stored one: a store written by an earlier version
    may hold configs that fail them, and those must still load and resume (the trainer resolves them with
    :func:`resolve_config` alone).  ``momentum`` only with an optimizer that uses it: with Adam it was
    ignored, yet changed the run id; ``eval_dense_until_epoch`` only with ``eval_every_steps``, for the same
    reason (without dense evaluation there is nothing for it to end)."""
    if config.momentum and config.optimizer not in OPTIMIZERS_WITH_MOMENTUM:
        raise ConfigError(
            f"momentum={config.momentum:g}: optimizer {config.optimizer!r} does not use momentum, only "
            f"{' or '.join(map(repr, OPTIMIZERS_WITH_MOMENTUM))} does; set optimizer sgd or leave momentum out"
        )
    if config.eval_dense_until_epoch is not None and config.eval_every_steps is None:
        raise ConfigError(
            f"eval_dense_until_epoch={config.eval_dense_until_epoch:g}: it ends the evaluation every "
            "eval_every_steps steps, which is not set; set eval_every_steps or leave eval_dense_until_epoch out"
        )


def new_run_config(raw: dict[str, Any], setting: Setting | None = None) -> ResolvedRunConfig:
    """The config of a newly requested run (a study's, a sweep's, an experiment's): :func:`parse_config`,
    :func:`resolve_config` against ``setting`` (default: the config's own), then :func:`check_new_config`."""
    config = resolve_config(parse_config(raw), setting)
    check_new_config(config)
    return config


def _describe(err: ValidationError) -> str:
    """One line naming every offending key, its value and what would be valid."""
    problems = []
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<config>"
        if item["type"] == "extra_forbidden":
            valid = ", ".join(RunConfig.model_fields)
            problems.append(f"{key}: unknown key{did_you_mean(key, RunConfig.model_fields)}; valid keys are: {valid}")
        elif item["type"] == "missing":
            problems.append(f"{key}: required")
        else:
            problems.append(f"{key}={item.get('input')!r}: {item['msg'].removeprefix('Value error, ')}")
    return "invalid config: " + "; ".join(problems)
