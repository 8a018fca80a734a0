"""The Keras 3 front-end at its defaults on generated CTR problems.

As ``benchmarks/generated_quality.py --kind ctr --sources heldout`` does for
tf-keras (``planted.ctr_model``): a 4-wide ``keras.layers.Embedding`` per
field, gated, concatenated into a 32-unit ReLU layer and a sigmoid unit, Adam
0.01, binary cross-entropy, batch 128, ``selection_data`` = the problem's
held-out rows (a list of ``(x, y)`` batches, so no TensorFlow is needed),
``finetune_epochs=0``; k = the problem's signal budget. Appends one JSON line
per run (``generator.score_picks``). Keras 3 keeps state between fits, so
each (problem, seed) runs in a process of its own::

  for p in $(seq 0 29); do for s in 0 1 2; do
    KERAS_BACKEND=jax python docs/generated_quality/keras3_ctr.py \\
        . $p:$((p+1)) $s out.jsonl
  done; done

Arguments: the checkout to measure, problems ``start:stop``, seeds, output.
``K3_VERBOSE=1`` prints the callback's lines (each commit, the probe's z).
``K3_STRINGS=1`` (``KERAS_BACKEND=tensorflow``) writes the ids as text and
looks them up with ``StringLookup`` tables built on the training rows.
``K3_KIND=ctr_sparse`` draws the census-like family instead.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.pop("TF_USE_LEGACY_KERAS", None)

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path[:0] = [sys.argv[1], sys.argv[1] + "/benchmarks"]
from generator import generate_problem  # noqa: E402
from keras3_runs import ctr_model, fit_and_record, heldout_batches  # noqa: E402

BATCH = 128
VERBOSE = int(os.environ.get("K3_VERBOSE", "0"))  # 1: the callback's lines
STRINGS = os.environ.get("K3_STRINGS") == "1"  # ids as text (TensorFlow backend)
KIND = os.environ.get("K3_KIND", "ctr")  # the generator's family


def main() -> None:
    start, stop = (int(v) for v in sys.argv[2].split(":"))
    seeds = [int(s) for s in sys.argv[3].split(",")]
    with open(sys.argv[4], "a") as out:
        for p in range(start, stop):
            problem = generate_problem(p, KIND)
            names, k = problem.names, problem.answer["k"]
            split = problem.train_rows
            features = {n: np.asarray(problem.features[n], np.int32) for n in names}
            vocabularies = None
            if STRINGS:
                features = {
                    n: v.astype("U").astype(object) for n, v in features.items()
                }
                vocabularies = {n: sorted(set(v[:split])) for n, v in features.items()}
            y = np.asarray(problem.labels, np.float32)
            held = heldout_batches(features, y, split, BATCH)
            for seed in seeds:
                keras.utils.set_random_seed(seed)
                model, gate = ctr_model(features, names, k, vocabularies)
                fit_and_record(
                    model, gate, problem, features, y, held, seed, out, BATCH, VERBOSE
                )


if __name__ == "__main__":
    main()
