"""Running Python in a separate process, as the tests that need one do.

Every child gets Keras 2 for TFRS, quiet TensorFlow logs and this checkout's
seqattn_tfrs on its path.
"""

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENV = {
    **os.environ,
    "TF_USE_LEGACY_KERAS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    # The children import this checkout's package, as the tests do.
    "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    ),
}


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


def free_ports(count):
    """``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(port):
    """Whether a new socket can bind ``port`` on 127.0.0.1 (no process holds it)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def run_cluster(jobs, *, servers=(), timeout):
    """Runs ``jobs`` to the end beside ``servers``, which never end by themselves.

    Each entry is ``(args, env)``: ``python ARGS`` with ``env`` added to the
    environment. Everything starts at once. The call fails with the stderr of
    the first process that fails (or of every job still running at the
    deadline). Whatever happens, every process it started is killed and reaped
    before it returns.

    Returns:
      The standard output of each job, in order.
    """
    processes, files = [], []
    with contextlib.ExitStack() as stack:
        try:
            for args, env in [*jobs, *servers]:
                out = stack.enter_context(tempfile.TemporaryFile("w+"))
                err = stack.enter_context(tempfile.TemporaryFile("w+"))
                files.append((out, err))
                processes.append(
                    subprocess.Popen(
                        [sys.executable, *map(str, args)],
                        env={**ENV, **env},
                        stdout=out,
                        stderr=err,
                        text=True,
                    )
                )
            return _wait_for_jobs(processes, files, len(jobs), timeout)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                process.wait()


def _wait_for_jobs(processes, files, num_jobs, timeout):
    def stderr_of(index):
        err = files[index][1]
        err.seek(0)
        return f"{processes[index].args[1:]}:\n{err.read()[-3000:]}"

    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in processes[:num_jobs]):
        for index, process in enumerate(processes):
            code = process.poll()
            server = index >= num_jobs
            assert code is None or (code == 0 and not server), stderr_of(index)
        if time.monotonic() > deadline:
            late = [i for i in range(num_jobs) if processes[i].poll() is None]
            raise AssertionError(
                f"cluster jobs still running after {timeout} s:\n"
                + "\n".join(stderr_of(i) for i in late)
            )
        time.sleep(0.2)
    for index, process in enumerate(processes[:num_jobs]):
        assert process.returncode == 0, stderr_of(index)
    outputs = []
    for out, _ in files[:num_jobs]:
        out.seek(0)
        outputs.append(out.read())
    return outputs
