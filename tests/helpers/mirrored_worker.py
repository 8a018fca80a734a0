"""Selects under MirroredStrategy on two logical CPUs, or on one device.

Usage: mirrored_worker.py {mirrored,single} {train,heldout}; prints JSON.
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
    mode, source = sys.argv[1], sys.argv[2]
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
    x = rng.normal(size=(512, 5)).astype(np.float32)
    y = x @ np.array([3.0, 0.0, 2.0, 0.0, 1.0], np.float32)
    with strategy.scope():
        inputs = {n: tf.keras.Input((), name=n) for n in NAMES}
        layer = seqattn_tfrs.SequentialAttentionEmbedding(
            {n: tf.keras.layers.Reshape((1,)) for n in NAMES}, 3
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
    callback = seqattn_tfrs.SequentialAttentionCallback(
        warmup_epochs=1,
        finetune_epochs=1,
        verbose=0,
        selection_data=data if source == "heldout" else None,
    )
    model.fit(data, epochs=5, callbacks=[callback], verbose=0)
    replicas = getattr(layer.selected_mask, "values", (layer.selected_mask,))
    print(
        json.dumps(
            {
                "selected": list(layer.selected_features),
                "replica_masks": [v.numpy().tolist() for v in replicas],
                "round_gates": layer.round_gates.numpy().tolist(),
            }
        )
    )


if __name__ == "__main__":
    main()
