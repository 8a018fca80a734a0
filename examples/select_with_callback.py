"""Selects fields with SequentialAttentionCallback on data with a planted answer.

Synthetic click data with six categorical fields:

* ``user`` and ``item``: strong signal (per-value biases);
* ``hour``: weak signal;
* ``user_copy``: an exact copy of ``user`` (redundant: once ``user`` is in,
  it adds nothing);
* ``noise_a``, ``noise_b``: 2,000 random values each, no signal, easy to
  memorise.

A good selection of three fields is ``user`` (or its copy), ``item`` and
``hour``. The callback runs greedy forward selection inside ``model.fit``; the
attention logits learn from held-out batches (``selection_data``), so the noise
fields' memorisation of training labels does not count in their favour.

Run:

    python examples/select_with_callback.py [--smoke] [--log_dir DIR]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # TFRS needs Keras 2
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_recommenders as tfrs  # noqa: E402

from seqattn_tfrs import SequentialAttentionCallback, SequentialAttentionEmbedding  # noqa: E402

CARDINALITY = {
    "user": 100,
    "item": 200,
    "hour": 24,
    "user_copy": 100,
    "noise_a": 2000,
    "noise_b": 2000,
}
PLANTED = ("user", "item", "hour")
NUM_SELECTED = 3


def synthetic_clicks(n: int, seed: int) -> dict[str, np.ndarray]:
    """Features and a 0/1 label drawn from a planted logistic model."""
    rng = np.random.default_rng(seed)
    features = {name: rng.integers(0, size, n) for name, size in CARDINALITY.items()}
    features["user_copy"] = features["user"].copy()
    biases = {"user": 1.5, "item": 1.5, "hour": 0.5}
    logit = sum(
        rng.normal(0.0, scale, CARDINALITY[name])[features[name]]
        for name, scale in biases.items()
    )
    features["click"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return features


class ClickModel(tfrs.models.Model):
    """Per-field embeddings behind the gate, then an MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = SequentialAttentionEmbedding(
            {
                name: tf.keras.Sequential(
                    [
                        tf.keras.layers.IntegerLookup(
                            vocabulary=list(range(size)), mask_token=None
                        ),
                        tf.keras.layers.Embedding(size + 1, 8),
                    ]
                )
                for name, size in CARDINALITY.items()
            },
            num_selected=NUM_SELECTED,
        )
        self.mlp = tf.keras.Sequential(
            [
                tf.keras.layers.Dense(32, activation="relu"),
                tf.keras.layers.Dense(1, activation="sigmoid"),
            ]
        )
        self.task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.BinaryCrossentropy(),
            metrics=[tf.keras.metrics.AUC(name="auc")],
        )

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        return self.mlp(tf.concat(list(self.gate(features).values()), axis=1))

    def compute_loss(self, features, training=False) -> tf.Tensor:
        features = dict(features)
        labels = features.pop("click")
        return self.task(labels=labels, predictions=self(features, training=training))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small and quick")
    parser.add_argument("--log_dir", help="write TensorBoard gate summaries here")
    args = parser.parse_args()
    n = 8_000 if args.smoke else 60_000
    batch_size = 256 if args.smoke else 1024

    tf.keras.utils.set_random_seed(0)
    data = synthetic_clicks(n, seed=0)
    cut = int(0.8 * n)
    train = tf.data.Dataset.from_tensor_slices({k: v[:cut] for k, v in data.items()})
    heldout = tf.data.Dataset.from_tensor_slices({k: v[cut:] for k, v in data.items()})

    model = ClickModel()
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    callback = SequentialAttentionCallback(
        warmup_epochs=1,
        epochs_per_selection=1,
        finetune_epochs=1,
        settle_fraction=0.5,  # first half of each round: the model adapts
        selection_data=heldout.batch(batch_size),  # logits learn on held-out
        verbose=1,
        log_dir=args.log_dir,
    )
    history = model.fit(
        train.shuffle(cut, seed=0).batch(batch_size),
        epochs=callback.schedule_length(num_rounds=NUM_SELECTED),
        callbacks=[callback],
        verbose=2,
    )

    print("\nSelection events (also in History):")
    for event in callback.events:
        print(
            f"  end of epoch {event['epoch'] + 1} (as Keras counts them): "
            f"round {event['round']} -> {event['features']}"
        )
    picks = {k: v for k, v in history.history.items() if k.startswith("seqattn/picked")}
    print(f"History keys for picks: {sorted(picks)}")
    print(f"Selected, in pick order: {list(model.gate.selected_features)}")
    print(f"Planted informative fields: {list(PLANTED)} (user_copy duplicates user)")
    noise = [f for f in model.gate.selected_features if f.startswith("noise")]
    print(f"Noise fields selected: {noise or 'none'}")
    if args.log_dir:
        print(f"Gate curves: tensorboard --logdir {args.log_dir}")


if __name__ == "__main__":
    main()
