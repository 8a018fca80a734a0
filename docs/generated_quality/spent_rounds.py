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
      docs/generated_quality/ctr_sparse_session44_release_rounds.jsonl
"""

import collections
import json
import math
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT + "/benchmarks"]
from generator import generate_problem  # noqa: E402


def roles(text: str) -> dict[str, str]:
    """Each field's role, from a row's ``problem_text``."""
    found = {}
    for group in re.finditer(r"(\w+)\(([^;)]*)(?:; [\d.]+)?\)", text):
        kind = group.group(1)
        for item in group.group(2).split(","):
            name, *rest = item.split(":")
            found[name] = "noise" if kind == "noise" else f"{kind}:{rest[0]}"
    return found


def combined(event: dict) -> dict[str, float]:
    gate, probe = event["heldout_scores"], event.get("probe_scores", {})
    return {
        f: (gate[f] + probe[f]) / math.sqrt(2)
        if f in probe and probe[f] == probe[f]
        else gate[f]
        for f in gate
    }


def main(path: str) -> None:
    counts = collections.Counter()
    with open(path) as lines:
        records = [json.loads(line) for line in lines]
    for row in records:
        role = roles(row["problem_text"])
        problem = generate_problem(row["problem"], row["kind"])
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
