"""TensorFlow's spelling of the array namespace the shared algorithm uses.

See :mod:`seqattn_tfrs.core.ops` for the names; ``keras.ops`` spells them the
same way, so the Keras 3 front-end passes it as it is.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import tensorflow as tf

TF = types.SimpleNamespace(
    where=tf.where,
    sum=lambda x, axis=None: tf.reduce_sum(x, axis=axis),
    mean=lambda x, axis=None: tf.reduce_mean(x, axis=axis),
    square=tf.square,
    sqrt=tf.sqrt,
    exp=tf.exp,
    max=lambda x, axis=None: tf.reduce_max(x, axis=axis),
    maximum=tf.maximum,
    power=tf.pow,
    matmul=tf.matmul,
    transpose=tf.transpose,
    solve=tf.linalg.solve,
    eye=lambda n, dtype="float32": tf.eye(n, dtype=dtype),
    trace=tf.linalg.trace,
    isfinite=tf.math.is_finite,
    all=lambda x, axis=None: tf.reduce_all(x, axis=axis),
    logical_and=tf.logical_and,
    logical_or=tf.logical_or,
    logical_not=tf.logical_not,
    equal=tf.equal,
    zeros_like=tf.zeros_like,
    ones_like=tf.ones_like,
    full_like=lambda x, value: tf.fill(tf.shape(x), tf.cast(value, x.dtype)),
    shape=tf.shape,
    cast=tf.cast,
)


def row_values(value: Any) -> np.ndarray:
    """An eager input's values as numpy, one entry per row (a ragged row as
    its text, a sparse input densified)."""
    if isinstance(value, tf.RaggedTensor):
        return np.array([repr(row) for row in value.to_list()])
    if isinstance(value, tf.SparseTensor):
        value = tf.sparse.to_dense(value)
    return np.asarray(value)
