"""Traces of ``train_function`` with the optimizer built lazily or before ``fit``.

``benchmarks/fit_cost.py``'s model at batch 512, plain and gated, a 1-step
``fit`` each, alternating an optimizer left as ``compile`` leaves it (its
slot variables made inside the first trace, so the function traces twice)
with one built before ``fit`` (docs/fit_cost.md, session 39). Usage, from
the repository root:

  python docs/fit_cost/optimizer_trace.py --alternations 3
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alternations", type=int, default=3)
    args = parser.parse_args()
    flags.FLAGS(["optimizer_trace", "--batch_size=512"])
    features, labels = fit_cost.make_data(512 * 4, seed=0)
    batches = (
        tf.data.Dataset.from_tensor_slices((features, labels))
        .batch(512, drop_remainder=True)
        .cache()
        .repeat()
    )
    for _ in range(args.alternations):
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


if __name__ == "__main__":
    main()
