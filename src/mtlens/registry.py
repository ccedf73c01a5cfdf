"""One registry helper for every kind of extension: settings, methods, datasets, probes, experiments.

A :class:`Registry` maps names to objects (usually factories: a class or a function whose keyword
parameters are the entry's options).  Every lookup of an unknown name raises one error type,
:class:`UnknownNameError`, whose message names the kind, the name and the valid choices; every
option check raises :class:`~mtlens.errors.ConfigError` naming the unknown options and the valid ones, and
checks each value against its parameter's annotation (:func:`check_option_values`): annotate an option
``n_train: PositiveInt`` or ``rate: Annotated[float, Field(gt=0, lt=1)]`` and a bad value is refused,
naming the option, before anything is built or trained.

Annotations are the one place an option's constraint is declared (as scikit-learn's
``_param_validation`` declares ``Interval`` and ``StrOptions``): an interval is
``Annotated[float, Interval(ge=0, le=1)]`` (:class:`annotated_types.Interval`, which pydantic
enforces), a set of strings a ``Literal``; the registry checks a config's options against them, and
:func:`validate_options` makes a class's own ``__init__`` check its arguments against the same
annotations, so an entry states no hand-written range check of its own.  A boolean is never taken
for a number (``epochs: true`` is not 1), and an unknown name suggests the nearest registered ones.

Built-in entries are registered by importing their modules, lazily on the first lookup or registration
(``builtins``), so that importing a registry stays cheap; a name is registered once (a user's entry under a
built-in's name is refused, whichever is imported first, :meth:`Registry.register`)::

    from mtlens.registry import Registry

    SETTINGS: Registry[SettingFactory] = Registry("setting", builtins=("mtlens.settings.embedded",))


    @SETTINGS.register("my_setting")
    def my_setting(n_train: int = 1000) -> Setting: ...


    SETTINGS.get("my_setting")  # the factory
    SETTINGS.check_options("my_setting", {"n_train": 5})
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
from collections.abc import Callable, Iterable
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar, Union, cast, get_args, get_origin, overload

from annotated_types import Interval

from mtlens.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import BaseModel

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

MAX_SEED = 2**63 - 1
"""The largest seed: seeds are stored as 64-bit signed integers (the store's ``seed`` column)."""

Seed = Annotated[int, Interval(ge=0, le=MAX_SEED)]
"""A run seed: an integer in ``[0, 2**63 - 1]``."""

MAX_SEEDS = 10_000
"""The most seeds one command may plan (``--seeds``): a study of more runs than that does not finish on
any machine this toolkit targets, and a typo (``--seeds 1e20``) should not start one."""

SeedCount = Annotated[int, Interval(ge=1, le=MAX_SEEDS)]
"""A number of seeds ``0 .. N-1``: ``1 <= N <= MAX_SEEDS``."""

PositiveCount = Annotated[int, Interval(ge=1)]
"""A count of at least 1 (workers, splits)."""

PositiveNumber = Annotated[float, Interval(gt=0)]
"""A finite number > 0."""

UnitInterval = Annotated[float, Interval(ge=0, le=1)]
"""A number in ``[0, 1]`` (a rate, a mixing weight)."""

Probability = Annotated[float, Interval(gt=0, lt=1)]
"""A number strictly between 0 and 1 (a test level, a false discovery rate)."""


NAME_FORBIDDEN = {
    "/": "separates directories in a path",
    "\\": "separates directories in a Windows path",
}
"""The characters no registered name (setting, method, probe, dataset, experiment), nor the setting or method
of a recorded run, may contain, each with why: a setting's and a method's names are parts of a run id
(``setting-mode-task-method-sSEED-HASH``), which names the run's directory in the store, and a dataset's name
is its directory under the data root; a name holding one would put the files in another directory.  Declared
once here and checked by :func:`check_name`."""

RESERVED_NAMES = (".", "..")
"""Names no entry may have: as a directory they name the directory itself or its parent."""


def check_name(kind: str, name: object) -> None:
    """Raise one-line :class:`ConfigError` unless ``name`` is a non-empty string, none of :data:`RESERVED_NAMES`
    and free of every character of :data:`NAME_FORBIDDEN`; the message names the ``kind`` ("setting",
    "method", ...), the name and the rule.  Applied where a name enters a run id or a path: registration
    (:meth:`Registry.register`), a config's setting and method, the Recorder's."""
    rule = (
        f"a {kind} name is part of run ids and store paths: a non-empty string other than "
        f"{' and '.join(map(repr, RESERVED_NAMES))}, containing none of {' '.join(NAME_FORBIDDEN)}"
    )
    if not isinstance(name, str) or not name or name in RESERVED_NAMES:
        raise ConfigError(f"{kind} name {name!r}: {rule}")
    for char, meaning in NAME_FORBIDDEN.items():
        if char in name:
            raise ConfigError(f"{kind} name {name!r} contains {char!r}, which {meaning}; {rule}")


def _definition(entry: object, signature_of: Callable[[Any], Callable[..., Any]] | None) -> str | None:
    """``module.qualname`` of the code that defines ``entry`` (the callable its options come from, unwrapped:
    a probe's ``measure``, a method factory's aggregator), or ``None`` where that is not known."""
    target = signature_of(entry) if signature_of is not None else entry
    target = inspect.unwrap(target) if callable(target) else target
    module, qualname = getattr(target, "__module__", None), getattr(target, "__qualname__", None)
    return f"{module}.{qualname}" if isinstance(module, str) and isinstance(qualname, str) else None


def _defined_by(entry: object, signature_of: Callable[[Any], Callable[..., Any]] | None) -> str:
    """What a clash message calls ``entry``: its :func:`_definition`, or its type."""
    return _definition(entry, signature_of) or f"a {type(entry).__name__}"


def _same_definition(old: object, new: object, signature_of: Callable[[Any], Callable[..., Any]] | None = None) -> bool:
    """Whether ``new`` is ``old`` registered again: the same or an equal object, or one defined by the same
    code (the same ``module.qualname``, :func:`_definition`: its module imported again, a notebook cell run
    again).  Functions made inside another function share a qualified name whatever they do, so those count
    only as the same object."""
    if old is new or old == new:
        return True
    definition = _definition(old, signature_of)
    return definition is not None and "<locals>" not in definition and definition == _definition(new, signature_of)


def did_you_mean(name: object, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` naming the registered names closest to ``name`` (:mod:`difflib`), or ``""``."""
    close = difflib.get_close_matches(str(name), list(choices), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""


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

    def __init__(
        self,
        kind: str,
        builtins: Iterable[str] = (),
        ignored_parameters: Iterable[str] = ("self",),
        signature_of: Callable[[T], Callable[..., Any]] | None = None,
    ) -> None:
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
        """Register ``entry`` under ``name``; without ``entry``, a decorator.

        ``name`` must pass :func:`check_name` (it may become part of a run id or a path), and must not be taken
        by another entry: a name registered already, by a built-in or by user code, is refused with a
        :class:`ConfigError` naming it and the code that registered it, for a run id names its method or setting
        and the stored runs of one entry must never be read as another's.  The built-ins are imported first,
        so the outcome does not depend on whether they were loaded before.  The same entry registered again
        (:func:`_same_definition`: a module imported again, a notebook cell run again) replaces the earlier one.
        """
        check_name(self.kind, name)
        if entry is None:
            return lambda obj: self._add(name, obj)
        return self._add(name, entry)

    def _add(self, name: str, entry: T) -> T:
        """Put ``entry`` under ``name`` (see :meth:`register`); a registration by user code imports the built-ins
        first, one by a built-in module does not (its import may be the first, and the others may import it)."""
        if not self._loaded and not self._registering_builtin():
            self._load_builtins()
        held = self._entries.get(name, entry)
        if not _same_definition(held, entry, self._signature_of):
            raise ConfigError(
                f"{self.kind} {name!r} is registered already, by {_defined_by(held, self._signature_of)}; "
                f"{_defined_by(entry, self._signature_of)} cannot take its name: register it under another name"
            )
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

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` in registration order (the built-ins first unless registered earlier)."""
        self._load_builtins()
        return list(self._entries.items())

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
                f"unknown {self.kind} {name!r}{did_you_mean(name, self._entries)}; "
                f"available {self.kind}s: {', '.join(sorted(self._entries)) or 'none'}"
            ) from None

    def _signature_target(self, name: str) -> Callable[..., Any]:
        """The callable whose keyword parameters are entry ``name``'s options: ``signature_of(entry)``,
        or the entry itself (a callable whenever the registry has no ``signature_of``)."""
        entry = self.get(name)
        if self._signature_of is not None:
            return self._signature_of(entry)
        return cast(Callable[..., Any], entry)

    def options(self, name: str) -> dict[str, Any]:
        """The options of entry ``name`` (keyword parameters of its signature) with their defaults
        (``None`` where a parameter has no default)."""
        target = self._signature_target(name)
        parameters = inspect.signature(target).parameters.values()
        return {
            p.name: (None if p.default is inspect.Parameter.empty else p.default)
            for p in parameters
            if p.name not in self._ignored and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }

    def required_options(self, name: str) -> list[str]:
        """The options of entry ``name`` without a default (keyword parameters a call must be given)."""
        parameters = inspect.signature(self._signature_target(name)).parameters.values()
        return [
            p.name
            for p in parameters
            if p.name not in self._ignored
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and p.default is inspect.Parameter.empty
        ]

    def annotations(self, name: str) -> dict[str, Any]:
        """Each option of entry ``name`` with its declared constraint: the parameter's annotation, resolved
        (``Any`` where there is none); what :meth:`check_options` checks values against."""
        model = _options_model(self._signature_target(name), self._ignored)
        return {option: annotated(field.annotation, field.metadata) for option, field in model.model_fields.items()}

    def describe_options(self, name: str) -> str:
        """``option: constraint = default`` for each option of entry ``name`` (what ``mtlens settings`` lists)."""
        defaults = self.options(name)
        return ", ".join(
            f"{option}: {describe(annotation)} = {defaults[option]!r}"
            for option, annotation in self.annotations(name).items()
        )

    def check_options(self, name: str, options: dict[str, Any]) -> None:
        """Raise :class:`ConfigError` naming every option that entry ``name`` does not accept."""
        valid = self.options(name)
        unknown = sorted(set(options) - set(valid))
        if unknown:
            hint = "".join(did_you_mean(option, valid) for option in unknown)
            raise ConfigError(
                f"{self.kind} {name!r} has no option(s) {unknown}{hint}; valid options: {sorted(valid) or 'none'}"
            )
        target = self._signature_target(name)
        check_option_values(f"{self.kind} {name!r}", target, options, self._ignored)

    def _registering_builtin(self) -> bool:
        """Whether the running registration comes from the import of one of the built-in modules: the top level
        of one of them is being executed."""
        frame = inspect.currentframe()
        while frame is not None:
            if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") in self._builtins:
                return True
            frame = frame.f_back
        return False

    def _load_builtins(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # before importing: the modules register into this registry
        for module in self._builtins:
            importlib.import_module(module)


def check_option_values(
    owner: str, entry: Callable[..., Any], options: dict[str, Any], ignored: Iterable[str] = ("self",)
) -> None:
    """Raise one-line :class:`ConfigError` (starting with ``owner``, e.g. ``"method 'cagrad'"``) naming every
    option of ``options`` whose value does not fit the annotation of ``entry``'s parameter of that name
    (validated by pydantic, in lax mode: ``3`` fits ``float``, ``[1, 2]`` fits ``tuple[int, int]``; no
    boolean fits a number; infinities and NaN fit no ``float``).

    Only the given options are checked (a missing option keeps its default); unannotated parameters
    and annotations that cannot be resolved accept anything.  The values are checked, not converted:
    the caller keeps using ``options`` as given (so stored configs and run ids do not change).
    """
    _check_against(owner, _options_model(entry, frozenset(ignored)), options)


def check_value(owner: str, key: str, value: Any, annotation: Any) -> None:
    """:func:`check_option_values` for one value, ``key=value``, against a declared ``annotation`` (such as
    :data:`Seed`) rather than a parameter's: one-line :class:`ConfigError` (a ``ValueError``) starting with
    ``owner`` if it does not fit."""
    from pydantic import ConfigDict, create_model

    config = ConfigDict(arbitrary_types_allowed=True, allow_inf_nan=False)
    fields: dict[str, Any] = {key: (annotation, ...)}
    _check_against(owner, create_model(f"{key}_value", __config__=config, **fields), {key: value})


def _check_against(owner: str, model: type[BaseModel], options: dict[str, Any]) -> None:
    """Raise the :class:`ConfigError` of :func:`check_option_values` for the ``options`` that ``model``'s
    fields do not accept."""
    from pydantic import ValidationError

    known = {key: value for key, value in options.items() if key in model.model_fields}
    problems = [
        f"{key}={value!r}: expected a number or text, not a boolean"
        for key, value in known.items()
        if contains_bool(value) and not accepts_bool(model.model_fields[key].annotation)
    ]
    try:
        model.model_validate(known)
    except ValidationError as err:
        flagged = {problem.split("=", 1)[0] for problem in problems}
        reasons: dict[str, list[str]] = {}
        for item in err.errors():
            if item["type"] == "missing" and len(item["loc"]) == 1:  # an option not given keeps its default
                continue
            key, *inner = item["loc"]
            # list positions only: the other parts of a location name the branches of a union
            positions = [str(part) for part in inner if isinstance(part, int)]
            reason = item["msg"] + (f" (at item {'.'.join(positions)})" if positions else "")
            if str(key) not in flagged and reason not in reasons.setdefault(str(key), []):
                reasons[str(key)].append(reason)
        problems += [f"{key}={options.get(key)!r}: {', or '.join(why)}" for key, why in reasons.items() if why]
    if problems:
        raise ConfigError(f"{owner}: invalid option value(s): {'; '.join(problems)}") from None


def annotated(annotation: Any, metadata: Iterable[Any]) -> Any:
    """``Annotated[annotation, *metadata]`` (a pydantic field's type with its constraints), or ``annotation``
    itself without metadata."""
    parameters = (annotation, *metadata)
    return Annotated[parameters] if len(parameters) > 1 else annotation


def describe(annotation: Any) -> str:
    """A declared constraint in words: ``int > 0``, ``float in [0, 1]``, ``'a' | 'b'``, ``list[float > 0]``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " | ".join(map(repr, args))
    if origin is Annotated:
        bounds = []
        for meta in args[1:]:
            for attribute, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
                if getattr(meta, attribute, None) is not None:
                    bounds.append(f"{symbol} {getattr(meta, attribute)}")
            if getattr(meta, "min_length", None):
                bounds.append(f"of at least {meta.min_length}")
        return " ".join([describe(args[0]), ", ".join(bounds)]).strip()
    if origin is not None and args:
        inner = ", ".join("..." if arg is Ellipsis else describe(arg) for arg in args)
        if origin in (Union, UnionType):
            return " | ".join(describe(arg) for arg in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def contains_bool(value: Any) -> bool:
    """Whether ``value`` is a boolean or a list, tuple or dict holding one (at any depth)."""
    if isinstance(value, bool):
        return True
    if isinstance(value, dict):
        return any(contains_bool(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(contains_bool(item) for item in value)
    return False


def accepts_bool(annotation: Any) -> bool:
    """Whether ``annotation`` (or a type inside it: ``bool | None``, ``dict[str, Any]``) admits a boolean:
    pydantic's lax mode would otherwise read ``true`` as ``1`` for an ``int``."""
    if annotation is bool or annotation is Any or annotation is object:
        return True
    return any(accepts_bool(arg) for arg in get_args(annotation) if not isinstance(arg, (str, int, float)))


def validate_options(init: F) -> F:
    """Decorator of a class's ``__init__``: every argument given is checked against the annotation of its
    parameter (:func:`check_option_values`), so that a direct ``CAGrad(c=-1)`` is refused as the config
    ``method_options: {c: -1}`` is, from the same declaration; one :class:`ConfigError` naming the class."""

    @functools.wraps(init)
    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        given = inspect.signature(init).bind(self, *args, **kwargs).arguments
        given.pop("self", None)
        check_option_values(type(self).__name__, init, dict(given))
        return init(self, *args, **kwargs)

    return cast(F, checked)


@functools.cache
def _options_model(entry: Callable[..., Any], ignored: frozenset[str]) -> type[BaseModel]:
    """A pydantic model with one field per keyword parameter of ``entry``, typed by its annotation (pydantic is
    imported here, not with the module, so that the command line starts without it)."""
    from pydantic import ConfigDict, PydanticUserError, create_model

    try:
        signature = inspect.signature(entry, eval_str=True)
    except (NameError, TypeError, SyntaxError, AttributeError):  # an annotation that cannot be resolved here
        signature = inspect.signature(entry)
    fields: dict[str, Any] = {}
    for p in signature.parameters.values():
        if p.name in ignored or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        annotation = Any if p.annotation is p.empty or isinstance(p.annotation, str) else p.annotation
        fields[p.name] = (annotation, ... if p.default is p.empty else p.default)
    config = ConfigDict(arbitrary_types_allowed=True, allow_inf_nan=False)
    try:
        return create_model(f"{getattr(entry, '__name__', 'entry')}_options", __config__=config, **fields)
    except PydanticUserError:  # an annotation pydantic cannot build a validator for: accept any value
        untyped: dict[str, Any] = {key: (Any, default) for key, (_, default) in fields.items()}
        return create_model(f"{getattr(entry, '__name__', 'entry')}_options", __config__=config, **untyped)


__all__ = [
    "MAX_SEED",
    "MAX_SEEDS",
    "NAME_FORBIDDEN",
    "RESERVED_NAMES",
    "Interval",
    "PositiveCount",
    "PositiveNumber",
    "Probability",
    "Registry",
    "Seed",
    "SeedCount",
    "UnitInterval",
    "UnknownNameError",
    "accepts_bool",
    "annotated",
    "check_name",
    "check_option_values",
    "check_value",
    "contains_bool",
    "describe",
    "did_you_mean",
    "validate_options",
]
