"""A settling training step that sums the held-out probe's training side, its
sums added by a scatter-add against a segment sum (session 44, rejected).

Needs the change under test, which main does not have:
``git apply docs/fit_cost/session44_segment_sum.patch`` (``add_probe`` takes a
segment sum over the whole sums where the batch has at least one entry per
``DENSE_SUM_RATIO`` = 32 slots). ``benchmarks/fit_cost.py``'s model and data at
the batch size given. The gate
commits one pick so that the next settle sums the probe (as the callback
does with ``selection_data``), then one process traces two training
functions, one with ``selection_state.DENSE_SUM_RATIO`` = 0 (every batch
scatter-added) and one at the library's ratio, and times interleaved blocks
of calls of each, in alternating order; it checks first that both give the
same sums. Usage, from the repository root:

  python docs/fit_cost/probe_sums_step.py 4096 8 20   # batch, repeats, block
"""

import os
import sys
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT + "/benchmarks", ROOT]
import fit_cost  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

from seqattn_tfrs import selection_state  # noqa: E402
from seqattn_tfrs.core import modes  # noqa: E402

batch, repeats, block = (int(a) for a in sys.argv[1:4])
flags.FLAGS(["x", f"--batch_size={batch}"])
RATIO = selection_state.DENSE_SUM_RATIO

tf.keras.utils.set_random_seed(0)
model = fit_cost.build_model(gated=True)
model.compile(tf.keras.optimizers.Adam(1e-3), "binary_crossentropy")
layer = model.get_layer("gate")
state = layer.selection_state
count = len(layer.feature_names)
assert layer.sum_probe_in_training(True)
state.heldout_sum.assign([-0.5] * count)  # nothing helps: the settle probes
state.heldout_squares.assign([1.0] * count)
layer.attention_logits.assign([5.0] + [0.0] * (count - 1))
assert layer.commit_round() == ["f0"]
layer.set_gate_mode(modes.SETTLING)
iterator = iter(fit_cost.training_batches(8))


def traced(ratio):
    selection_state.DENSE_SUM_RATIO = ratio
    function = model.make_train_function(force=True)
    function(iterator)  # traces, under this ratio
    return function


functions = {"scatter-add": traced(0), "segment sum": traced(RATIO)}
selection_state.DENSE_SUM_RATIO = RATIO
sums = {}
weights = model.get_weights()
for name, function in functions.items():  # one step each from the same state
    model.set_weights(weights)
    layer.set_gate_mode(modes.SETTLING)
    state.probe_sums.assign(tf.zeros_like(state.probe_sums))
    function(iter(fit_cost.training_batches(1)))
    sums[name] = state.probe_sums.numpy()
assert np.abs(sums["scatter-add"]).sum() > 0
np.testing.assert_allclose(sums["segment sum"], sums["scatter-add"], atol=1e-6)
assert bool(state.probing().numpy())
times = {name: [] for name in functions}
for repeat in range(repeats):  # the order alternates: ABBA
    for name, function in list(functions.items())[:: 1 - 2 * (repeat % 2)]:
        function(iterator)
        start = time.perf_counter()
        for _ in range(block):
            function(iterator)
        times[name].append((time.perf_counter() - start) / block * 1e3)
keyed = count * batch
print(
    f"batch {batch}, {count} keyed features: {keyed} entries, "
    f"{count * 65536} slots (ratio at the library's rule: "
    f"{'segment sum' if keyed * RATIO >= count * 65536 else 'scatter-add'})"
)
base = np.array(times["scatter-add"])
for name, values in times.items():
    ratios = np.array(values) / base
    print(
        f"  {name:12s} step median {np.median(values):6.2f} ms "
        f"(blocks {min(values):.2f}-{max(values):.2f}), "
        f"median ratio to the scatter-add x{np.median(ratios):.3f}"
    )
