"""Once no candidate helps: the order of the least harm.

Past the held-out signal the statistics of the candidates left are draws of
noise (the largest of many about 2 whichever field it is), while what a
field that brings nothing costs a model grows with its table, and a
function of a selected field (a copy, a coarsening) brings nothing the model
lacks. These orderings, used by :mod:`seqattn_tfrs.core.selection` for both
front-ends, put the candidates that risk least first
(docs/generated_quality.md, sessions 20, 28, 40, 44 and 45).
"""

from __future__ import annotations

import numpy as np


def least_cost_first(order: np.ndarray, costs: np.ndarray, cap: float) -> np.ndarray:
    """``order`` (candidates that do not help, by their statistic) with those
    whose table holds at most ``cap`` bytes (the largest selected table) first,
    in that order, then the larger ones by bytes, fewest first.

    Once none helps, the statistics are weak: the largest of many null draws is
    about 2 whichever field it is, while what a field that brings nothing
    costs a model grows with its table (a 10,000-value noise field in place of
    a 32-bucket one cost the served Criteo-shaped model 0.017-0.027 test AUC;
    docs/benchmarks.md, section 9). A table no larger than one the model holds
    risks no more than it already takes, so there the statistic ranks: a weak
    effect no test confirmed (a sparse field's sibling) scores above noise more
    often than not (docs/generated_quality.md, "Session 44").

    Example (1 and 2 fit under the cap of 64 bytes, 0 and 3 follow by bytes):
      >>> least_cost_first(np.array([0, 2, 3, 1]), np.array([512, 32, 64, 128]), 64)
      array([2, 1, 3, 0])
    """
    larger = costs[order] > cap
    keys = np.where(larger, costs[order], 0.0)
    return order[np.lexsort((keys, larger))]


def coarsenings_by_cost(
    order: np.ndarray, costs: np.ndarray, coarser: np.ndarray, cap: float
) -> np.ndarray:
    """``order`` (candidates once none helps, as :func:`least_cost_first`
    ranks them; ``coarser`` flags its functions of a chosen feature: copies,
    coarsenings) with each of those behind every other candidate whose table
    holds at most ``cap`` bytes (the largest selected table), and ahead of
    every one larger than the cap and than its own table.

    A function of a chosen feature brings nothing the model lacks (a copy
    groups the rows as the chosen one does, a coarsening pools its values); a
    weak effect may hide in an other table of at most the cap, and a larger
    one costs more (:func:`least_cost_first`; docs/generated_quality.md,
    "Sessions 40, 44 and 45").

    Example (the coarsening 1 goes behind 0 and ahead of the larger 2):
      >>> coarsenings_by_cost(np.array([1, 0, 2]), np.array([8.0, 20.0, 3000.0]),
      ...                      np.array([True, False, False]), 20.0).tolist()
      [0, 1, 2]
    """
    larger = costs[order] > cap
    later = larger | coarser  # all but the others of at most the cap
    keys = np.where(later, np.where(larger, costs[order], cap), 0.0)
    return order[np.lexsort((coarser, keys, later))]


def copy_when_all_hurt(
    order: np.ndarray, harm: np.ndarray, copies: np.ndarray
) -> np.ndarray:
    """``order`` (``copies`` flags its copies of a chosen feature) with the
    copy of the largest ``harm`` first when every other candidate's ``harm``
    is at most 0 and at most that copy's.

    A copy has no effect of its own. Another candidate whose statistic is
    positive may have a small one that no test could confirm (a weak main
    effect, a coarsening that pools an id's rare values), so it keeps its
    place. One whose statistic is negative is estimated to hurt; it still
    goes first where the copy's statistic is lower (at some soft gates every
    candidate, a copy too, measures negative: the copy's statistic is then
    the yardstick of no effect).

    Example (the copy, 1, goes first only in the second case):
      >>> copies = np.array([False, True, False])
      >>> copy_when_all_hurt(np.array([0, 1, 2]), np.array([0.5, 0.1, -2.0]),
      ...                     copies).tolist()
      [0, 1, 2]
      >>> copy_when_all_hurt(np.array([0, 1, 2]), np.array([-0.5, 0.1, -2.0]),
      ...                     copies).tolist()
      [1, 0, 2]
    """
    if not copies.any():
        return order
    lead = order[copies][np.argmax(harm[order[copies]])]
    others = harm[order[~copies]]
    if copies.all() or (others.max() <= 0.0 and harm[lead] >= others.max()):
        return np.concatenate([[lead], order[order != lead]])
    return order
