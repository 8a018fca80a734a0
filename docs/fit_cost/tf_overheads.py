"""Two costs of tf-keras' own ``fit`` that show in whole-fit timings.

``benchmarks/fit_cost.py``'s model, cached in-memory batches
(docs/fit_cost.md, session 39):

* ``teardown``: ``--fits`` fits of 4 epochs x 33 steps of the plain model,
  alternating ``tf.data.Options().autotune.enabled`` True and False; for each,
  wall time, CPU time, and the seconds from ``on_train_end`` to ``fit``'s
  return (destroying the training iterator waits for the autotuning thread);
* ``optimizer``: 1-step fits of the plain and the gated model (batch 512),
  alternating an optimizer left as ``compile`` leaves it (its slot variables
  made inside the first trace, so ``train_function`` traces twice) with one
  built before ``fit``.

Usage, from the repository root:

  python docs/fit_cost/tf_overheads.py teardown --fits 16
  python docs/fit_cost/tf_overheads.py optimizer --alternations 3
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


def teardown(fits: int, batch_size: int) -> None:
    """Seconds from ``on_train_end`` to ``fit``'s return, autotune on and off."""
    flags.FLAGS(["tf_overheads", f"--batch_size={batch_size}"])
    cached = fit_cost.training_batches(33)
    for fit in range(fits):
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


def optimizer_traces(alternations: int, batch_size: int) -> None:
    """Traces and 1-step fit time, optimizer built lazily or before ``fit``."""
    flags.FLAGS(["tf_overheads", f"--batch_size={batch_size}"])
    batches = fit_cost.training_batches(4)
    for _ in range(alternations):
        for built in (False, True):
            for gated in (False, True):
                tf.keras.backend.clear_session()
                model = fit_cost.build_model(gated=gated)
                optimizer = tf.keras.optimizers.Adam(1e-3)
                model.compile(optimizer, "binary_crossentropy")
                if built:
                    optimizer.build(model.trainable_variables)
                start = time.perf_counter()
                model.fit(batches, steps_per_epoch=1, epochs=1, verbose=0)
                print(
                    f"optimizer {'built' if built else 'lazy':5} "
                    f"{'gated' if gated else 'plain'}: "
                    f"{model.train_function.experimental_get_tracing_count()} "
                    f"traces, 1-step fit {time.perf_counter() - start:.2f} s",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["teardown", "optimizer"])
    parser.add_argument("--fits", type=int, default=12)
    parser.add_argument(
        "--batch_size", type=int, help="default: 4096 (teardown), 512 (optimizer)"
    )
    parser.add_argument("--alternations", type=int, default=3)
    args = parser.parse_args()
    if args.batch_size is None:
        args.batch_size = {"teardown": 4096, "optimizer": 512}[args.what]
    if args.what == "teardown":
        teardown(args.fits, args.batch_size)
    else:
        optimizer_traces(args.alternations, args.batch_size)


if __name__ == "__main__":
    main()
