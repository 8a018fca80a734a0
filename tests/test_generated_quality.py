"""A slice of the generated-problem sweep (docs/generated_quality.md) as tests.

Each case runs the library's defaults with `selection_data`, as
`benchmarks/generated_quality.py` does, on one generated problem (seed 0) whose
right answer the generator knows, and fails if the picks within the signal
budget stop being right: every informative group covered, no second member of
a covered group while one is missing, no noise field (ctr), or Orthogonal
Matching Pursuit's order (least squares). All four are right on all three
training seeds of the sweep (tag `round1`, the current defaults). Problem 22
is the copy check's case: before it, all three seeds took a copy.
Least-squares problems 9 and 27 are the settled score test's (session 19);
problem 27 of the census-like family (`ctr_sparse`) is the probe's step per
value (session 41: the release missed its sparse field on seeds 0 and 1).
"""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
from generated_run import run_one  # noqa: E402
from generator import generate_problem  # noqa: E402

CASES = [
    # a strong field with an exact copy and a re-coding; an XOR pair
    ("ctr", 22),
    # copies and re-codings of three of four groups
    ("ctr", 18),
    # an XOR pair; a coarsening of the strongest field
    ("ctr", 2),
    # a decoy correlated 0.93 with the strongest column
    ("least_squares", 1),
    # a decoy correlated 0.95 with the strongest column; the first pick by the
    # logits went to the wrong column on all three seeds, by the score test
    # it is OMP's on all three (tag `first_test`)
    ("least_squares", 15),
    # OMP's third and fourth steps within a margin of 1.1: by the logits both
    # came in the wrong order on seed 0 (problem 9 also on seed 1, problem 27
    # on seed 2), by the settled model's score test in OMP's on all three
    # (session 19)
    ("least_squares", 9),
    ("least_squares", 27),
    # the census-like family: a field that is 0 on most rows with rare values
    # of large effect (f00); before the probe's step per value (session 41)
    # the 5-value noise field f09 went fifth in its place
    ("ctr_sparse", 27),
]


@pytest.mark.parametrize("kind, problem_seed", CASES, ids=lambda v: str(v))
def test_defaults_with_selection_data_get_the_generated_problem_right(
    kind, problem_seed
):
    problem = generate_problem(problem_seed, kind)
    result = run_one(problem, seed=0, heldout=True)
    if kind == "least_squares":
        assert result["omp_order_agrees"], (result["order"], problem.answer)
        return
    assert result["all_groups"], (result["order"], result["missed"])
    assert not result["redundant_while_missing"], result["order"]
    assert result["noise_picks"] == 0, result["order"]
