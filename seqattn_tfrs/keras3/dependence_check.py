"""The Keras 3 callback's check of which features are functions of others.

Runs the model forward eagerly (``model(x, training=False)``, outside ``fit``'s
compiled step) on up to ``max_rows`` rows of ``selection_data``; each gate
records its raw inputs and its tables' outputs, and stores which feature is a
function of which, rows grouped as each table groups them
(:mod:`seqattn_tfrs.core.dependence`). A plain forward call updates no metric
and no weight. A selection round then passes over a candidate that groups the
rows exactly as a selected feature does (``core.selection.commit_round``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from seqattn_tfrs.core import dependence
from seqattn_tfrs.keras3 import heldout

MAX_ROWS = 50_000


def row_values(value: Any) -> np.ndarray | None:
    """An input's values as numpy, one entry per row (a ragged row as its text);
    None while traced (a symbolic build, a compiled JAX, TensorFlow or torch
    step), where there are no values to read.

    Example:
      >>> row_values(np.array([[1, 2], [3, 4]])).tolist()
      [[1, 2], [3, 4]]
    """
    if keras.backend.is_keras_tensor(value):
        return None
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly():
            return None
        if isinstance(value, tf.RaggedTensor):
            return np.array([repr(row) for row in value.to_list()])
    elif backend == "jax":
        import jax

        if isinstance(value, jax.core.Tracer):
            return None
    elif backend == "torch":
        import torch

        if torch.compiler.is_compiling():
            return None
    return np.asarray(keras.ops.convert_to_numpy(value))


def check_functional_dependence(
    model: keras.Model,
    layers: Sequence[Any],
    data: Any,
    max_rows: int = MAX_ROWS,
) -> dict[str, int]:
    """Finds, per gate, the features that are functions of others on ``data``
    and stores them in the gate (``set_functional_dependence``).

    Args:
      model: the model the gates are part of.
      layers: unpruned ``SequentialAttentionEmbedding`` gates to check.
      data: ``selection_data``: a ``tf.data.Dataset`` or a re-iterable of
        ``(x, y)`` batches (see :func:`seqattn_tfrs.keras3.heldout.one_pass`).
      max_rows: stop after the batch that reaches this many rows.

    Returns:
      The rows checked, per layer name.

    Raises:
      RuntimeError: a layer was not called on ``data``'s batches.
    """
    if not layers:
        return {}

    def forward(batch):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(tuple(batch))
        model(x, training=False)

    # On JAX an eager forward pass compiles each table's lookup on its own;
    # a jit-compiled model's tables are traceable, so they compile as one.
    together = keras.backend.backend() == "jax" and bool(model.jit_compile)
    try:
        records = dependence.record_batches(
            layers, heldout.one_pass(data), forward, max_rows, compiled_lookups=together
        )
    except (TypeError, ValueError, KeyError, IndexError) as error:
        # The first time `selection_data` goes through the model.
        raise ValueError(
            f"`selection_data`'s batches could not go through model "
            f"{model.name!r}: {type(error).__name__}: {error} Expected batches "
            "like the training data's: the same keys, dtypes and shapes."
        ) from error
    checked = {}
    for layer, recorded in zip(layers, records):
        if not recorded:
            raise RuntimeError(
                f"{layer.name} was not called eagerly on `selection_data`'s "
                "batches, so the callback cannot check which of its features are "
                "functions of others; expected batches that `model(x)` feeds "
                "through the layer."
            )
        found, rows_checked = dependence.of_batches(layer.feature_names, recorded)
        layer.set_functional_dependence(found)
        checked[layer.name] = rows_checked
    return checked
