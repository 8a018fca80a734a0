"""How long ``fit`` waits after its last callback hook, with and without autotune.

``benchmarks/fit_cost.py``'s ungated model and cached in-memory training
batches; ``--fits`` fits of 4 epochs x 33 steps each, alternating
``autotune.enabled`` True and False on the dataset. For each fit: wall time,
CPU time, and the seconds from ``on_train_end`` to ``fit``'s return (the
training iterator's destruction; docs/fit_cost.md, session 39). Usage, from
the repository root:

  python docs/fit_cost/teardown_wait.py --fits 12
"""

import argparse
import os
import sys
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, "benchmarks"), ROOT]

import fit_cost  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402


class TrainEnd(tf.keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        self.at = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fits", type=int, default=12)
    parser.add_argument("--batch_size", type=int, default=4096)
    args = parser.parse_args()
    flags.FLAGS(["teardown_wait", f"--batch_size={args.batch_size}"])
    features, labels = fit_cost.make_data(args.batch_size * 33, seed=0)
    cached = (
        tf.data.Dataset.from_tensor_slices((features, labels))
        .batch(args.batch_size, drop_remainder=True)
        .cache()
        .repeat()
    )
    for fit in range(args.fits):
        autotune = fit % 2 == 0
        options = tf.data.Options()
        options.autotune.enabled = autotune
        tf.keras.backend.clear_session()
        model = fit_cost.build_model(gated=False)
        model.compile(tf.keras.optimizers.Adam(1e-3), "binary_crossentropy")
        end = TrainEnd()
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(
            cached.with_options(options),
            steps_per_epoch=33,
            epochs=4,
            callbacks=[end],
            verbose=0,
        )
        done = time.perf_counter()
        print(
            f"autotune {autotune!s:5}: fit {done - start:6.2f} s, CPU "
            f"{time.process_time() - cpu:6.2f} s, after on_train_end "
            f"{done - end.at:5.2f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
