"""Update methods looked up by name: how per-task losses become parameter gradients.

Every method implements :class:`UpdateMethod`.  The trainer hands it the scaled task
losses ``{t: C * s_t * L_t}`` (scalars from one forward pass) and the model; the method
leaves ``.grad`` set on every trainable parameter, and the trainer's optimizer steps.

``sum`` (linear scalarization, the paper's baseline) back-propagates ``sum_t L_t``.
Register your own with :func:`register_method`; configs say ``method: NAME`` and
``method_options: {...}``.

Built-in methods (formulas, defaults, papers and costs in ``docs/methods.md``):

- linear scalarization: ``sum``, ``mean``;
- gradient aggregators on the shared parameters (:mod:`mtlens.aggregators.matrix`, applied
  by :class:`~mtlens.aggregators.aggregation.GradientAggregation`): ``pcgrad``, ``gradvac``,
  ``cagrad``, ``mgda``, ``imtl_g``, ``nash_mtl``, ``aligned_mtl``, ``graddrop``, ``upgrad``,
  ``rgw``; and ``mgda_ub`` (MGDA on the shared representation);
- loss weightings (:mod:`mtlens.aggregators.weighting`): ``uw``, ``gradnorm``, ``dwa``,
  ``rlw``, ``famo``, ``db_mtl``, ``imtl_l``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from mtlens.aggregators import matrix, weighting
from mtlens.aggregators.aggregation import GradientAggregation, MGDAUpperBound
from mtlens.aggregators.base import UpdateMethod
from mtlens.aggregators.matrix import Aggregate, Aggregator, NonFiniteGradientError
from mtlens.aggregators.scalarization import LinearScalarization
from mtlens.registry import Registry

MethodFactory = Callable[..., UpdateMethod]


def aggregation_factory(aggregator_class: type[Aggregator]) -> MethodFactory:
    """A factory ``(**options) -> GradientAggregation(aggregator_class(**options))`` whose
    signature (the method's options) is the aggregator's."""

    def factory(**options: Any) -> UpdateMethod:
        return GradientAggregation(aggregator_class(**options))

    factory.__signature__ = inspect.signature(aggregator_class, eval_str=True)  # type: ignore[attr-defined]
    factory.__doc__ = aggregator_class.__doc__
    return factory


def mean_scalarization() -> UpdateMethod:
    """``grad = nabla_theta (1/K) sum_t L_t``: the mean of the task losses."""
    return LinearScalarization(reduction="mean")


METHODS: Registry[MethodFactory] = Registry("method", ignored_parameters=("self", "generator"))
"""Every update method by name; its options are the factory's keyword parameters (a random method's
``generator`` is supplied by :func:`make_method`)."""
METHODS.register("sum", LinearScalarization)
METHODS.register("mean", mean_scalarization)
METHODS.register("pcgrad", aggregation_factory(matrix.PCGrad))
METHODS.register("gradvac", aggregation_factory(matrix.GradVac))
METHODS.register("cagrad", aggregation_factory(matrix.CAGrad))
METHODS.register("mgda", aggregation_factory(matrix.MGDA))
METHODS.register("mgda_ub", MGDAUpperBound)
METHODS.register("imtl_g", aggregation_factory(matrix.IMTLG))
METHODS.register("nash_mtl", aggregation_factory(matrix.NashMTL))
METHODS.register("aligned_mtl", aggregation_factory(matrix.AlignedMTL))
METHODS.register("graddrop", aggregation_factory(matrix.GradDrop))
METHODS.register("upgrad", aggregation_factory(matrix.UPGrad))
METHODS.register("rgw", aggregation_factory(matrix.RGW))
METHODS.register("uw", weighting.UncertaintyWeighting)
METHODS.register("gradnorm", weighting.GradNorm)
METHODS.register("dwa", weighting.DWA)
METHODS.register("rlw", weighting.RLW)
METHODS.register("famo", weighting.FAMO)
METHODS.register("db_mtl", weighting.DBMTL)
METHODS.register("imtl_l", weighting.IMTLL)


def register_method(name: str) -> Callable[[MethodFactory], MethodFactory]:
    """Decorator registering an :class:`UpdateMethod` factory under ``name`` (re-registering replaces it)."""
    return METHODS.register(name)


def available_methods() -> list[str]:
    return METHODS.names()


def method_factory(name: str) -> MethodFactory:
    """The factory of method ``name``; :class:`~mtlens.registry.UnknownNameError` listing the methods otherwise."""
    return METHODS.get(name)


def check_method_options(name: str, options: dict[str, Any]) -> None:
    """Raise :class:`~mtlens.errors.ConfigError` (a ``ValueError``) naming options the method does not accept,
    or whose value does not fit the annotation of the factory's parameter."""
    METHODS.check_options(name, options)


def make_method(name: str, options: dict[str, Any], seed: int) -> UpdateMethod:
    """Instantiate method ``name``; random methods get a generator seeded from ``seed``."""
    check_method_options(name, options)
    factory = method_factory(name)
    if "generator" in inspect.signature(factory).parameters:
        import torch

        from mtlens.seeding import derived_seed

        return factory(generator=torch.Generator().manual_seed(derived_seed(seed, "method", name)), **options)
    return factory(**options)


__all__ = [
    "METHODS",
    "Aggregate",
    "Aggregator",
    "GradientAggregation",
    "LinearScalarization",
    "MGDAUpperBound",
    "NonFiniteGradientError",
    "UpdateMethod",
    "aggregation_factory",
    "available_methods",
    "check_method_options",
    "make_method",
    "method_factory",
    "register_method",
]
