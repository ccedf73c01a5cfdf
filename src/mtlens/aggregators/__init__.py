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
from typing import Any, Callable

from mtlens.aggregators import matrix, weighting
from mtlens.aggregators.aggregation import GradientAggregation, MGDAUpperBound
from mtlens.aggregators.base import UpdateMethod
from mtlens.aggregators.matrix import Aggregate, Aggregator, NonFiniteGradientError
from mtlens.aggregators.scalarization import LinearScalarization

MethodFactory = Callable[..., UpdateMethod]


def aggregation_factory(aggregator_class: type[Aggregator]) -> MethodFactory:
    """A factory ``(**options) -> GradientAggregation(aggregator_class(**options))`` whose
    signature (the method's options) is the aggregator's."""

    def factory(**options: Any) -> UpdateMethod:
        return GradientAggregation(aggregator_class(**options))

    factory.__signature__ = inspect.signature(aggregator_class)  # type: ignore[attr-defined]
    factory.__doc__ = aggregator_class.__doc__
    return factory


def mean_scalarization() -> UpdateMethod:
    """``grad = nabla_theta (1/K) sum_t L_t``: the mean of the task losses."""
    return LinearScalarization(reduction="mean")


_REGISTRY: dict[str, MethodFactory] = {
    "sum": LinearScalarization,
    "mean": mean_scalarization,
    "pcgrad": aggregation_factory(matrix.PCGrad),
    "gradvac": aggregation_factory(matrix.GradVac),
    "cagrad": aggregation_factory(matrix.CAGrad),
    "mgda": aggregation_factory(matrix.MGDA),
    "mgda_ub": MGDAUpperBound,
    "imtl_g": aggregation_factory(matrix.IMTLG),
    "nash_mtl": aggregation_factory(matrix.NashMTL),
    "aligned_mtl": aggregation_factory(matrix.AlignedMTL),
    "graddrop": aggregation_factory(matrix.GradDrop),
    "upgrad": aggregation_factory(matrix.UPGrad),
    "rgw": aggregation_factory(matrix.RGW),
    "uw": weighting.UncertaintyWeighting,
    "gradnorm": weighting.GradNorm,
    "dwa": weighting.DWA,
    "rlw": weighting.RLW,
    "famo": weighting.FAMO,
    "db_mtl": weighting.DBMTL,
    "imtl_l": weighting.IMTLL,
}


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

        from mtlens.seeding import derived_seed

        return factory(generator=torch.Generator().manual_seed(derived_seed(seed, "method", name)), **options)
    return factory(**options)


__all__ = ["Aggregate", "Aggregator", "GradientAggregation", "LinearScalarization", "MGDAUpperBound",
           "NonFiniteGradientError", "UpdateMethod", "aggregation_factory", "available_methods",
           "check_method_options", "make_method", "method_factory", "register_method"]
