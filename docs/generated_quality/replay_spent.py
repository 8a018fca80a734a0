"""Replays the last pick of generated runs whose last round was spent, under
other caps of the least-harm order.

Reads rows of ``benchmarks/generated_quality.py`` that carry ``rounds`` (since
session 44) and, for each run whose last commit had ``signal_exhausted``,
orders the candidates as ``core.selection`` does once none helps (the
combined z, tables no larger than the cap by that z, larger ones by their
rows; functions of a selected field behind; a copy first when every other
candidate hurts), from the round's recorded statistics and the problem's
tables. The cap is the largest selected table (the release) or every selected
table together (``sum``); ``pooled`` keeps the release's cap but lets a larger
table rank by its z where its combined z pooled over the run's probed rounds
(their sum over the square root of their count) is at least
``POOLED_ADMIT`` (session 54). Counts what each pick is: a noise field, a source
of a group not yet covered (``missing``), or a field of a covered group;
and how many of the recorded picks the replay reproduces (the release's replay
reproduces the release's rows). Usage, from the repository root:

  python docs/generated_quality/replay_spent.py \\
      docs/generated_quality/ctr_sparse_session47_final_near_ties.jsonl
"""

import collections
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, ROOT + "/benchmarks"]
from generator import generate_problem  # noqa: E402

from seqattn_tfrs.core import least_harm  # noqa: E402

CAPS = {"release": np.max, "sum": np.sum, "pooled": np.max}

# The pooled combined z from which ``pooled`` lets a table larger than the cap
# rank by its z (the replay was run at 2, 2.33 and 3).
POOLED_ADMIT = 2.33


def combined_z(names: np.ndarray, round_row: dict) -> tuple[np.ndarray, np.ndarray]:
    """A round's combined z per field (the gate's alone where no probe z) and
    its gate z; 0 for a field the round did not score."""
    gate = np.array([round_row["heldout_scores"].get(f, 0.0) for f in names])
    probe = np.array([round_row["probe_scores"].get(f, np.nan) for f in names])
    combined = (gate + np.nan_to_num(probe)) / 2**0.5
    return np.where(np.isfinite(probe), combined, gate), gate


def pooled_z(names: np.ndarray, row: dict) -> np.ndarray:
    """Each field's combined z summed over the probed rounds that scored it,
    over the square root of their count."""
    probed = [r for r in row["rounds"] if "probe_scores" in r]
    scored = np.array([[f in r["heldout_scores"] for f in names] for r in probed])
    total = sum(combined_z(names, r)[0] for r in probed)
    return total / np.sqrt(np.maximum(scored.sum(axis=0), 1))


def last_pick(problem, row: dict, variant: str) -> str:
    """The last pick of ``row`` replayed under ``variant`` (a key of ``CAPS``)."""
    last = row["rounds"][-1]
    names = np.array(problem.names)
    rows = np.array([problem.features[f].max() + 1 for f in names], float)
    chosen = np.isin(names, row["picks"][:-1])
    combined, gate = combined_z(names, last)
    # As the dependence check sees them: a source and its re-coding are
    # functions of each other (a copy once either is chosen), a coarsening a
    # function of a chosen source or re-coding.
    member = members(problem)
    exact = {
        member[f][0] for f in names[chosen] if f in member and _exact(member[f][1])
    }
    in_exact = [f in member and member[f][0] in exact for f in names]
    copies = np.array([c and _exact(member[f][1]) for f, c in zip(names, in_exact)])
    coarser = np.array(
        [c and member[f][1].startswith("coarsening") for f, c in zip(names, in_exact)]
    )
    copies &= ~chosen
    coarser &= ~chosen
    cap = CAPS[variant](rows[chosen])
    if variant == "pooled":  # admitted tables count as of the cap's size
        rows = np.where(
            pooled_z(names, row) >= POOLED_ADMIT, np.minimum(rows, cap), rows
        )
    order = np.flatnonzero(~chosen)
    order = order[np.argsort(-combined[order], kind="stable")]
    order = least_harm.least_cost_first(order, rows, cap)
    order = np.concatenate([order[~copies[order]], order[copies[order]]])
    order = least_harm.coarsenings_by_cost(order, rows, coarser[order], cap)
    order = least_harm.copy_when_all_hurt(order, gate, copies[order])
    return str(names[order[0]])


def _exact(relation: str) -> bool:
    """A source or its exact re-coding: each a function of the other."""
    return relation in ("source", "recode")


def members(problem) -> dict[str, tuple[int, str]]:
    """Each group member's group and relation (``source``, ``recode`` ...)."""
    return {
        f: (g, relation)
        for g, group in enumerate(problem.answer["groups"])
        for f, relation in group["members"].items()
    }


def role(problem, row: dict, pick: str) -> str:
    """``noise``, ``missing`` (a group not covered before) or ``covered group``."""
    if pick in problem.answer["noise"]:
        return "noise"
    member = members(problem)
    covered = {member[f][0] for f in row["picks"][:-1] if f in member}
    return "missing" if member[pick][0] not in covered else "covered group"


def main(path: str) -> None:
    problems, runs = {}, 0
    counts = collections.defaultdict(collections.Counter)
    matches = collections.Counter()
    with open(path) as lines:
        rows = [json.loads(line) for line in lines]
    for row in rows:
        last = row.get("rounds", [{}])[-1]
        if not last.get("signal_exhausted") or "probe_scores" not in last:
            continue
        key = (row["kind"], row["problem"])
        if key not in problems:
            problems[key] = generate_problem(row["problem"], row["kind"])
        problem, runs = problems[key], runs + 1
        for name in CAPS:
            pick = last_pick(problem, row, name)
            counts[name][role(problem, row, pick)] += 1
            matches[name] += pick == row["picks"][-1]
    print(f"{path}: {runs} runs whose last round was spent")
    for name in CAPS:
        print(
            f"  cap = {name}: {dict(counts[name])}; the recorded pick in "
            f"{matches[name]} of {runs}"
        )


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        main(argument)
