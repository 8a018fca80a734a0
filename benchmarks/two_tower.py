"""A planted two-tower retrieval problem: which fields each tower picks, and
what a held-out selection run costs with TFRS's ``FactorizedTopK`` metric.

The data is ``planted.two_tower_problem``: a user's item comes from a
softmax over items whose logits are the user's taste plus their age group's
plus the hour's (8-dimensional). The query tower needs ``user_id`` (or its
exact copy ``user_copy``), ``age`` (a coarsening of the user id) and
``hour``, and nothing of two 3,000-value noise fields; the candidate tower
needs ``item_id`` and neither its coarsening ``item_genre`` nor a 2,000-value
noise field. The model's ``call`` is the query tower alone,
as in TFRS's retrieval tutorials; the candidate tower runs in
``compute_loss``. Each tower has its own gate (3 picks and 1), selected inside
one ``fit`` of 4 epochs x 50 steps (``within_fit``, held-out
``selection_data``, Adagrad 0.1). With ``--query_picks 1`` both towers pick
one field in one round of the same length: while every gate of one tower is
0, the in-batch softmax gives the other tower's gates no gradient, so the
first round's score test holds no evidence for either.

Usage:
  python benchmarks/two_tower.py --seeds 0:10              # picks per seed
  python benchmarks/two_tower.py --seeds 0:10 --query_picks 1
  python benchmarks/two_tower.py --seeds 0:1 --repeats 3   # + cost with top-K
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Measure the seqattn_tfrs of this checkout, not whichever copy is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_recommenders as tfrs  # noqa: E402
from absl import app, flags  # noqa: E402

import seqattn_tfrs  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from planted import TWO_TOWER_CANDIDATE as CANDIDATE  # noqa: E402
from planted import TWO_TOWER_ITEMS as ITEMS  # noqa: E402
from planted import TWO_TOWER_QUERY as QUERY  # noqa: E402
from planted import TWO_TOWER_TRAIN_ROWS as TRAIN_ROWS  # noqa: E402
from planted import two_tower_correct, two_tower_problem  # noqa: E402


def gate(sizes: dict[str, int], num_selected: int):
    return seqattn_tfrs.SequentialAttentionEmbedding(
        {
            name: tf.keras.Sequential(
                [
                    tf.keras.layers.IntegerLookup(
                        vocabulary=list(range(size)), mask_token=None
                    ),
                    tf.keras.layers.Embedding(size + 1, 16),
                ]
            )
            for name, size in sizes.items()
        },
        num_selected=num_selected,
    )


class TwoTower(tfrs.models.Model):
    """A gate on each tower; ``call`` is the query tower (what is served)."""

    def __init__(self, query_picks: int = 3) -> None:
        super().__init__()
        self.query_gate = gate(QUERY, num_selected=query_picks)
        self.candidate_gate = gate(CANDIDATE, num_selected=1)
        self.query_dense = tf.keras.layers.Dense(32)
        self.candidate_dense = tf.keras.layers.Dense(32)
        self.task = tfrs.tasks.Retrieval()

    def call(self, features):
        return self.query_dense(tf.concat(list(self.query_gate(features).values()), 1))

    def candidate(self, features):
        gated = self.candidate_gate(features)
        return self.candidate_dense(tf.concat(list(gated.values()), 1))

    def compute_loss(self, features, training=False):
        query, candidate = self(features), self.candidate(features)
        return self.task(query, candidate, compute_metrics=not training)


def split(data: dict, rows: slice, batch: int) -> tf.data.Dataset:
    columns = {name: values[rows] for name, values in data.items()}
    return tf.data.Dataset.from_tensor_slices(columns).batch(batch)


def fit(seed: int, select: bool = True, top_k: bool = False, query_picks: int = 3):
    """One ``fit`` of 200 steps; returns the model, the callback (or None) and
    the wall time of ``fit``. ``top_k`` adds ``FactorizedTopK`` over the
    catalogue (computed where ``compute_loss`` runs with ``training=False``)."""
    data = two_tower_problem(seed)
    tf.keras.utils.set_random_seed(seed)
    model = TwoTower(query_picks)
    if top_k:
        catalogue = {
            "item_id": np.arange(ITEMS),
            "item_genre": np.arange(ITEMS) % 12,
            "item_noise": np.zeros(ITEMS, np.int64),
        }
        items = tf.data.Dataset.from_tensor_slices(catalogue).batch(32)
        model.task.factorized_metrics = [
            tfrs.metrics.FactorizedTopK(candidates=items.map(model.candidate))
        ]
    model.compile(tf.keras.optimizers.Adagrad(0.1))
    callback = None
    if select:
        callback = seqattn_tfrs.SequentialAttentionCallback(
            within_fit=True,
            selection_data=split(data, slice(TRAIN_ROWS, None), 640),
            verbose=0,
        )
    train = split(data, slice(0, TRAIN_ROWS), 256)
    start = time.perf_counter()
    model.fit(train, epochs=4, callbacks=[callback] if callback else [], verbose=0)
    return model, callback, time.perf_counter() - start


FLAGS = flags.FLAGS
flags.DEFINE_string("seeds", "0:10", "Seeds to select with, as start:stop.")
flags.DEFINE_integer("query_picks", 3, "Fields the query tower selects (1-3).")
flags.DEFINE_integer("repeats", 0, "Plain / held-out fits with FactorizedTopK.")
flags.DEFINE_string("output", "", "If set, write the results as JSON here.")


def main(argv) -> None:
    del argv
    start, stop = (int(x) for x in FLAGS.seeds.split(":"))
    results: dict = {"picks": [], "cost": []}
    for seed in range(start, stop):
        model, _, seconds = fit(seed, query_picks=FLAGS.query_picks)
        query = model.query_gate.selected_features
        candidate = model.candidate_gate.selected_features
        row = {"seed": seed, "query": query, "candidate": candidate}
        row |= {"planted": two_tower_correct(query, candidate), "fit_s": seconds}
        results["picks"].append(row)
        print(json.dumps(row), flush=True)
    for repeat in range(FLAGS.repeats):
        row = {"repeat": repeat}
        for variant, select in (("plain", False), ("heldout", True)):
            row[variant] = round(fit(0, select, top_k=True)[2], 2)
        row["ratio"] = round(row["heldout"] / row["plain"], 2)
        results["cost"].append(row)
        print(json.dumps(row), flush=True)
    correct = sum(row["planted"] for row in results["picks"])
    print(f"planted picks: {correct} of {len(results['picks'])} seeds", flush=True)
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    app.run(main)
