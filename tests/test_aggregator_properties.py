"""Property tests of every gradient aggregator in the method registry, on gradient matrices drawn
by hypothesis: each aggregator is checked for the guarantees its class declares
(:attr:`~mtlens.aggregators.Aggregator.scale_degree`, ``permutation_invariant``,
``task_scale_invariant``, :meth:`~mtlens.aggregators.Aggregator.conflict_bound`) and for
finite, defined answers on degenerate input.  Registering a method puts it under test here.

The matrices come from five families (random, conflicting, low-rank, nearly parallel, mixed
norms) with row norms between 1e-4 and 1e4; the number of examples is bounded and the
examples are derandomized, so the run is fast and the same on every machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlens.aggregators import Aggregator, GradientAggregation, NonFiniteGradientError, available_methods, make_method

EXAMPLES = settings(max_examples=15, deadline=None, derandomize=True)

# option variants tested besides each registered method's defaults
VARIANTS: dict[str, list[dict]] = {
    "mgda": [{"normalization": "l2"}],
    "cagrad": [{"rescale": 0}, {"c": 0.9, "rescale": 2}],
    "upgrad": [{"reg_eps": 0.0}],
    "nash_mtl": [{"max_norm": 0.0}],
    "graddrop": [{"leak": 0.3}],
}


def aggregator_cases() -> list[tuple[str, dict]]:
    """``(name, options)`` for every registered method that applies an aggregator to ``G``."""
    cases = []
    for name in available_methods():
        if isinstance(make_method(name, {}, seed=0), GradientAggregation):
            cases += [(name, {})] + [(name, options) for options in VARIANTS.get(name, [])]
    return cases


CASES = aggregator_cases()
IDS = [name + "".join(f"-{k}={v}" for k, v in options.items()) for name, options in CASES]


def make(name: str, options: dict) -> Aggregator:
    """A fresh aggregator (random ones with a generator seeded identically every time)."""
    method = make_method(name, options, seed=0)
    assert isinstance(method, GradientAggregation)
    return method.aggregator


def unit_rows(k: int, p: int, family: str, seed: int) -> np.ndarray:
    """``k`` unit rows of one family of gradient matrices."""
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((k, p))
    if family == "conflicting":
        rows[1:] = -0.8 * rows[:1] + 0.4 * rows[1:]
    elif family == "low_rank":
        rows = rng.standard_normal((k, 1 + k // 3)) @ rng.standard_normal((1 + k // 3, p))
    elif family == "nearly_parallel":
        rows = rows[:1] + 1e-3 * rows
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@st.composite
def gradient_matrices(draw: st.DrawFn, min_k: int = 1, max_k: int = 5) -> torch.Tensor:
    """A float64 ``(K, P)`` matrix with row norms in [1e-4, 1e4]: one common scale, and for the
    mixed-norm family each row's own within 3 decades of it."""
    k = draw(st.integers(min_k, max_k))
    p = draw(st.integers(2, 9))
    family = draw(st.sampled_from(["random", "conflicting", "low_rank", "nearly_parallel", "mixed_norms"]))
    seed = draw(st.integers(0, 2**16))
    exponent = draw(st.floats(-4.0, 4.0))
    exponents = np.full(k, exponent)
    if family == "mixed_norms":
        exponents = np.clip(exponent + np.random.default_rng(seed + 1).uniform(-3.0, 3.0, k), -4.0, 4.0)
    return torch.from_numpy(unit_rows(k, p, family, seed) * 10.0 ** exponents[:, None])


def magnitude(matrix: torch.Tensor, degree: int) -> float:
    """The natural size of an update of scale degree ``degree``: ``(sum_k ||g_k||)^degree``."""
    return float(matrix.norm(dim=1).sum()) ** degree


TOLERANCE = 1e-6  # relative to magnitude(); CAGrad (an iterative solve with a certified gap) needs the most


@pytest.mark.parametrize("name,options", CASES, ids=IDS)
@EXAMPLES
@given(matrix=gradient_matrices(), position=st.floats(0.0, 1.0))
def test_scaling_all_gradients_scales_the_update_by_the_declared_degree(name, options, matrix, position):
    """``update(a G) = a^degree update(G)`` for ``a`` anywhere that keeps the norms in [1e-4, 1e4]."""
    aggregator = make(name, options)
    degree = aggregator.scale_degree
    if degree is None:
        return
    norms = matrix.norm(dim=1)
    norms = norms[norms > 0]
    lowest, highest = -4.0 - float(norms.min().log10()), 4.0 - float(norms.max().log10())
    factor = 10.0 ** (lowest + position * (highest - lowest))
    expected = factor**degree * aggregator(matrix)
    scaled = make(name, options)(matrix * factor)
    torch.testing.assert_close(scaled, expected, rtol=0, atol=TOLERANCE * magnitude(matrix * factor, degree))


@pytest.mark.parametrize("name,options", CASES, ids=IDS)
@EXAMPLES
@given(matrix=gradient_matrices(min_k=2), seed=st.integers(0, 1000))
def test_reordering_the_tasks_permutes_the_weights_and_keeps_the_update(name, options, matrix, seed):
    aggregator = make(name, options)
    if not aggregator.permutation_invariant:
        return
    order = torch.randperm(matrix.shape[0], generator=torch.Generator().manual_seed(seed))
    result, permuted = aggregator.aggregate(matrix), make(name, options).aggregate(matrix[order])
    atol = TOLERANCE * magnitude(matrix, aggregator.scale_degree if aggregator.scale_degree is not None else 1)
    torch.testing.assert_close(permuted.update, result.update, rtol=0, atol=atol)
    if result.weights is not None:
        assert permuted.weights is not None
        torch.testing.assert_close(permuted.weights @ matrix[order], result.weights @ matrix, rtol=0, atol=atol)


@pytest.mark.parametrize("name,options", CASES, ids=IDS)
@EXAMPLES
@given(matrix=gradient_matrices(), exponents=st.lists(st.floats(-2.0, 2.0), min_size=5, max_size=5))
def test_scaling_one_task_keeps_the_update_where_declared(name, options, matrix, exponents):
    aggregator = make(name, options)
    if not aggregator.task_scale_invariant:
        return
    factors = 10.0 ** torch.tensor(exponents[: matrix.shape[0]], dtype=matrix.dtype)
    torch.testing.assert_close(
        make(name, options)(matrix * factors[:, None]),
        aggregator(matrix),
        rtol=0,
        atol=TOLERANCE * magnitude(matrix, aggregator.scale_degree or 0),
    )


@pytest.mark.parametrize("name,options", CASES, ids=IDS)
@EXAMPLES
@given(matrix=gradient_matrices())
def test_update_respects_the_declared_conflict_bound(name, options, matrix):
    aggregator = make(name, options)
    result = aggregator.aggregate(matrix)
    gram = (matrix @ matrix.T).numpy()
    weights = None if result.weights is None else result.weights.numpy()
    bound = aggregator.conflict_bound(gram, weights)
    if bound is None:
        return
    # rounding: the products g_k . update are accurate to ~eps ||g_k|| sum_j |w_j| ||g_j||
    norms = matrix.norm(dim=1).numpy()
    spread = norms * (float(np.abs(weights) @ norms) if weights is not None else float(result.update.norm()))
    assert ((matrix @ result.update).numpy() >= bound - 1e-9 * spread).all()


@pytest.mark.parametrize("name,options", CASES, ids=IDS)
@EXAMPLES
@given(
    matrix=gradient_matrices(),
    zero_rows=st.lists(st.booleans(), min_size=5, max_size=5),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_zero_rows_and_float32_give_a_finite_update(name, options, matrix, zero_rows, dtype):
    """Tasks with a zero gradient (finished tasks, unused heads) and float32 gradients: no error,
    no NaN; a zero matrix gives the zero update."""
    mask = torch.tensor(zero_rows[: matrix.shape[0]], dtype=torch.bool)
    matrix = torch.where(mask[:, None], torch.zeros_like(matrix), matrix).to(dtype)
    update = make(name, options)(matrix)
    assert update.dtype == dtype and torch.isfinite(update).all()
    if bool(mask.all()):
        assert torch.equal(update, torch.zeros_like(update))


@pytest.mark.parametrize("name,options", CASES, ids=IDS)
@EXAMPLES
@given(matrix=gradient_matrices(max_k=1), copies=st.integers(1, 4))
def test_identical_tasks_and_a_single_task_give_a_positive_multiple(name, options, matrix, copies):
    g = matrix[0]
    update = make(name, options)(g.expand(copies, -1).clone())
    scale = float(update @ g / (g @ g))
    assert scale > 0
    torch.testing.assert_close(update, scale * g, rtol=1e-9, atol=0)


@pytest.mark.parametrize("name,options", CASES, ids=IDS)
@EXAMPLES
@given(matrix=gradient_matrices(max_k=1), factor=st.floats(0.1, 10.0))
def test_exactly_opposite_tasks_give_a_finite_update(name, options, matrix, factor):
    """Only finiteness: the size differs by method (IMTL-G's pseudo-inverse weights, like
    torchjd's, grow as ``1 / |1 - factor|``)."""
    for dtype in (torch.float32, torch.float64):
        g = matrix[0].to(dtype)
        assert torch.isfinite(make(name, options)(torch.stack([g, -factor * g]))).all()


@pytest.mark.parametrize("name,options", CASES, ids=IDS)
def test_zero_matrix_gives_the_zero_update(name, options):
    for dtype in (torch.float32, torch.float64):
        assert torch.equal(make(name, options)(torch.zeros(3, 5, dtype=dtype)), torch.zeros(5, dtype=dtype))


@pytest.mark.parametrize("name,options", CASES, ids=IDS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gradient_is_an_error_naming_the_task(name, options, bad):
    matrix = torch.from_numpy(unit_rows(3, 5, "random", seed=14))
    matrix[1, 2] = bad
    with pytest.raises(NonFiniteGradientError, match=r"task\(s\) \[1\]"):
        make(name, options)(matrix)


def test_every_registered_aggregator_is_covered():
    """The registry's aggregator methods are exactly those parametrized above (a method that is
    not a GradientAggregation is tested in test_aggregators_methods.py instead)."""
    names = {name for name, _ in CASES}
    assert {
        "pcgrad",
        "gradvac",
        "cagrad",
        "mgda",
        "imtl_g",
        "nash_mtl",
        "aligned_mtl",
        "graddrop",
        "upgrad",
        "rgw",
    } <= names
    assert not names & {"sum", "mean", "mgda_ub", "uw", "famo"}
