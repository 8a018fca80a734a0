"""On-disk size of a SavedModel before pruning and of the trimmed export.

A model with three gated features, one of them a dropped 1,000,000 x 32 table
(128 MB of float32): the full model saved with ``tf.saved_model.save``, against
``prune`` + ``export_for_serving``.

Usage:
  python benchmarks/export_size.py [--rows 1000000]
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Measure the seqattn_tfrs of this checkout, not whichever copy is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tempfile  # noqa: E402

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import seqattn_tfrs  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("rows", 1_000_000, "Rows of the table that gets dropped.")


def dir_bytes(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def main(argv):
    del argv
    movies = [f"m{i}" for i in range(100)]
    gate = seqattn_tfrs.SequentialAttentionEmbedding(
        {
            "movie_id": tf.keras.Sequential(
                [
                    tf.keras.layers.StringLookup(vocabulary=movies, mask_token=None),
                    tf.keras.layers.Embedding(len(movies) + 1, 8),
                ]
            ),
            "user_age": tf.keras.layers.Reshape((1,)),
            "item_id": tf.keras.layers.Embedding(FLAGS.rows, 32),
        },
        num_selected=2,
    )
    inputs = {
        "movie_id": tf.keras.Input([], dtype=tf.string, name="movie_id"),
        "user_age": tf.keras.Input([], dtype=tf.float32, name="user_age"),
        "item_id": tf.keras.Input([], dtype=tf.int64, name="item_id"),
    }
    gated = gate(inputs)
    model = tf.keras.Model(
        inputs, tf.keras.layers.Dense(1)(tf.concat(list(gated.values()), axis=1))
    )
    for logits in ([5.0, 0.0, 0.0], [0.0, 5.0, 0.0]):  # what the callback would do
        gate.attention_logits.assign(logits)
        gate.commit_round()
    with tempfile.TemporaryDirectory() as tmp:
        full_dir = os.path.join(tmp, "full")
        tf.saved_model.save(model, full_dir)
        full = dir_bytes(full_dir)
        model = seqattn_tfrs.prune(model)
        trimmed = dir_bytes(seqattn_tfrs.export_for_serving(model, tmp + "/serving"))
    print(f"full SavedModel: {full:,} bytes")
    print(f"trimmed export:  {trimmed:,} bytes")
    print(f"export size: full {full:,} B, trimmed {trimmed:,} B, x{full / trimmed:.0f}")


if __name__ == "__main__":
    app.run(main)
