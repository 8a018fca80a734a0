"""Byte budgets: how many tables a budget can hold, and the picks that fit."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from seqattn_tfrs.core.options import BUDGET_RULES

RULES = BUDGET_RULES

PLAN_MARGIN = 3.0
"""Standard errors by which a knapsack plan must beat the per-byte fill
before ``"attention_per_byte"`` follows it (see :func:`pick_within_budget`)."""

KNAPSACK_UNITS = 2000
"""Steps the bytes left are cut into for the knapsack (costs round up, so a
plan never overfills)."""

MOST_SUBSETS_IN_A_GROUP = 12
"""Related features beyond this many in one group: the plan holds one of them."""


def max_affordable(costs: Sequence[int | None], budget: int) -> int:
    """The most features any selection can hold within ``budget`` bytes.

    Unknown costs (``None``) count as 0, so the result is an upper bound.

    Example:
      >>> max_affordable([5, 1, 3, None], budget=4)
      3
    """
    total = 0
    count = 0
    for cost in sorted(0 if c is None else c for c in costs):
        if total + cost > budget:
            break
        total += cost
        count += 1
    return count


def bytes_left(
    costs: Sequence[int | None], selected: Sequence[bool], budget: int
) -> int:
    """What the selected features leave of ``budget`` bytes (an unknown cost
    counts as 0).

    Example:
      >>> bytes_left([60, 50, None], [True, False, True], 100)
      40
    """
    taken = [0 if c is None else c for c, s in zip(costs, selected) if s]
    return budget - int(sum(taken))


def unselected_that_fit(
    costs: Sequence[int | None], selected: Sequence[bool], budget: int
) -> np.ndarray:
    """``[N]`` bool: the unselected features whose cost fits what the selected
    ones leave of ``budget`` bytes.

    An unknown cost (``None``) counts as 0 among the selected and never fits.

    Example:
      >>> unselected_that_fit([60, 50, 40, None], [True, False, False, False], 100)
      array([False, False,  True, False])
    """
    selected = np.asarray(selected, bool)
    known = np.array([cost is not None for cost in costs], bool)
    cost = np.array([0 if c is None else c for c in costs], np.int64)
    return ~selected & known & (cost <= bytes_left(costs, selected, budget))


def knapsack(
    values: Sequence[float],
    costs: Sequence[int],
    capacity: int,
    related: np.ndarray | None = None,
) -> list[int]:
    """Indices of the set of largest total ``values`` whose ``costs`` fit
    ``capacity`` and that holds no two ``related`` features.

    Costs are rounded up to ``capacity / KNAPSACK_UNITS`` (so the set always
    fits; at most one unit of each cost may be lost to rounding). Related
    features form groups; within a group of at most
    ``MOST_SUBSETS_IN_A_GROUP`` every unrelated subset is tried, a larger
    group contributes one member at most.

    Example (12 bytes: 80 + 5 beats 40 + 30, 40 + 30 beats 60 alone, and
    with 1 and 2 related, 60 beats 40):
      >>> knapsack([80.0, 40.0, 30.0, 5.0], [10, 6, 6, 2], 12)
      [0, 3]
      >>> knapsack([60.0, 40.0, 30.0], [10, 6, 6], 12)
      [1, 2]
      >>> related = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0]], bool)
      >>> knapsack([60.0, 40.0, 30.0], [10, 6, 6], 12, related)
      [0]
    """
    count = len(values)
    if related is None:
        related = np.zeros((count, count), bool)
    related = np.asarray(related, bool)
    related = related | related.T
    unit = max(capacity / KNAPSACK_UNITS, 1.0)
    weight = [int(math.ceil(cost / unit)) for cost in costs]
    room = int(capacity // unit)
    group = list(range(count))

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    for i, j in zip(*np.nonzero(related)):
        group[root(int(i))] = root(int(j))
    groups: dict[int, list[int]] = {}
    for i in range(count):
        groups.setdefault(root(i), []).append(i)
    best = np.zeros(room + 1)  # best[c]: largest value within c units
    steps = []
    for members in groups.values():
        if len(members) <= MOST_SUBSETS_IN_A_GROUP:
            options = [
                subset
                for size in range(1, len(members) + 1)
                for subset in itertools.combinations(members, size)
                if not related[np.ix_(subset, subset)].any()
            ]
        else:
            options = [(i,) for i in members]
        after = best.copy()
        taken = np.full(room + 1, -1)
        for k, subset in enumerate(options):
            size = sum(weight[i] for i in subset)
            if size > room:
                continue
            with_it = np.full(room + 1, -np.inf)
            with_it[size:] = best[: room + 1 - size] + sum(values[i] for i in subset)
            better = with_it > after
            after = np.where(better, with_it, after)
            taken = np.where(better, k, taken)
        steps.append((options, taken))
        best = after
    chosen: list[int] = []
    left = room
    for options, taken in reversed(steps):
        k = int(taken[left])
        if k >= 0:
            chosen.extend(options[k])
            left -= sum(weight[i] for i in options[k])
    return sorted(chosen)


def planned_pick(
    per_byte: np.ndarray,
    costs: np.ndarray,
    scores: np.ndarray,
    candidates: np.ndarray,
    related: np.ndarray,
    remaining: int,
) -> int | None:
    """The first feature, in ``per_byte`` order, of a knapsack plan on the
    score test, where the plan is clearly worth more than filling the budget
    in that order; else None.

    ``candidates`` (indices) are the features that fit and help (``scores``
    > 0); ``related[i, j]`` (over all features) marks features one of which
    is a function of the other. ``scores**2 / 2`` estimates what a feature
    takes off the held-out log-likelihood, comparably across tables. The
    *fill* takes the candidates in ``per_byte`` order (largest first) while
    they fit, skipping one related to a feature already in; the *plan* is
    the :func:`knapsack` of ``scores**2`` within ``remaining`` bytes. Where
    the fill crowds out a table of the plan (leaves fewer bytes than it
    takes) and what the plan holds beyond the fill outweighs what it
    displaces by ``PLAN_MARGIN`` standard errors (``Var(z**2)`` taken as
    ``4 z**2 + 2``), the plan's member first in ``per_byte`` order: the small
    tables the plan keeps go in while they still help, and the large one it
    was made for stays in the next round's plan. Where the plan differs from
    the fill only in which of two related features it holds, and the fill
    leaves room for it, per byte decides (the next rounds' score tests see
    what the first of the two leaves to the other).

    Example (one 100-byte table worth z 12 against three small ones of z 3
    that leave no room for it; 110 bytes hold it and one small one):
      >>> per_byte = np.array([-4.6, -2.3, -2.3, -2.3])
      >>> costs = np.array([100, 10, 10, 10])
      >>> none = np.zeros([4, 4], bool)
      >>> planned_pick(per_byte, costs, np.array([12.0, 3, 3, 3]), np.arange(4),
      ...              none, 110)
      1
      >>> planned_pick(per_byte, costs, np.array([12.0, 3, 3, 3]), np.arange(4),
      ...              none, 100)
      0
      >>> print(planned_pick(per_byte, costs, np.array([6.0, 3, 3, 3]),
      ...                    np.arange(4), none, 110))
      None
    """
    candidates = np.asarray(candidates, np.int64)
    if candidates.size < 2:
        return None
    z = np.asarray(scores, np.float64)
    among = related[np.ix_(candidates, candidates)]
    among = among | among.T
    plan = set(
        candidates[
            knapsack(z[candidates] ** 2, costs[candidates], remaining, among)
        ].tolist()
    )
    fill: list[int] = []
    left = remaining
    for i in np.argsort(-per_byte[candidates], kind="stable"):
        if costs[candidates[i]] <= left and not any(among[i, j] for j in fill):
            fill.append(int(i))
            left -= int(costs[candidates[i]])
    filled = set(candidates[fill].tolist())
    outside = sorted(plan - filled)
    displaced = sorted(filled - plan)
    if not any(costs[i] > left for i in outside):
        return None  # the fill leaves room for the plan's tables: no crowding
    gain = np.sum(z[outside] ** 2) - np.sum(z[displaced] ** 2)
    spread = math.sqrt(np.sum(4 * z[outside + displaced] ** 2 + 2))
    if gain <= PLAN_MARGIN * spread:
        return None
    members = sorted(plan)  # argmax: the first of equals
    return members[int(np.argmax(per_byte[members]))]


def pick_within_budget(
    logits: np.ndarray,
    costs: np.ndarray,
    selected: np.ndarray,
    remaining: int,
    count: int,
    rule: str,
    scores: np.ndarray | None = None,
    dependence: np.ndarray | None = None,
) -> list[int]:
    """Up to ``count`` picks among the unselected features that fit.

    Each pick takes, among the unselected features whose cost fits what is left
    of the budget, the best by ``rule``, then charges its cost:

    * ``"attention"``: the largest logit;
    * ``"attention_per_byte"``: the largest softmax weight per byte,
      ``logit - log(bytes)``, except where filling the budget in that order
      would crowd out a table that a knapsack plan on the score test
      (``scores``) is clearly worth more with: then the plan's first member
      in that order (:func:`planned_pick`). The plan needs ``dependence``
      (``dependence[i, j]``: feature ``i`` is a function of ``j``; the copy
      check's matrix, collected with ``selection_data``): it leaves out the
      features that are a function of a selected one and never holds a
      feature beside a function of it. Without it (width blocks, no
      held-out data) per byte alone: a plan blind to shared information
      would count it twice. Per byte alone takes the small tables first,
      which misses "the one large table worth more than the small ones it
      would leave no room for";
    * ``"gain_per_byte"``: the largest ``z**2 / bytes`` among the features
      whose score statistic ``z`` (``scores``: the settled model's score test,
      see ``entry_z``) is positive. ``z**2 / 2`` estimates the fall of the
      held-out log-likelihood the feature brings, so this ranks by loss per
      byte, comparably across tables whatever their embeddings' scale. Where
      no fitting feature has ``z > 0`` it takes the largest ``z`` (the least
      harm). Without ``scores`` (no held-out evidence was collected) it ranks
      like ``"attention"``.

    A feature of 0 bytes counts as 1 byte. Ties go to the earlier feature.
    Stops early when nothing fits.

    Example:
      >>> logits = np.array([3.0, 2.0, 1.0])
      >>> costs = np.array([100, 10, 1])
      >>> selected = np.array([False, False, False])
      >>> pick_within_budget(logits, costs, selected, 50, 2, "attention")
      [1, 2]
      >>> pick_within_budget(logits, costs, selected, 500, 2, "attention_per_byte")
      [2, 1]
      >>> z = np.array([20.0, 4.0, -1.0])  # z**2 / bytes: 4.0, 1.6, harm
      >>> pick_within_budget(logits, costs, selected, 500, 3, "gain_per_byte", z)
      [0, 1, 2]
      >>> z = np.array([40.0, 4.0, 3.0])  # the plan: 0 and 2, not 1
      >>> unrelated = np.zeros([3, 3], bool)
      >>> pick_within_budget(
      ...     logits, costs, selected, 105, 2, "attention_per_byte", z, unrelated
      ... )
      [2, 0]
    """
    if rule not in RULES:
        raise ValueError(f"`budget_rule` must be one of {RULES}, got {rule!r}.")
    taken = np.array(selected, bool)
    bytes_ = np.maximum(costs, 1).astype(np.float64)
    score = logits.astype(np.float64)
    helps = np.zeros(len(score), bool)
    plans = (
        rule == "attention_per_byte"
        and scores is not None
        and np.any(scores)
        and dependence is not None
    )
    if plans:
        z = np.asarray(scores, np.float64)
        dependence = np.asarray(dependence, bool)
    if rule == "attention_per_byte":
        score = score - np.log(bytes_)
    elif rule == "gain_per_byte" and scores is not None and np.any(scores):
        z = np.asarray(scores, np.float64)
        helps = z > 0
        score = np.where(helps, z * z / bytes_, z)
    picks: list[int] = []
    for _ in range(count):
        fits = np.flatnonzero(~taken & (costs <= remaining))
        if fits.size == 0:
            break
        best = None
        if plans:
            valueless = dependence[:, taken].any(axis=1)
            candidates = fits[(z[fits] > 0) & ~valueless[fits]]
            best = planned_pick(score, costs, z, candidates, dependence, remaining)
        if best is None:
            # Helping features first, then the rest; argmax: first of equals.
            key = np.where(helps[fits], 1.0, 0.0)
            first = fits[key == key.max()]
            best = int(first[np.argmax(score[first])])
        picks.append(best)
        taken[best] = True
        remaining -= int(costs[best])
    return picks
