"""Run configs: validated before any training, with errors that name the offending key.

A :class:`RunConfig` describes one training run.  ``tasks`` with one task is a
single-task (STL) run, with several a multi-task (MTL) run.  ``None`` hyperparameters
take the setting's defaults when the config is resolved (:func:`resolve_config`), so a
stored config always holds the concrete values that were used.

The MTL objective handed to the update method is ``C * sum_t s_t * L_t`` with
``C = loss_scale`` (1 in the paper) and ``s_t = task_loss_scales.get(t, 1)``.

Probes (:mod:`mtlens.probes`) are named in ``probes`` and run at the steps of a geometric
schedule: step 0, then the epochs ``probe_first_epoch * probe_growth**k`` and the last step
(:func:`mtlens.probes.probe_steps`).  The probe keys change the stored rows, so they are
part of the run identity -- except when ``probes`` is empty: a run without probes keeps the
run id it had before probes existed.

``mixed_precision: bf16`` runs the training forward passes and losses under
``torch.autocast`` with bfloat16 (no loss scaling needed); evaluation stays in float32.

``save_selected_models: true`` keeps, per task, the model weights at the task's
validation-selected checkpoint (the step :func:`mtlens.analysis.transfer.selected_checkpoints`
selects), for analyses of the selected model such as the corruptions experiment; it costs one
model file per task on disk.  Like ``mixed_precision``, it is part of the run identity only
when set.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mtlens.errors import ConfigError, MtlensError
from mtlens.probes.names import DEFAULT_PROBES, PROBE_NAMES
from mtlens.settings import Setting, check_setting_options, load_setting, setting_factory


PROBE_KEYS = ("probes", "probe_sample_size", "probe_first_epoch", "probe_growth", "fisher_batch_size",
              "sharpness_batch_size", "sharpness_rho", "sharpness_steps", "alignment_batches")
"""Config keys of the probes (left out of the identity of a run without probes)."""


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
    seed: int = Field(default=0, ge=0)
    probes: list[str] = Field(default_factory=lambda: list(DEFAULT_PROBES))
    probe_sample_size: int = Field(default=2048, gt=1)
    probe_first_epoch: float = Field(default=0.5, gt=0)
    probe_growth: float = Field(default=2.0, gt=1)
    fisher_batch_size: int = Field(default=16, gt=0)
    sharpness_batch_size: int = Field(default=128, gt=0)
    sharpness_rho: float = Field(default=1e-3, gt=0)
    sharpness_steps: int = Field(default=10, gt=0)
    alignment_batches: int = Field(default=4, gt=0)
    device: str = "cpu"
    mixed_precision: Literal["off", "bf16"] = "off"
    save_selected_models: bool = False

    @field_validator("setting")
    @classmethod
    def _known_setting(cls, value: str) -> str:
        try:
            setting_factory(value)
        except KeyError as err:
            raise ValueError(err.args[0]) from None
        return value

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        from mtlens.aggregators import method_factory

        try:
            method_factory(value)
        except KeyError as err:
            raise ValueError(err.args[0]) from None
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
        unknown = [name for name in value if name not in PROBE_NAMES]
        if unknown:
            raise ValueError(f"unknown probe(s) {unknown}; valid probes are: {', '.join(PROBE_NAMES)}")
        if len(set(value)) != len(value):
            raise ValueError(f"probes {value} name a probe twice")
        return value

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

    def identity(self) -> dict[str, Any]:
        """The fields that define the run's trajectory: everything but the device, without the probe
        keys when ``probes`` is empty, without ``mixed_precision`` when it is ``'off'`` and without
        ``save_selected_models`` when it is false (so such runs keep the ids they had before those
        options existed)."""
        exclude = {"device"} | (set(PROBE_KEYS) if not self.probes else set())
        if self.mixed_precision == "off":
            exclude.add("mixed_precision")
        if not self.save_selected_models:
            exclude.add("save_selected_models")
        return self.model_dump(exclude=exclude)

    @property
    def run_id(self) -> str:
        """Readable and unique: ``setting-mode-task-method-sSEED-HASH`` of :meth:`identity`."""
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:10]
        which = self.tasks[0] if self.mode == "stl" and self.tasks else "all"
        return f"{self.setting}-{self.mode}-{which}-{self.method}-s{self.seed}-{digest}"


def parse_config(raw: dict[str, Any]) -> RunConfig:
    """Validate a raw dict into a :class:`RunConfig`, raising :class:`ConfigError` naming bad keys."""
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_describe(err)) from None
    try:
        check_setting_options(config.setting, config.setting_options)
    except ValueError as err:
        raise ConfigError(f"setting_options: {err}") from None
    from mtlens.aggregators import check_method_options, make_method

    try:
        check_method_options(config.method, config.method_options)
        make_method(config.method, config.method_options, config.seed)  # the method's own checks of its options
    except (ValueError, TypeError) as err:
        raise ConfigError(f"method_options of {config.method!r}: {err}") from None
    return config


def load_yaml_text(text: str, source: str) -> Any:
    """``yaml.safe_load(text)``; malformed YAML raises a one-line :class:`ConfigError` naming ``source``
    (a file, or a flag and key) and where the problem is."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        parts = []
        for what, mark in ((getattr(err, "context", None), getattr(err, "context_mark", None)),
                           (getattr(err, "problem", None), getattr(err, "problem_mark", None))):
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


def resolve_config(config: RunConfig, setting: Setting | None = None) -> RunConfig:
    """Fill ``None`` fields from the setting and check task names against it."""
    setting = setting or load_configured_setting(config)
    tasks = list(config.tasks) if config.tasks is not None else setting.task_names
    unknown = [t for t in tasks if t not in setting.task_names]
    if unknown or not tasks or len(set(tasks)) != len(tasks):
        raise ConfigError(
            f"tasks: {tasks} is not a non-empty list of distinct tasks of setting {setting.name!r}; "
            f"its tasks are {setting.task_names}"
        )
    bad_scales = sorted(set(config.task_loss_scales) - set(tasks))
    if bad_scales:
        raise ConfigError(f"task_loss_scales: {bad_scales} are not tasks of this run ({tasks})")
    defaults = setting.defaults
    return config.model_copy(
        update={
            "tasks": [t for t in setting.task_names if t in tasks],
            "lr": config.lr if config.lr is not None else defaults.lr,
            "batch_size": config.batch_size if config.batch_size is not None else defaults.batch_size,
            "epochs": config.epochs if config.epochs is not None else defaults.epochs,
        }
    )


def _describe(err: ValidationError) -> str:
    """One line naming every offending key, its value and what would be valid."""
    problems = []
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<config>"
        if item["type"] == "extra_forbidden":
            valid = ", ".join(RunConfig.model_fields)
            problems.append(f"{key}: unknown key; valid keys are: {valid}")
        elif item["type"] == "missing":
            problems.append(f"{key}: required")
        else:
            problems.append(f"{key}={item.get('input')!r}: {item['msg']}")
    return "invalid config: " + "; ".join(problems)
