"""One process: a plain fit, a held-out selection run, a training-batch one (JAX).

``benchmarks/keras3_gpu.py``'s model and data, one selection schedule (1
warm-up epoch, 3 rounds of 2 picks, 1 fine-tune epoch) and a plain fit
before and after, for the library found at ``PKG_ROOT`` (a checkout or an
unpacked ``git archive``), so that two versions alternate in separate
processes on one machine (docs/keras3.md, "Run 4"); a version older than
``benchmarks/keras3_gpu.timed_run`` (session 53) needs this checkout's
``benchmarks/keras3_gpu.py`` copied into its tree. Prints one JSON line:

  PKG_ROOT=/path/to/checkout LABEL=new KERAS_BACKEND=jax python3 keras3_gpu_compare.py
"""

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
ROOT = os.environ["PKG_ROOT"]
sys.path[:0] = [os.path.join(ROOT, "benchmarks"), ROOT]

import jax  # noqa: E402
import keras3_gpu  # noqa: E402

import seqattn_tfrs  # noqa: E402

assert seqattn_tfrs.__file__.startswith(ROOT), seqattn_tfrs.__file__
WORKLOAD = keras3_gpu.environment_workload()


results = {"version": os.environ.get("LABEL"), "device": jax.devices()[0].device_kind}
for name, gated, heldout in (
    ("plain", False, False),
    ("heldout", True, True),
    ("train_batches", True, False),
    ("plain_b", False, False),
):
    results[name] = keras3_gpu.timed_run(WORKLOAD, gated, heldout)
print(json.dumps(results), flush=True)
