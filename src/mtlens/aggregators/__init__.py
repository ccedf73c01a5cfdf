"""Update methods looked up by name: how per-task losses become parameter gradients.

Every method implements :class:`UpdateMethod`.  The trainer hands it the scaled task
losses ``{t: C * s_t * L_t}`` (scalars from one forward pass) and the model; the method
leaves ``.grad`` set on every trainable parameter, and the trainer's optimizer steps.

``sum`` (linear scalarization, the paper's baseline) back-propagates ``sum_t L_t``.
Register your own with :func:`register_method`; configs say ``method: NAME`` and
``method_options: {...}``.

Built-in methods (formulas, defaults, papers and costs in ``docs/methods.md``):

- linear scalarization: ``sum``, ``mean`` (:class:`LinearScalarization`);
- gradient aggregators on the shared parameters (pure maps of ``G``: :class:`Aggregator`, applied by
  :class:`GradientAggregation`): ``pcgrad``, ``gradvac``, ``cagrad``, ``mgda``, ``imtl_g``, ``nash_mtl``,
  ``aligned_mtl``, ``graddrop``, ``upgrad``, ``rgw``; and ``mgda_ub`` (MGDA on the shared representation);
- loss weightings (:class:`LossWeighting`): ``uw``, ``gradnorm``, ``dwa``, ``rlw``, ``famo``, ``db_mtl``,
  ``imtl_l``.

Layout (as torchjd's): one small private module per method (``_pcgrad.py``, ``_famo.py``, ...), whose class
docstring states the formula, defaults and degenerate cases; the bases beside them (``_aggregator.py``,
``_py``, ``_gradient_aggregation.py``) and the shared exact solvers on the Gram matrix
(:mod:`mtlens.aggregators.solvers`).  Import the classes from this package.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from mtlens.aggregators._aggregator import (
    Aggregate,
    Aggregator,
    GramianAggregator,
    NonFiniteGradientError,
    RandomAggregator,
    check_gradient_matrix,
)
from mtlens.aggregators._aligned_mtl import AlignedMTL
from mtlens.aggregators._cagrad import CAGrad
from mtlens.aggregators._db_mtl import DBMTL
from mtlens.aggregators._dwa import DWA
from mtlens.aggregators._famo import FAMO
from mtlens.aggregators._graddrop import GradDrop
from mtlens.aggregators._gradient_aggregation import GradientAggregation
from mtlens.aggregators._gradnorm import GradNorm
from mtlens.aggregators._gradvac import GradVac
from mtlens.aggregators._imtl_g import IMTLG
from mtlens.aggregators._imtl_l import IMTLL
from mtlens.aggregators._mean import Mean
from mtlens.aggregators._mgda import MGDA
from mtlens.aggregators._mgda_ub import MGDAUpperBound
from mtlens.aggregators._nash_mtl import NashMTL
from mtlens.aggregators._pcgrad import PCGrad
from mtlens.aggregators._rgw import RGW
from mtlens.aggregators._rlw import RLW
from mtlens.aggregators._scalarization import LinearScalarization
from mtlens.aggregators._sum import Sum
from mtlens.aggregators._upgrad import UPGrad
from mtlens.aggregators._uw import UncertaintyWeighting
from mtlens.aggregators._weighting import LossWeighting
from mtlens.aggregators.base import UpdateMethod
from mtlens.registry import Registry

MethodFactory = Callable[..., UpdateMethod]


def aggregation_factory(aggregator_class: type[Aggregator]) -> MethodFactory:
    """A factory ``(**options) -> GradientAggregation(aggregator_class(**options))`` whose
    signature (the method's options) is the aggregator's, and which wraps the aggregator (``__wrapped__``: the
    registry tells one method from another by the aggregator's class, :meth:`~mtlens.registry.Registry.register`)."""

    def factory(**options: Any) -> UpdateMethod:
        return GradientAggregation(aggregator_class(**options))

    factory.__signature__ = inspect.signature(aggregator_class, eval_str=True)  # type: ignore[attr-defined]
    factory.__doc__ = aggregator_class.__doc__
    factory.__wrapped__ = aggregator_class  # type: ignore[attr-defined]  # what the registry names it by
    return factory


def mean_scalarization() -> UpdateMethod:
    """``grad = nabla_theta (1/K) sum_t L_t``: the mean of the task losses."""
    return LinearScalarization(reduction="mean")


METHODS: Registry[MethodFactory] = Registry("method", ignored_parameters=("self", "generator"))
"""Every update method by name; its options are the factory's keyword parameters (a random method's
``generator`` is supplied by :func:`make_method`)."""
METHODS.register("sum", LinearScalarization)
METHODS.register("mean", mean_scalarization)
METHODS.register("pcgrad", aggregation_factory(PCGrad))
METHODS.register("gradvac", aggregation_factory(GradVac))
METHODS.register("cagrad", aggregation_factory(CAGrad))
METHODS.register("mgda", aggregation_factory(MGDA))
METHODS.register("mgda_ub", MGDAUpperBound)
METHODS.register("imtl_g", aggregation_factory(IMTLG))
METHODS.register("nash_mtl", aggregation_factory(NashMTL))
METHODS.register("aligned_mtl", aggregation_factory(AlignedMTL))
METHODS.register("graddrop", aggregation_factory(GradDrop))
METHODS.register("upgrad", aggregation_factory(UPGrad))
METHODS.register("rgw", aggregation_factory(RGW))
METHODS.register("uw", UncertaintyWeighting)
METHODS.register("gradnorm", GradNorm)
METHODS.register("dwa", DWA)
METHODS.register("rlw", RLW)
METHODS.register("famo", FAMO)
METHODS.register("db_mtl", DBMTL)
METHODS.register("imtl_l", IMTLL)


def register_method(name: str) -> Callable[[MethodFactory], MethodFactory]:
    """Decorator registering an :class:`UpdateMethod` factory under ``name``, which no other method may hold
    (:meth:`~mtlens.registry.Registry.register`)."""
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
    "DBMTL",
    "DWA",
    "FAMO",
    "IMTLG",
    "IMTLL",
    "METHODS",
    "MGDA",
    "RGW",
    "RLW",
    "Aggregate",
    "Aggregator",
    "AlignedMTL",
    "CAGrad",
    "GradDrop",
    "GradNorm",
    "GradVac",
    "GradientAggregation",
    "GramianAggregator",
    "LinearScalarization",
    "LossWeighting",
    "MGDAUpperBound",
    "Mean",
    "MethodFactory",
    "NashMTL",
    "NonFiniteGradientError",
    "PCGrad",
    "RandomAggregator",
    "Sum",
    "UPGrad",
    "UncertaintyWeighting",
    "UpdateMethod",
    "aggregation_factory",
    "available_methods",
    "check_gradient_matrix",
    "check_method_options",
    "make_method",
    "method_factory",
    "register_method",
]
