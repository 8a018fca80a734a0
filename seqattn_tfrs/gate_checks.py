"""The gate layer's checks of its arguments and of what its tables return.

Each error names the argument or feature, the value received and what was
expected (:class:`~seqattn_tfrs.SequentialAttentionEmbedding` calls them in
``__init__`` and ``call``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from seqattn_tfrs.core import embedding_shape


def check_embeddings(embeddings: Any) -> None:
    """Raises unless ``embeddings`` maps feature names to distinct Keras layers."""
    if not isinstance(embeddings, Mapping):
        raise TypeError(
            "`embeddings` must be a mapping from feature name to a Keras layer, "
            f"got {type(embeddings).__name__}: {embeddings!r}."
        )
    if not embeddings:
        raise ValueError(
            "`embeddings` must hold at least one feature, got an empty mapping."
        )
    owner: dict[int, str] = {}
    for name, layer in embeddings.items():
        if not isinstance(name, str) or not name:
            raise TypeError(
                "`embeddings` keys must be non-empty feature-name strings, "
                f"got {name!r}."
            )
        if not isinstance(layer, tf.keras.layers.Layer):
            raise TypeError(
                f"`embeddings[{name!r}]` must be a tf.keras layer, got "
                f"{type(layer).__name__}: {layer!r}."
            )
        if id(layer) in owner:
            raise ValueError(
                f"`embeddings[{name!r}]` is the same layer object as "
                f"`embeddings[{owner[id(layer)]!r}]` ({layer.name!r}); expected one "
                "layer per feature, since pruning drops a feature's table with its "
                "layer. Give each feature its own layer."
            )
        owner[id(layer)] = name


def check_pruned_widths(
    pruned_feature_widths: Mapping[str, int] | None, embeddings: Mapping[str, Any]
) -> dict[str, int] | None:
    """The widths of a pruned layer's dropped features, checked: ``{}`` for a
    pruned layer that dropped none, None for a layer not pruned."""
    if pruned_feature_widths is None:
        return None
    pruned = dict(pruned_feature_widths)
    for name, width in pruned.items():
        if name in embeddings:
            raise ValueError(
                f"Feature {name!r} is in both `embeddings` and "
                "`pruned_feature_widths`; expected each feature in one of them."
            )
        if not isinstance(width, int) or width < 1:
            raise ValueError(
                f"`pruned_feature_widths[{name!r}]` must be a positive int, "
                f"got {width!r}."
            )
    return pruned


class EmbeddingShapeError(ValueError):
    """A feature's layer returned something other than a dense ``[batch, d]``
    tensor: the model's error, whatever data went through it."""


def check_embedding(layer_name: str, name: str, value: Any) -> tf.Tensor:
    """Raises :class:`EmbeddingShapeError` unless a feature's layer returned a
    dense ``[batch, d]`` tensor."""
    if isinstance(value, tf.RaggedTensor):
        raise EmbeddingShapeError(
            f"{layer_name}: the layer of feature {name!r} returned a RaggedTensor "
            f"of shape {value.shape}; expected a dense [batch, d] tensor. Pool a "
            "multi-valent feature to one vector per example inside its layer "
            "(e.g. a mean over its values)."
        )
    problem = embedding_shape.rank_problem(
        layer_name, name, value.shape.as_list(), reshape="tf.keras.layers.Reshape"
    )
    if problem:
        raise EmbeddingShapeError(problem)
    return value


def check_batch_sizes(layer_name: str, embedded: Mapping[str, tf.Tensor]) -> None:
    """Raises when features' embeddings have different (static) batch sizes."""
    known = {
        name: int(value.shape[0])
        for name, value in embedded.items()
        if value.shape[0] is not None
    }
    if len(set(known.values())) > 1:
        raise ValueError(
            f"{layer_name}: features have different batch sizes {known}; expected "
            "one batch size for every feature of an example batch."
        )
