"""Finds the gated layers a model holds (no TensorFlow Recommenders needed)."""

from __future__ import annotations

from typing import TypeVar

import tensorflow as tf

from seqattn_tfrs.core import round_report
from seqattn_tfrs.gate import SequentialAttentionEmbedding
from seqattn_tfrs.width import SequentialAttentionWidth

T = TypeVar("T")
# Layers whose sublayers `keras_layers` already lists, or that hold none.
_NO_SUBMODULE_SCAN = (tf.keras.Model, tf.keras.layers.InputLayer)


def find_layers(model: tf.Module, kind: type[T]) -> list[T]:
    """Every layer of type ``kind`` tracked by ``model``, once each, in order.

    Finds layers in sub-models, dicts and lists and subclassed models alike.
    A Keras model's own layer lists (:func:`keras_layers`) are walked
    first, with ``tf.Module.submodules`` only inside layers that are neither
    models, nor of ``kind``, nor :class:`SequentialAttentionEmbedding` (whose
    per-feature layers are the user's tables): ``submodules`` flattens every
    attribute of every module it visits (a lookup table's vocabulary, item by
    item), which took 0.1-0.3 s on a 26-field model at every
    ``on_train_begin`` (``docs/fit_cost.md``).
    Only when that walk reaches no gated layer at all - one held by a plain
    ``tf.Module``, say - does the whole ``submodules`` walk run.

    Example:
      >>> inner = tf.keras.Sequential([tf.keras.layers.Dense(2)])
      >>> outer = tf.keras.Sequential([inner, tf.keras.layers.Dense(1)])
      >>> [type(x).__name__ for x in find_layers(outer, tf.keras.layers.Dense)]
      ['Dense', 'Dense']
    """
    found: dict[int, T] = {}
    if isinstance(model, tf.keras.layers.Layer):
        reached_gate = False
        for module in [model, *keras_layers(model)]:
            gate = isinstance(module, SequentialAttentionEmbedding)
            reached_gate = reached_gate or gate
            if isinstance(module, kind):
                found.setdefault(id(module), module)
            elif not gate and not isinstance(module, _NO_SUBMODULE_SCAN):
                for inner in module.submodules:
                    reached_gate = reached_gate or isinstance(
                        inner, SequentialAttentionEmbedding
                    )
                    if isinstance(inner, kind):
                        found.setdefault(id(inner), inner)
        if found or reached_gate:
            return list(found.values())
    candidates = [model, *model.submodules] if isinstance(model, tf.Module) else []
    for module in candidates:
        if isinstance(module, kind):
            found.setdefault(id(module), module)
    return list(found.values())


def find_gated_layers(model: tf.Module) -> list[SequentialAttentionEmbedding]:
    """Every :class:`~seqattn_tfrs.SequentialAttentionEmbedding` in ``model``.

    Raises:
      ValueError: two of them share a name.
    """
    return round_report.check_distinct_names(
        find_layers(model, SequentialAttentionEmbedding), model.name
    )


def find_width_layers(model: tf.Module) -> list[SequentialAttentionWidth]:
    """Every :class:`~seqattn_tfrs.SequentialAttentionWidth` in ``model``."""
    return find_layers(model, SequentialAttentionWidth)


def find_feature_gates(
    model: tf.Module, layers: list[SequentialAttentionEmbedding] | None = None
) -> list[SequentialAttentionEmbedding]:
    """The gated layers of ``model`` whose features are raw inputs: ``layers``
    (default: every gated layer) less each width layer's inner gate, whose
    "features" are column blocks of the width layer's tables."""
    blocks = {id(width.blocks) for width in find_width_layers(model)}
    gates = find_gated_layers(model) if layers is None else layers
    return [layer for layer in gates if id(layer) not in blocks]


def keras_layers(model: tf.keras.layers.Layer) -> list[tf.keras.layers.Layer]:
    """The layers of ``model`` and of the models nested in it, once each,
    through ``Model.layers`` alone: not the ``submodules`` walk, which visits
    every lookup table's vocabulary (0.14 s at 26 vocabularies of 1,000
    strings, 1.5 s at 10,000; ``docs/fit_cost.md``). A layer that is not a
    model stands for its own sublayers.

    Example:
      >>> inner = tf.keras.Sequential([tf.keras.layers.Dense(2)])
      >>> outer = tf.keras.Sequential([inner, tf.keras.layers.Dense(1)])
      >>> [type(x).__name__ for x in keras_layers(outer)]
      ['Sequential', 'Dense', 'Dense']
    """
    found: dict[int, tf.keras.layers.Layer] = {}
    stack = list(reversed(getattr(model, "layers", [])))
    while stack:
        layer = stack.pop()
        if id(layer) in found:
            continue
        found[id(layer)] = layer
        if isinstance(layer, tf.keras.Model):
            stack.extend(reversed(layer.layers))
    return list(found.values())
