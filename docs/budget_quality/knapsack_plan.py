"""A budget rule looked at in session 29, not the library's: a knapsack plan.

docs/pareto.md, "A knapsack plan (session 29, looked at)". Runs
``benchmarks/budget_quality.py`` with the library's default budget rule
(``attention_per_byte``) replaced, in this process only, by: among the
unselected features that fit and whose score statistic ``z`` (the one behind
``entry_z``) is positive, and that are not a function of a selected feature,
solve a 0/1 knapsack for the set of largest ``sum(z**2)`` within the bytes
left, never holding a feature together with a function of it (the copy
check's matrix); pick the plan's member of largest ``z``; re-plan next round.
Where nothing helps, the default rule picks.

Usage, from the repository root (the method keeps the default's name):

  python docs/budget_quality/knapsack_plan.py --problem movielens \\
      --seeds 0,1,2 --entry_z 3 --budget_methods sa_attention_per_byte_z3 \\
      --results_dir /tmp/knapsack_plan
"""

import itertools
import math
import os
import runpy
import sys

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, "benchmarks"), ROOT]
from seqattn_tfrs.core import budget as budget_lib  # noqa: E402
from seqattn_tfrs.core import selection as selection_lib  # noqa: E402

DEFAULT_PICK = budget_lib.pick_within_budget
DEFAULT_AFFORDABLE = selection_lib._affordable_picks
MOST_IN_A_GROUP = 12  # larger groups of related features: one member at most
STATE: dict = {"dependence": None}


def affordable(spec, record, logits, selected, num_rounds, costs, scores, dependence):
    """The library's budgeted round, keeping the copy check's matrix at hand."""
    STATE["dependence"] = dependence
    return DEFAULT_AFFORDABLE(
        spec, record, logits, selected, num_rounds, costs, scores, dependence
    )


def plan(values, costs, remaining, related, units=2000):
    """Indices of the set of largest total value within ``remaining`` bytes
    that holds no two ``related`` features (costs rounded up to
    ``remaining / units``, so a plan never overfills)."""
    count = len(values)
    unit = max(remaining / units, 1.0)
    weight = [int(math.ceil(c / unit)) for c in costs]
    capacity = int(remaining // unit)
    group = list(range(count))

    def root(i):
        while group[i] != i:
            i = group[i]
        return i

    for i, j in zip(*np.nonzero(related)):
        group[root(i)] = root(j)
    members: dict[int, list[int]] = {}
    for i in range(count):
        members.setdefault(root(i), []).append(i)
    best = np.zeros(capacity + 1)
    choices = []
    for items in members.values():
        if len(items) <= MOST_IN_A_GROUP:
            options = [
                subset
                for size in range(1, len(items) + 1)
                for subset in itertools.combinations(items, size)
                if not any(related[a, b] for a in subset for b in subset)
            ]
        else:
            options = [(i,) for i in items]
        after = best.copy()
        taken = np.full(capacity + 1, -1)
        sizes = [sum(weight[i] for i in subset) for subset in options]
        for k, subset in enumerate(options):
            if sizes[k] > capacity:
                continue
            with_it = np.full(capacity + 1, -np.inf)
            with_it[sizes[k] :] = best[: capacity + 1 - sizes[k]] + sum(
                values[i] for i in subset
            )
            better = with_it > after
            after = np.where(better, with_it, after)
            taken = np.where(better, k, taken)
        choices.append((options, taken, sizes))
        best = after
    chosen, left = [], capacity
    for options, taken, sizes in reversed(choices):
        k = taken[left]
        if k >= 0:
            chosen.extend(options[k])
            left -= sizes[k]
    return chosen


def planned(logits, costs, selected, remaining, count, rule, scores=None):
    """``pick_within_budget`` with the default rule replaced by the plan."""
    if rule != "attention_per_byte" or scores is None or not np.any(scores > 0):
        return DEFAULT_PICK(logits, costs, selected, remaining, count, rule, scores)
    z = np.asarray(scores, np.float64)
    size = len(z)
    dependence = STATE["dependence"]
    if dependence is None:
        dependence = np.zeros((size, size), bool)
    dependence = np.asarray(dependence, bool)
    taken = np.array(selected, bool)
    picks = []
    for _ in range(count):
        valueless = dependence[:, taken].any(axis=1)
        fits = np.flatnonzero(~taken & (costs <= remaining))
        if fits.size == 0:
            break
        helps = fits[(z[fits] > 0) & ~valueless[fits]]
        related = dependence[np.ix_(helps, helps)]
        chosen = plan(list(z[helps] ** 2), list(costs[helps]), remaining, related)
        if chosen:
            members = helps[chosen]
            best = int(members[np.argmax(z[members])])
        else:
            rest = DEFAULT_PICK(logits, costs, taken, remaining, 1, rule, scores)
            if not rest:
                break
            best = rest[0]
        picks.append(best)
        taken[best] = True
        remaining -= int(costs[best])
    return picks


if __name__ == "__main__":
    budget_lib.pick_within_budget = planned
    selection_lib._affordable_picks = affordable
    sys.argv = [os.path.join(ROOT, "benchmarks", "budget_quality.py"), *sys.argv[1:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
