"""Grouping search: partitions counted by Stirling numbers, scores by hand, branch and bound = exhaustive."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mtlens.analysis.partitions import (
    best_grouping,
    branch_and_bound,
    exhaustive,
    grouping_score,
    set_partitions,
    tie_tolerance,
)


def stirling2(n: int, k: int) -> int:
    if n == k:
        return 1
    if k == 0 or k > n:
        return 0
    return k * stirling2(n - 1, k) + stirling2(n - 1, k - 1)


@pytest.mark.parametrize("n", [1, 3, 5, 6])
def test_set_partitions_are_each_partition_once(n):
    tasks = [f"t{k}" for k in range(n)]
    for budget in range(1, n + 1):
        found = list(set_partitions(tasks, budget))
        assert len(found) == sum(stirling2(n, k) for k in range(1, budget + 1))
        canonical = {frozenset(frozenset(g) for g in p) for p in found}
        assert len(canonical) == len(found)
        for p in found:
            assert sorted(t for g in p for t in g) == sorted(tasks) and len(p) <= budget


def test_score_is_the_mean_affinity_onto_each_task_from_its_group_mates():
    affinity = {("a", "b"): 1.0, ("b", "a"): 3.0, ("c", "a"): -1.0, ("a", "c"): 2.0, ("b", "c"): 4.0}
    assert grouping_score((("a", "b"), ("c",)), affinity) == 1.0 + 3.0
    # a: mean(A[b,a], A[c,a]) = 1; b: mean(A[a,b], A[c,b]=0) = 0.5; c: mean(A[a,c], A[b,c]) = 3
    assert grouping_score((("a", "b", "c"),), affinity) == pytest.approx(1.0 + 0.5 + 3.0)
    assert grouping_score((("a",), ("b",), ("c",)), affinity) == 0.0


@pytest.mark.parametrize("seed", range(12))
def test_branch_and_bound_finds_the_exhaustive_optimum(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 8))
    tasks = [f"t{k}" for k in range(n)]
    scale = rng.choice([0.1, 1.0])
    shift = rng.choice([-0.5, 0.0, 0.3])  # mostly negative, mixed, mostly positive affinities
    affinity = {(i, j): float(scale * (rng.normal() + shift)) for i, j in itertools.permutations(tasks, 2)}
    for budget in range(1, n + 1):
        best, score = exhaustive(tasks, affinity, budget)
        bnb, bnb_score = branch_and_bound(tasks, affinity, budget)
        assert bnb_score == pytest.approx(score, abs=1e-12)
        assert grouping_score(bnb, affinity) == pytest.approx(score, abs=1e-12) and len(bnb) <= budget
        assert score == pytest.approx(max(grouping_score(p, affinity) for p in set_partitions(tasks, budget)))


def test_planted_groups_are_recovered():
    groups = (("a", "b", "c"), ("d", "e"))
    tasks = [t for g in groups for t in g]
    same = {t: k for k, g in enumerate(groups) for t in g}
    affinity = {(i, j): 1.0 if same[i] == same[j] else -1.0 for i, j in itertools.permutations(tasks, 2)}
    assert exhaustive(tasks, affinity, 2)[0] == groups == branch_and_bound(tasks, affinity, 2)[0]
    assert exhaustive(tasks, affinity, 1)[0] == (tuple(tasks),)


@pytest.mark.parametrize("value", [0.1, 0.2, 1 / 3, 0.7])
@pytest.mark.parametrize("n", [4, 6, 9, 11])
def test_equal_affinities_tie_to_the_first_grouping_in_both_searches(n, value):
    """Every grouping without a lone task scores n * value, up to rounding (0.7 on 4 tasks: 2.8 apart and
    2.7999999999999994 together): the first of them in set_partitions order, every task together, wins."""
    tasks = [f"t{k}" for k in range(n)]
    affinity = {(i, j): value for i, j in itertools.permutations(tasks, 2)}
    for budget in (2, 3) if n < 11 else (2,):
        first = next(set_partitions(tasks, budget))
        assert first == (tuple(tasks),)
        assert exhaustive(tasks, affinity, budget)[0] == first == branch_and_bound(tasks, affinity, budget)[0]
        assert best_grouping(tasks, affinity, budget)[0] == first


@pytest.mark.parametrize("seed", range(6))
def test_near_equal_affinities_give_the_same_grouping_in_both_searches(seed):
    """Affinities that differ only in their last bits (and groups of equal affinities mixed with negative ones)
    are near-ties: both searches return the first near-optimal grouping in set_partitions order."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 9))
    tasks = [f"t{k}" for k in range(n)]
    base = rng.choice([0.1, 0.3, 0.7])
    affinity = {
        (i, j): float(base * (1 + 1e-14 * rng.normal())) * (1 if rng.random() < 0.8 else -1)
        for i, j in itertools.permutations(tasks, 2)
    }
    for budget in range(1, n + 1):
        best, score = exhaustive(tasks, affinity, budget)
        tol = tie_tolerance(tasks, affinity)
        scores = [(p, grouping_score(p, affinity)) for p in set_partitions(tasks, budget)]
        top = max(s for _, s in scores)
        assert best == next(p for p, s in scores if s >= top - tol) and score == grouping_score(best, affinity)
        assert branch_and_bound(tasks, affinity, budget) == (best, score)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("search", [exhaustive, branch_and_bound, best_grouping])
def test_a_non_finite_affinity_is_refused_naming_the_pair(search, bad):
    tasks = ["a", "b", "c"]
    affinity = {(i, j): 1.0 for i, j in itertools.permutations(tasks, 2)} | {("a", "c"): bad}
    with pytest.raises(ValueError, match="affinity 'a' -> 'c' is .*must be finite"):
        search(tasks, affinity, 2)


@pytest.mark.parametrize("search", [exhaustive, branch_and_bound])
def test_a_budget_below_one_and_repeated_tasks_are_refused(search):
    with pytest.raises(ValueError, match="budget: at least 1 group, got 0"):
        search(["a", "b"], {}, 0)
    with pytest.raises(ValueError, match="each task once"):
        search(["a", "a"], {}, 2)
