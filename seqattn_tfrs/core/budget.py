"""Byte budgets: how many tables a budget can hold, and greedy picks that fit."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seqattn_tfrs.core.options import BUDGET_RULES

RULES = BUDGET_RULES


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


def pick_within_budget(
    logits: np.ndarray,
    costs: np.ndarray,
    selected: np.ndarray,
    remaining: int,
    count: int,
    rule: str,
    scores: np.ndarray | None = None,
) -> list[int]:
    """Up to ``count`` greedy picks among the unselected features that fit.

    Each pick takes, among the unselected features whose cost fits what is left
    of the budget, the best by ``rule``, then charges its cost:

    * ``"attention"``: the largest logit;
    * ``"attention_per_byte"``: the largest softmax weight per byte,
      ``logit - log(bytes)``;
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
    """
    if rule not in RULES:
        raise ValueError(f"`budget_rule` must be one of {RULES}, got {rule!r}.")
    taken = np.array(selected, bool)
    bytes_ = np.maximum(costs, 1).astype(np.float64)
    score = logits.astype(np.float64)
    helps = np.zeros(len(score), bool)
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
        # Helping features first, then the rest; argmax: first of equals.
        key = np.where(helps[fits], 1.0, 0.0)
        first = fits[key == key.max()]
        best = int(first[np.argmax(score[first])])
        picks.append(best)
        taken[best] = True
        remaining -= int(costs[best])
    return picks
