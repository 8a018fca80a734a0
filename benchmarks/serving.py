"""Serving cost of the full model against its trimmed export.

A DCN ranking model over four id fields whose bytes sit mostly in two tables:
``user`` and ``item`` (10,000 x 16 each) carry the click signal, ``big_id``
(``--rows`` x 32) and ``session`` (100,000 x 16) are noise. The gate selects 2
fields during a short ``fit`` (SGD, logits from held-out batches), then:

* full: the unpruned model's ``serving_default`` signature over all four
  features, saved with the model's variables (no optimizer state);
* trimmed: ``prune`` + ``export_for_serving`` (the kept features only).

Both are loaded in this process and compared: on-disk size, number and bytes
of variables, load time (median of 3 loads), latency of one-row requests
(median of ``--calls``) and throughput at batch 1024 (median of
``--calls // 10``), the two exports' calls interleaved. The floor of the
trimmed size is the bytes of the variables the pruned model keeps.

Usage:
  python benchmarks/serving.py [--rows 1000000] [--calls 300]
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Measure the seqattn_tfrs of this checkout, not whichever copy is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from planted import gate_defaults  # noqa: E402

import seqattn_tfrs  # noqa: E402
from seqattn_tfrs.movielens.models import LABEL_KEY, DCNRankingModel  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("rows", 1_000_000, "Rows of the big noise table.")
flags.DEFINE_integer("calls", 300, "Timed one-row calls per export.")
flags.DEFINE_integer("examples", 20_000, "Training rows.")
flags.DEFINE_string("output", "", "If set, write the results as JSON here.")


def planted(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = {"user": 10_000, "item": 10_000, "big_id": FLAGS.rows, "session": 100_000}
    columns = {k: rng.integers(0, v, n) for k, v in sizes.items()}
    columns["user"] %= 50  # few active users and items: learnable in a few epochs
    columns["item"] %= 50
    effects = np.random.default_rng(99).normal(0, 1.5, (2, 50))
    logit = effects[0][columns["user"]] + effects[1][columns["item"]]
    click = rng.random(n) < 1 / (1 + np.exp(-logit))
    columns[LABEL_KEY] = np.where(click, 5.0, 1.0).astype(np.float32)
    return columns


def dir_bytes(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def checkpoint_variables(path: str) -> tuple[int, int]:
    """(count, bytes) of the variables saved in a SavedModel."""
    reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    names = [n for n in shapes if n != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    size = sum(int(np.prod(shapes[n])) * dtypes[n].size for n in names)
    return len(names), size


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv):
    del argv
    tf.keras.utils.set_random_seed(0)
    sizes = {"user": 10_000, "item": 10_000, "big_id": FLAGS.rows, "session": 100_000}
    dims = {"user": 16, "item": 16, "big_id": 32, "session": 16}
    model = DCNRankingModel(
        {n: tf.keras.layers.Embedding(sizes[n], dims[n]) for n in sizes},
        num_selected=2,
        **gate_defaults(),
    )
    model.compile(tf.keras.optimizers.SGD(0.5))
    train = tf.data.Dataset.from_tensor_slices(planted(FLAGS.examples, 0)).batch(256)
    heldout = tf.data.Dataset.from_tensor_slices(planted(4096, 1)).batch(256)
    callback = seqattn_tfrs.SequentialAttentionCallback(
        warmup_epochs=1, finetune_epochs=1, selection_data=heldout, verbose=0
    )
    model.fit(
        train, epochs=callback.schedule_length(2), callbacks=[callback], verbose=0
    )
    selected = list(model.gate.selected_features)
    print(f"selected: {selected}")

    names = list(sizes)
    spec = {n: tf.TensorSpec([None], tf.int64, name=n) for n in names}

    @tf.function(input_signature=[spec])
    def serve(features):
        return {"scores": model(features)}

    results = {"selected": selected, "rows": FLAGS.rows}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"full": os.path.join(tmp, "full")}
        # The model's own variables only (no optimizer slots).
        full = tf.Module()
        full.model_variables = list(model.variables)
        tf.saved_model.save(full, paths["full"], signatures={"serving_default": serve})
        model = seqattn_tfrs.prune(model)
        floor = sum(v.numpy().nbytes for v in model.variables)
        paths["trimmed"] = seqattn_tfrs.export_for_serving(model, tmp + "/serving")
        request = planted(1024, 2)
        inputs = {
            kind: {
                n: tf.constant(request[n])
                for n in (names if kind == "full" else selected)
            }
            for kind in paths
        }
        loaded, load_times = {}, {kind: [] for kind in paths}
        for _ in range(3):
            for kind, path in paths.items():
                start = time.perf_counter()
                loaded[kind] = tf.saved_model.load(path).signatures["serving_default"]
                load_times[kind].append(time.perf_counter() - start)
        one_row = {k: {n: v[:1] for n, v in x.items()} for k, x in inputs.items()}
        for kind in paths:  # warm up both before timing
            for _ in range(10):
                loaded[kind](**one_row[kind])
                loaded[kind](**inputs[kind])
        latency, batch = {kind: [] for kind in paths}, {kind: [] for kind in paths}
        for _ in range(10):  # interleaved chunks
            for kind in paths:
                latency[kind].append(
                    median_seconds(
                        lambda k=kind: loaded[k](**one_row[k]), FLAGS.calls // 10
                    )
                )
                batch[kind].append(
                    median_seconds(
                        lambda k=kind: loaded[k](**inputs[k]),
                        max(FLAGS.calls // 100, 1),
                    )
                )
        for kind, path in paths.items():
            count, size = checkpoint_variables(path)
            results[kind] = {
                "disk_bytes": dir_bytes(path),
                "variables": count,
                "variable_bytes": size,
                "load_s": float(np.median(load_times[kind])),
                "latency_batch1_ms": float(np.median(latency[kind])) * 1e3,
                "rows_per_s_batch1024": 1024 / float(np.median(batch[kind])),
            }
        results["floor_bytes"] = floor
    full, trim = results["full"], results["trimmed"]
    print("| | full | trimmed |\n|---|---|---|")
    rows = [
        ("on disk (bytes)", "disk_bytes", "{:,}"),
        ("variables", "variables", "{}"),
        ("variable bytes", "variable_bytes", "{:,}"),
        ("load time (s)", "load_s", "{:.3f}"),
        ("latency, batch 1 (ms)", "latency_batch1_ms", "{:.3f}"),
        ("throughput, batch 1024 (rows/s)", "rows_per_s_batch1024", "{:,.0f}"),
    ]
    for label, key, fmt in rows:
        print(f"| {label} | {fmt.format(full[key])} | {fmt.format(trim[key])} |")
    print(f"floor (kept variables' bytes): {floor:,}")
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump(results, f, indent=2)
    print(
        f"serving: trimmed {trim['disk_bytes']:,} B vs full {full['disk_bytes']:,} B "
        f"(x{full['disk_bytes'] / trim['disk_bytes']:.0f} smaller, floor {floor:,} B), "
        f"load x{full['load_s'] / trim['load_s']:.1f} faster, batch-1 latency "
        f"{trim['latency_batch1_ms']:.2f} vs {full['latency_batch1_ms']:.2f} ms"
    )


if __name__ == "__main__":
    app.run(main)
