"""The one registry helper: lookups, one error type listing the choices, signature-checked options."""

from __future__ import annotations

import sys
import types
from typing import Annotated, Literal

import pytest
from pydantic import Field, PositiveInt

from mtlens.errors import ConfigError
from mtlens.registry import Registry, UnknownNameError, check_name


def test_register_get_names_and_unknown_name_lists_choices() -> None:
    things: Registry = Registry("thing")

    @things.register("b")
    def b(x: int = 1) -> int:
        return x

    things.register("a", len)
    assert things.names() == ["a", "b"]
    assert things.get("b") is b and "a" in things and "c" not in things
    with pytest.raises(UnknownNameError, match=r"unknown thing 'c'; available things: a, b") as info:
        things.get("c")
    assert isinstance(info.value, ConfigError) and isinstance(info.value, KeyError)
    assert str(info.value).startswith("unknown thing")  # not quoted as a KeyError would be
    things.unregister("a")
    assert things.names() == ["b"]
    with pytest.raises(UnknownNameError, match="unknown thing 'a'"):
        things.unregister("a")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("team/blobs", "thing name 'team/blobs' contains '/', which separates directories in a path"),
        ("..\\up", r"thing name '..\\\\up' contains '\\\\'"),
        ("..", r"thing name '\.\.': a thing name is part of run ids and store paths"),
        (".", r"thing name '\.': "),
        ("", r"thing name '': .*a non-empty string other than '\.' and '\.\.', containing none of / \\"),
        (None, "thing name None: "),
    ],
)
def test_a_name_that_cannot_name_a_directory_is_refused_at_registration(name, message) -> None:
    """A setting's or method's name is part of the run id, the run's directory: ``team/blobs`` trained and
    reported "finished" while the store showed a damaged run ``team``.  Every registry refuses such names,
    in both forms of ``register``."""
    things: Registry = Registry("thing")
    with pytest.raises(ConfigError, match=message):
        things.register(name, len)
    with pytest.raises(ConfigError, match=message):
        things.register(name)
    assert things.names() == []


def test_every_built_in_name_passes_the_name_rule() -> None:
    """The rule refuses no built-in entry, so no stored run's id changes."""
    from mtlens.aggregators import METHODS
    from mtlens.data.registry import DATASETS
    from mtlens.experiments import EXPERIMENTS
    from mtlens.probes import PROBES
    from mtlens.settings import SETTINGS

    for registry in (SETTINGS, METHODS, PROBES, DATASETS, EXPERIMENTS):
        assert registry.names()
        for name in registry.names():
            check_name(registry.kind, name)


def test_options_follow_the_signature_and_unknown_options_are_named() -> None:
    things: Registry = Registry("method", ignored_parameters=("self", "generator"))

    @things.register("m")
    class M:
        def __init__(self, alpha: float = 0.5, beta: int = 2, generator: object = None, *args: int, **kw: int) -> None:
            pass

    assert things.options("m") == {"alpha": 0.5, "beta": 2}
    things.check_options("m", {"alpha": 1.0})
    with pytest.raises(
        ConfigError, match=r"method 'm' has no option\(s\) \['gamma'\]; valid options: \['alpha', 'beta'\]"
    ):
        things.check_options("m", {"gamma": 1, "alpha": 2})


def test_options_can_come_from_a_callable_the_entry_holds() -> None:
    class Entry:
        def __init__(self, plan):
            self.plan = plan

    things: Registry = Registry("experiment", ignored_parameters=("base",), signature_of=lambda e: e.plan)
    things.register("e", Entry(lambda base, scale=1.0: base))
    assert things.options("e") == {"scale": 1.0}
    with pytest.raises(ConfigError, match=r"experiment 'e' has no option\(s\) \['lr'\]; valid options: \['scale'\]"):
        things.check_options("e", {"lr": 1})


def _lazy_registry(monkeypatch: pytest.MonkeyPatch, builtin: object) -> tuple[Registry, list[str]]:
    """A registry whose built-in module registers ``builtin`` as ``"builtin"``, and the log of its imports."""
    things: Registry = Registry("setting", builtins=("fake_builtin_settings",))
    imported: list[str] = []

    def _exec() -> None:
        imported.append("yes")
        things.register("builtin", builtin)

    monkeypatch.setitem(sys.modules, "fake_builtin_settings", types.ModuleType("fake_builtin_settings"))
    monkeypatch.setattr("importlib.import_module", lambda name: _exec())
    return things, imported


def test_builtins_are_imported_lazily_on_the_first_lookup_or_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    things, imported = _lazy_registry(monkeypatch, object())
    assert imported == []
    things.register("user", 1)
    assert imported == ["yes"]
    assert things.names() == ["builtin", "user"]
    things.names()
    assert imported == ["yes"]


@pytest.mark.parametrize("builtins_first", [True, False], ids=["builtins-loaded-first", "user-registers-first"])
def test_a_name_taken_by_a_built_in_is_refused_whatever_the_import_order(
    monkeypatch: pytest.MonkeyPatch, builtins_first: bool
) -> None:
    """A user entry under a built-in's name was dropped (registered before the lazy built-ins, which overwrote
    it) or replaced the built-in (registered after): one error now, naming the name and who holds it."""

    def builtin() -> str:
        return "built-in"

    def mine() -> str:
        return "user"

    things, _ = _lazy_registry(monkeypatch, builtin)
    if builtins_first:
        things.names()
    with pytest.raises(ConfigError, match=r"setting 'builtin' is registered already, by .*\.builtin; .*\.mine cannot"):
        things.register("builtin", mine)
    assert things.get("builtin") is builtin
    with pytest.raises(ConfigError, match="registered already"):
        things.register("builtin")(mine)
    assert things.get("builtin") is builtin


def test_registering_the_same_entry_again_is_allowed_and_another_one_is_refused() -> None:
    """The same object, or the same definition from a module imported again (a notebook cell run again), may be
    registered again (it replaces the earlier one); another object under the name is refused, including another
    function made by the same factory (same qualified name, other behaviour) and another aggregator's method."""
    from mtlens.aggregators import MGDA, PCGrad, aggregation_factory

    things: Registry = Registry("thing")
    things.register("len", len)
    things.register("len", len)
    source = "def measure(x: int = 1) -> int:\n    return x\n"
    first, again = ({"__name__": "user_module"}, {"__name__": "user_module"})
    exec(source, first)
    exec(source, again)  # the module imported again: another function, the same definition
    things.register("measure", first["measure"])
    things.register("measure", again["measure"])
    assert things.get("measure") is again["measure"]
    other: dict[str, object] = {"__name__": "other_module"}
    exec(source, other)
    with pytest.raises(ConfigError, match=r"thing 'measure' is registered already, by user_module\.measure; "):
        things.register("measure", other["measure"])

    def power(p: int):
        def factory() -> int:
            return p

        return factory

    things.register("power", power(1))
    with pytest.raises(ConfigError, match="registered already"):
        things.register("power", power(2))
    things.register("pcgrad", aggregation_factory(PCGrad))
    things.register("pcgrad", aggregation_factory(PCGrad))
    with pytest.raises(ConfigError, match=r"by mtlens\.aggregators\._pcgrad\.PCGrad; mtlens\.aggregators\._mgda\.MGDA"):
        things.register("pcgrad", aggregation_factory(MGDA))


def test_option_values_are_checked_against_the_annotations_without_being_converted() -> None:
    things: Registry = Registry("setting")

    @things.register("s")
    def s(
        n_train: PositiveInt = 10,
        rate: Annotated[float, Field(gt=0, lt=1)] = 0.5,
        variant: Literal["a", "b"] = "a",
        size: tuple[int, int] = (8, 8),
        anything=None,
    ) -> None:
        return None

    for fine in ({}, {"n_train": 3, "rate": 0.25, "variant": "b", "size": [4, 4], "anything": object()}):
        things.check_options("s", fine)  # a list of two ints is a pair
    bad = {"n_train": -5, "rate": float("nan"), "variant": "c", "size": [4]}
    with pytest.raises(ConfigError) as info:
        things.check_options("s", bad)
    message = str(info.value)
    assert message.startswith("setting 's': invalid option value(s): ") and "\n" not in message
    for fragment in (
        "n_train=-5: Input should be greater than 0",
        "rate=nan: Input should be a finite number",
        "variant='c': Input should be 'a' or 'b'",
        "size=[4]",
    ):
        assert fragment in message
    with pytest.raises(ConfigError, match=r"rate=1\.0: Input should be less than 1"):
        things.check_options("s", {"rate": 1.0})
    assert bad == {"n_train": -5, "rate": bad["rate"], "variant": "c", "size": [4]}  # not converted in place
