"""The Keras 3 front-end at its defaults on generated least-squares problems.

As ``benchmarks/generated_quality.py --kind least_squares`` does for tf-keras:
a ``keras.layers.Identity`` "embedding" per float feature, one Dense unit,
Adam 0.05, batch 128, ``selection_data`` = the problem's held-out rows,
``finetune_epochs=0``; k = the problem's signal budget. Appends one JSON line
per run (``generator.score_picks``: OMP order and set agreement, noise and
decoy picks). Runs in one process drift from fresh ones (Keras 3 state kept
between fits), so session 21 ran each (problem, seed) in a process of its
own::

  for p in $(seq 0 29); do for s in 0 1 2; do
    KERAS_BACKEND=jax python docs/generated_quality/keras3_least_squares.py \\
        . $p:$((p+1)) $s out.jsonl
  done; done

Arguments: the checkout to measure, problems ``start:stop``, seeds, output.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.pop("TF_USE_LEGACY_KERAS", None)

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path[:0] = [sys.argv[1], sys.argv[1] + "/benchmarks"]
from generator import generate_problem  # noqa: E402
from keras3_runs import fit_and_record  # noqa: E402

from seqattn_tfrs.keras3 import SequentialAttentionEmbedding  # noqa: E402


def main() -> None:
    import tensorflow as tf  # the held-out batches as a tf.data.Dataset

    start, stop = (int(v) for v in sys.argv[2].split(":"))
    seeds = [int(s) for s in sys.argv[3].split(",")]
    with open(sys.argv[4], "a") as out:
        for p in range(start, stop):
            problem = generate_problem(p, "least_squares")
            names, k = problem.names, problem.answer["k"]
            split = problem.train_rows
            features = {
                n: np.asarray(problem.features[n], np.float32).reshape(-1, 1)
                for n in names
            }
            y = np.asarray(problem.labels, np.float32)
            for seed in seeds:
                keras.utils.set_random_seed(seed)
                inputs = {n: keras.Input((1,), name=n) for n in names}
                gate = SequentialAttentionEmbedding(
                    {n: keras.layers.Identity() for n in names}, num_selected=k
                )
                gated = gate(inputs)
                joined = keras.layers.Concatenate()([gated[n] for n in names])
                model = keras.Model(inputs, keras.layers.Dense(1)(joined))
                model.compile(keras.optimizers.Adam(0.05), "mse")
                held = tf.data.Dataset.from_tensor_slices(
                    ({n: v[split:] for n, v in features.items()}, y[split:])
                ).batch(128)
                fit_and_record(model, gate, problem, features, y, held, seed, out, 128)


if __name__ == "__main__":
    main()
