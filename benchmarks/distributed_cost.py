"""Wall time of a selection fit on one process against tf.distribute clusters.

Runs the same selection fit (a gated model on planted data: the label depends
on three of eight id features) in separate processes on this machine:

* ``single``: one process, no strategy;
* ``multiworker``: ``MultiWorkerMirroredStrategy``, two worker processes on
  localhost (the chief's fit is timed; each worker reads half of every batch);
* ``ps``: ``ParameterServerStrategy``, a coordinator, two workers and two
  parameter servers on localhost, the tables sharded over both servers.

Each run reports the fit's wall time and the whole process's (TensorFlow
import, cluster start-up, fit), best of ``--repeats`` runs, interleaved. With
``--plain``, each strategy also runs the same model without the gate layer and
the callback (``<strategy>/plain``), which separates the gate's own cost.

Usage:
  python benchmarks/distributed_cost.py [--rows 65536] [--repeats 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("rows", 65536, "Training rows.")
flags.DEFINE_integer("batch_size", 1024, "Global batch size.")
flags.DEFINE_integer("vocabulary", 1000, "Rows of each embedding table.")
flags.DEFINE_integer("dim", 16, "Embedding width.")
flags.DEFINE_integer("repeats", 3, "Runs per strategy (the best is reported).")
flags.DEFINE_list("strategies", ["single", "multiworker", "ps"], "What to time.")
flags.DEFINE_bool(
    "plain", False, "Also time each strategy on the same model without the gate."
)
flags.DEFINE_string("output", "", "If set, write the results as JSON here.")
flags.DEFINE_string("role", "launcher", "Internal: the role of this process.")
flags.DEFINE_string("cluster", "", "Internal: the cluster as JSON.")
flags.DEFINE_integer("task", 0, "Internal: the task index of this process.")

NAMES = [f"f{i}" for i in range(8)]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The processes import the seqattn_tfrs next to this script.
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
}
EPOCHS = 5  # 1 warm-up epoch, 3 rounds of one epoch, 1 fine-tune epoch


def make_dataset(tf):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, FLAGS.vocabulary, size=(FLAGS.rows, len(NAMES)))
    values = np.random.default_rng(1).normal(size=(3, FLAGS.vocabulary))
    labels = 3 * values[0, ids[:, 0]] + 2 * values[1, ids[:, 2]] + values[2, ids[:, 5]]
    features = {n: ids[:, i] for i, n in enumerate(NAMES)}
    data = tf.data.Dataset.from_tensor_slices((features, labels.astype(np.float32)))
    return data.batch(FLAGS.batch_size, drop_remainder=True)


def build_model(tf, seqattn_tfrs, plain):
    inputs = {n: tf.keras.Input([], dtype=tf.int64, name=n) for n in NAMES}
    tables = {n: tf.keras.layers.Embedding(FLAGS.vocabulary, FLAGS.dim) for n in NAMES}
    if plain:
        gated = {n: tables[n](inputs[n]) for n in NAMES}
    else:
        gate = seqattn_tfrs.SequentialAttentionEmbedding(tables, num_selected=3)
        gated = gate(inputs)
    hidden = tf.keras.layers.Dense(64, "relu")(
        tf.keras.layers.Concatenate()([gated[n] for n in NAMES])
    )
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(hidden))
    model.compile(tf.keras.optimizers.Adam(0.01), "mse")
    return model


def train(role, plain):
    """Runs one process of a timed fit; prints JSON with its times."""
    started = time.monotonic()
    import tensorflow as tf

    import seqattn_tfrs

    cluster = json.loads(FLAGS.cluster) if FLAGS.cluster else None
    if role in ("ps_worker", "ps_server"):
        job = "worker" if role == "ps_worker" else "ps"
        tf.distribute.Server(
            tf.train.ClusterSpec(cluster), job, FLAGS.task, protocol="grpc"
        ).join()
    if role == "multiworker":
        os.environ["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": FLAGS.task}}
        )
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif role == "ps_coordinator":
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(cluster),
            task_type="chief",
            task_id=0,
            rpc_layer="grpc",
        )
        strategy = tf.distribute.ParameterServerStrategy(
            resolver,
            variable_partitioner=(
                tf.distribute.experimental.partitioners.MinSizePartitioner(
                    min_shard_bytes=64 << 10, max_shards=2
                )
            ),
        )
    else:
        strategy = tf.distribute.get_strategy()
    tf.keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model(tf, seqattn_tfrs, plain)
    callbacks = (
        []
        if plain
        else [
            seqattn_tfrs.SequentialAttentionCallback(
                warmup_epochs=1, finetune_epochs=1, verbose=0
            )
        ]
    )
    data = make_dataset(tf)
    steps = FLAGS.rows // FLAGS.batch_size
    if role == "ps_coordinator":
        data = tf.keras.utils.experimental.DatasetCreator(
            lambda context: make_dataset(tf).repeat()
        )
    elif role == "multiworker":
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        data = data.with_options(options)
    fit_started = time.monotonic()
    model.fit(
        data, epochs=EPOCHS, steps_per_epoch=steps, callbacks=callbacks, verbose=0
    )
    fit_seconds = time.monotonic() - fit_started
    gates = [layer for layer in model.layers if hasattr(layer, "selected_features")]
    print(
        json.dumps(
            {
                "fit_seconds": fit_seconds,
                "process_seconds": time.monotonic() - started,
                "selected": list(gates[0].selected_features) if gates else None,
            }
        ),
        flush=True,
    )


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{sock.getsockname()[1]}" for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def launch(name):
    """Runs one timed fit of ``name`` (``strategy[/plain]``); returns its JSON."""
    strategy, _, variant = name.partition("/")
    common = [
        f"--plain={variant == 'plain'}",
        f"--rows={FLAGS.rows}",
        f"--batch_size={FLAGS.batch_size}",
        f"--vocabulary={FLAGS.vocabulary}",
        f"--dim={FLAGS.dim}",
    ]
    if strategy == "single":
        roles, timed, servers = [("single", 0, "")], 0, []
    elif strategy == "multiworker":
        cluster = json.dumps({"worker": free_ports(2)})
        roles, timed, servers = [("multiworker", i, cluster) for i in range(2)], 0, []
    else:
        ports = free_ports(5)
        cluster = json.dumps(
            {"chief": ports[:1], "worker": ports[1:3], "ps": ports[3:]}
        )
        roles, timed = [("ps_coordinator", 0, cluster)], 0
        servers = [("ps_worker", i, cluster) for i in range(2)]
        servers += [("ps_server", i, cluster) for i in range(2)]
    processes = []
    try:
        for role, task, cluster in [*roles, *servers]:
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        f"--role={role}",
                        f"--task={task}",
                        f"--cluster={cluster}",
                        *common,
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE
                    if role == roles[0][0]
                    else subprocess.DEVNULL,
                    env=ENV,
                    text=True,
                )
            )
        outputs = [p.communicate(timeout=900) for p in processes[: len(roles)]]
        for process, (_, err) in zip(processes, outputs):
            if process.returncode != 0:
                raise RuntimeError(f"{strategy}: {process.args} failed:\n{err[-3000:]}")
        return json.loads(outputs[timed][0].strip().splitlines()[-1])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()


def main(argv):
    del argv
    if FLAGS.role != "launcher":
        train(FLAGS.role, FLAGS.plain)
        return
    names = [
        f"{strategy}{variant}"
        for strategy in FLAGS.strategies
        for variant in (["", "/plain"] if FLAGS.plain else [""])
    ]
    runs = {name: [] for name in names}
    for _ in range(FLAGS.repeats):
        for name in names:
            runs[name].append(launch(name))
    best = {
        name: {
            "fit_seconds": min(r["fit_seconds"] for r in results),
            "process_seconds": min(r["process_seconds"] for r in results),
            "selected": results[0]["selected"],
        }
        for name, results in runs.items()
    }
    print(f"{'strategy':18} {'fit s':>8} {'process s':>10}  selected")
    for name, result in best.items():
        print(
            f"{name:18} {result['fit_seconds']:8.2f} "
            f"{result['process_seconds']:10.2f}  {result['selected']}"
        )
    if FLAGS.output:
        with open(FLAGS.output, "w", encoding="utf-8") as handle:
            json.dump(
                {
                    "config": {
                        "rows": FLAGS.rows,
                        "batch_size": FLAGS.batch_size,
                        "vocabulary": FLAGS.vocabulary,
                        "dim": FLAGS.dim,
                        "repeats": FLAGS.repeats,
                        "epochs": EPOCHS,
                        "load_average": os.getloadavg(),
                    },
                    "best": best,
                    "runs": runs,
                },
                handle,
                indent=2,
            )
    base = best.get("single")
    if base and len(best) > 1:
        print(
            "fit time vs single: "
            + ", ".join(
                f"{name} x{result['fit_seconds'] / base['fit_seconds']:.2f}"
                for name, result in best.items()
                if name != "single"
            )
        )


if __name__ == "__main__":
    app.run(main)
