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
mate)`` -- cannot beat the best complete grouping so far).  Both return the same optimum; ties go to
the first grouping in :func:`set_partitions` order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

Affinity = Mapping[tuple[str, str], float]
"""``{(source i, target j): A[i, j]}`` for ordered pairs ``i != j`` (a missing pair counts as 0)."""

Grouping = tuple[tuple[str, ...], ...]
"""Groups of task names, each in the given task order, groups ordered by their first task."""


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


def exhaustive(tasks: Sequence[str], affinity: Affinity, budget: int) -> tuple[Grouping, float]:
    """The highest-scoring grouping into at most ``budget`` groups over every such partition."""
    best: tuple[Grouping, float] | None = None
    for grouping in set_partitions(tasks, budget):
        score = grouping_score(grouping, affinity)
        if best is None or score > best[1]:
            best = (grouping, score)
    if best is None:
        raise ValueError("no tasks to group")
    return best


def branch_and_bound(tasks: Sequence[str], affinity: Affinity, budget: int) -> tuple[Grouping, float]:
    """The same optimum as :func:`exhaustive`, visiting the partitions in the same order and cutting
    every branch whose upper bound is not above the best score found so far."""
    if not tasks:
        raise ValueError("no tasks to group")
    best: list[tuple[Grouping, float]] = []

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
            score = grouping_score(grouping, affinity)
            if not best or score > best[0][1]:
                best[:] = [(grouping, score)]
            return
        if best and bound(k, groups) <= best[0][1]:
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
    return best[0]


EXHAUSTIVE_LIMIT = 10
"""Up to this many tasks :func:`best_grouping` enumerates every partition (Bell(10) = 115,975)."""


def best_grouping(tasks: Sequence[str], affinity: Affinity, budget: int) -> tuple[Grouping, float]:
    """:func:`exhaustive` up to :data:`EXHAUSTIVE_LIMIT` tasks, :func:`branch_and_bound` beyond."""
    search = exhaustive if len(tasks) <= EXHAUSTIVE_LIMIT else branch_and_bound
    return search(tasks, affinity, budget)
