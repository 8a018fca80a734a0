"""Selection quality on planted problems, over optimizers, seeds and data sources.

Two problems whose right answer is known:

* ``omp``: least squares with 8 numeric features, one a decoy correlated 0.9 with
  the strongest; success = the same 4 features in the same order as Orthogonal
  Matching Pursuit.
* ``ctr``: a click label from three main-effect fields, an exact copy of the
  first, an XOR pair and four memorisable 3,000-value noise fields; success =
  every source found, no noise field, exactly one of the two copies.

Each is run under Adam, SGD and Adagrad, on seeds 0-2, with the logits learning
from training batches and from held-out batches (`selection_data`).

Usage:
  python benchmarks/planted_grid.py [--signal gradient] [--settle 0.8]
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Measure the seqattn_tfrs of this checkout, not whichever copy is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import itertools  # noqa: E402

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from planted import (  # noqa: E402
    ctr_correct,
    ctr_model,
    ctr_problem,
    linear_model,
    linear_problem,
    make_optimizer,
    omp_order,
)

import seqattn_tfrs  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum(
    "signal", "partial", ["partial", "gradient", "score"], "attention_signal."
)
flags.DEFINE_float("settle", 0.8, "settle_fraction.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
flags.DEFINE_integer(
    "omp_warmup", 4, "Warm-up epochs of the omp problem (Adam needs 4 to fit)."
)
flags.DEFINE_list("problems", ["omp", "ctr"], "Problems to run.")
flags.DEFINE_list("optimizers", ["adam", "sgd", "adagrad"], "Optimizers to run.")


def run_omp(seed, optimizer, heldout):
    x, y = linear_problem(seed)
    names = [f"x{i}" for i in range(8)]
    model, layer = linear_model(names, num_selected=4, attention_signal=FLAGS.signal)
    model.compile(optimizer, "mse")
    data = tf.data.Dataset.from_tensor_slices(
        ({m: x[:, i] for i, m in enumerate(names)}, y)
    ).batch(128)
    callback = seqattn_tfrs.SequentialAttentionCallback(
        warmup_epochs=FLAGS.omp_warmup,
        epochs_per_selection=2,
        finetune_epochs=1,
        settle_fraction=FLAGS.settle,
        selection_data=data if heldout else None,
        verbose=0,
    )
    model.fit(data, epochs=FLAGS.omp_warmup + 9, callbacks=[callback], verbose=0)
    got = [names.index(f) for f in layer.selected_features]
    expected = omp_order(x, y, 4)
    return got == expected, f"{got} vs OMP {expected}"


def run_ctr(seed, optimizer, heldout):
    columns, y = ctr_problem(seed)
    names = list(columns)
    model, layer = ctr_model(columns, num_selected=5, attention_signal=FLAGS.signal)
    model.compile(optimizer, "binary_crossentropy")

    def data(rows):
        return tf.data.Dataset.from_tensor_slices(
            ({m: columns[m][rows] for m in names}, y[rows])
        )

    train = data(slice(0, 8000)).shuffle(8000, seed=seed).batch(128)
    callback = seqattn_tfrs.SequentialAttentionCallback(
        warmup_epochs=1,
        epochs_per_selection=2,
        finetune_epochs=1,
        settle_fraction=FLAGS.settle,
        selection_data=data(slice(8000, None)).batch(128) if heldout else None,
        verbose=0,
    )
    model.fit(train, epochs=12, callbacks=[callback], verbose=0)
    ok = ctr_correct(set(layer.selected_features))
    return ok, str(layer.selected_features)


def main(argv):
    del argv
    runners = {"omp": run_omp, "ctr": run_ctr}
    tally = {}
    for problem, name, seed, heldout in itertools.product(
        FLAGS.problems,
        FLAGS.optimizers,
        [int(seed) for seed in FLAGS.seeds],
        [False, True],
    ):
        tf.keras.backend.clear_session()
        tf.keras.utils.set_random_seed(seed)
        ok, detail = runners[problem](seed, make_optimizer(problem, name), heldout)
        source = "heldout" if heldout else "train"
        tally.setdefault((problem, name, source), []).append(ok)
        print(
            f"{problem} {name:8s} seed {seed} {source:8s} "
            f"{'ok ' if ok else 'BAD'} {detail}",
            flush=True,
        )
    print("\nproblem optimizer source   passed")
    for (problem, name, source), oks in tally.items():
        print(f"{problem:7s} {name:9s} {source:8s} {sum(oks)}/{len(oks)}")
    total = sum(sum(v) for v in tally.values())
    runs = sum(len(v) for v in tally.values())
    print(
        f"planted grid (signal={FLAGS.signal}, settle={FLAGS.settle}): "
        f"{total}/{runs} runs correct"
    )


if __name__ == "__main__":
    app.run(main)
