"""MirroredStrategy on two logical CPUs selects what one device selects."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

WORKER = pathlib.Path(__file__).resolve().parent / "helpers" / "mirrored_worker.py"


def select(mode, source):
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, str(WORKER), mode, source],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("source", ["train", "heldout"])
def test_mirrored_selection_matches_single_device(source):
    mirrored, single = select("mirrored", source), select("single", source)
    assert mirrored["selected"] == single["selected"] == ["a", "c", "e"]
    first, second = mirrored["replica_masks"]
    assert first == second  # every replica holds the same selection
    np.testing.assert_allclose(
        mirrored["round_gates"], single["round_gates"], atol=0.05
    )
