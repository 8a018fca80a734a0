"""Sizes of tf-keras layers and variables (counted by ``core.sizes``).

A feature's cost is the bytes of every ``tf.Variable`` its per-feature layer
holds (rows x width x dtype size for an ``Embedding``; any other weights of the
layer count too). Lookup vocabularies are not variables and are not counted;
nor is anything outside the per-feature layer (the model's dense layers,
optimizer slots).
"""

from __future__ import annotations

from collections.abc import Iterable

import tensorflow as tf

from seqattn_tfrs import _compat  # noqa: F401  (Keras 2 check)
from seqattn_tfrs.core.sizes import count_variables

# Layer types known to hold no variables, so that the bytes of a layer that was
# never called can be read off its Embeddings' shapes.
_WEIGHTLESS = (
    tf.keras.layers.StringLookup,
    tf.keras.layers.IntegerLookup,
    tf.keras.layers.Hashing,
    tf.keras.layers.Discretization,
    tf.keras.layers.Reshape,
    tf.keras.layers.Flatten,
    tf.keras.layers.Activation,
    tf.keras.layers.GlobalAveragePooling1D,
    tf.keras.layers.InputLayer,
    tf.keras.Sequential,
)


def layer_bytes(layer: tf.keras.layers.Layer) -> int | None:
    """Bytes of a per-feature layer's variables; ``None`` while unknowable.

    A built layer is measured (distinct variables, elements x dtype size). A
    layer that was never called is estimated from the shapes of its
    ``Embedding`` layers when every other sublayer is known to hold no
    variables (lookups, hashing, reshapes, layers without a ``build``);
    otherwise ``None``.

    Example:
      >>> layer_bytes(tf.keras.layers.Embedding(1000, 8))
      32000
      >>> layer_bytes(tf.keras.layers.Dense(3)) is None
      True
    """
    if layer.built:
        return variable_stats(layer.variables)["bytes"]
    total = 0
    for module in [layer, *layer.submodules]:
        if isinstance(module, tf.keras.layers.Embedding):
            dtype = tf.as_dtype(module.dtype or tf.float32)
            total += int(module.input_dim) * int(module.output_dim) * dtype.size
        elif isinstance(module, tf.keras.layers.Layer) and not is_weightless(module):
            return None
    return total


def is_weightless(layer: tf.keras.layers.Layer) -> bool:
    """Whether a layer that was never built is known to hold no variables.

    Known types, and layers that neither have weights yet nor override
    ``build`` (where Keras layers create them), such as pooling helpers.
    """
    if isinstance(layer, _WEIGHTLESS):
        return True
    return not layer.weights and type(layer).build is tf.keras.layers.Layer.build


def variable_stats(variables: Iterable[tf.Variable]) -> dict[str, int]:
    """Counts distinct variables, their parameters and their bytes.

    Args:
      variables: an iterable of ``tf.Variable``; duplicates are counted once.

    Returns:
      ``{"variables": count, "parameters": elements, "bytes": bytes}``.

    Example:
      >>> variable_stats([tf.Variable(tf.zeros([3, 2])), tf.Variable(1.0)])
      {'variables': 2, 'parameters': 7, 'bytes': 28}
    """
    return count_variables(
        (variable.ref(), _current_shape(variable), variable.dtype.size)
        for variable in variables
    )


def _current_shape(variable: tf.Variable) -> list[int | None]:
    """The variable's shape; its value's where only that is known (a variable
    created with an unknown shape, as the gate's probe sums)."""
    if variable.shape.rank is not None:
        return variable.shape.as_list()
    return variable.value().shape.as_list()


def table_variables(layer: tf.keras.layers.Layer) -> list[tf.Variable]:
    """A per-feature layer's variables; none before it is built."""
    return list(layer.variables) if layer.built else []


def table_stats(layer: tf.keras.layers.Layer) -> dict[str, int]:
    """:func:`variable_stats` of a per-feature layer, plus its table's shape.

    ``rows`` and ``dim`` are the shape of its (last) rank-2 variable, 0 if none.

    Example:
      >>> table = tf.keras.layers.Embedding(10, 4)
      >>> _ = table(tf.constant([1]))
      >>> table_stats(table)
      {'variables': 1, 'parameters': 40, 'bytes': 160, 'rows': 10, 'dim': 4}
    """
    variables = table_variables(layer)
    rows = dim = 0
    for variable in variables:
        if variable.shape.rank == 2:
            rows, dim = (int(d) for d in variable.shape)
    return {**variable_stats(variables), "rows": rows, "dim": dim}


def model_variables(model: tf.keras.Model) -> list[tf.Variable]:
    """``model.variables``, also for a model that was never built or called."""
    try:
        return list(model.variables)
    except ValueError:  # a model with a build() method that was never built
        return [
            obj
            for obj in tf.train.TrackableView(model).descendants()
            if isinstance(obj, tf.Variable)
        ]
