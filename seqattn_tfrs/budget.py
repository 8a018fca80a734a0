"""Byte budgets: what a feature's table costs, and greedy picks that fit.

A feature's cost is the bytes of every ``tf.Variable`` its per-feature layer
holds (rows x width x dtype size for an ``Embedding``; any other weights of the
layer count too). Lookup vocabularies are not variables and are not counted;
nor is anything outside the per-feature layer (the model's dense layers,
optimizer slots).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from seqattn_tfrs import _compat  # noqa: F401  (Keras 2 check)

RULES = ("attention", "attention_per_byte")

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
        seen = {v.ref(): v for v in layer.variables}
        return sum((v.shape.num_elements() or 0) * v.dtype.size for v in seen.values())
    total = 0
    for module in [layer, *layer.submodules]:
        if isinstance(module, tf.keras.layers.Embedding):
            dtype = tf.as_dtype(module.dtype or tf.float32)
            total += int(module.input_dim) * int(module.output_dim) * dtype.size
        elif isinstance(module, tf.keras.layers.Layer) and not _weightless(module):
            return None
    return total


def _weightless(layer: tf.keras.layers.Layer) -> bool:
    """Whether a layer that was never built is known to hold no variables.

    Known types, and layers that neither have weights yet nor override
    ``build`` (where Keras layers create them), such as pooling helpers.
    """
    if isinstance(layer, _WEIGHTLESS):
        return True
    return not layer.weights and type(layer).build is tf.keras.layers.Layer.build


def max_affordable(costs: Sequence[int | None], budget: int) -> int:
    """The most features any selection can hold within ``budget`` bytes.

    Unknown costs (``None``) count as 0, so the result is an upper bound.

    Example:
      >>> max_affordable([5, 1, 3, None], budget=4)
      3
    """
    total = 0
    count = 0
    for cost in sorted(0 if c is None else c for c in costs):
        if total + cost > budget:
            break
        total += cost
        count += 1
    return count


def pick_within_budget(
    logits: np.ndarray,
    costs: np.ndarray,
    selected: np.ndarray,
    remaining: int,
    count: int,
    rule: str,
) -> list[int]:
    """Up to ``count`` greedy picks among the unselected features that fit.

    Each pick takes, among the unselected features whose cost fits what is left
    of the budget, the largest logit (``rule="attention"``) or the largest
    softmax weight per byte, ``logit - log(bytes)`` (``"attention_per_byte"``;
    a feature of 0 bytes counts as 1 byte), then charges its cost. Ties go to
    the earlier feature. Stops early when nothing fits.

    Example:
      >>> logits = np.array([3.0, 2.0, 1.0])
      >>> costs = np.array([100, 10, 1])
      >>> selected = np.array([False, False, False])
      >>> pick_within_budget(logits, costs, selected, 50, 2, "attention")
      [1, 2]
      >>> pick_within_budget(logits, costs, selected, 500, 2, "attention_per_byte")
      [2, 1]
    """
    if rule not in RULES:
        raise ValueError(f"`budget_rule` must be one of {RULES}, got {rule!r}.")
    taken = np.array(selected, bool)
    score = logits.astype(np.float64)
    if rule == "attention_per_byte":
        score = score - np.log(np.maximum(costs, 1).astype(np.float64))
    picks: list[int] = []
    for _ in range(count):
        fits = np.flatnonzero(~taken & (costs <= remaining))
        if fits.size == 0:
            break
        best = int(fits[np.argmax(score[fits])])  # argmax: first of equals
        picks.append(best)
        taken[best] = True
        remaining -= int(costs[best])
    return picks
