"""The registry of settings, looked up by name.

A setting factory is any callable ``(**options) -> Setting``; register your own with::

    from mtlens.settings import register_setting


    @register_setting("my_setting")
    def my_setting(n_train: int = 1000) -> Setting: ...

Configs then say ``setting: my_setting`` and ``setting_options: {n_train: 500}``.
Unknown names and unknown options fail with a message listing the valid choices; option values
are checked against the factory's annotations (``n_train: PositiveInt`` refuses ``-5``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


def register_setting(name: str) -> Callable[[SettingFactory], SettingFactory]:
    """Decorator registering a setting factory under ``name`` (re-registering replaces it)."""
    return SETTINGS.register(name)


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


def load_setting(name: str, **options: Any) -> Setting:
    """Build the setting ``name`` with ``options``."""
    check_setting_options(name, options)
    return setting_factory(name)(**options)


__all__ = [
    "SETTINGS",
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
