"""Keras 3 scenarios, run as ``python scenarios.py NAME...`` in a clean process.

``KERAS_BACKEND`` must be set before ``import keras`` and the suite's root
conftest makes ``tf.keras`` Keras 2, so ``test_backends.py`` runs these in a
subprocess per backend. Each scenario prints one JSON line with its result;
a failed assertion exits non-zero.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import keras  # noqa: E402
from planted import ctr_correct, ctr_problem, linear_problem, omp_order  # noqa: E402

from seqattn_tfrs.keras3 import (  # noqa: E402
    SequentialAttentionCallback,
    SequentialAttentionEmbedding,
    export_for_serving,
    prune,
)


def batches(features: dict, y: np.ndarray, rows: slice, size: int) -> list:
    """Held-out batches as a plain list of ``(x, y)`` numpy pairs."""
    x = {name: column[rows] for name, column in features.items()}
    n = len(y[rows])
    return [
        ({k: v[i : i + size] for k, v in x.items()}, y[rows][i : i + size])
        for i in range(0, n, size)
    ]


def linear_model(
    names: list[str], **options
) -> tuple[keras.Model, SequentialAttentionEmbedding]:
    inputs = {name: keras.Input((1,), name=name) for name in names}
    gate = SequentialAttentionEmbedding(
        {name: keras.layers.Identity() for name in names}, **options
    )
    gated = gate(inputs)
    out = keras.layers.Dense(1)(keras.layers.Concatenate()([gated[n] for n in names]))
    return keras.Model(inputs, out), gate


def omp(seed: int = 0) -> dict:
    """The linear problem's OMP order, logits learning from held-out batches."""
    x, y = linear_problem(seed)
    expected = omp_order(x, y, 4)
    names = [f"x{i}" for i in range(8)]
    keras.utils.set_random_seed(seed)
    model, gate = linear_model(names, num_selected=4)
    model.compile(keras.optimizers.Adam(0.05), "mse")
    features = {n: x[:, i : i + 1] for i, n in enumerate(names)}
    callback = SequentialAttentionCallback(
        warmup_epochs=2,
        epochs_per_selection=2,
        finetune_epochs=0,
        selection_data=batches(features, y, slice(3072, None), 64),
        verbose=0,
    )
    train = {k: v[:3072] for k, v in features.items()}
    model.fit(
        train, y[:3072], batch_size=64, epochs=10, callbacks=[callback], verbose=0
    )
    order = [names.index(f) for f in gate.selected_features]
    assert order == expected, (order, expected)
    return {"order": order, "expected": expected}


def ctr_model(
    columns: dict, **options
) -> tuple[keras.Model, SequentialAttentionEmbedding]:
    names = list(columns)
    inputs = {name: keras.Input((), name=name, dtype="int32") for name in names}
    gate = SequentialAttentionEmbedding(
        {n: keras.layers.Embedding(int(columns[n].max()) + 1, 4) for n in names},
        **options,
    )
    gated = gate(inputs)
    hidden = keras.layers.Dense(32, activation="relu")(
        keras.layers.Concatenate()([gated[n] for n in names])
    )
    out = keras.layers.Dense(1, activation="sigmoid")(hidden)
    return keras.Model(inputs, out), gate


def ctr(seed: int = 0) -> dict:
    """The planted CTR problem: sources, one copy, no noise (held-out data)."""
    columns, y = ctr_problem(seed)
    columns = {k: v.astype(np.int32) for k, v in columns.items()}
    keras.utils.set_random_seed(seed)
    model, gate = ctr_model(columns, num_selected=5)
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    order = np.random.default_rng(seed).permutation(8000)
    train = {k: v[:8000][order] for k, v in columns.items()}
    callback = SequentialAttentionCallback(
        warmup_epochs=1,
        epochs_per_selection=2,
        finetune_epochs=0,
        selection_data=batches(columns, y, slice(8000, None), 128),
        verbose=0,
    )
    model.fit(
        train,
        y[:8000][order],
        batch_size=128,
        epochs=11,
        callbacks=[callback],
        verbose=0,
    )
    selected = list(gate.selected_features)
    assert ctr_correct(set(selected)), selected
    return {"selected": selected}


def prune_export() -> dict:
    """Prune and export; the SavedModel is checked by plain TensorFlow elsewhere."""
    columns, y = ctr_problem(0, n=2048)
    names = ["m1", "m2", "m3", "noise0"]
    columns = {k: columns[k].astype(np.int32) for k in names}
    keras.utils.set_random_seed(0)
    model, gate = ctr_model(columns, num_selected=2)
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    callback = SequentialAttentionCallback(
        warmup_epochs=1, epochs_per_selection=1, finetune_epochs=1, verbose=0
    )
    model.fit(columns, y, batch_size=256, epochs=4, callbacks=[callback], verbose=0)
    kept = list(gate.selected_features)
    pruned = prune(model)
    assert sorted(pruned.input) == sorted(kept), (sorted(pruned.input), kept)
    probe = {k: v[:64] for k, v in columns.items()}
    full = keras.ops.convert_to_numpy(model.predict(probe, verbose=0))
    small = keras.ops.convert_to_numpy(
        pruned.predict({k: probe[k] for k in kept}, verbose=0)
    )
    np.testing.assert_allclose(small, full, rtol=0, atol=1e-6)
    dropped_tables = [
        w.path
        for w in pruned.weights
        if any(f"/{n}/" in w.path for n in set(names) - set(kept))
    ]
    base = tempfile.mkdtemp()
    path = export_for_serving(pruned, base)
    np.savez(os.path.join(base, "probe.npz"), expected=small, **probe)
    check = subprocess.run(
        [
            sys.executable,
            str(pathlib.Path(__file__).with_name("load_export.py")),
            path,
            os.path.join(base, "probe.npz"),
            ",".join(kept),
        ],
        env={
            k: v
            for k, v in os.environ.items()
            if k not in ("KERAS_BACKEND", "TF_USE_LEGACY_KERAS")
        },
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    return {
        "kept": kept,
        "export": path,
        "loader": check.stdout.strip().splitlines()[-1],
        "dropped_weights_left": dropped_tables,
    }


def main() -> None:
    for name in sys.argv[1:]:
        start = time.perf_counter()
        result = globals()[name]()
        print(
            json.dumps(
                {
                    "scenario": name,
                    "backend": keras.backend.backend(),
                    "seconds": round(time.perf_counter() - start, 1),
                    **result,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
