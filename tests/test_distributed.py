"""MirroredStrategy on two logical CPUs selects what one device selects."""

import json
import pathlib

import numpy as np
import pytest
from helpers.processes import run_python

WORKER = pathlib.Path(__file__).resolve().parent / "helpers" / "mirrored_worker.py"


def select(mode, source):
    out = run_python([WORKER, mode, source], timeout=300)
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("source", ["train", "heldout"])
def test_mirrored_selection_matches_single_device(source):
    mirrored, single = select("mirrored", source), select("single", source)
    assert mirrored["selected"] == single["selected"] == ["a", "c", "e"]
    first, second = mirrored["replica_masks"]
    assert first == second  # every replica holds the same selection
    np.testing.assert_allclose(
        mirrored["round_gates"], single["round_gates"], atol=0.05
    )
