"""Finds the gated layers a model holds (no TensorFlow Recommenders needed)."""

from __future__ import annotations

from typing import TypeVar

import tensorflow as tf

from seqattn_tfrs.gate import SequentialAttentionEmbedding
from seqattn_tfrs.width import SequentialAttentionWidth

T = TypeVar("T")


def find_layers(model: tf.Module, kind: type[T]) -> list[T]:
    """Every layer of type ``kind`` tracked by ``model``, once each, in order.

    Finds layers in sub-models, dicts and lists and subclassed models alike.

    Example:
      >>> inner = tf.keras.Sequential([tf.keras.layers.Dense(2)])
      >>> outer = tf.keras.Sequential([inner, tf.keras.layers.Dense(1)])
      >>> [type(x).__name__ for x in find_layers(outer, tf.keras.layers.Dense)]
      ['Dense', 'Dense']
    """
    found: dict[int, T] = {}
    candidates = [model, *model.submodules] if isinstance(model, tf.Module) else []
    for module in candidates:
        if isinstance(module, kind):
            found.setdefault(id(module), module)
    return list(found.values())


def find_gated_layers(model: tf.Module) -> list[SequentialAttentionEmbedding]:
    """Every :class:`~seqattn_tfrs.SequentialAttentionEmbedding` in ``model``."""
    return find_layers(model, SequentialAttentionEmbedding)


def find_width_layers(model: tf.Module) -> list[SequentialAttentionWidth]:
    """Every :class:`~seqattn_tfrs.SequentialAttentionWidth` in ``model``."""
    return find_layers(model, SequentialAttentionWidth)
