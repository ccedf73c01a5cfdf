"""Gradient aggregators on constructed (K x P) matrices: defining properties, independent
QP solutions (cvxpy), the torchjd 0.18 reference implementations, and the solver edge cases of
issue 14.  Properties every registered aggregator declares (scaling, permutations, conflicts,
degenerate input) are in test_aggregator_properties.py."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import cvxpy as cp
import numpy as np
import pytest
import torch
import torchjd.aggregation as tjd

from mtlens import aggregators as agg
from mtlens.aggregators import solvers
from mtlens.errors import ConfigError


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_matrix(k: int, p: int, seed: int) -> torch.Tensor:
    return torch.randn(k, p, generator=generator(seed), dtype=torch.float64)


SHAPES = [(2, 9, 0), (3, 12, 1), (5, 20, 2)]


# -- torchjd 0.18.0 as a reference ----------------------------------------------------------
@pytest.mark.parametrize("k,p,seed", SHAPES)
@pytest.mark.parametrize(
    "ours,theirs,factor,tol",
    [
        (agg.Sum, tjd.Sum, 1.0, 1e-12),
        (agg.Mean, tjd.Mean, 1.0, 1e-12),
        (agg.IMTLG, tjd.IMTLG, 1.0, 1e-9),
        (agg.UPGrad, tjd.UPGrad, 1.0, 1e-7),  # equal while sum_k ||g_k||^2 >= torchjd's norm_eps = 1e-4
        (lambda: agg.AlignedMTL("min"), lambda: tjd.AlignedMTL(scale_mode="min"), "K", 1e-9),
        (lambda: agg.AlignedMTL("rmse"), lambda: tjd.AlignedMTL(scale_mode="rmse"), "K", 1e-9),
        # torchjd runs Frank-Wolfe (sublinear convergence); the exact check is against cvxpy below
        (agg.MGDA, lambda: tjd.MGDA(epsilon=1e-14, max_iters=20000), 1.0, 2e-3),
        # torchjd solves CAGrad's dual with Clarabel on a normalised Gram matrix: ~1e-4 accurate
        (lambda: agg.CAGrad(c=0.5, rescale=0), lambda: tjd.CAGrad(c=0.5), 1.0, 2e-3),
    ],
)
def test_matches_torchjd(ours, theirs, factor, tol, k, p, seed):
    matrix = random_matrix(k, p, seed)
    expected = theirs()(matrix) * (k if factor == "K" else factor)
    torch.testing.assert_close(ours()(matrix), expected, rtol=tol, atol=tol * expected.norm().item())


@pytest.mark.parametrize("k,p,seed", SHAPES)
@pytest.mark.parametrize(
    "ours,theirs",
    [
        (agg.PCGrad, tjd.PCGrad),
        # torchjd adds an absolute 1e-8 to GradVac's norm denominators; mtlens's default is 0
        (lambda g: agg.GradVac(g, beta=0.3, eps=1e-8), lambda: tjd.GradVac(beta=0.3)),
        (agg.GradDrop, tjd.GradDrop),
        (agg.RGW, tjd.Random),
    ],
)
def test_random_aggregators_match_torchjd_for_equal_seeds(ours, theirs, k, p, seed):
    """torchjd draws from the global RNG with the same calls, so equal seeds give equal draws;
    three calls in a row also check that state (GradVac's EMA) evolves identically."""
    ours_instance, theirs_instance = ours(generator(7)), theirs()
    torch.manual_seed(7)
    for call in range(3):
        matrix = random_matrix(k, p, seed + 10 * call)
        torch.testing.assert_close(ours_instance(matrix), theirs_instance(matrix), rtol=1e-10, atol=1e-10)


# torchjd's ECOS loop converges on these; on random_matrix(5, 20, 2) it stays at its start
# (residual |alpha * M alpha - 1| ~ 17) while ours solves the condition (tested below).
@pytest.mark.parametrize("k,p,seed", SHAPES[:2])
@pytest.mark.parametrize("max_norm", [0.0, 1.0])
def test_nash_mtl_matches_torchjd(k, p, seed, max_norm):
    matrix = random_matrix(k, p, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # cvxpy's "not DPP" notice
        expected = tjd.NashMTL(n_tasks=k, max_norm=max_norm)(matrix)
    # torchjd stops its convex-approximation loop at a residual of 1e-3
    torch.testing.assert_close(
        agg.NashMTL(max_norm=max_norm)(matrix), expected, rtol=5e-3, atol=5e-3 * expected.norm().item()
    )


# -- defining properties ------------------------------------------------------------------
def test_pcgrad_equals_sum_without_conflicts():
    matrix = random_matrix(4, 15, 3).abs()  # non-negative entries: every pair has g_i . g_j >= 0
    torch.testing.assert_close(agg.PCGrad(generator())(matrix), matrix.sum(dim=0))


def test_pcgrad_projects_conflicting_pair_onto_normal_planes():
    g1 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    g2 = torch.tensor([-1.0, 1.0, 0.5], dtype=torch.float64)
    expected = (g1 - (g1 @ g2) / (g2 @ g2) * g2) + (g2 - (g1 @ g2) / (g1 @ g1) * g1)
    update = agg.PCGrad(generator())(torch.stack([g1, g2]))
    torch.testing.assert_close(update, expected)
    assert float(update @ g1) >= 0 and float(update @ g2) >= 0


def test_pcgrad_matches_vector_loop_for_three_tasks():
    """Brute force on vectors with the same task orders as the Gram-space implementation."""
    matrix = random_matrix(3, 6, 11)
    orders = [torch.randperm(3, generator=g).tolist() for g in [generator(5)] for _ in range(3)]
    expected = torch.zeros(6, dtype=torch.float64)
    for i in range(3):
        projected = matrix[i].clone()
        for j in orders[i]:
            if j != i and projected @ matrix[j] < 0:
                projected -= (projected @ matrix[j]) / (matrix[j] @ matrix[j]) * matrix[j]
        expected += projected
    torch.testing.assert_close(agg.PCGrad(generator(5))(matrix), expected)


def min_norm_point_qp(matrix: np.ndarray) -> np.ndarray:
    w = cp.Variable(matrix.shape[0])
    cp.Problem(cp.Minimize(cp.sum_squares(matrix.T @ w)), [w >= 0, cp.sum(w) == 1]).solve(cp.CLARABEL)
    return matrix.T @ w.value


@pytest.mark.parametrize("k,p,seed", [(2, 5, 0), (4, 3, 1), (6, 8, 2), (3, 2, 3)])
def test_mgda_is_min_norm_point_of_convex_hull(k, p, seed):
    matrix = random_matrix(k, p, seed)
    result = agg.MGDA().aggregate(matrix)
    np.testing.assert_allclose(result.update.numpy(), min_norm_point_qp(matrix.numpy()), atol=1e-6)
    assert result.weights.min() >= 0 and abs(float(result.weights.sum()) - 1) < 1e-12
    # optimality: every g_k . d >= ||d||^2 (d is the projection of 0 onto the hull)
    assert float((matrix @ result.update).min()) >= float(result.update @ result.update) - 1e-9


def test_mgda_l2_is_min_norm_point_of_unit_gradients():
    matrix = random_matrix(3, 6, 4) * torch.tensor([[1.0], [10.0], [0.1]], dtype=torch.float64)
    units = matrix / matrix.norm(dim=1, keepdim=True)
    np.testing.assert_allclose(agg.MGDA("l2")(matrix).numpy(), min_norm_point_qp(units.numpy()), atol=1e-6)


def cagrad_primal(matrix: np.ndarray, c: float) -> np.ndarray:
    """``argmax_d min_k g_k . d`` s.t. ``||d - g_0|| <= c ||g_0||`` as an SOCP."""
    g0 = matrix.mean(axis=0)
    d, t = cp.Variable(matrix.shape[1]), cp.Variable()
    cp.Problem(cp.Maximize(t), [matrix @ d >= t, cp.norm(d - g0) <= c * np.linalg.norm(g0)]).solve(cp.CLARABEL)
    return d.value


@pytest.mark.parametrize("c", [0.2, 0.5, 0.9])
def test_cagrad_solves_its_primal_problem(c):
    matrix = random_matrix(4, 10, 5)
    primal = cagrad_primal(matrix.numpy(), c)
    update = agg.CAGrad(c=c, rescale=0)(matrix)
    g0 = matrix.mean(dim=0)
    # feasible and optimal; the maximiser itself is weakly determined (the objective is flat
    # along the active face), so it is compared at a looser tolerance than the value
    assert float((update - g0).norm()) <= c * float(g0.norm()) * (1 + 1e-12)
    assert float((matrix @ update).min()) == pytest.approx(float((matrix.numpy() @ primal).min()), abs=1e-7)
    np.testing.assert_allclose(update.numpy(), primal, atol=1e-4)
    torch.testing.assert_close(agg.CAGrad(c=c, rescale=1)(matrix), update / (1 + c**2))
    torch.testing.assert_close(agg.CAGrad(c=c, rescale=2)(matrix), update / (1 + c))


def test_cagrad_with_zero_radius_is_the_mean():
    matrix = random_matrix(4, 10, 6)
    for rescale in (0, 1, 2):
        torch.testing.assert_close(agg.CAGrad(c=0.0, rescale=rescale)(matrix), matrix.mean(dim=0))


@pytest.mark.parametrize("k,p,seed", [(2, 6, 0), (3, 5, 1), (5, 12, 2)])
def test_imtlg_has_equal_projections_on_unit_gradients(k, p, seed):
    matrix = random_matrix(k, p, seed) * torch.logspace(-1, 1, k, dtype=torch.float64)[:, None]
    result = agg.IMTLG().aggregate(matrix)
    projections = (matrix / matrix.norm(dim=1, keepdim=True)) @ result.update
    torch.testing.assert_close(projections, projections[0].expand(k))
    assert abs(float(result.weights.sum()) - 1) < 1e-10


@pytest.mark.parametrize("k,p,seed", [(2, 6, 0), (3, 5, 1), (5, 12, 2)])
def test_nash_mtl_weights_solve_bargaining_condition(k, p, seed):
    matrix = random_matrix(k, p, seed) * torch.logspace(-1, 1, k, dtype=torch.float64)[:, None]
    alpha = agg.NashMTL(max_norm=0.0).aggregate(matrix).weights
    assert alpha.min() > 0
    torch.testing.assert_close(matrix @ matrix.T @ alpha, 1 / alpha, rtol=1e-8, atol=0)
    clipped = agg.NashMTL(max_norm=0.5).aggregate(matrix)
    assert abs(float(clipped.update.norm()) - min(0.5, float((alpha @ matrix).norm()))) < 1e-10
    torch.testing.assert_close(clipped.weights / clipped.weights.sum(), alpha / alpha.sum())


def test_nash_mtl_reuses_weights_between_updates():
    method = agg.NashMTL(max_norm=0.0, update_weights_every=2)
    first, second, third = (random_matrix(3, 5, s) for s in (0, 1, 2))
    w1 = method.aggregate(first).weights
    torch.testing.assert_close(method.aggregate(second).weights, w1)
    torch.testing.assert_close(method.aggregate(third).weights, agg.NashMTL(max_norm=0.0).aggregate(third).weights)


def dual_cone_projection(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    x = cp.Variable(matrix.shape[1])
    cp.Problem(cp.Minimize(cp.sum_squares(x - vector)), [matrix @ x >= 0]).solve(cp.CLARABEL)
    return x.value


@pytest.mark.parametrize("k,p,seed", [(2, 6, 0), (3, 5, 1), (4, 12, 2)])
def test_upgrad_is_mean_of_dual_cone_projections(k, p, seed):
    matrix = random_matrix(k, p, seed)
    exact = agg.UPGrad(norm_eps=0.0, reg_eps=0.0)(matrix)
    expected = np.mean([dual_cone_projection(matrix.numpy(), row) for row in matrix.numpy()], axis=0)
    np.testing.assert_allclose(exact.numpy(), expected, atol=1e-6)
    assert float((matrix @ exact).min()) >= -1e-10
    assert float((matrix @ agg.UPGrad()(matrix)).min()) >= -1e-10  # also with torchjd's regularisation


@pytest.mark.parametrize("scale_mode", ["min", "median", "rmse"])
def test_aligned_mtl_aligns_gradients_to_equal_orthogonal_components(scale_mode):
    matrix = random_matrix(3, 8, 7) * torch.tensor([[0.3], [1.0], [4.0]], dtype=torch.float64)
    method = agg.AlignedMTL(scale_mode)
    gram = (matrix @ matrix.T).numpy()
    balance = method.balance_transformation(gram, torch.finfo(torch.float64).eps)
    aligned = torch.from_numpy(balance) @ matrix
    eigenvalues = np.linalg.eigvalsh(gram)
    scale = {"min": eigenvalues.min(), "median": np.median(eigenvalues), "rmse": eigenvalues.mean()}[scale_mode]
    np.testing.assert_allclose((aligned @ aligned.T).numpy(), scale * np.eye(3), atol=1e-9 * gram.max())
    torch.testing.assert_close(method(matrix), aligned.sum(dim=0))


def test_gradvac_first_step_is_pcgrad_then_reaches_target_cosine():
    g1 = torch.tensor([1.0, 0.2, 0.0], dtype=torch.float64)
    g2 = torch.tensor([-0.5, 1.0, 0.3], dtype=torch.float64)
    matrix = torch.stack([g1, g2])
    method = agg.GradVac(generator(), beta=0.5)
    # phi_hat = 0 at the start: the correction of a negative cosine is PCGrad's projection
    torch.testing.assert_close(method(matrix), agg.PCGrad(generator())(matrix))
    phi = float(g1 @ g2 / (g1.norm() * g2.norm()))
    assert method.phi_hat[0, 1] == pytest.approx(0.5 * phi)
    # a pair with a lower cosine: each row is corrected so its cosine reaches the EMA target
    g1_low = torch.tensor([1.0, -0.5, 0.0], dtype=torch.float64)  # cosine -0.77 < target -0.13
    targets = method.phi_hat.copy()
    weights = method.aggregate(torch.stack([g1_low, g2])).weights
    row1 = g1_low + (weights[1] - 1.0) * g2  # rows are [1, a] and [b, 1]; weights = [1 + b, 1 + a]
    row2 = g2 + (weights[0] - 1.0) * g1_low
    assert float(row1 @ g2 / (row1.norm() * g2.norm())) == pytest.approx(targets[0, 1], abs=1e-7)
    assert float(row2 @ g1_low / (row2.norm() * g1_low.norm())) == pytest.approx(targets[1, 0], abs=1e-7)


def test_graddrop_properties():
    matrix = random_matrix(3, 40, 8)
    torch.testing.assert_close(agg.GradDrop(generator(), leak=1.0)(matrix), matrix.sum(dim=0))
    torch.testing.assert_close(agg.GradDrop(generator())(matrix[:1]), matrix[0])
    positive = matrix.abs()
    torch.testing.assert_close(agg.GradDrop(generator())(positive), positive.sum(dim=0))
    update = agg.GradDrop(generator())(matrix)
    # every coordinate keeps only gradients of one sign
    kept = update / matrix.sum(dim=0)
    signs = torch.sign(update)
    same_sign_sum = torch.where(signs[None] * matrix > 0, matrix, torch.zeros_like(matrix)).sum(dim=0)
    torch.testing.assert_close(update, same_sign_sum)
    assert torch.isfinite(kept).all()


def test_rgw_weights_are_a_random_softmax():
    result = agg.RGW(generator(3)).aggregate(random_matrix(4, 6, 0))
    expected = torch.softmax(torch.randn(4, generator=generator(3), dtype=torch.float64), dim=0)
    torch.testing.assert_close(result.weights, expected)


@pytest.mark.parametrize("aggregator", [agg.MGDA(), agg.NashMTL()], ids=lambda a: type(a).__name__)
def test_pareto_stationary_input_gives_zero_update(aggregator):
    g = random_matrix(1, 6, 13)[0]
    torch.testing.assert_close(aggregator(torch.stack([g, -g])), torch.zeros_like(g), atol=1e-12, rtol=0)


def test_bad_shapes_and_options_are_errors():
    with pytest.raises(ValueError, match="shape"):
        agg.Sum()(torch.zeros(4))
    with pytest.raises(
        ConfigError, match="CAGrad: invalid option value.*c=-1: Input should be greater than or equal to 0"
    ):
        agg.CAGrad(c=-1)
    with pytest.raises(ConfigError, match="normalization='loss': Input should be 'none' or 'l2'"):
        agg.MGDA("loss")
    with pytest.raises(ConfigError, match="generator=None: Input should be an instance of Generator"):
        agg.PCGrad(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="beta=True: expected a number"):
        agg.GradVac(generator(), beta=True)
    with pytest.raises(ValueError, match="leak has 2 entries for 3 tasks"):
        agg.GradDrop(generator(), leak=[0.1, 0.2])(random_matrix(3, 4, 0))


# -- state --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda: agg.PCGrad(generator(1)),
        lambda: agg.GradVac(generator(1), beta=0.3),
        lambda: agg.GradDrop(generator(1)),
        lambda: agg.RGW(generator(1)),
        lambda: agg.NashMTL(update_weights_every=2),
    ],
)
def test_state_round_trip_continues_exactly(make):
    original = make()
    for seed in range(3):
        original(random_matrix(3, 7, seed))
    restored = make()
    restored.load_state_dict(original.state_dict())
    for seed in range(3, 6):
        matrix = random_matrix(3, 7, seed)
        torch.testing.assert_close(restored(matrix), original(matrix), rtol=0, atol=0)


# -- edge cases (issue 14: gradient norms far from 1, nearly cancelling gradients, float32) ----
def orthogonal_rows(norms: list[float], p: int = 8, seed: int = 0) -> torch.Tensor:
    """Rows ``norms[k] q_k`` with orthonormal ``q_k`` (a random rotation), float64."""
    q, _ = torch.linalg.qr(torch.randn(p, len(norms), generator=generator(seed), dtype=torch.float64))
    return torch.tensor(norms, dtype=torch.float64)[:, None] * q.T


def test_cagrad_dual_finds_the_vertex_optimum_with_mixed_norms():
    """Orthogonal gradients of norms 1e-3, 1, 1e3: the dual's optimum is the smallest gradient
    (``g_w . g_0 + c ||g_0|| ||g_w||`` grows along every edge leaving ``e_1``); SLSQP on the raw
    Gram matrix stayed at its uniform start."""
    matrix = orthogonal_rows([1e-3, 1.0, 1e3])
    gram = (matrix @ matrix.T).numpy()
    np.testing.assert_allclose(solvers.cagrad_dual_weights(gram, 0.5), [1.0, 0.0, 0.0], atol=1e-6)
    update = agg.CAGrad(c=0.5, rescale=0)(matrix)
    primal = cagrad_primal(matrix.numpy(), 0.5)
    scale = float(matrix.norm(dim=1).max() * matrix.mean(dim=0).norm())
    assert float((matrix @ update).min()) >= float((matrix.numpy() @ primal).min()) - 1e-7 * scale


@pytest.mark.parametrize("scale", [1e-4, 1e-2, 1.0, 1e2, 1e4])
@pytest.mark.parametrize("c", [0.2, 0.5])
def test_cagrad_reaches_the_primal_optimum_at_every_scale(scale, c):
    """Feasible, and at least as good as cvxpy's solution of the primal (the dual SLSQP on the
    raw Gram matrix was 3-13% off outside norms 1e-2..1e3)."""
    matrix = random_matrix(4, 10, 5) * scale
    update = agg.CAGrad(c=c, rescale=0)(matrix)
    g0 = matrix.mean(dim=0)
    primal = cagrad_primal(matrix.numpy() / scale, c) * scale
    assert float((update - g0).norm()) <= c * float(g0.norm()) * (1 + 1e-9)
    value, best = float((matrix @ update).min()), float((matrix.numpy() @ primal).min())
    assert value >= best - 1e-7 * scale**2
    np.testing.assert_allclose(update.numpy(), primal, rtol=0, atol=1e-4 * scale)


def test_cagrad_raises_instead_of_returning_an_uncertified_update(monkeypatch):
    """A solver that stops at its start (as SLSQP did on badly scaled input) fails the
    duality-gap certificate: a clear error, not a silently wrong update."""

    def stuck(objective, start, **options):
        return SimpleNamespace(x=np.asarray(start, dtype=float), success=False)

    monkeypatch.setattr(solvers, "minimize", stuck)
    matrix = random_matrix(4, 10, 1)  # its optimum (0.50, 0.20, 0, 0.30) is neither the start nor a vertex
    with pytest.raises(solvers.SolverError, match="duality gap"):
        agg.CAGrad()(matrix)


def test_nash_mtl_nearly_cancelling_float32_gradients_give_the_documented_zero_update():
    """Rows ``[v, -1.3 v]``: 0 is in their hull up to rounding, so no direction improves both
    tasks; float64 returned the zero update while float32 raised ArithmeticError."""
    v = torch.randn(10, generator=torch.Generator().manual_seed(20))
    for dtype in (torch.float32, torch.float64):
        result = agg.NashMTL().aggregate(torch.stack([v, -1.3 * v]).to(dtype))
        assert torch.equal(result.update, torch.zeros(10, dtype=dtype))
        assert torch.equal(result.weights, torch.zeros(2, dtype=dtype))


@pytest.mark.parametrize("small", [1e-4, 1e-7, 1e-10])
def test_nash_mtl_keeps_a_task_with_a_small_gradient(small):
    """Orthogonal gradients: the bargaining solution is ``alpha_k = 1 / ||g_k||`` whatever the
    norms (the update is the sum of the unit gradients); a task below ~1e-6 of the largest
    norm used to get weight 0."""
    matrix = orthogonal_rows([small, 1.0, 3.0])
    result = agg.NashMTL(max_norm=0.0).aggregate(matrix)
    torch.testing.assert_close(result.weights * matrix.norm(dim=1), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(result.update, (matrix / matrix.norm(dim=1, keepdim=True)).sum(dim=0))


def test_nash_mtl_never_raises_near_pareto_stationarity():
    """Gradients that cancel up to a relative 1e-4 ... 1e-8, in float32 and float64: a finite
    update that does not conflict with any task, or the zero update."""
    u = torch.randn(3, 12, generator=generator(4), dtype=torch.float64)
    for gap in (1e-4, 1e-6, 1e-8):
        rows = torch.stack([u[0], u[1], -(0.6 * u[0] + 0.3 * u[1]) + gap * u[2]])
        for dtype in (torch.float32, torch.float64):
            matrix = rows.to(dtype)
            update = agg.NashMTL().aggregate(matrix).update
            assert torch.isfinite(update).all() and float(update.norm()) <= 1.0 + 1e-6
            assert float((matrix.double() @ update.double()).min()) >= -1e-6 * float(matrix.norm())


@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1.0, 1e3])
def test_upgrad_does_not_conflict_and_is_scale_equivariant_for_small_gradients(scale):
    """With torchjd's absolute ``norm_eps = 1e-4`` UPGrad became the (conflicting) mean once
    ``sum_k ||g_k||^2 < 1e-4``; normalised by ``tr M`` it keeps its guarantee
    ``g_j . update >= -reg_eps w_j tr(M)`` at every scale."""
    g = random_matrix(1, 6, 15)[0]
    matrix = torch.stack([g, -0.9 * g + 0.3 * random_matrix(1, 6, 16)[0], random_matrix(1, 6, 17)[0]]) * scale
    method = agg.UPGrad()
    result = method.aggregate(matrix)
    gram = (matrix @ matrix.T).numpy()
    bound = method.conflict_bound(gram, result.weights.numpy())
    assert ((matrix @ result.update).numpy() >= bound - 1e-12 * np.trace(gram)).all()
    torch.testing.assert_close(result.update, scale * method(matrix / scale), rtol=1e-9, atol=0)
    exact = agg.UPGrad(reg_eps=0.0)(matrix)
    assert float((matrix @ exact).min()) >= -1e-12 * np.trace(gram)


@pytest.mark.parametrize("beta", [0.5, 1.0])  # fast EMAs reach 1 within the 300 steps
@pytest.mark.parametrize("factor", [1.0, 1.3, -1.0, -1.3])
def test_gradvac_does_not_explode_on_exactly_parallel_float32_gradients(beta, factor):
    """Rows ``v, factor v, v`` in float32 for 300 steps: rounding put the cosine's EMA at or
    past 1, and the next slightly lower cosine was corrected by up to 1e9 times the gradients."""
    method = agg.GradVac(generator(), beta=beta)
    for step in range(300):
        v = torch.randn(10, generator=generator(step))
        matrix = torch.stack([v, factor * v, v])
        update = method(matrix)
        assert float(update.norm()) <= (1 + 1e-6) * float(matrix.norm(dim=1).sum())
    assert np.abs(method.phi_hat).max() < 1.0
