"""A selection fit that a test kills with SIGKILL and restarts.

Usage: resume_worker.py BACKUP_DIR RESULT_JSON [KILL_EPOCH]

With KILL_EPOCH, the process writes RESULT_JSON + ".ready" in the middle of that
epoch and waits to be killed. Without it, the fit runs to the end (resuming from
BACKUP_DIR if a backup is there) and writes the selection to RESULT_JSON.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import seqattn_tfrs  # noqa: E402

NAMES = ("a", "b", "c", "d", "e")


def main():
    backup_dir, result_path = sys.argv[1], sys.argv[2]
    kill_epoch = int(sys.argv[3]) if len(sys.argv) > 3 else None
    tf.keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(512, len(NAMES))).astype(np.float32)
    y = x @ np.array([3.0, 0.0, 2.0, 0.5, 1.0], np.float32)
    inputs = {n: tf.keras.Input((), name=n) for n in NAMES}
    layer = seqattn_tfrs.SequentialAttentionEmbedding(
        {n: tf.keras.layers.Reshape((1,)) for n in NAMES}, num_selected=3
    )
    gated = layer(inputs)
    model = tf.keras.Model(
        inputs,
        tf.keras.layers.Dense(1)(
            tf.keras.layers.Concatenate()([gated[n] for n in NAMES])
        ),
    )
    model.compile(tf.keras.optimizers.Adam(0.05), "mse")

    class KillPoint(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == kill_epoch and batch == 3:
                open(result_path + ".ready", "w").close()
                time.sleep(600)  # the test kills the process here

    data = tf.data.Dataset.from_tensor_slices(
        ({n: x[:, i] for i, n in enumerate(NAMES)}, y)
    ).batch(64)
    model.fit(
        data,
        epochs=6,  # warm-up 0, rounds in 1-3 (picks at the ends), fine-tune 4-5
        verbose=0,
        callbacks=[
            tf.keras.callbacks.BackupAndRestore(backup_dir),  # before the callback
            seqattn_tfrs.SequentialAttentionCallback(
                warmup_epochs=1, finetune_epochs=2, verbose=0
            ),
            KillPoint(),
        ],
    )
    with open(result_path, "w") as f:
        json.dump(
            {
                "selected": list(layer.selected_features),
                "round_gates": layer.round_gates.numpy().tolist(),
                "kernel": model.layers[-1].kernel.numpy().ravel().tolist(),
            },
            f,
        )


if __name__ == "__main__":
    main()
