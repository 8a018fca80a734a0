"""One worker of a MultiWorkerMirroredStrategy selection, or a single machine.

Usage: multiworker_worker.py {worker,single} {train,heldout} OUT_DIR

``worker`` reads the cluster from ``TF_CONFIG``; only the chief prunes and
exports, to ``OUT_DIR/distributed``, and also copies the trained weights into
the same model built without a strategy and exports that to ``OUT_DIR/copy``
(what a single machine exports for the same weights and selection). ``single``
trains the same model in one process without a strategy and exports it to
``OUT_DIR/single``. Prints one line of JSON.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from commits import before_each_commit  # noqa: E402
from distributed_model import (  # noqa: E402
    EPOCHS,
    build_model,
    make_callback,
    make_dataset,
)

import seqattn_tfrs  # noqa: E402


def main():
    mode, source, out_dir = sys.argv[1:4]
    started = time.monotonic()
    if mode == "worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        is_chief = strategy.extended.should_checkpoint
    else:
        strategy = tf.distribute.get_strategy()
        is_chief = True
    tf.keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    train = make_dataset().with_options(options)
    heldout = make_dataset(seed=1).with_options(options)
    callback = make_callback(heldout if source == "heldout" else None)
    probe_z = []  # per commit, the held-out probe's z (all 0 where none ran)
    before_each_commit(
        model.get_layer("gate"),
        lambda layer: probe_z.append(
            layer.selection_state.probe_scores.numpy().round(4).tolist()
        ),
    )
    fit_started = time.monotonic()
    model.fit(train, epochs=EPOCHS, callbacks=[callback], verbose=0)
    fit_seconds = time.monotonic() - fit_started
    gate = model.get_layer("gate")
    result = {
        "chief": is_chief,
        "selected": list(gate.selected_features),
        "replica_masks": [
            v.numpy().tolist()
            for v in getattr(gate.selected_mask, "values", (gate.selected_mask,))
        ],
        "gate_history": gate.gate_history(),
        "probe_z": probe_z,
        "fit_seconds": fit_seconds,
        "export": None,
    }
    if mode == "worker" and is_chief:
        copy = build_model()  # outside the strategy's scope: plain variables
        copy.set_weights(model.get_weights())
        result["copy"] = seqattn_tfrs.export_for_serving(
            seqattn_tfrs.prune(copy), os.path.join(out_dir, "copy")
        )
    if is_chief:
        result["export"] = seqattn_tfrs.export_for_serving(
            seqattn_tfrs.prune(model),
            os.path.join(out_dir, "distributed" if mode == "worker" else mode),
        )
    result["seconds"] = time.monotonic() - started
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
