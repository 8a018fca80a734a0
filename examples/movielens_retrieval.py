"""A TFRS two-tower retrieval model on MovieLens 100K that picks each tower's features.

The model of TFRS's retrieval tutorials: a query tower (user and context
features) and a candidate tower (movie features), trained with
``tfrs.tasks.Retrieval`` (in-batch softmax) and scored with ``FactorizedTopK``
over every movie. Each tower's per-feature tables are wrapped in a
``SequentialAttentionEmbedding`` (3 of 7 query features, 2 of 4 movie
features), ``SequentialAttentionCallback`` selects them inside one ``fit``
with held-out ``selection_data``, ``prune`` removes the other tables in
place, and a ``BruteForce`` index over the pruned candidate tower is exported
with ``export_for_serving``: its ``serving_default`` signature takes only the
kept query features and returns the top movie ids. The same towers on every
feature, trained for the same epochs, are the baseline.

``movie_genres`` holds several values a rating (a ragged tensor); its table
averages the genres' embeddings, so the gate sees one ``[batch, d]`` output per
feature, as it needs.

Run:

    python examples/movielens_retrieval.py [--smoke] [--seed N] [--export_base DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # TFRS needs Keras 2
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_recommenders as tfrs  # noqa: E402

import seqattn_tfrs  # noqa: E402
from seqattn_tfrs.movielens.data import (  # noqa: E402
    add_derived_features,
    load_movielens_100k,
)

QUERY = (
    "user_id",
    "user_zip_code",
    "user_occupation_text",
    "bucketized_user_age",
    "user_gender",
    "hour_of_day",
    "weekday",
)
CANDIDATE = ("movie_id", "movie_title", "movie_release_year", "movie_genres")
TOP_K = 100


def load_columns(rows: int | None) -> dict[str, tf.Tensor]:
    """MovieLens 100K's query and movie features, one entry per rating (the
    first ``rows`` ratings, or all), ``movie_genres`` ragged."""

    def features(element: dict) -> dict:
        derived = add_derived_features(element)
        kept = {name: derived[name] for name in QUERY + CANDIDATE}
        kept["user_gender"] = tf.cast(kept["user_gender"], tf.int64)
        kept["bucketized_user_age"] = tf.cast(kept["bucketized_user_age"], tf.int64)
        return kept

    ratings = load_movielens_100k().map(features)
    if rows is not None:
        ratings = ratings.take(rows)
    return next(iter(ratings.ragged_batch(100_000)))


def split(columns: dict, seed: int) -> tuple[dict, dict, dict]:
    """80% training, 10% held out for the selection, 10% test, shuffled."""
    size = int(columns["user_id"].shape[0])
    order = np.random.default_rng(seed).permutation(size)
    cuts = np.split(order, [int(0.8 * size), int(0.9 * size)])
    return tuple({k: tf.gather(v, rows) for k, v in columns.items()} for rows in cuts)


class MeanOfValues(tf.keras.layers.Layer):
    """Averages a multi-valued feature's embeddings: ``[B, L, d]`` -> ``[B, d]``."""

    def call(self, embeddings):
        return tf.reduce_mean(embeddings, axis=1)


def table(values: tf.Tensor, width: int) -> tf.keras.Sequential:
    """A lookup over the values seen and an embedding table (pooled where a
    rating holds several values)."""
    ragged = isinstance(values, tf.RaggedTensor)
    vocabulary = np.unique((values.flat_values if ragged else values).numpy())
    lookup = (
        tf.keras.layers.StringLookup
        if vocabulary.dtype.kind in "SO"
        else tf.keras.layers.IntegerLookup
    )(vocabulary=vocabulary, mask_token=None)
    layers = [lookup, tf.keras.layers.Embedding(len(vocabulary) + 1, width)]
    return tf.keras.Sequential(layers + ([MeanOfValues()] if ragged else []))


class TwoTower(tfrs.models.Model):
    """``call`` is the query tower, what the index serves; the candidate tower
    runs in ``compute_loss`` and builds the index."""

    def __init__(self, columns: dict, movies: dict, gated: bool) -> None:
        super().__init__()
        self.gated = gated

        def tower(names: tuple[str, ...], num_selected: int):
            tables = {name: table(columns[name], 32) for name in names}
            if not gated:
                return tables
            return seqattn_tfrs.SequentialAttentionEmbedding(
                tables, num_selected=num_selected
            )

        self.query_tables = tower(QUERY, 3)
        self.candidate_tables = tower(CANDIDATE, 2)
        self.query_dense = tf.keras.layers.Dense(32)
        self.candidate_dense = tf.keras.layers.Dense(32)
        candidates = tf.data.Dataset.from_tensor_slices(movies).batch(256)
        self.task = tfrs.tasks.Retrieval(
            metrics=tfrs.metrics.FactorizedTopK(candidates.map(self.candidate))
        )

    def _embed(self, tables, features: dict) -> tf.Tensor:
        if self.gated:
            embedded = tables(features)
        else:
            embedded = {name: layer(features[name]) for name, layer in tables.items()}
        return tf.concat(list(embedded.values()), axis=1)

    def call(self, features: dict) -> tf.Tensor:
        return self.query_dense(self._embed(self.query_tables, features))

    def candidate(self, features: dict) -> tf.Tensor:
        return self.candidate_dense(self._embed(self.candidate_tables, features))

    def compute_loss(self, features: dict, training: bool = False) -> tf.Tensor:
        return self.task(
            self(features), self.candidate(features), compute_metrics=not training
        )


def batches(columns: dict, batch_size: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(columns).batch(batch_size)


def fit(model, train, heldout, epochs, batch_size, gated) -> float:
    """Fits ``model`` (with the selection callback when ``gated``); returns
    the seconds ``fit`` took."""
    model.compile(tf.keras.optimizers.Adagrad(0.1))
    callbacks = []
    if gated:
        callbacks.append(
            seqattn_tfrs.SequentialAttentionCallback(
                within_fit=True, selection_data=batches(heldout, 1024), verbose=0
            )
        )
    start = time.perf_counter()
    model.fit(
        batches(train, batch_size).prefetch(2),
        epochs=epochs,
        callbacks=callbacks,
        verbose=0,
    )
    return time.perf_counter() - start


def top_k(metrics: dict) -> float:
    return float(metrics[f"factorized_top_k/top_{TOP_K}_categorical_accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="20,000 ratings")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0, help="split and weights")
    parser.add_argument("--export_base", default=None)
    args = parser.parse_args()
    rows, epochs, batch_size = (20_000, 4, 256) if args.smoke else (None, 5, 1024)
    epochs = args.epochs or epochs

    columns = load_columns(rows)
    train, heldout, test = split(columns, seed=args.seed)
    _, first = np.unique(columns["movie_id"].numpy(), return_index=True)
    movies = {name: tf.gather(columns[name], first) for name in CANDIDATE}

    results = {}
    for gated in (True, False):
        tf.keras.utils.set_random_seed(args.seed)
        model = TwoTower(columns, movies, gated)
        seconds = fit(model, train, heldout, epochs, batch_size, gated)
        metrics = model.evaluate(batches(test, 4096), return_dict=True, verbose=0)
        results["selected" if gated else "all_features"] = {
            f"test_top_{TOP_K}_accuracy": round(top_k(metrics), 4),
            "fit_seconds": round(seconds, 1),
        }
        if gated:
            selected = model
    query = list(selected.query_tables.selected_features)
    candidate = list(selected.candidate_tables.selected_features)

    # Remove the unselected tables, index every movie by the pruned candidate
    # tower, and export the index: it takes the kept query features only.
    seqattn_tfrs.prune(selected)
    index = tfrs.layers.factorized_top_k.BruteForce(selected, k=10)
    index.index_from_dataset(
        batches(movies, 256).map(lambda m: (m["movie_id"], selected.candidate(m)))
    )
    requests = {name: test[name][:5] for name in query}
    _, expected = index(requests)
    base = args.export_base or tempfile.mkdtemp(prefix="movielens_retrieval_")
    path = seqattn_tfrs.export_for_serving(
        index, base, output_name={0: "scores", 1: "movie_ids"}
    )
    serving = tf.saved_model.load(path).signatures["serving_default"]
    served = serving(**requests)["movie_ids"]
    summary = {
        "ratings": int(columns["user_id"].shape[0]),
        "epochs": epochs,
        "seed": args.seed,
        "query_features": query,
        "candidate_features": candidate,
        **results,
        "export": path,
        "serving_inputs": sorted(serving.structured_input_signature[1]),
        "served_top_10_match": bool(np.array_equal(served.numpy(), expected.numpy())),
    }
    print(f"query tower picked {query}, candidate tower {candidate}")
    print(  # fit times: the first fit of the process also pays its first traces
        "(the selected model is fitted first: its time holds the process's first "
        "traces and the selection's fixed costs, which a short --smoke run shows "
        "at their largest)"
    )
    for name, result in results.items():
        print(
            f"{name}: test top-{TOP_K} accuracy "
            f"{result[f'test_top_{TOP_K}_accuracy']:.4f}, fit {result['fit_seconds']} s"
        )
    print(f"served index at {path}, inputs {summary['serving_inputs']}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
