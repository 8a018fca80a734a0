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


def pick_within_budget(
    logits: np.ndarray,
    costs: np.ndarray,
    selected: np.ndarray,
    remaining: int,
    count: int,
    rule: str,
) -> list[int]:
    """Up to ``count`` greedy picks among the unselected features that fit.

    Each pick takes, among the unselected features whose cost fits what is left
    of the budget, the largest logit (``rule="attention"``) or the largest
    softmax weight per byte, ``logit - log(bytes)`` (``"attention_per_byte"``;
    a feature of 0 bytes counts as 1 byte), then charges its cost. Ties go to
    the earlier feature. Stops early when nothing fits.

    Example:
      >>> logits = np.array([3.0, 2.0, 1.0])
      >>> costs = np.array([100, 10, 1])
      >>> selected = np.array([False, False, False])
      >>> pick_within_budget(logits, costs, selected, 50, 2, "attention")
      [1, 2]
      >>> pick_within_budget(logits, costs, selected, 500, 2, "attention_per_byte")
      [2, 1]
    """
    if rule not in RULES:
        raise ValueError(f"`budget_rule` must be one of {RULES}, got {rule!r}.")
    taken = np.array(selected, bool)
    score = logits.astype(np.float64)
    if rule == "attention_per_byte":
        score = score - np.log(np.maximum(costs, 1).astype(np.float64))
    picks: list[int] = []
    for _ in range(count):
        fits = np.flatnonzero(~taken & (costs <= remaining))
        if fits.size == 0:
            break
        best = int(fits[np.argmax(score[fits])])  # argmax: first of equals
        picks.append(best)
        taken[best] = True
        remaining -= int(costs[best])
    return picks
