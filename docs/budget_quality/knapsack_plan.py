"""A budget rule looked at in session 29, not the library's: a knapsack plan.

docs/pareto.md, "A knapsack plan (session 29, looked at)". Runs
``benchmarks/budget_quality.py`` with the library's default budget rule
(``attention_per_byte``) replaced, in this process only, by: among the
unselected features that fit and whose score statistic ``z`` (the one behind
``entry_z``) is positive, and that are not a function of a selected feature,
solve a 0/1 knapsack for the set of largest ``sum(z**2)`` within the bytes
left, never holding a feature together with a function of it (the copy
check's matrix); pick the plan's member of largest ``z``; re-plan next round.
Where nothing helps, the default rule picks (since session 30 the library's
default follows a knapsack plan of its own where filling in per-byte order
crowds out a table the plan is clearly worth more with:
``core.budget.planned_pick``; this script's rule is session 29's).

Usage, from the repository root (the method keeps the default's name):

  python docs/budget_quality/knapsack_plan.py --problem movielens \\
      --seeds 0,1,2 --entry_z 3 --budget_methods sa_attention_per_byte_z3 \\
      --results_dir /tmp/knapsack_plan
"""

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
STATE: dict = {"dependence": None}


def affordable(spec, record, logits, selected, num_rounds, costs, scores, dependence):
    """The library's budgeted round, keeping the copy check's matrix at hand."""
    STATE["dependence"] = dependence
    return DEFAULT_AFFORDABLE(
        spec, record, logits, selected, num_rounds, costs, scores, dependence
    )


def planned(logits, costs, selected, remaining, count, rule, scores=None, _=None):
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
        chosen = budget_lib.knapsack(z[helps] ** 2, costs[helps], remaining, related)
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
