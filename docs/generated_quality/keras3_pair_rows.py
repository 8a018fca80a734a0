"""Keras 3 (JAX), one generated CTR problem and seed: the held-out pair test's
z at each commit that reads it, three ways.

At that commit the test groups the held-out rows by each candidate pair's
values; the library uses each candidate's per-row gradient at its gated
output (candidates' gates at 0, the selected at 1) projected on the
candidate's learned direction. This recomputes, from the fitted model at that
moment, the same z (``projected``), the z on the whole gradient vectors
(``whole``: the group's step is a vector, the test its dot product with each
held-out row's gradient), and the z on the model's output residual
``p - y`` (``residual``: no network in between). For
``docs/generated_quality.md``, "Session 40" (problem 28, seed 0)::

  KERAS_BACKEND=jax JAX_PLATFORMS=cpu python \\
      docs/generated_quality/keras3_pair_rows.py 28 0

Reads the callback's and the gate's internals (``_run_pair_test``,
``_sync``, ``learning_state``): a measurement, not an interface. The model
must be ``keras3_runs.ctr_model`` (gate, concatenation, two Dense layers).
"""

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.pop("TF_USE_LEGACY_KERAS", None)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [ROOT, os.path.join(ROOT, "benchmarks"), HERE]
import keras3_runs  # noqa: E402
from generator import generate_problem  # noqa: E402

from seqattn_tfrs.core.pairs import pair_z  # noqa: E402
from seqattn_tfrs.keras3 import SequentialAttentionCallback, learning  # noqa: E402

WIDTH = 4  # keras3_runs.ctr_model's tables


def vector_pair_z(keys, blocks, i, j):
    """``core.pairs.pair_z`` of features ``i`` and ``j`` with each row's
    gradient a vector (``blocks[f]``: ``[rows, width]``)."""
    fit = np.arange(len(keys)) % 2 == 0
    span = int(keys.max()) + 1
    _, group = np.unique(keys[:, i] * span + keys[:, j], return_inverse=True)
    size = group.max() + 1
    a = np.zeros(int((~fit).sum()))
    for g in blocks[i], blocks[j]:
        steps = np.stack(
            [
                np.bincount(group[fit], g[fit, c], minlength=size)
                for c in range(g.shape[1])
            ],
            axis=1,
        )
        a += np.sum(g[~fit] * steps[group[~fit]], axis=1)
    return float(a.sum() / np.sqrt(a @ a))


def main():
    problem = generate_problem(int(sys.argv[1]), "ctr")
    seed = int(sys.argv[2])
    names, k, split = problem.names, problem.answer["k"], problem.train_rows
    features = {n: np.asarray(problem.features[n], np.int32) for n in names}
    y = np.asarray(problem.labels, np.float32)
    held_x = {n: v[split:] for n, v in features.items()}
    keys = np.stack([held_x[n] for n in names], axis=1)
    reports = []

    class Recording(SequentialAttentionCallback):
        def _run_pair_test(self, layer):
            pairs = layer.pairs_to_test()
            if pairs:
                self._sync()
                reports.append(pair_report(self.model, layer, pairs))
            return super()._run_pair_test(layer)

    def pair_report(model, layer, pairs):
        chosen = set(layer.selected_features)
        outputs = [
            keras.ops.convert_to_numpy(layer.embeddings[n](held_x[n])) for n in names
        ]
        x = np.concatenate(
            [o if n in chosen else np.zeros_like(o) for n, o in zip(names, outputs)], 1
        )
        hidden, output = [
            lay for lay in model.layers if isinstance(lay, keras.layers.Dense)
        ]
        labels = y[split:]

        def loss(inputs):
            p = jnp.clip(output(hidden(inputs))[:, 0], 1e-7, 1 - 1e-7)
            return -jnp.mean(labels * jnp.log(p) + (1 - labels) * jnp.log(1 - p))

        rows = len(labels)
        grads = np.asarray(jax.grad(loss)(jnp.asarray(x))) * rows  # per-row
        grads -= grads.mean(axis=0, keepdims=True)
        blocks = [grads[:, WIDTH * c : WIDTH * (c + 1)] for c in range(len(names))]
        cap = learning.AXIS_CAPACITY
        axes = keras.ops.convert_to_numpy(layer.learning_state[16])
        axes = axes.reshape(len(names), cap)[:, :WIDTH]
        projected = np.stack([b @ axes[c] for c, b in enumerate(blocks)], axis=1)
        projected -= projected.mean(axis=0, keepdims=True)
        residual = np.asarray(output(hidden(jnp.asarray(x)))[:, 0]) - labels
        residual -= residual.mean()
        residual_columns = np.column_stack([residual, residual])
        z = {}
        for a, b in pairs:
            i, j = names.index(a), names.index(b)
            z[f"{a} & {b}"] = {
                "projected": round(
                    float(pair_z(keys[:, [i, j]], projected[:, [i, j]])[0, 1]), 2
                ),
                "whole": round(vector_pair_z(keys, blocks, i, j), 2),
                "residual": round(
                    float(pair_z(keys[:, [i, j]], residual_columns)[0, 1]), 2
                ),
            }
        return {"selected": sorted(chosen), "pair_z": z}

    keras3_runs.SequentialAttentionCallback = Recording
    keras.utils.set_random_seed(seed)
    model, gate = keras3_runs.ctr_model(features, names, k, None)
    held = keras3_runs.heldout_batches(features, y, split, 128)
    with open(os.devnull, "w") as sink:
        keras3_runs.fit_and_record(
            model, gate, problem, features, y, held, seed, sink, 128
        )
    print(
        json.dumps(
            {"order": list(gate.selected_features), "commits": reports}, indent=1
        )
    )


if __name__ == "__main__":
    main()
