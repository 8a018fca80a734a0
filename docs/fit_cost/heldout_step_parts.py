"""The held-out logit step against its floor, at ``fit_cost.py``'s model.

``benchmarks/fit_cost.py``'s model (26 string fields of 1,000 values, width
16, Dense 256-128-1) at ``--batch_size`` rows, each variant a
``tf.function`` fed from one iterator over 4 cached batches, timed as min
and median of 5 blocks of 20 calls (milliseconds a call):

* the plain model's training step (``make_train_function``);
* the plain model's forward pass in inference mode;
* the floor issue 15 names: the plain model's forward pass and its backward
  pass down to the tables' outputs (no weight gradient, no optimizer);
* the gated model's forward pass (gates 1);
* the library's held-out step (``heldout.make_heldout_step``) with the gates
  dense (no logit learning) and selecting (the logits learn);
* the gated model's training step while selecting.

docs/fit_cost.md, "Held-out steps only in each phase's last pass".
Usage, from the repository root:

  python docs/fit_cost/heldout_step_parts.py [--batch_size 4096]
"""

import os
import sys
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT + "/benchmarks", ROOT]

import fit_cost  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

from seqattn_tfrs import heldout  # noqa: E402
from seqattn_tfrs.core import modes  # noqa: E402

FLAGS = flags.FLAGS


def timed(call, calls=20, blocks=5):
    """Min and median over ``blocks`` of the mean time of ``calls`` calls."""
    call()
    means = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        means.append((time.perf_counter() - start) / calls * 1e3)
    means.sort()
    return means[0], means[blocks // 2]


def main():
    FLAGS(sys.argv[:1] + ["--batch_size", "4096"] + sys.argv[1:])
    size = FLAGS.batch_size
    features, labels = fit_cost.make_data(size * 4, 1)
    data = tf.data.Dataset.from_tensor_slices((features, labels))
    data = data.batch(size).cache().repeat()
    models = {}
    for gated in (False, True):
        tf.keras.utils.set_random_seed(0)
        model = fit_cost.build_model(gated)
        model.compile(tf.keras.optimizers.Adam(1e-3), "binary_crossentropy")
        model.fit(data, steps_per_epoch=3, epochs=1, verbose=0)
        models[gated] = model
    plain, gated = models[False], models[True]
    gate = gated.get_layer("gate")
    names = [f"f{j}" for j in range(FLAGS.fields)]
    tables = {n: plain.get_layer(f"table_{n}") for n in names}
    head = plain.layers[-4:]  # Concatenate, Dense 256, Dense 128, Dense 1

    @tf.function
    def forward(model, batch):
        return model(batch[0], training=False)

    @tf.function
    def floor(batch):
        x, y = batch
        with tf.GradientTape() as tape:
            outputs = [tables[n](x[n]) for n in names]
            tape.watch(outputs)
            h = head[0](outputs)
            for layer in head[1:]:
                h = layer(h)
            loss = tf.reduce_mean(tf.keras.losses.binary_crossentropy(y[:, None], h))
        return tape.gradient(loss, outputs)

    def fed(step):
        batches = iter(data)
        return lambda: step(batches)

    def fed_batch(step):
        batches = iter(data)
        return lambda: step(next(batches))

    rows = {
        "plain training step": fed(plain.make_train_function(force=True)),
        "plain forward": fed_batch(lambda b: forward(plain, b)),
        "plain forward + backward to the tables (floor)": fed_batch(floor),
        "gated forward (gates 1)": fed_batch(lambda b: forward(gated, b)),
    }
    results = {name: timed(call) for name, call in rows.items()}
    for mode in (modes.DENSE, modes.SELECTING):
        gate.set_gate_mode(mode)
        step = heldout.make_heldout_step(gated, [gate])
        name = f"held-out step, gates {modes.NAMES[mode]}"
        results[name] = timed(fed(step))
    gate.set_gate_mode(modes.SELECTING)
    train = gated.make_train_function(force=True)
    results["gated training step, selecting"] = timed(fed(train))
    print(f"batch {size}: ms a call, min / median of 5 blocks of 20")
    for name, (low, mid) in results.items():
        print(f"  {name:48s} {low:6.2f} / {mid:6.2f}")


if __name__ == "__main__":
    main()
