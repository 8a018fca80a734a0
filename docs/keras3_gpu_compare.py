"""One process: a plain fit, a held-out selection run, a training-batch one (JAX).

``benchmarks/keras3_gpu.py``'s model and data, one selection schedule (1
warm-up epoch, 3 rounds of 2 picks, 1 fine-tune epoch) and a plain fit
before and after, for the library found at ``PKG_ROOT`` (a checkout or an
unpacked ``git archive``), so that two versions alternate in separate
processes on one machine (docs/keras3.md, "Run 4"). Prints one JSON line:

  PKG_ROOT=/path/to/checkout LABEL=new KERAS_BACKEND=jax python3 keras3_gpu_compare.py
"""

import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
ROOT = os.environ["PKG_ROOT"]
sys.path[:0] = [os.path.join(ROOT, "benchmarks"), ROOT]

import jax  # noqa: E402
import keras  # noqa: E402
import keras3_gpu  # noqa: E402
import numpy as np  # noqa: E402

import seqattn_tfrs  # noqa: E402
from seqattn_tfrs.core.modes import DENSE  # noqa: E402

assert seqattn_tfrs.__file__.startswith(ROOT), seqattn_tfrs.__file__
STEPS = int(os.environ.get("STEPS", 300))
BATCH = int(os.environ.get("BATCH", 8192))
SIZES = np.geomspace(10, int(os.environ.get("MAXROWS", 1_000_000)), 26).astype(int)
x, y = keras3_gpu.data(BATCH * STEPS, SIZES, 0)
heldout_x, heldout_y = keras3_gpu.data(BATCH * 4, SIZES, 1)
selection_data = [
    ({k: v[i : i + BATCH] for k, v in heldout_x.items()}, heldout_y[i : i + BATCH])
    for i in range(0, len(heldout_y), BATCH)
]
head = ({k: v[:BATCH] for k, v in x.items()}, y[:BATCH])


def run(gated: bool, heldout: bool) -> dict:
    keras.utils.set_random_seed(0)
    model, gate = keras3_gpu.build(SIZES, 16, gated, 6)
    keras3_gpu.timed_fit(model, *head, BATCH, 1)  # compile the train step
    callbacks = []
    if gated:
        gate.gate_mode.assign(DENSE)
        callbacks.append(
            keras3_gpu.selection_callback(selection_data if heldout else None)
        )
    start = time.perf_counter()
    times = keras3_gpu.timed_fit(model, x, y, BATCH, 5, callbacks)
    result = {
        "total": round(time.perf_counter() - start, 3),
        "epochs": [round(t, 3) for t in times],
    }
    if gated:
        result["selected"] = list(gate.selected_features)
    return result


results = {"version": os.environ.get("LABEL"), "device": jax.devices()[0].device_kind}
for name, gated, heldout in (
    ("plain", False, False),
    ("heldout", True, True),
    ("train_batches", True, False),
    ("plain_b", False, False),
):
    results[name] = run(gated, heldout)
print(json.dumps(results), flush=True)
