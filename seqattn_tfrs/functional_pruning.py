"""Pruning a functional model: a new graph whose inputs are the features it needs.

A functional Keras model lists every feature as an ``Input``. After the gated
layers drop tables, :func:`plan` works out which inputs the outputs still
need (refusing, before any change, a dropped input that feeds another layer)
and :func:`rebuild` re-runs the graph on new ``Input``\\ s for those only,
sharing every layer and weight with the original.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from seqattn_tfrs.gate import SequentialAttentionEmbedding
from seqattn_tfrs.width import SequentialAttentionWidth


def is_functional(model: tf.keras.Model) -> bool:
    return bool(getattr(model, "_is_graph_network", False))


def _ordered_nodes(model: tf.keras.Model) -> list[Any]:
    """The model's nodes, inputs first (deepest first)."""
    by_depth = model._nodes_by_depth
    return [
        node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]
    ]


def _gate_dict(node: Any) -> Mapping[str, Any] | None:
    """The feature dict a gate node was called with (first argument)."""
    first = node.call_args[0] if node.call_args else node.call_kwargs.get("features")
    return first if isinstance(first, Mapping) else None


def _required_ids(
    model: tf.keras.Model, kept: dict[int, set[str]], prune_gates: bool
) -> set[int]:
    """Ids of the Keras tensors the outputs need; pruned gates need only kept keys."""
    required = {id(t) for t in tf.nest.flatten(model._nested_outputs)}
    for node in reversed(_ordered_nodes(model)):  # outputs first
        if node.is_input:
            continue
        if not any(id(t) in required for t in tf.nest.flatten(node.outputs)):
            continue
        inputs = node.keras_inputs
        gate_inputs = _gate_dict(node)
        if prune_gates and id(node.layer) in kept and gate_inputs is not None:
            names = kept[id(node.layer)]
            dropped_ids = {id(t) for key, t in gate_inputs.items() if key not in names}
            inputs = [t for t in inputs if id(t) not in dropped_ids]
        required.update(id(t) for t in inputs)
    return required


def plan(
    model: tf.keras.Model,
    layers: list[SequentialAttentionEmbedding],
    width_layers: list[SequentialAttentionWidth],
) -> dict[str, Any]:
    """Which inputs the pruned graph still needs; every layer that reads a
    feature dict (a gate, a width layer) needs only its kept features."""
    kept = {
        id(layer): set(
            layer.embedding_layers if layer.is_pruned else layer.selected_features
        )
        for layer in layers
    }
    kept.update(
        (id(layer), {name for name, cols in layer.kept_columns().items() if cols})
        for layer in width_layers
    )
    pruned_layers = [*layers, *width_layers]
    nodes = _ordered_nodes(model)
    before = _required_ids(model, kept, prune_gates=False)
    after = _required_ids(model, kept, prune_gates=True)
    for node in nodes:
        gate_inputs = _gate_dict(node)
        if id(node.layer) not in kept or gate_inputs is None:
            continue
        for key, tensor in gate_inputs.items():
            if key in kept[id(node.layer)] or id(tensor) not in after:
                continue
            consumers = sorted(
                {
                    other.layer.name
                    for other in nodes
                    if other is not node
                    and any(t is tensor for t in other.keras_inputs)
                }
            )
            raise ValueError(
                f"Cannot prune functional model {model.name!r}: the input of dropped "
                f"feature {key!r} of layer {node.layer.name!r} also feeds "
                f"{consumers or 'other layers'}, so the model would still need it. "
                f"Feed dropped features only to {node.layer.name!r}. "
                "Nothing was changed."
            )
    structure = model._nested_inputs
    if isinstance(structure, Mapping):
        named = list(structure.items())
    else:
        named = [(t._keras_history.layer.name, t) for t in tf.nest.flatten(structure)]
    kept_anywhere = set().union(*kept.values())
    dropped_names = {
        name
        for layer in pruned_layers
        for name in layer.feature_names
        if name not in kept_anywhere
    }
    for name, tensor in named:
        if name not in dropped_names or id(tensor) not in after:
            continue
        consumers = sorted(
            {
                node.layer.name
                for node in nodes
                if id(node.layer) not in kept
                and any(t is tensor for t in node.keras_inputs)
            }
        )
        raise ValueError(
            f"Cannot prune functional model {model.name!r}: its input {name!r} "
            f"(a dropped feature) feeds {consumers}, not only the gated layers, "
            "so the model would still need it. Call the SequentialAttentionEmbedding "
            "(or SequentialAttentionWidth) directly on the model's inputs. "
            "Nothing was changed."
        )
    inputs = tf.nest.flatten(structure)
    removed = {id(t) for t in inputs if id(t) in before and id(t) not in after}
    gate_nodes_with_dropped = any(
        id(node.layer) in kept
        and _gate_dict(node) is not None
        and any(key not in kept[id(node.layer)] for key in _gate_dict(node))
        for node in nodes
    )
    if removed and not isinstance(structure, (Mapping, list, tuple)):
        raise ValueError(
            f"Cannot prune functional model {model.name!r}: its only input feeds "
            "dropped features only."
        )
    return {
        "kept": kept,
        "required": after,
        "removed_inputs": removed,
        "changed": bool(removed) or gate_nodes_with_dropped,
    }


def rebuild(model: tf.keras.Model, plan: dict[str, Any]) -> tf.keras.Model:
    """Re-runs ``model``'s graph on new ``Input``\\ s for the features still needed."""
    if not plan["changed"]:
        return model
    kept, required, removed = plan["kept"], plan["required"], plan["removed_inputs"]
    mapping: dict[int, Any] = {}

    def new_input(tensor):
        layer = tensor._keras_history.layer
        fresh = tf.keras.Input(type_spec=tensor.type_spec, name=layer.name)
        mapping[id(tensor)] = fresh
        return fresh

    structure = model._nested_inputs
    if isinstance(structure, Mapping):
        new_inputs: Any = {
            key: new_input(t) for key, t in structure.items() if id(t) not in removed
        }
    elif isinstance(structure, (list, tuple)):
        new_inputs = [new_input(t) for t in structure if id(t) not in removed]
    else:
        new_inputs = new_input(structure)

    for node in _ordered_nodes(model):
        if node.is_input:
            continue
        if not any(id(t) in required for t in tf.nest.flatten(node.outputs)):
            continue
        keras_ids = {id(t) for t in node.keras_inputs}

        def remap(value, keras_ids=keras_ids):
            if id(value) in mapping:
                return mapping[id(value)]
            if id(value) in keras_ids:
                raise ValueError(
                    f"Internal error rebuilding {model.name!r}: tensor {value!r} "
                    "has no replacement."
                )
            return value

        args, kwargs = list(node.call_args), dict(node.call_kwargs)
        gate_inputs = _gate_dict(node)
        if id(node.layer) in kept and gate_inputs is not None:
            names = kept[id(node.layer)]
            trimmed = {key: t for key, t in gate_inputs.items() if key in names}
            if args:
                args[0] = trimmed
            else:
                kwargs["features"] = trimmed
        args, kwargs = tf.nest.map_structure(remap, (args, kwargs))
        outputs = node.layer(*args, **kwargs)
        for old, new in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(outputs)):
            mapping[id(old)] = new
    new_outputs = tf.nest.map_structure(lambda t: mapping[id(t)], model._nested_outputs)
    return tf.keras.Model(inputs=new_inputs, outputs=new_outputs, name=model.name)
