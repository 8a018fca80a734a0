"""TensorFlow's spelling of the array namespace the shared algorithm uses.

See :mod:`seqattn_tfrs.core.ops` for the names; ``keras.ops`` spells them the
same way, so the Keras 3 front-end passes it as it is.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
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


def raw_and_looked_up(
    features: Mapping[str, Any], embedded: Mapping[str, Any]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per feature of ``embedded``, its eager raw input (:func:`row_values`)
    and its table's output, as numpy: what the copy check groups rows by
    (:func:`seqattn_tfrs.core.dependence.table_groups`)."""
    return {n: (row_values(features[n]), np.asarray(v)) for n, v in embedded.items()}


def has_row_keys(value: Any) -> bool:
    """Whether :func:`row_keys` hashes ``value`` (string or integer, dense of
    rank >= 1 or ragged), decided without computing anything."""
    if isinstance(value, tf.SparseTensor):
        return False
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        dtype = np.asarray(value).dtype
    dtype = tf.as_dtype(dtype)
    if dtype != tf.string and not dtype.is_integer:
        return False
    if isinstance(value, tf.RaggedTensor):
        return True
    rank = getattr(getattr(value, "shape", None), "rank", np.ndim(value))
    return rank is not None and rank >= 1


def value_counts(slots: tf.Tensor) -> tf.Tensor:
    """How many entries of ``slots`` (int32, any shape) hold each entry's
    value, float32 of the same shape.

    Example:
      >>> value_counts(tf.constant([[3, 5], [3, 7]])).numpy().tolist()
      [[2.0, 1.0], [2.0, 1.0]]
    """
    flat = tf.reshape(slots, [-1])
    unique, index = tf.unique(flat)
    counts = tf.math.unsorted_segment_sum(
        tf.ones_like(flat, tf.float32), index, tf.size(unique)
    )
    return tf.reshape(tf.gather(counts, index), tf.shape(slots))


def row_keys(value: Any, buckets: int) -> tf.Tensor | None:
    """Each row's raw value as a hash bucket in ``[0, buckets)``, int32 ``[B]``.

    Strings by ``to_hash_bucket_fast``, integers modulo ``buckets``; a row of
    several values (``[B, L]`` or ragged) by the hash of its values joined as
    text. None for an input without values to group: floating-point, boolean
    or sparse.

    Example:
      >>> row_keys(tf.constant([[3], [7], [3]]), 4).numpy().tolist()
      [3, 3, 3]
      >>> keys = row_keys(tf.constant(["a", "b", "a"]), 1024).numpy()
      >>> bool(keys[0] == keys[2]), row_keys(tf.constant([0.5]), 8)
      (True, None)
    """
    if not has_row_keys(value):
        return None
    if not isinstance(value, tf.RaggedTensor):
        value = tf.convert_to_tensor(value)
    dtype = value.dtype

    def hashed(rows):  # strings, or rows of values joined as text
        if rows.shape.rank is not None and rows.shape.rank > 1:
            text = rows if dtype == tf.string else tf.strings.as_string(rows)
            rows = tf.strings.reduce_join(text, axis=1, separator="\x1f")
        return tf.cast(tf.strings.to_hash_bucket_fast(rows, buckets), tf.int32)

    def modulo(rows):
        return tf.cast(tf.math.floormod(tf.cast(rows, tf.int64), buckets), tf.int32)

    if isinstance(value, tf.RaggedTensor):
        return hashed(value)
    if value.shape.rank == 1:
        return hashed(value) if dtype == tf.string else modulo(value)
    rows = tf.reshape(value, [tf.shape(value)[0], -1])
    if dtype == tf.string:  # one value joins to itself: the same hash
        return hashed(rows)
    if rows.shape[1] is not None:
        return modulo(rows[:, 0]) if rows.shape[1] == 1 else hashed(rows)
    # Width unknown when traced: the same keys as an eager call of that width.
    return tf.cond(
        tf.equal(tf.shape(rows)[1], 1),
        lambda: modulo(rows[:, 0]),
        lambda: hashed(rows),
    )


def project_on_axes(
    joined: tf.Tensor, axes: tf.Tensor, features: Sequence[int], widths: Sequence[int]
) -> tf.Tensor:
    """Joined float32 gradients ``[B, sum(widths[f])]`` of ``features``, each
    projected on its row of the probe's directions ``axes`` ``[N, W]``:
    ``[B, K]``.

    Example:
      >>> axes = tf.constant([[1.0, 0.0], [0.0, 0.0], [2.0, 1.0]])
      >>> joined = tf.constant([[3.0, 4.0, 5.0]])
      >>> project_on_axes(joined, axes, [0, 2], [1, 0, 2]).numpy().tolist()
      [[3.0, 13.0]]
    """
    sizes = [widths[f] for f in features]
    direction = tf.concat([axes[f, :size] for f, size in zip(features, sizes)], 0)
    return per_feature_sums(joined * direction, sizes)


def per_feature_sums(columns: tf.Tensor, widths: Sequence) -> tf.Tensor:
    """``[B, D]`` column values to ``[B, N]`` sums over each feature's
    ``widths[i]`` columns (ints, or tensors where unknown when traced).

    Example:
      >>> per_feature_sums(tf.constant([[1.0, 2.0, 3.0]]), [1, 2]).numpy().tolist()
      [[1.0, 5.0]]
    """
    if all(isinstance(w, int) for w in widths) and len(set(widths)) == 1:
        return tf.reduce_sum(tf.reshape(columns, [-1, len(widths), widths[0]]), axis=2)
    return tf.stack(
        [tf.reduce_sum(c, axis=1) for c in tf.split(columns, widths, axis=1)], axis=1
    )


def second_moments(gradients: Sequence[tf.Tensor], width: int, rows: int) -> tf.Tensor:
    """``sum_r g_r g_r^T`` over the first ``rows`` rows of each float32
    ``[B, w]`` gradient, zero-padded to ``width``: ``[K, width, width]``.

    Example:
      >>> m = second_moments([tf.constant([[1.0], [2.0]])], 2, rows=8)
      >>> m.numpy().tolist()
      [[[5.0, 0.0], [0.0, 0.0]]]
    """
    padded = tf.stack(
        [tf.pad(g[:rows], [[0, 0], [0, width - g.shape[1]]]) for g in gradients], 1
    )
    return tf.einsum("rkw,rkv->kwv", padded, padded)
