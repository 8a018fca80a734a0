"""Exports a small pruned model; a test runs several at once or kills one.

Usage: export_worker.py BASE_PATH [hang READY_FILE]

With ``hang``, the export stops after its SavedModel is written into the
temporary directory (before the rename), writes READY_FILE and waits to be
killed. Otherwise it prints the version path it wrote.
"""

import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

import seqattn_tfrs  # noqa: E402
from seqattn_tfrs.export import savedmodel as export_savedmodel  # noqa: E402


def main():
    base = sys.argv[1]
    gate = seqattn_tfrs.SequentialAttentionEmbedding(
        {"a": tf.keras.layers.Embedding(10, 4), "b": tf.keras.layers.Embedding(50, 8)},
        num_selected=1,
    )
    inputs = {n: tf.keras.Input([], dtype=tf.int64, name=n) for n in "ab"}
    out = gate(inputs)
    model = tf.keras.Model(inputs, tf.concat([out["a"], out["b"]], axis=1))
    gate.attention_logits.assign([1.0, 0.0])
    gate.commit_round()
    model = seqattn_tfrs.prune(model)
    if len(sys.argv) > 2 and sys.argv[2] == "hang":
        ready = sys.argv[3]

        def hang(path, payload):
            open(ready, "w").close()
            time.sleep(600)  # the test kills the process here

        export_savedmodel.write_json = hang
    print(seqattn_tfrs.export_for_serving(model, base), flush=True)


if __name__ == "__main__":
    main()
