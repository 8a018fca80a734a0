"""The small model and planted data that the distributed tests train.

Five integer-id features ``a`` to ``e``, one embedding table each; the label
depends on ``a``, ``c`` and ``e`` only (weights 3, 2, 1), so a selection of
three must pick ``a``, ``c``, ``e`` in that order.
"""

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

import seqattn_tfrs

NAMES = ("a", "b", "c", "d", "e")
WEIGHTS = np.array([3.0, 0.0, 2.0, 0.0, 1.0], np.float32)
VOCABULARY = 32
WIDTH = 4
ROWS = 1024
BATCH = 64
EPOCHS = 5  # 1 warm-up epoch, 3 rounds of one epoch, 1 fine-tune epoch
LOOKUP = ("s_a", "s_b")  # string features of the parameter-server lookup model
LOOKUP_ROWS = ["v3", "v39", "out-of-vocabulary"]


def make_data(rows=ROWS, seed=0):
    """Features (name -> int64 ids) and float labels."""
    rng = np.random.default_rng(seed)
    values = np.random.default_rng(123).normal(size=(len(NAMES), VOCABULARY))
    ids = rng.integers(0, VOCABULARY, size=(rows, len(NAMES)))
    labels = sum(WEIGHTS[i] * values[i, ids[:, i]] for i in range(len(NAMES))).astype(
        np.float32
    )
    return {n: ids[:, i].astype(np.int64) for i, n in enumerate(NAMES)}, labels


def make_dataset(rows=ROWS, seed=0, batch=BATCH):
    features, labels = make_data(rows, seed)
    return tf.data.Dataset.from_tensor_slices((features, labels)).batch(batch)


def build_model():
    """The gated model, compiled; call it under the strategy's scope."""
    inputs = {n: tf.keras.Input([], dtype=tf.int64, name=n) for n in NAMES}
    gate = seqattn_tfrs.SequentialAttentionEmbedding(
        {
            n: tf.keras.layers.Embedding(VOCABULARY, WIDTH, name=f"table_{n}")
            for n in NAMES
        },
        num_selected=3,
        name="gate",
    )
    gated = gate(inputs)
    joined = tf.keras.layers.Concatenate()([gated[n] for n in NAMES])
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1, name="head")(joined))
    model.compile(tf.keras.optimizers.Adam(0.02), "mse")
    return model


def make_callback(selection_data=None):
    # Rounds are one 16-step epoch: settling for half of it leaves the logits
    # 8 steps to learn (the 0.8 default would leave 3).
    return seqattn_tfrs.SequentialAttentionCallback(
        warmup_epochs=1,
        finetune_epochs=1,
        settle_fraction=0.5,
        verbose=0,
        selection_data=selection_data,
    )


def probe_rows():
    """Fixed rows the tests score with every export."""
    features, _ = make_data(16, seed=7)
    return {n: features[n].tolist() for n in NAMES}


def tpu_feature_config():
    """One TPU embedding table per feature, shaped like the tables above."""
    return {
        n: tf.tpu.experimental.embedding.FeatureConfig(
            table=tf.tpu.experimental.embedding.TableConfig(
                VOCABULARY,
                WIDTH,
                name=f"table_{n}",
                initializer=tf.keras.initializers.RandomUniform(-0.05, 0.05),
            ),
            name=n,
        )
        for n in NAMES
    }


class TPURanker(tf.keras.Model):
    """The test model with its tables in one TFRS ``TPUEmbedding`` layer.

    On a TPU the tables live in the embedding engine, not in trainable
    variables, so the gate acts on the activations the layer returns (an
    ``Identity`` per feature). Created without a ``TPUStrategy`` (here, and in
    the serving export) the layer holds ordinary variables and looks up on
    CPU. Set ``serving_config`` to the kept features' configs before export:
    the lookup then reads only their tables.
    """

    def __init__(self, feature_config):
        super().__init__()
        self.feature_config = feature_config
        self.embedding = tfrs.layers.embedding.TPUEmbedding(feature_config, None)
        self.gate = seqattn_tfrs.SequentialAttentionEmbedding(
            {n: tf.keras.layers.Identity() for n in feature_config}, num_selected=3
        )
        self.head = tf.keras.layers.Dense(1)
        self.serving_config = None

    def call(self, features):
        if self.serving_config is None:
            activations = self.embedding(features)
        else:  # a CPU lookup of the kept features only
            activations = self.embedding(
                {n: features[n] for n in self.serving_config},
                serving_config=self.serving_config,
            )
        gated = self.gate(activations)
        return self.head(tf.concat([gated[n] for n in self.gate.feature_names], 1))
