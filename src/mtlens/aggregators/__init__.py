"""Update methods looked up by name: how per-task losses become parameter gradients.

Every method implements :class:`UpdateMethod`.  The trainer hands it the scaled task
losses ``{t: C * s_t * L_t}`` (scalars from one forward pass) and the model; the method
leaves ``.grad`` set on every trainable parameter, and the trainer's optimizer steps.

``sum`` (linear scalarization, the paper's baseline) back-propagates ``sum_t L_t``.
Register your own with :func:`register_method`; configs say ``method: NAME`` and
``method_options: {...}``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from mtlens.aggregators.base import UpdateMethod
from mtlens.aggregators.scalarization import LinearScalarization

MethodFactory = Callable[..., UpdateMethod]

_REGISTRY: dict[str, MethodFactory] = {"sum": LinearScalarization}


def register_method(name: str) -> Callable[[MethodFactory], MethodFactory]:
    """Decorator registering an :class:`UpdateMethod` factory under ``name``."""

    def decorator(factory: MethodFactory) -> MethodFactory:
        _REGISTRY[name] = factory
        return factory

    return decorator


def available_methods() -> list[str]:
    return sorted(_REGISTRY)


def method_factory(name: str) -> MethodFactory:
    if name not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; available methods: {', '.join(available_methods())}")
    return _REGISTRY[name]


def check_method_options(name: str, options: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming options the method does not accept."""
    parameters = inspect.signature(method_factory(name)).parameters
    valid = [p for p in parameters if p not in ("self", "generator")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"method {name!r} has no option(s) {unknown}; valid options: {valid or 'none'}")


def make_method(name: str, options: dict[str, Any], seed: int) -> UpdateMethod:
    """Instantiate method ``name``; random methods get a generator seeded from ``seed``."""
    check_method_options(name, options)
    factory = method_factory(name)
    if "generator" in inspect.signature(factory).parameters:
        import torch

        from mtlens.models import derived_seed

        return factory(generator=torch.Generator().manual_seed(derived_seed(seed, "method", name)), **options)
    return factory(**options)


__all__ = ["LinearScalarization", "UpdateMethod", "available_methods", "check_method_options",
           "make_method", "method_factory", "register_method"]
