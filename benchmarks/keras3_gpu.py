"""Cost of the Keras 3 gate on an accelerator (JAX backend).

A Criteo-shaped DCN model: 26 categorical fields whose tables grow
geometrically from 10 to ``--max_rows`` rows, ``--dim``-wide embeddings, one
``keras_rs.layers.FeatureCross`` and a 256-unit layer, Adam, batch
``--batch``. It measures, with compiled functions warm:

* step time of the model with the gate, in each gate mode (dense, selecting,
  settling), against the same model without the gate;
* a whole selection run (warm-up, rounds, fine-tune; the logits learning on
  held-out batches every step) against a plain ``fit`` of the same steps of
  the ungated model;
* examples per second of each.

Absolute times mean something only on the accelerator; on a CPU read ratios.

Usage: ``KERAS_BACKEND=jax python benchmarks/keras3_gpu.py [--smoke] [--out F]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import keras_rs  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from seqattn_tfrs.core.modes import DENSE, SELECTING, SETTLING  # noqa: E402
from seqattn_tfrs.keras3 import (  # noqa: E402
    SequentialAttentionCallback,
    SequentialAttentionEmbedding,
)

FIELDS = 26


def data(rows: int, sizes: np.ndarray, seed: int) -> tuple[dict, np.ndarray]:
    """Zipf-like ids per field; clicks from fields c0-c5 (planted)."""
    rng = np.random.default_rng(seed)
    columns, logit = {}, np.zeros(rows, np.float32)
    for j, size in enumerate(sizes):
        ids = np.minimum(rng.zipf(1.2, rows) - 1, size - 1).astype(np.int32)
        columns[f"c{j}"] = ids
        if j < 6:
            logit += rng.normal(0, 1.0, size).astype(np.float32)[ids] * (1 - j / 8)
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return columns, y


def build(
    sizes: np.ndarray,
    dim: int,
    gated: bool,
    num_selected: int,
    distributed_batch: int | None = None,
):
    """The DCN model; with ``distributed_batch`` its tables are one keras-rs
    ``DistributedEmbedding`` (whose feature shapes fix the batch size)."""
    names = [f"c{j}" for j in range(FIELDS)]
    inputs = {
        n: keras.Input((), batch_size=distributed_batch, dtype="int32", name=n)
        for n in names
    }
    if distributed_batch is None:
        tables = {n: keras.layers.Embedding(int(s), dim) for n, s in zip(names, sizes)}
    else:
        tables = keras_rs.layers.DistributedEmbedding(
            {
                n: keras_rs.layers.FeatureConfig(
                    n,
                    keras_rs.layers.TableConfig(f"t_{n}", int(s), dim),
                    (distributed_batch,),
                    (distributed_batch, dim),
                )
                for n, s in zip(names, sizes)
            }
        )
    gate = None
    if gated:
        gate = SequentialAttentionEmbedding(
            tables, num_selected=num_selected, selections_per_round=2
        )
        embedded = gate(inputs)
    elif distributed_batch is None:
        embedded = {name: tables[name](x) for name, x in inputs.items()}
    else:
        embedded = tables(inputs)
    x0 = keras.layers.Concatenate()([embedded[name] for name in inputs])
    crossed = keras_rs.layers.FeatureCross()(x0, x0)
    hidden = keras.layers.Dense(256, activation="relu")(crossed)
    out = keras.layers.Dense(1, activation="sigmoid")(hidden)
    model = keras.Model(inputs, out)
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    return model, gate


class EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch (the device finishes its work before
    ``on_epoch_end``: Keras reads the epoch's logs there)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def selection_callback(selection_data=None) -> SequentialAttentionCallback:
    """The measured schedule: 1 warm-up epoch, one round per epoch, 1
    fine-tune epoch."""
    return SequentialAttentionCallback(
        warmup_epochs=1,
        epochs_per_selection=1,
        finetune_epochs=1,
        selection_data=selection_data,
        verbose=0,
    )


def workload(max_rows: int, batch: int, steps: int) -> tuple:
    """26 tables of 10 to ``max_rows`` rows, ``steps`` training batches of
    ``batch`` rows and 4 held-out ones. Returns ``(sizes, x, y,
    selection_data, head)``, ``head`` the first training batch."""
    sizes = np.geomspace(10, max_rows, FIELDS).astype(int)
    x, y = data(batch * steps, sizes, seed=0)
    heldout_x, heldout_y = data(batch * 4, sizes, seed=1)
    selection_data = [
        ({k: v[i : i + batch] for k, v in heldout_x.items()}, heldout_y[i : i + batch])
        for i in range(0, len(heldout_y), batch)
    ]
    head = ({k: v[:batch] for k, v in x.items()}, y[:batch])
    return sizes, x, y, selection_data, head


def environment_workload() -> tuple:
    """The GPU comparison scripts' :func:`workload` (``docs/keras3_gpu_compare.py``),
    sized by ``MAXROWS``, ``BATCH`` and ``STEPS`` from the environment."""
    return workload(
        int(os.environ.get("MAXROWS", 1_000_000)),
        int(os.environ.get("BATCH", 8192)),
        int(os.environ.get("STEPS", 300)),
    )


def timed_run(workload: tuple, gated: bool, heldout: bool, on_start=None) -> dict:
    """One fit of 5 epochs of :func:`environment_workload`'s ``workload``
    after a one-batch fit that compiles the train step: plain, or gated with
    the measured schedule from training batches or held-out ones. Calls
    ``on_start()`` just before the timed fit. Returns its wall time, each
    epoch's, and the gated run's picks."""
    sizes, x, y, selection_data, head = workload
    batch = len(head[1])
    keras.utils.set_random_seed(0)
    model, gate = build(sizes, 16, gated, 6)
    timed_fit(model, *head, batch, 1)  # compile the train step
    callbacks = []
    if gated:
        gate.gate_mode.assign(DENSE)
        callbacks.append(selection_callback(selection_data if heldout else None))
    if on_start is not None:
        on_start()
    start = time.perf_counter()
    times = timed_fit(model, x, y, batch, 5, callbacks)
    result = {
        "total": round(time.perf_counter() - start, 3),
        "epochs": [round(t, 3) for t in times],
    }
    if gated:
        result["selected"] = list(gate.selected_features)
    return result


def timed_fit(model, x, y, batch, epochs, callbacks=()):
    timer = EpochTimer()
    model.fit(
        x,
        y,
        batch_size=batch,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=[*callbacks, timer],
    )
    return timer.times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=300, help="steps per epoch")
    parser.add_argument("--num_selected", type=int, default=6)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CPU)")
    parser.add_argument("--out", default=None, help="write the JSON result here")
    args = parser.parse_args()
    if args.smoke:
        args.max_rows, args.batch, args.steps = 2000, 256, 6
    sizes, x, y, selection_data, head = workload(args.max_rows, args.batch, args.steps)
    result = {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "keras_rs": keras_rs.__version__,
        "fields": FIELDS,
        "table_rows": sizes.tolist(),
        "dim": args.dim,
        "batch": args.batch,
        "steps_per_epoch": args.steps,
    }
    if keras.backend.backend() == "jax":
        import jax

        result["device"] = str(jax.devices()[0].device_kind)
        result["jax"] = jax.__version__

    # 1. Step time by gate mode against the ungated model (compiled, warm).
    plain, _ = build(sizes, args.dim, gated=False, num_selected=args.num_selected)
    timed_fit(plain, x, y, args.batch, 1)  # compile
    plain_epoch = min(timed_fit(plain, x, y, args.batch, 2))
    gated, gate = build(sizes, args.dim, gated=True, num_selected=args.num_selected)
    timed_fit(gated, x, y, args.batch, 1)  # compile (dense mode)
    step_ms = {"ungated": 1000 * plain_epoch / args.steps}
    for name, mode in (
        ("dense", DENSE),
        ("selecting", SELECTING),
        ("settling", SETTLING),
    ):
        gate.gate_mode.assign(mode)
        step_ms[f"gated_{name}"] = (
            1000 * min(timed_fit(gated, x, y, args.batch, 2)) / args.steps
        )
    result["step_ms"] = {k: round(v, 3) for k, v in step_ms.items()}
    result["step_ratio_to_ungated"] = {
        k: round(v / step_ms["ungated"], 3) for k, v in step_ms.items()
    }

    # 1b. The same with the tables in one keras-rs DistributedEmbedding.
    try:
        distributed_ms = {}
        plain, _ = build(sizes, args.dim, False, args.num_selected, args.batch)
        timed_fit(plain, x, y, args.batch, 1)
        distributed_ms["ungated"] = min(timed_fit(plain, x, y, args.batch, 2))
        gated, gate = build(sizes, args.dim, True, args.num_selected, args.batch)
        timed_fit(gated, x, y, args.batch, 1)
        for name, mode in (("dense", DENSE), ("selecting", SELECTING)):
            gate.gate_mode.assign(mode)
            distributed_ms[f"gated_{name}"] = min(timed_fit(gated, x, y, args.batch, 2))
        result["distributed_embedding_step_ms"] = {
            k: round(1000 * v / args.steps, 3) for k, v in distributed_ms.items()
        }
    except Exception as error:  # noqa: BLE001  (recorded, not fatal)
        result["distributed_embedding_error"] = f"{type(error).__name__}: {error}"

    # 2. Whole selection runs against a plain fit of the same steps.
    rounds = -(-args.num_selected // 2)
    epochs = 1 + rounds + 1
    examples = len(y) * epochs

    def run(gated_model: bool, callbacks_of) -> dict:
        keras.utils.set_random_seed(0)
        model, gate = build(sizes, args.dim, gated_model, args.num_selected)
        start = time.perf_counter()
        timed_fit(model, *head, args.batch, 1)  # compile the train step
        compile_seconds = time.perf_counter() - start
        if gate is not None:
            gate.gate_mode.assign(DENSE)
        start = time.perf_counter()
        times = timed_fit(model, x, y, args.batch, epochs, callbacks_of())
        total = time.perf_counter() - start
        record = {
            "seconds": round(total, 3),
            "epoch_seconds": [round(t, 3) for t in times],
            "examples_per_second": round(examples / total),
            "first_compile_seconds": round(compile_seconds, 3),
        }
        if gate is not None:
            record["selected"] = list(gate.selected_features)
        return record

    class BatchHook(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    def selection(heldout: bool):
        return lambda: [selection_callback(selection_data if heldout else None)]

    result["epochs"] = epochs
    result["steps"] = args.steps * epochs
    result["plain_fit"] = run(False, lambda: [])
    result["plain_fit_with_batch_hook"] = run(False, lambda: [BatchHook()])
    result["selection_heldout"] = run(True, selection(True))
    result["selection_training_batches"] = run(True, selection(False))
    plain = result["plain_fit"]["seconds"]
    plain_tail = sum(result["plain_fit"]["epoch_seconds"][2:])
    for key in (
        "plain_fit_with_batch_hook",
        "selection_heldout",
        "selection_training_batches",
    ):
        result[key]["ratio_to_plain"] = round(result[key]["seconds"] / plain, 3)
        # Epochs 3 on: every compile done (the held-out step compiles in round 1).
        tail = sum(result[key]["epoch_seconds"][2:])
        result[key]["ratio_to_plain_after_epoch_2"] = round(tail / plain_tail, 3)
    text = json.dumps(result, indent=1)
    print(text, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
