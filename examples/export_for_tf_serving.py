"""Selects, prunes and exports a ranking model for TF Serving.

After the selection, :func:`seqattn_tfrs.prune` removes the unselected
features' lookups and embedding tables from the model (predictions do not
change), and :func:`seqattn_tfrs.export.export_for_serving` writes
``<export_base>/<version>/``: a SavedModel whose ``serving_default`` signature
takes only the kept raw features, with their real dtypes, keyed by name. It
loads with plain TensorFlow.

The data is synthetic, with mixed dtypes: ``user_id`` (string), ``item_id``
(int64), ``country`` (string), ``device`` (int64) and a random ``session_id``
(string, no signal).

Run:

    python examples/export_for_tf_serving.py [--smoke] [--export_base DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # TFRS needs Keras 2
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_recommenders as tfrs  # noqa: E402

from seqattn_tfrs import SequentialAttentionCallback, SequentialAttentionEmbedding  # noqa: E402
from seqattn_tfrs.export import export_for_serving  # noqa: E402
from seqattn_tfrs.pruning import prune  # noqa: E402

NUM_SELECTED = 2


def synthetic_data(n: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, list]]:
    """Features, a 0/1 ``label`` and the vocabularies."""
    rng = np.random.default_rng(seed)
    users = np.array([f"u{i}" for i in range(300)])
    countries = np.array(["de", "fr", "in", "jp", "us"])
    sessions = np.array([f"s{i}" for i in range(3000)])
    user, item = rng.integers(0, 300, n), rng.integers(0, 500, n)
    country, device = rng.integers(0, 5, n), rng.integers(0, 3, n)
    logit = rng.normal(0, 1.5, 300)[user] + rng.normal(0, 1.5, 500)[item]
    logit += rng.normal(0, 0.2, 5)[country]
    features = {
        "user_id": users[user],
        "item_id": item.astype(np.int64),
        "country": countries[country],
        "device": device.astype(np.int64),
        "session_id": sessions[rng.integers(0, 3000, n)],
        "label": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32),
    }
    vocabularies = {
        "user_id": users.tolist(),
        "item_id": list(range(500)),
        "country": countries.tolist(),
        "device": [0, 1, 2],
        "session_id": sessions.tolist(),
    }
    return features, vocabularies


class Ranker(tfrs.models.Model):
    def __init__(self, vocabularies: dict[str, list]) -> None:
        super().__init__()

        def table(vocab: list) -> tf.keras.Sequential:
            lookup = (
                tf.keras.layers.StringLookup(vocabulary=vocab, mask_token=None)
                if isinstance(vocab[0], str)
                else tf.keras.layers.IntegerLookup(vocabulary=vocab, mask_token=None)
            )
            return tf.keras.Sequential(
                [lookup, tf.keras.layers.Embedding(len(vocab) + 1, 8)]
            )

        self.gate = SequentialAttentionEmbedding(
            {name: table(vocab) for name, vocab in vocabularies.items()},
            num_selected=NUM_SELECTED,
        )
        self.mlp = tf.keras.Sequential(
            [
                tf.keras.layers.Dense(32, activation="relu"),
                tf.keras.layers.Dense(1, activation="sigmoid"),
            ]
        )
        self.task = tfrs.tasks.Ranking(loss=tf.keras.losses.BinaryCrossentropy())

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        return self.mlp(tf.concat(list(self.gate(features).values()), axis=1))

    def compute_loss(self, features, training=False) -> tf.Tensor:
        features = dict(features)
        labels = features.pop("label")
        return self.task(labels=labels, predictions=self(features, training=training))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small and quick")
    parser.add_argument("--export_base", help="model base path (default: a temp dir)")
    args = parser.parse_args()
    n = 6_000 if args.smoke else 50_000
    export_base = args.export_base or os.path.join(
        tempfile.mkdtemp(prefix="seqattn_tfrs-"), "ranker"
    )

    tf.keras.utils.set_random_seed(0)
    features, vocabularies = synthetic_data(n, seed=0)
    cut = int(0.8 * n)
    train = tf.data.Dataset.from_tensor_slices(
        {k: v[:cut] for k, v in features.items()}
    )
    heldout = tf.data.Dataset.from_tensor_slices(
        {k: v[cut:] for k, v in features.items()}
    )

    model = Ranker(vocabularies)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    callback = SequentialAttentionCallback(
        warmup_epochs=1, finetune_epochs=1, selection_data=heldout.batch(512)
    )
    model.fit(
        train.shuffle(cut, seed=0).batch(512),
        epochs=callback.schedule_length(num_rounds=NUM_SELECTED),
        callbacks=[callback],
        verbose=2,
    )
    kept = list(model.gate.selected_features)
    print(f"Selected: {kept}")

    # 1. Prune: the unselected tables leave the model; predictions do not change.
    rows = {k: v[cut : cut + 4] for k, v in features.items() if k != "label"}
    before = model(rows).numpy()
    pruned = prune(model)
    np.testing.assert_allclose(pruned({k: rows[k] for k in kept}).numpy(), before)
    print(f"Pruned; the model now reads only {kept}.")

    # 2. Export <export_base>/<version>/ with a warm-up file of real rows.
    warmup = {name: rows[name].tolist() for name in kept}
    path = export_for_serving(pruned, export_base, warmup_examples=warmup)
    print(f"Exported to {path}")

    # 3. Serve it with plain TensorFlow (no seqattn_tfrs needed).
    serving = tf.saved_model.load(path).signatures["serving_default"]
    print(f"Signature inputs: {serving.structured_input_signature[1]}")
    scores = serving(**{k: tf.constant(rows[k]) for k in kept})["scores"]
    print(f"Scores: {scores.numpy().ravel()}")

    example = {k: rows[k][:1].tolist() for k in kept}
    exprs = ";".join(f"{k}={json.dumps(v)}" for k, v in example.items())
    instances = [{k: v[0] for k, v in example.items()}]
    print("\nInspect and run it:")
    print(f"  saved_model_cli show --dir {shlex.quote(path)} --all")
    print(
        f"  saved_model_cli run --dir {shlex.quote(path)} --tag_set serve "
        f"--signature_def serving_default --input_exprs {shlex.quote(exprs)}"
    )
    print("Serve it with TF Serving (REST on port 8501):")
    print(
        f"  docker run -p 8501:8501 -v "
        f"{shlex.quote(os.path.abspath(export_base))}:/models/ranker "
        "-e MODEL_NAME=ranker tensorflow/serving"
    )
    body = json.dumps({"instances": instances})
    print(f"  curl -d {shlex.quote(body)} localhost:8501/v1/models/ranker:predict")


if __name__ == "__main__":
    main()
