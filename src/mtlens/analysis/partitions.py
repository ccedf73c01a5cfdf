"""Which tasks share a network: the best partition of the tasks into at most ``budget`` groups.

A *grouping* is a partition of the tasks into groups, one network per group.  Given a directed
affinity ``A[i, j]`` (how much training with task ``i`` helps task ``j``: TAG's lookahead affinity,
a gradient cosine, a measured pairwise transfer), the score of a grouping is TAG's network-selection
objective restricted to partitions::

    score(P) = sum_j  mean_{i in G(j), i != j} A[i, j]       (0 for a task alone in its group)

where ``G(j)`` is the group holding task ``j``: the mean affinity onto each task from its group mates
(Fifty et al. 2021, sec. 3.2; their selection also allows overlapping groups, which this module does not).
:func:`best_grouping` maximizes it over the partitions into at most ``budget`` groups, exhaustively
(:func:`set_partitions`: ``sum_{k <= b} S(n, k)`` partitions, 4,140 for all partitions of 8 tasks)
or by branch and bound (:func:`branch_and_bound`: tasks assigned one at a time, a branch cut when
its upper bound -- every task's largest possible mean, ``max(0, max affinity from a possible group
mate)`` -- cannot come within the tolerance of the best complete grouping so far).

**Ties.**  Scores are sums of means, so two groupings with the same exact score can differ in their
last bits (all affinities 0.7: ``t0+t1 | t2+t3`` sums to 2.8, all four together to 2.7999999999999994).
Both searches therefore treat scores within ``tol = TIE_TOLERANCE * sum_j max_{i != j} |A[i, j]|``
(:func:`tie_tolerance`; the sum bounds ``|score|`` of every grouping) of the largest score as tied,
and return the *first* such grouping in :func:`set_partitions` order (restricted growth: fewer,
earlier-opened groups first; with equal affinities every task together when that is an optimum), with
its score.  Branch and bound visits the partitions in that order too and cuts a branch only when its
bound is below the best score so far by more than ``2 tol`` (rounding in the bound never cuts a
near-tie), so both searches return the same grouping.  A non-finite affinity is an error
(:class:`ValueError` naming the pair): it has no order.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

Affinity = Mapping[tuple[str, str], float]
"""``{(source i, target j): A[i, j]}`` for ordered pairs ``i != j`` (a missing pair counts as 0)."""

Grouping = tuple[tuple[str, ...], ...]
"""Groups of task names, each in the given task order, groups ordered by their first task."""

TIE_TOLERANCE = 1e-9
"""Scores within this share of :func:`tie_tolerance`'s scale of the best score are tied (module docstring)."""


def set_partitions(tasks: Sequence[str], max_groups: int | None = None) -> Iterator[Grouping]:
    """Every partition of ``tasks`` into at most ``max_groups`` non-empty groups (all when ``None``),
    each once, in restricted-growth order (task ``k`` joins an existing group or opens the next one)."""
    limit = len(tasks) if max_groups is None else max_groups

    def extend(k: int, groups: list[list[str]]) -> Iterator[Grouping]:
        if k == len(tasks):
            yield tuple(tuple(g) for g in groups)
            return
        for group in groups:
            group.append(tasks[k])
            yield from extend(k + 1, groups)
            group.pop()
        if len(groups) < limit:
            groups.append([tasks[k]])
            yield from extend(k + 1, groups)
            groups.pop()

    if tasks:
        yield from extend(0, [])


def grouping_score(grouping: Grouping, affinity: Affinity) -> float:
    """``score(P)`` of the module docstring."""
    total = 0.0
    for group in grouping:
        if len(group) > 1:
            for j in group:
                total += sum(affinity.get((i, j), 0.0) for i in group if i != j) / (len(group) - 1)
    return total


def tie_tolerance(tasks: Sequence[str], affinity: Affinity) -> float:
    """``TIE_TOLERANCE * sum_j max_{i != j} |A[i, j]|`` over ``tasks`` (module docstring): scores closer than this
    are tied.  Raises :class:`ValueError` on an empty or repeated task list or a non-finite affinity."""
    if not tasks:
        raise ValueError("no tasks to group")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks: each task once, got {list(tasks)}")
    scale = 0.0
    for j in tasks:
        largest = 0.0
        for i in tasks:
            value = affinity.get((i, j), 0.0) if i != j else 0.0
            if not math.isfinite(value):
                raise ValueError(f"affinity {i!r} -> {j!r} is {value}: every affinity must be finite")
            largest = max(largest, abs(value))
        scale += largest
    return TIE_TOLERANCE * scale


class _Best:
    """The first grouping, in visiting order, whose score is within ``tol`` of the largest score seen."""

    def __init__(self, tol: float) -> None:
        self.tol = tol
        self.top = -math.inf
        self.candidates: list[tuple[Grouping, float]] = []  # visited in order, each within tol of ``top``

    def offer(self, grouping: Grouping, score: float) -> None:
        if score >= self.top - self.tol:
            self.candidates.append((grouping, score))
        if score > self.top:
            self.top = score
            self.candidates = [c for c in self.candidates if c[1] >= score - self.tol]

    def result(self) -> tuple[Grouping, float]:
        return self.candidates[0]


def _check_budget(budget: int) -> None:
    if budget < 1:
        raise ValueError(f"budget: at least 1 group, got {budget}")


def exhaustive(tasks: Sequence[str], affinity: Affinity, budget: int) -> tuple[Grouping, float]:
    """The first grouping into at most ``budget`` groups, in :func:`set_partitions` order, whose score is
    within :func:`tie_tolerance` of the largest over every such partition, and its score."""
    best = _Best(tie_tolerance(tasks, affinity))
    _check_budget(budget)
    for grouping in set_partitions(tasks, budget):
        best.offer(grouping, grouping_score(grouping, affinity))
    return best.result()


def branch_and_bound(tasks: Sequence[str], affinity: Affinity, budget: int) -> tuple[Grouping, float]:
    """The grouping of :func:`exhaustive`, visiting the partitions in the same order and cutting every
    branch whose upper bound is below the best score found so far by more than twice the tolerance."""
    best = _Best(tie_tolerance(tasks, affinity))
    _check_budget(budget)

    def bound(k: int, groups: list[list[str]]) -> float:
        """Upper bound of any completion: each task's mean is at most its largest affinity from a
        task it can still share a group with (current mates or tasks not yet assigned), or 0 alone."""
        rest = tasks[k:]
        total = 0.0
        for group in groups:
            for j in group:
                mates = [i for i in (*group, *rest) if i != j]
                total += max([0.0, *(affinity.get((i, j), 0.0) for i in mates)])
        for j in rest:
            total += max([0.0, *(affinity.get((i, j), 0.0) for i in tasks if i != j)])
        return total

    def extend(k: int, groups: list[list[str]]) -> None:
        if k == len(tasks):
            grouping = tuple(tuple(g) for g in groups)
            best.offer(grouping, grouping_score(grouping, affinity))
            return
        if bound(k, groups) < best.top - 2 * best.tol:
            return
        for group in groups:
            group.append(tasks[k])
            extend(k + 1, groups)
            group.pop()
        if len(groups) < budget:
            groups.append([tasks[k]])
            extend(k + 1, groups)
            groups.pop()

    extend(0, [])
    return best.result()


EXHAUSTIVE_LIMIT = 10
"""Up to this many tasks :func:`best_grouping` enumerates every partition (Bell(10) = 115,975)."""


def best_grouping(tasks: Sequence[str], affinity: Affinity, budget: int) -> tuple[Grouping, float]:
    """:func:`exhaustive` up to :data:`EXHAUSTIVE_LIMIT` tasks, :func:`branch_and_bound` beyond."""
    search = exhaustive if len(tasks) <= EXHAUSTIVE_LIMIT else branch_and_bound
    return search(tasks, affinity, budget)
