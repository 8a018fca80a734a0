"""How few training steps a selection round can have and still select well.

With ``SequentialAttentionCallback(within_fit=True)`` the rounds share the
steps of the fit the user already runs, so a round's length is what is left
per round. This sweeps the steps per round on the planted problems whose right
answer is known (``planted.py``: ``omp``, least squares whose right answer is
Orthogonal Matching Pursuit's order; ``ctr``, every source, one of two copies,
no noise), under Adam with held-out ``selection_data``, and reports per length
the runs that selected right. The fit's epochs are chosen so that warm-up and
fine-tune keep their default 10% each and the rounds get about the given
number of steps. The smallest length at which every run is right (with one
length of margin below it failing or not) is what
``seqattn_tfrs.core.schedule.MIN_STEPS_PER_ROUND`` is set from.

Usage:
  python benchmarks/round_budget.py [--lengths 10,20,40,80] [--seeds 0,1,2]
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json  # noqa: E402

import numpy as np  # noqa: E402
import planted  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import seqattn_tfrs  # noqa: E402
from seqattn_tfrs.core import schedule as schedule_lib  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("lengths", ["10", "20", "40", "80"], "Steps per round to try.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
flags.DEFINE_list("problems", ["omp", "ctr"], "Planted problems.")
flags.DEFINE_string("output", None, "Write the rows as JSON lines here.")


def run(problem: str, seed: int, per_round: int) -> dict:
    tf.keras.utils.set_random_seed(seed)
    if problem == "omp":
        x, y = planted.linear_problem(seed)
        names = [f"x{i}" for i in range(x.shape[1])]
        columns = {n: x[:, i] for i, n in enumerate(names)}
        k, batch = 4, 64
        model, layer = planted.linear_model(names, num_selected=k)
        loss = "mse"
    else:
        columns, y = planted.ctr_problem(seed)
        names = list(columns)
        k, batch = 5, 128  # five sources: every one, one of two copies, no noise
        model, layer = planted.ctr_model(columns, num_selected=k)
        loss = "binary_crossentropy"
    model.compile(planted.make_optimizer(problem, "adam"), loss)
    # The split of tests/test_selection_quality.py.
    cut = 3072 if problem == "omp" else 8000
    train_rows, held_rows = slice(0, cut), slice(cut, None)

    def data(rows):
        features = {name: columns[name][rows] for name in names}
        return tf.data.Dataset.from_tensor_slices((features, y[rows])).batch(batch)

    train = data(train_rows)
    steps_per_epoch = int(train.cardinality())
    # Rounds get 80% of the steps: total = k * per_round / 0.8.
    epochs = max(1, int(np.ceil(k * per_round / 0.8 / steps_per_epoch)))
    callback = seqattn_tfrs.SequentialAttentionCallback(
        within_fit=True, selection_data=data(held_rows), verbose=0
    )
    try:
        model.fit(train, epochs=epochs, callbacks=[callback], verbose=0)
    except ValueError as err:  # the schedule refuses rounds this short
        return {
            "problem": problem,
            "seed": seed,
            "target": per_round,
            "error": str(err),
        }
    picked = list(layer.selected_features)
    if problem == "omp":
        right = [names[i] for i in planted.omp_order(x, y, k)]
        correct = picked == right
    else:
        correct = planted.ctr_correct(set(picked))
    return {
        "problem": problem,
        "seed": seed,
        "target": per_round,
        "per_round": layer.schedule_record["per_round"],
        "epochs": epochs,
        "picked": picked,
        "correct": bool(correct),
    }


def main(argv):
    del argv
    # Measure below the library's floor and above its ceiling too: that is
    # what sets them.
    schedule_lib.MIN_STEPS_PER_ROUND = 1
    schedule_lib.MAX_STEPS_PER_ROUND = 10**9
    rows = []
    for per_round in map(int, FLAGS.lengths):
        for problem in FLAGS.problems:
            for seed in map(int, FLAGS.seeds):
                row = run(problem, seed, per_round)
                rows.append(row)
                print(json.dumps(row), flush=True)
    if FLAGS.output:
        with open(FLAGS.output, "w") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
    print("\nsteps per round: right runs")
    for per_round in map(int, FLAGS.lengths):
        for problem in FLAGS.problems:
            cell = [
                r for r in rows if r["target"] == per_round and r["problem"] == problem
            ]
            right = sum(r.get("correct", False) for r in cell)
            print(f"{per_round:>5} {problem:>4}: {right}/{len(cell)}")


if __name__ == "__main__":
    app.run(main)
