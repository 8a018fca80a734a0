"""A fit killed with SIGKILL mid-selection resumes to the uninterrupted result."""

import json
import pathlib

import numpy as np
import pytest
from helpers.processes import kill_when_ready, run_python

WORKER = pathlib.Path(__file__).resolve().parent / "helpers" / "resume_worker.py"


def run_to_end(backup, result):
    run_python([WORKER, backup, result], timeout=300)
    return json.loads(result.read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    path = tmp_path_factory.mktemp("whole")
    return run_to_end(path / "backup", path / "result.json")


@pytest.mark.parametrize(
    "kill_epoch",
    [0, 1, 2, 4],
    ids=["warm-up", "round-1", "after-first-pick", "finetune"],
)
def test_killed_fit_resumes_to_the_same_selection(tmp_path, uninterrupted, kill_epoch):
    result = tmp_path / "result.json"
    ready = pathlib.Path(str(result) + ".ready")
    kill_when_ready(
        [WORKER, tmp_path / "backup", result, kill_epoch], ready, timeout=240
    )
    assert not result.exists()
    resumed = run_to_end(tmp_path / "backup", result)
    assert len(uninterrupted["selected"]) == 3
    assert resumed["selected"] == uninterrupted["selected"]
    np.testing.assert_allclose(
        resumed["round_gates"], uninterrupted["round_gates"], atol=1e-5
    )
    np.testing.assert_allclose(resumed["kernel"], uninterrupted["kernel"], atol=1e-4)
