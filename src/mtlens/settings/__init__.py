"""The registry of settings, looked up by name.

A setting factory is any callable ``(**options) -> Setting``; register your own with::

    from mtlens.settings import register_setting

    @register_setting("my_setting")
    def my_setting(n_train: int = 1000) -> Setting:
        ...

Configs then say ``setting: my_setting`` and ``setting_options: {n_train: 500}``.
Unknown names and unknown options fail with a message listing the valid choices; option values
are checked against the factory's annotations (``n_train: PositiveInt`` refuses ``-5``).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from mtlens.registry import check_option_values
from mtlens.settings.base import Defaults, Setting, Split, TaskData, random_partition, tensor_split

SettingFactory = Callable[..., Setting]

_REGISTRY: dict[str, SettingFactory] = {}


def register_setting(name: str) -> Callable[[SettingFactory], SettingFactory]:
    """Decorator registering a setting factory under ``name`` (re-registering replaces it)."""

    def decorator(factory: SettingFactory) -> SettingFactory:
        _REGISTRY[name] = factory
        return factory

    return decorator


def available_settings() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def setting_factory(name: str) -> SettingFactory:
    _load_builtins()
    if name not in _REGISTRY:
        raise KeyError(f"unknown setting {name!r}; available settings: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def setting_options(name: str) -> dict[str, Any]:
    """The options a setting accepts, with their defaults."""
    signature = inspect.signature(setting_factory(name))
    return {
        p.name: (None if p.default is inspect.Parameter.empty else p.default)
        for p in signature.parameters.values()
    }


def check_setting_options(name: str, options: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming any option the setting does not accept, or whose value does not fit
    the annotation of the factory's parameter (:func:`mtlens.registry.check_option_values`)."""
    valid = setting_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"setting {name!r} has no option(s) {unknown}; valid options: {sorted(valid) or 'none'}"
        )
    check_option_values("setting", name, setting_factory(name), options)


def load_setting(name: str, **options: Any) -> Setting:
    """Build the setting ``name`` with ``options``."""
    check_setting_options(name, options)
    return setting_factory(name)(**options)


def _load_builtins() -> None:
    # Importing the modules registers their settings.
    from mtlens.settings import embedded  # noqa: F401
    from mtlens.settings import celeba, cifar100, fashion_mtl, mnists  # noqa: F401
    from mtlens.settings import cityscapes, glue  # noqa: F401


__all__ = [
    "Defaults",
    "Setting",
    "Split",
    "TaskData",
    "available_settings",
    "check_setting_options",
    "load_setting",
    "random_partition",
    "register_setting",
    "setting_factory",
    "setting_options",
    "tensor_split",
]
