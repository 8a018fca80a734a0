"""How much held-out evidence the census-like family's sparse sibling can give.

For each ``ctr_sparse`` problem, the information the sparse sibling adds at
its place in the generator's oracle order (``answer["oracle_information"]``:
what a ridge logistic model fitted to the training rows gains in mean
log-likelihood per row, so as far as the training rows can teach it) and
``2 x held-out rows x that gain``: about the likelihood-ratio statistic a
test of the sibling on the held-out rows can expect (a z of 2 is a
statistic of 4). Then, from rows of ``benchmarks/generated_quality.py``, the
runs with a noise pick and those that missed the sibling, binned by that
expected statistic. Usage, from the repository root:

  python docs/generated_quality/sibling_evidence.py \\
      docs/generated_quality/ctr_sparse_session45_coarsenings_behind.jsonl
"""

import collections
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT + "/benchmarks"]
from generator import generate_problem  # noqa: E402

BINS = ((0.0, 4.0), (4.0, 10.0), (10.0, float("inf")))


def sibling_statistic(problem) -> tuple[str, float, float]:
    """The sibling's name, its oracle gain per row and the expected
    held-out likelihood-ratio statistic of that gain."""
    answer = problem.answer
    sibling = [g["source"] for g in answer["groups"] if g["kind"] == "sparse"][1]
    gains = np.diff([0.0] + list(answer["oracle_information"]))
    gain = float(gains[answer["oracle_order"].index(sibling)])
    heldout_rows = len(problem.labels) - problem.train_rows
    return sibling, gain, 2.0 * heldout_rows * gain


def main(path: str) -> None:
    with open(path) as lines:
        records = [json.loads(line) for line in lines]
    if any(row.get("kind", "ctr_sparse") != "ctr_sparse" for row in records):
        raise ValueError(f"{path}: expected rows of the ctr_sparse family only.")
    problems = {}
    cells = collections.defaultdict(collections.Counter)
    for row in records:
        if row["problem"] not in problems:
            # Keras 3 rows name no kind: this family's.
            problem = generate_problem(row["problem"], "ctr_sparse")
            problems[row["problem"]] = sibling_statistic(problem)
        sibling, gain, statistic = problems[row["problem"]]
        missed = any(m["source"] == sibling for m in row["missed"])
        low, high = next(b for b in BINS if b[0] <= statistic < b[1])
        cell = cells[(low, high)]
        cell["runs"] += 1
        cell["noise"] += bool(row["noise_picks"])
        cell["missed"] += missed
    for p, (sibling, gain, statistic) in sorted(problems.items()):
        print(f"p{p:02d} sibling {sibling}: {gain:.5f}/row, statistic {statistic:.1f}")
    for (low, high), cell in sorted(cells.items()):
        print(
            f"expected statistic {low:g}-{high:g}: {cell['runs']} runs, "
            f"sibling missed {cell['missed']}, with a noise pick {cell['noise']}"
        )


if __name__ == "__main__":
    main(sys.argv[1])
