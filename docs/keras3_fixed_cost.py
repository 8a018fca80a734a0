"""Where the Keras 3 held-out selection run's extra time goes (one process).

``docs/keras3_gpu_compare.py``'s model, data and schedule (1 warm-up epoch,
3 rounds of 2 picks, 1 fine-tune epoch): a plain fit, then the held-out
selection run with the callback's hooks and the held-out passes timed and,
on JAX, every XLA compile of 0.1 s or more named with its duration. Prints
one JSON line. For timing only: it wraps the callback's methods.

  PKG_ROOT=/path/to/checkout KERAS_BACKEND=jax STEPS=60 python3 keras3_fixed_cost.py

(``STEPS``, ``BATCH`` and ``MAXROWS`` as in ``keras3_gpu.environment_workload``.)
"""

import collections
import json
import logging
import os
import sys
import time

ROOT = os.environ["PKG_ROOT"]
sys.path[:0] = [os.path.join(ROOT, "benchmarks"), ROOT]

import keras  # noqa: E402
import keras3_gpu  # noqa: E402
import numpy as np  # noqa: E402

import seqattn_tfrs  # noqa: E402
from seqattn_tfrs.keras3 import callback as callback_lib  # noqa: E402
from seqattn_tfrs.keras3 import heldout_probe  # noqa: E402

assert seqattn_tfrs.__file__.startswith(ROOT), seqattn_tfrs.__file__
BACKEND = keras.backend.backend()
WORKLOAD = keras3_gpu.environment_workload()
BATCH = len(WORKLOAD[4][1])

compiles: list[tuple[str, float]] = []  # (function, seconds), JAX only
if BACKEND == "jax":
    import jax

    class _CompileLog(logging.Handler):
        def emit(self, record):
            text = record.getMessage()
            if text.startswith("Finished XLA compilation of "):
                name = text.split(" of ", 1)[1].split(" in ")[0]
                seconds = float(text.rsplit(" in ", 1)[1].split()[0])
                compiles.append((name, seconds))

    jax.config.update("jax_log_compiles", True)
    for name in ("jax._src.interpreters.pxla", "jax._src.dispatch"):
        logging.getLogger(name).addHandler(_CompileLog())
        logging.getLogger(name).setLevel(logging.WARNING)

hooks: dict[str, float] = collections.defaultdict(float)
calls: dict[str, int] = collections.defaultdict(int)


def timed(owner, name, label):
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            hooks[label] += time.perf_counter() - start
            calls[label] += 1

    setattr(owner, name, wrapper)


Callback = callback_lib.SequentialAttentionCallback
for hook in ("on_train_begin", "on_epoch_begin", "on_epoch_end", "on_train_end"):
    timed(Callback, hook, hook)
timed(Callback, "_check_dependence", "on_train_begin: dependence check")
timed(Callback, "_run_probe", "commits: probe passes")
timed(Callback, "_run_pair_test", "commits: pair tests")
timed(heldout_probe.HeldoutProbe, "__init__", "on_train_begin: probe set-up")
timed(callback_lib.heldout, "make_step", "on_train_begin: held-out step set-up")


timed(Callback, "on_train_batch_end", "on_train_batch_end (held-out steps)")


def run(gated: bool) -> dict:
    def on_start():
        hooks.clear()
        calls.clear()
        compiles.clear()

    result = keras3_gpu.timed_run(WORKLOAD, gated, gated, on_start)
    if gated:
        result["hooks"] = {k: [calls[k], round(v, 3)] for k, v in hooks.items()}
    if compiles:
        result["compiles"] = [(n, round(s, 2)) for n, s in compiles if s >= 0.1]
        result["compile_total"] = round(sum(s for _, s in compiles), 2)
        result["compile_count"] = len(compiles)
    return result


device = str(keras.Variable(np.zeros(1, np.float32)).value.device)
results = {"backend": BACKEND, "device": device, "batch": BATCH}
results["steps"] = len(WORKLOAD[2]) // BATCH
results["plain"] = run(False)
results["heldout"] = run(True)
print(json.dumps(results), flush=True)
