"""A byte-budgeted selection with ``entry_z`` under MirroredStrategy or alone.

Usage: entry_z_worker.py {mirrored,single}; prints JSON: the selection, each
round's evidence, and every replica's selected mask.
"""

import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

NAMES = ("a", "b", "c", "d", "e")


def main():
    mode = sys.argv[1]
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import seqattn_tfrs

    strategy = (
        tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        if mode == "mirrored"
        else tf.distribute.get_strategy()
    )
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1024, 5)).astype(np.float32)
    noise = 0.1 * rng.normal(size=1024).astype(np.float32)
    y = x @ np.array([3.0, 0.0, 2.0, 0.0, 1.0], np.float32) + noise
    with strategy.scope():
        inputs = {n: tf.keras.Input((), name=n) for n in NAMES}
        # Every feature fits: only entry_z can keep b and d out.
        layer = seqattn_tfrs.SequentialAttentionEmbedding(
            {n: tf.keras.layers.Reshape((1,)) for n in NAMES},
            budget_bytes=100,
            feature_bytes={n: 1 for n in NAMES},
            budget_rule="attention",
            entry_z=3.0,
        )
        gated = layer(inputs)
        model = tf.keras.Model(
            inputs,
            tf.keras.layers.Dense(1)(
                tf.keras.layers.Concatenate()([gated[n] for n in NAMES])
            ),
        )
        model.compile(tf.keras.optimizers.SGD(0.05), "mse")
    data = tf.data.Dataset.from_tensor_slices(
        ({n: x[:, i] for i, n in enumerate(NAMES)}, y)
    ).batch(64)
    evidence = []
    commit = layer._commit_round

    def recorded(*args, **kwargs):
        evidence.append(layer.entry_evidence())
        return commit(*args, **kwargs)

    layer._commit_round = recorded
    callback = seqattn_tfrs.SequentialAttentionCallback(
        warmup_epochs=1, finetune_epochs=1, verbose=0, selection_data=data
    )
    model.fit(data, epochs=1 + layer.num_rounds + 1, callbacks=[callback], verbose=0)
    replicas = getattr(layer.selected_mask, "values", (layer.selected_mask,))
    print(
        json.dumps(
            {
                "selected": list(layer.selected_features),
                "evidence": evidence,
                "events": [event["features"] for event in callback.events],
                "replica_masks": [r.numpy().tolist() for r in replicas],
            }
        )
    )


if __name__ == "__main__":
    main()
