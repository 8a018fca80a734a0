"""A localhost ParameterServerStrategy cluster: its servers and its coordinator.

Usage:
  ps_cluster.py server CLUSTER_JSON JOB INDEX
  ps_cluster.py coordinator CLUSTER_JSON {train,heldout} {min_size,fixed} OUT_DIR

A server (a worker or a parameter server) runs until it is killed. The
coordinator trains the distributed test model with its tables sharded over
the two parameter servers (``MinSizePartitioner`` or ``FixedShardsPartitioner``,
which also shards the gate's own state), selects, prunes and exports to
``OUT_DIR``; it also exports a small model with ``StringLookup`` vocabularies
to ``OUT_DIR-lookup``. Then it prints one line of JSON.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from distributed_model import (  # noqa: E402
    BATCH,
    EPOCHS,
    LOOKUP,
    LOOKUP_ROWS,
    ROWS,
    build_model,
    make_callback,
    make_dataset,
    probe_rows,
)

import seqattn_tfrs  # noqa: E402
from seqattn_tfrs.distributed import check_no_remote_captures  # noqa: E402


def serve_forever(cluster, job, index):
    server = tf.distribute.Server(
        cluster, job_name=job, task_index=index, protocol="grpc", start=True
    )
    server.join()


def shards(variable):
    parts = getattr(variable, "variables", [variable])
    return [[part.device, part.shape.as_list()] for part in parts]


def lookup_model_export(strategy, out_dir):
    """Exports a model whose tables sit behind StringLookup vocabularies.

    Under this strategy Keras makes every vocabulary a per-worker table. The
    pick is forced (``s_a``); the scores are the coordinator's own.
    """
    vocabulary = [f"v{i}" for i in range(40)]
    with strategy.scope():
        inputs = {n: tf.keras.Input([], dtype=tf.string, name=n) for n in LOOKUP}
        gate = seqattn_tfrs.SequentialAttentionEmbedding(
            {
                n: tf.keras.Sequential(
                    [
                        tf.keras.layers.StringLookup(
                            vocabulary=vocabulary, mask_token=None
                        ),
                        tf.keras.layers.Embedding(len(vocabulary) + 1, 4),
                    ]
                )
                for n in LOOKUP
            },
            num_selected=1,
        )
        gated = gate(inputs)
        model = tf.keras.Model(
            inputs,
            tf.keras.layers.Dense(1)(tf.concat([gated[n] for n in LOOKUP], axis=1)),
        )
    table = type(gate.embedding_layers["s_a"].layers[0].lookup_table).__name__
    gate.attention_logits.assign([1.0, 0.0])
    gate.commit_round()
    pruned = seqattn_tfrs.prune(model)
    scores = pruned({"s_a": tf.constant(LOOKUP_ROWS)}).numpy().tolist()
    return {
        "export": seqattn_tfrs.export_for_serving(pruned, out_dir),
        "scores": scores,
        "table": table,
    }


def coordinate(cluster, source, partitioner, out_dir):
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        cluster, task_type="chief", task_id=0, rpc_layer="grpc"
    )
    partitioners = tf.distribute.experimental.partitioners
    strategy = tf.distribute.ParameterServerStrategy(
        resolver,
        variable_partitioner=(
            partitioners.MinSizePartitioner(min_shard_bytes=256, max_shards=2)
            if partitioner == "min_size"
            else partitioners.FixedShardsPartitioner(num_shards=2)
        ),
    )
    tf.keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model()
    gate = model.get_layer("gate")
    tables = {name: shards(gate.embedding_layers[name].embeddings) for name in "ae"}
    state = shards(gate.attention_logits)
    # Under this strategy the held-out probe does not run, and the last round's
    # pick falls to the gate's held-out z alone, which a candidate the settle
    # already fitted at its soft gate barely moves; both workers read the same
    # held-out batches. 256 held-out rows a step widen that pick's lead over
    # noise from 0.7-1.0 z to 1.5-3.3 (docs/distributed.md): one CI run with
    # 64 took noise.
    heldout = (
        make_dataset(rows=4 * ROWS, seed=1, batch=4 * BATCH)
        if source == "heldout"
        else None
    )
    callback = make_callback(heldout)
    callback.verbose = 1  # its notes go to stdout, before the JSON line
    started = time.monotonic()
    model.fit(
        tf.keras.utils.experimental.DatasetCreator(
            lambda context: make_dataset().repeat()
        ),
        epochs=EPOCHS,
        # Two passes an epoch: the asynchronous workers' 8 logit steps of a
        # one-pass round once picked a noise feature on a loaded machine.
        steps_per_epoch=2 * ROWS // BATCH,
        callbacks=[callback],
        verbose=0,
    )
    fit_seconds = time.monotonic() - started
    pruned = seqattn_tfrs.prune(model)
    probe = {n: tf.constant(v, tf.int64) for n, v in probe_rows().items()}
    scores = pruned({n: probe[n] for n in gate.selected_features}).numpy()
    with strategy.scope():  # refused: the gathered tables would go back to the ps
        try:
            seqattn_tfrs.export_for_serving(pruned, out_dir)
            inside_scope = "exported"
        except RuntimeError as err:
            inside_scope = str(err)
        remote = tf.Variable(1.0)
    try:  # a function reading a parameter-server variable is never exported
        check_no_remote_captures(
            [tf.function(lambda: remote + 1).get_concrete_function()]
        )
        remote_read = "accepted"
    except ValueError as err:
        remote_read = str(err)
    path = seqattn_tfrs.export_for_serving(pruned, out_dir)
    lookup = lookup_model_export(strategy, out_dir + "-lookup")
    print(
        json.dumps(
            {
                "selected": list(gate.selected_features),
                "gate_history": gate.gate_history(),
                "tables": tables,
                "gate_state": state,
                "scores": scores.tolist(),
                "export": path,
                "lookup": lookup,
                "inside_scope": inside_scope,
                "remote_read": remote_read,
                "fit_seconds": fit_seconds,
            }
        ),
        flush=True,
    )


def main():
    role, cluster = sys.argv[1], tf.train.ClusterSpec(json.loads(sys.argv[2]))
    if role == "server":
        serve_forever(cluster, sys.argv[3], int(sys.argv[4]))
    else:
        coordinate(cluster, *sys.argv[3:6])


if __name__ == "__main__":
    main()
