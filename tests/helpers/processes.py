"""Running Python in a separate process, as the tests that need one do.

Every child gets Keras 2 for TFRS and quiet TensorFlow logs.
"""

import os
import pathlib
import signal
import subprocess
import sys
import time

ENV = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def run_python(args, *, timeout, cwd=None):
    """Runs ``python ARGS`` to the end; fails with its stderr unless it succeeds.

    Returns:
      Its standard output.
    """
    done = subprocess.run(
        [sys.executable, *map(str, args)],
        env=ENV,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def kill_when_ready(args, ready, *, timeout):
    """Starts ``python ARGS``, waits until it creates ``ready``, then SIGKILLs it."""
    process = subprocess.Popen(
        [sys.executable, *map(str, args)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + timeout
        while not pathlib.Path(ready).exists():
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, f"{args} never created {ready}"
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
