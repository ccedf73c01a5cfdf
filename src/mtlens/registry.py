"""One registry helper for every kind of extension: settings, methods, datasets, probes, experiments.

A :class:`Registry` maps names to objects (usually factories: a class or a function whose keyword
parameters are the entry's options).  Every lookup of an unknown name raises one error type,
:class:`UnknownNameError`, whose message names the kind, the name and the valid choices; every
option check raises :class:`~mtlens.errors.ConfigError` naming the unknown options and the valid ones.
Built-in entries are registered by importing their modules, lazily on first use (``builtins``), so
that importing a registry stays cheap and user code can register its own entries first::

    from mtlens.registry import Registry

    SETTINGS: Registry[SettingFactory] = Registry("setting", builtins=("mtlens.settings.embedded",))

    @SETTINGS.register("my_setting")
    def my_setting(n_train: int = 1000) -> Setting: ...

    SETTINGS.get("my_setting")                      # the factory
    SETTINGS.check_options("my_setting", {"n_train": 5})
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Generic, Iterable, TypeVar, overload

from mtlens.errors import ConfigError

T = TypeVar("T")


class UnknownNameError(ConfigError, KeyError):
    """A name that is not registered; the message lists the registered names.

    A :class:`~mtlens.errors.ConfigError` (so the CLI prints it as one line and exits 2) and a
    :class:`KeyError` (what a failed lookup in a mapping raises).
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Named entries of one kind.

    Args:
        kind: what an entry is, as a user says it ("setting", "method", "probe", ...): used in messages.
        builtins: modules whose import registers the built-in entries; imported on the first lookup.
        ignored_parameters: parameters of an entry's signature that are not user options
            (e.g. ``generator``, which the caller supplies).
        signature_of: the callable whose keyword parameters are an entry's options (default: the
            entry itself; e.g. an experiment's ``plan``).
    """

    def __init__(self, kind: str, builtins: Iterable[str] = (), ignored_parameters: Iterable[str] = ("self",),
                 signature_of: Callable[[T], Callable[..., Any]] | None = None) -> None:
        self.kind = kind
        self._builtins = tuple(builtins)
        self._ignored = frozenset(ignored_parameters)
        self._signature_of = signature_of
        self._entries: dict[str, T] = {}
        self._loaded = not self._builtins

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, entry: T) -> T: ...

    def register(self, name: str, entry: Any = None) -> Any:
        """Register ``entry`` under ``name`` (re-registering replaces it); without ``entry``, a decorator."""
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if entry is None:
            def decorator(obj: T) -> T:
                self._entries[name] = obj
                return obj

            return decorator
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove entry ``name`` (e.g. a test's own plugin); :class:`UnknownNameError` if there is none."""
        self.get(name)
        del self._entries[name]

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self._load_builtins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        return name in self._entries

    def get(self, name: str) -> T:
        """The entry registered as ``name``; :class:`UnknownNameError` listing the valid names otherwise."""
        self._load_builtins()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; available {self.kind}s: {', '.join(sorted(self._entries)) or 'none'}"
            ) from None

    def options(self, name: str) -> dict[str, Any]:
        """The options of entry ``name`` (keyword parameters of its signature) with their defaults
        (``None`` where a parameter has no default)."""
        entry = self.get(name)
        target = self._signature_of(entry) if self._signature_of is not None else entry
        parameters = inspect.signature(target).parameters.values()  # type: ignore[arg-type]
        return {
            p.name: (None if p.default is inspect.Parameter.empty else p.default)
            for p in parameters
            if p.name not in self._ignored and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }

    def check_options(self, name: str, options: dict[str, Any]) -> None:
        """Raise :class:`ConfigError` naming every option that entry ``name`` does not accept."""
        valid = self.options(name)
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ConfigError(f"{self.kind} {name!r} has no option(s) {unknown}; valid options: {sorted(valid) or 'none'}")

    def _load_builtins(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # before importing: the modules register into this registry
        for module in self._builtins:
            importlib.import_module(module)


__all__ = ["Registry", "UnknownNameError"]
