"""Loading user plugins: the modules that register a user's settings, methods, probes, datasets and
experiments, so that every command sees them.

A plugin is a Python module whose import registers entries (``@register_setting("my_blobs")``,
``register_method(...)``, ``@register_probe(...)``, ...).  :func:`load_plugins` imports, in this order:

1. every entry point of the group :data:`ENTRY_POINT_GROUP` (``mtlens.plugins``) of the installed
   packages (read with :func:`importlib.metadata.entry_points`); an entry point names a module
   (``my_blobs = "my_pkg.mtlens_plugin"``), whose import registers its entries, or a function
   (``my_blobs = "my_pkg:register"``), which is called with no arguments;
2. the modules listed in the environment variable :data:`ENV_VAR` (``MTLENS_PLUGINS``), comma-separated;
3. the modules given by the caller (the CLI's ``--plugin MODULE``, repeatable).

A module is a dotted module name, found on ``sys.path`` and in the current directory (as
``python -m`` finds it), or the path of a ``.py`` file.  A plugin that cannot be loaded raises
:class:`PluginError`: one line naming the plugin, where it came from and the error (with the file
and line where it was raised inside the plugin), which the CLI prints before exiting with status 2.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

from mtlens.errors import ConfigError

ENTRY_POINT_GROUP = "mtlens.plugins"
"""The entry-point group of installed plugin packages (``[project.entry-points."mtlens.plugins"]``)."""

ENV_VAR = "MTLENS_PLUGINS"
"""Environment variable: comma-separated plugin modules loaded by every command."""


class PluginError(ConfigError):
    """A plugin that could not be loaded; the message names it, its source and the error."""


_REQUESTED: list[str] = []
"""The modules this process loaded by name (``modules`` of :func:`load_plugins`; files as absolute paths)."""


def requested_plugins() -> list[str]:
    """The plugin modules this process was asked to load (beyond entry points and :data:`ENV_VAR`, which
    a worker process finds by itself): what an executor passes to its workers' :func:`load_plugins`."""
    return list(_REQUESTED)


def plugin_modules(environ: Mapping[str, str] | None = None) -> list[str]:
    """The modules listed in :data:`ENV_VAR` of ``environ`` (default ``os.environ``), in order."""
    text = (os.environ if environ is None else environ).get(ENV_VAR, "")
    return [name.strip() for name in text.split(",") if name.strip()]


def load_plugins(modules: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> list[str]:
    """Load the entry-point plugins, then the :data:`ENV_VAR` modules, then ``modules``; return the
    names loaded, in order (see the module docstring).  Loading a module again is a no-op."""
    loaded = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        source = f"entry point {entry_point.name!r} = {entry_point.value!r} of {_distribution(entry_point)}"
        try:
            target = entry_point.load()
            if callable(target) and not isinstance(target, ModuleType):
                target()
        except Exception as err:
            raise PluginError(_failure(entry_point.value, source, err)) from None
        loaded.append(entry_point.value)
    for name, source in [(m, f"${ENV_VAR}") for m in plugin_modules(environ)] + [(m, "--plugin") for m in modules]:
        try:
            import_plugin(name)
        except Exception as err:
            raise PluginError(_failure(name, source, err)) from None
        loaded.append(name)
        if source == "--plugin":
            path = str(Path(name).resolve()) if _is_file(name) else name
            if path not in _REQUESTED:
                _REQUESTED.append(path)
    return loaded


def _is_file(name: str) -> bool:
    """Whether plugin ``name`` is a file path rather than a module name."""
    return name.endswith(".py") or os.sep in name


def import_plugin(name: str) -> ModuleType:
    """Import plugin module ``name``: a ``.py`` file path, or a dotted module name looked up on
    ``sys.path`` and then in the current directory."""
    if _is_file(name):
        path = Path(name).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {name}")
        module_name = path.stem
        if module_name in sys.modules and getattr(sys.modules[module_name], "__file__", None) == str(path):
            return sys.modules[module_name]
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {name} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        return module
    if importlib.util.find_spec(name.partition(".")[0]) is None and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # `mtlens` as a console script does not search the current directory
    return importlib.import_module(name)


def _distribution(entry_point: importlib.metadata.EntryPoint) -> str:
    """The name of the package that declares ``entry_point`` ("an installed package" if unknown)."""
    dist = getattr(entry_point, "dist", None)
    return f"package {dist.name}" if dist is not None else "an installed package"


def _failure(name: str, source: str, err: BaseException) -> str:
    """One line: the plugin, where it was named, the error, and the innermost frame of the plugin's
    own code (not importlib's, nor mtlens's: a name refused by ``register_setting`` is the plugin's line
    that registers it) where it was raised."""
    message = " ".join(str(err).split()) or "(no message)"
    where = ""
    package = str(Path(__file__).parent)
    frames = [
        f
        for f in traceback.extract_tb(err.__traceback__)
        if "importlib" not in f.filename and not f.filename.startswith(package + os.sep)
    ]
    if frames:
        where = f" (at {frames[-1].filename}:{frames[-1].lineno})"
    return f"plugin {name!r} ({source}) failed to load: {type(err).__name__}: {message}{where}"


__all__ = [
    "ENTRY_POINT_GROUP",
    "ENV_VAR",
    "PluginError",
    "import_plugin",
    "load_plugins",
    "plugin_modules",
    "requested_plugins",
]
