"""The rounds of generated runs in which no candidate helped any more.

Reads rows of ``benchmarks/generated_quality.py`` that carry ``rounds`` (since
session 44: each commit's picks, ``signal_exhausted`` and the statistics it
read) and, for every spent round, prints the pick and each candidate's role in
the problem (``main:source``, ``sparse:source``, ``main:coarsening``,
``noise`` ...), its table's rows and its combined z ``(gate z + probe z) /
sqrt(2)`` (the gate's z alone without a probe z). Then counts the roles of the
picks and of the candidates with the largest combined z. Usage, from the
repository root:

  python docs/generated_quality/spent_rounds.py \\
      docs/generated_quality/ctr_sparse_session45_coarsenings_behind.jsonl
"""

import collections
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, ROOT + "/benchmarks"]
from generator import generate_problem  # noqa: E402

from seqattn_tfrs.core.evidence import probe_evidence  # noqa: E402


def roles(answer: dict) -> dict[str, str]:
    """Each field's role, from a problem's ``answer``."""
    found = {name: "noise" for name in answer["noise"]}
    for group in answer["groups"]:
        for name, relation in group["members"].items():
            found[name] = f"{group['kind']}:{relation.split(':')[0]}"
    return found


def combined(event: dict) -> dict[str, float]:
    """The commit's combined z of each candidate (``core.evidence``)."""
    names = sorted(event["heldout_scores"])
    probe = event.get("probe_scores", {})
    _, z = probe_evidence(
        np.zeros(len(names), bool),
        np.array([event["heldout_scores"][f] for f in names]),
        np.array([probe.get(f, np.nan) for f in names], np.float64),
    )
    return dict(zip(names, z.tolist()))


def main(path: str) -> None:
    counts = collections.Counter()
    with open(path) as lines:
        records = [json.loads(line) for line in lines]
    for row in records:
        problem = generate_problem(row["problem"], row["kind"])
        role = roles(problem.answer)
        rows = {f: int(problem.features[f].max()) + 1 for f in problem.names}
        for event in row["rounds"]:
            if not event["signal_exhausted"]:
                continue
            z = combined(event)
            pick, best = event["features"][0], max(z, key=z.get)
            counts["spent rounds"] += 1
            counts[f"pick {role[pick]}"] += 1
            counts[f"largest combined z {role[best]}"] += 1
            ranked = sorted(z, key=lambda f: -z[f])
            print(
                f"p{row['problem']:02d} s{row['seed']} round {event['round']}: "
                f"pick {pick} ({role[pick]}); "
                + ", ".join(f"{f} {role[f]} {rows[f]} rows {z[f]:.2f}" for f in ranked)
            )
    for name, count in sorted(counts.items()):
        print(f"{name}: {count}")


if __name__ == "__main__":
    main(sys.argv[1])
