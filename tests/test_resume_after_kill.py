"""A fit killed with SIGKILL mid-selection resumes to the uninterrupted result."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

WORKER = pathlib.Path(__file__).resolve().parent / "helpers" / "resume_worker.py"
ENV = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")


def run_to_end(backup, result):
    done = subprocess.run(
        [sys.executable, str(WORKER), str(backup), str(result)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
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
    process = subprocess.Popen(
        [
            sys.executable,
            str(WORKER),
            str(tmp_path / "backup"),
            str(result),
            str(kill_epoch),
        ],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not ready.exists():
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, (
                "the worker never reached the kill point"
            )
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    assert not result.exists()
    resumed = run_to_end(tmp_path / "backup", result)
    assert len(uninterrupted["selected"]) == 3
    assert resumed["selected"] == uninterrupted["selected"]
    np.testing.assert_allclose(
        resumed["round_gates"], uninterrupted["round_gates"], atol=1e-5
    )
    np.testing.assert_allclose(resumed["kernel"], uninterrupted["kernel"], atol=1e-4)
