"""Removes the unselected features' lookup layers and tables from a trained model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from seqattn_tfrs import _compat  # noqa: F401  (Keras 2 check)
from seqattn_tfrs.callback import find_gated_layers
from seqattn_tfrs.gate import SequentialAttentionEmbedding
from seqattn_tfrs.width import (
    SequentialAttentionWidth,
    _final_embedding,
    find_width_layers,
)


def prune(model: tf.keras.Model) -> tf.keras.Model:
    """Drops the tables of the features the selection did not pick.

    Every :class:`~seqattn_tfrs.SequentialAttentionEmbedding` in ``model`` must
    have completed its selection. Each keeps only its selected features' layers
    (lookups, embedding tables), in selection order; a dropped feature's output
    becomes zeros of its embedding width, which is exactly what its gate of 0
    produced, so every prediction is unchanged. Afterwards the model no longer
    reads the dropped features, and their variables, vocabularies and ops are
    gone from ``model.variables`` and from any SavedModel exported from it.

    The gated layers are pruned **in place**: subclassed models (every
    ``tfrs.models.Model``) cannot be cloned reliably, and this way every
    reference to a layer sees the pruned version. For a subclassed model the
    returned model is ``model`` itself; its cached ``fit``/``predict`` functions
    are reset so they retrace without the dropped tables. For a functional model
    the Keras graph still lists the dropped features as ``Input``\\ s, so a
    **new** functional ``tf.keras.Model`` is returned whose inputs are only the
    features it still needs; it shares every layer and weight with ``model``
    (which keeps working, ignoring the dropped inputs) and is not compiled.

    Every :class:`~seqattn_tfrs.SequentialAttentionWidth` layer gets its tables
    sliced to the columns of its selected blocks; its outputs keep their
    widths, the dropped columns being zeros. A feature with no kept block loses
    its table and, like a dropped feature, its ``Input`` in a functional model.

    An optimizer that trained ``model`` still holds slot variables for the
    dropped tables until it is replaced (e.g. by compiling again). Calling
    ``prune`` on an already pruned model changes nothing.

    Args:
      model: a Keras model holding one or more ``SequentialAttentionEmbedding``
        layers whose selection is complete.

    Returns:
      The pruned model: ``model`` itself, or for a functional model a new
      functional model that takes only the features it still needs.

    Raises:
      TypeError: ``model`` is not a ``tf.keras.Model``.
      ValueError: ``model`` holds no gated layer; a gated layer has not finished
        its selection (nothing is changed); a dropped feature's ``Input`` feeds a
        layer other than the gate in a functional model; a dropped feature's table
        is still reachable from ``model.variables`` after pruning, e.g. because
        the model also holds the per-feature layers as its own attribute (the
        layers are restored exactly as they were); or a dropped feature's
        embedding width cannot be determined.

    Example:
      >>> gate = SequentialAttentionEmbedding(
      ...     {"a": tf.keras.layers.Embedding(10, 4),
      ...      "b": tf.keras.layers.Embedding(1000, 8)}, num_selected=1)
      >>> inputs = {n: tf.keras.Input([], dtype=tf.int64, name=n) for n in "ab"}
      >>> out = gate(inputs)
      >>> model = tf.keras.Model(inputs, tf.concat([out["a"], out["b"]], axis=1))
      >>> _ = gate.attention_logits.assign([1.0, 0.0])  # force the pick of "a"
      >>> _ = gate._commit_round()
      >>> pruned = prune(model)
      >>> sorted(pruned.input)
      ['a']
      >>> gate.pruned_feature_widths
      {'b': 8}
      >>> pruned({"a": tf.constant([3])}).shape
      TensorShape([1, 12])
    """
    if not isinstance(model, tf.keras.Model):
        raise TypeError(
            f"`model` must be a tf.keras.Model, got {type(model).__name__}: {model!r}."
        )
    layers = find_gated_layers(model)
    if not layers:
        raise ValueError(
            f"`model` {model.name!r} holds no SequentialAttentionEmbedding layer; "
            "there is nothing to prune."
        )
    incomplete = [
        f"{layer.name!r} ({layer.progress()} selected: {list(layer.selected_features)})"
        for layer in layers
        if not layer.is_pruned and not layer.selection_complete
    ]
    if incomplete:
        raise ValueError(
            "Cannot prune before the selection is complete; gated layer(s) "
            + ", ".join(incomplete)
            + ". Train with SequentialAttentionCallback for its whole schedule "
            "first. Nothing was changed."
        )
    to_prune = [layer for layer in layers if not layer.is_pruned]
    to_slice = [layer for layer in find_width_layers(model) if not layer.is_pruned]
    graph_plan = (
        _plan_functional(model, layers, to_slice) if _is_functional(model) else None
    )

    # Everything that can fail without side effects happens before any change.
    plans = {id(layer): _plan_layer(layer) for layer in to_prune}
    saved = [
        (
            layer,
            layer._tables,
            layer._pruned_widths,
            list(getattr(layer, "_self_tracked_trackables", [])),
        )
        for layer in to_prune
    ]
    sliced: list[tuple[SequentialAttentionWidth, dict[str, Any]]] = []
    try:
        for layer in to_prune:
            plan = plans[id(layer)]
            layer._tables = {name: layer._tables[name] for name in plan["kept"]}
            layer._pruned_widths = dict(plan["widths"])
        for width_layer in to_slice:
            sliced.append((width_layer, width_layer._slice_tables()))
        result = model if graph_plan is None else _rebuild_functional(model, graph_plan)
        _check_dropped_unreachable(result, to_prune, plans)
        _check_wide_tables_unreachable(result, sliced)
    except BaseException:
        for width_layer, before in sliced:
            width_layer._restore(before)
        for layer, tables, widths, tracked in saved:
            layer._tables = tables
            layer._pruned_widths = widths
            if hasattr(layer, "_self_tracked_trackables"):
                layer._self_tracked_trackables[:] = tracked
        raise
    for layer in to_prune:
        # A plain attribute: not tracked, never saved; read by export and reports.
        object.__setattr__(layer, "_prune_report", plans[id(layer)]["report"])
    for width_layer, before in sliced:
        full = {
            name: variable_stats(table_variables(_final_embedding(table)))
            for name, table in before["tables"].items()
        }
        object.__setattr__(width_layer, "_tables_before", full)
    for module in [model, *model.submodules]:
        if isinstance(module, tf.keras.Model):
            module._reset_compile_cache()
    return result


# ------------------------------------------------------------------ sizes
def variable_stats(variables: Any) -> dict[str, int]:
    """Counts distinct variables, their parameters and their bytes.

    Args:
      variables: an iterable of ``tf.Variable``; duplicates are counted once.

    Returns:
      ``{"variables": count, "parameters": elements, "bytes": bytes}``.

    Example:
      >>> variable_stats([tf.Variable(tf.zeros([3, 2])), tf.Variable(1.0)])
      {'variables': 2, 'parameters': 7, 'bytes': 28}
    """
    seen: dict[Any, tf.Variable] = {}
    for variable in variables:
        seen.setdefault(variable.ref(), variable)
    parameters = 0
    size = 0
    for variable in seen.values():
        count = variable.shape.num_elements() or 0
        parameters += count
        size += count * variable.dtype.size
    return {"variables": len(seen), "parameters": parameters, "bytes": size}


# ------------------------------------------------------------- planning
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


def table_variables(layer: tf.keras.layers.Layer) -> list[tf.Variable]:
    """A per-feature layer's variables; none before it is built."""
    return list(layer.variables) if layer.built else []


def _plan_layer(layer: SequentialAttentionEmbedding) -> dict[str, Any]:
    kept = list(layer.selected_features)
    dropped = [name for name in layer.feature_names if name not in kept]
    widths = {name: _embedding_width(layer, name) for name in dropped}
    tables = layer._tables
    report = {
        "kept": {name: variable_stats(table_variables(tables[name])) for name in kept},
        "dropped": {
            name: {
                **variable_stats(table_variables(tables[name])),
                "width": widths[name],
            }
            for name in dropped
        },
    }
    return {
        "kept": kept,
        "dropped": dropped,
        "widths": widths,
        "report": report,
        "layers": {name: tables[name] for name in layer.feature_names},
    }


def _embedding_width(layer: SequentialAttentionEmbedding, name: str) -> int:
    """The last dimension of what feature ``name``'s layer outputs.

    Traces the per-feature layer on the input spec Keras recorded when it was
    first called (no variable changes, works for any layer), and falls back to
    ``output_dim`` of an ``Embedding`` that ends the layer if it was never called.
    """
    feature_layer = layer._tables[name]
    spec = getattr(feature_layer, "_saved_model_inputs_spec", None)
    if spec is None:
        gate_spec = getattr(layer, "_saved_model_inputs_spec", None)
        if isinstance(gate_spec, Mapping):
            spec = gate_spec.get(name)
    if spec is not None:
        traced = tf.function(
            lambda x: feature_layer(x, training=False), autograph=False
        ).get_concrete_function(spec)
        output = traced.structured_outputs
        width = output.shape[-1] if output.shape.rank == 2 else None
        if width is not None:
            return int(width)
        raise ValueError(
            f"{layer.name}: the layer of dropped feature {name!r} returns "
            f"{output.shape} for input {spec}; expected a [batch, d] tensor with a "
            "known d, which the pruned layer's zeros need."
        )
    last = feature_layer
    if isinstance(feature_layer, tf.keras.Sequential) and feature_layer.layers:
        last = feature_layer.layers[-1]
    if isinstance(last, tf.keras.layers.Embedding):
        return int(last.output_dim)
    raise ValueError(
        f"{layer.name}: cannot determine the embedding width of dropped feature "
        f"{name!r}: its layer {feature_layer.name!r} "
        f"({type(feature_layer).__name__}) was never called and does not end in an "
        "Embedding. Call the model once on example data before pruning."
    )


def _check_dropped_unreachable(
    model: tf.keras.Model,
    layers: list[SequentialAttentionEmbedding],
    plans: dict[int, dict[str, Any]],
) -> None:
    reachable = {variable.ref() for variable in model_variables(model)}
    for layer in layers:
        plan = plans[id(layer)]
        kept_refs = {
            variable.ref(): kept
            for kept in plan["kept"]
            for variable in table_variables(plan["layers"][kept])
        }
        for name in plan["dropped"]:
            for variable in table_variables(plan["layers"][name]):
                if variable.ref() not in reachable:
                    continue
                if variable.ref() in kept_refs:
                    raise ValueError(
                        f"Cannot drop feature {name!r} of layer {layer.name!r}: its "
                        f"variable {variable.name!r} is shared with kept feature "
                        f"{kept_refs[variable.ref()]!r}. The layers were left "
                        "unchanged."
                    )
                raise ValueError(
                    f"Cannot drop feature {name!r} of layer {layer.name!r}: model "
                    f"{model.name!r} still references its table (variable "
                    f"{variable.name!r} is in model.variables after pruning), e.g. "
                    "because the model also holds the per-feature layers as its own "
                    "attribute. Keep them only in the SequentialAttentionEmbedding. "
                    "The layers were left unchanged."
                )


def _check_wide_tables_unreachable(
    model: tf.keras.Model,
    sliced: list[tuple[SequentialAttentionWidth, dict[str, Any]]],
) -> None:
    reachable = {variable.ref() for variable in model_variables(model)}
    for layer, before in sliced:
        for name, table in before["tables"].items():
            for variable in table_variables(_final_embedding(table)):
                if variable.ref() in reachable:
                    raise ValueError(
                        f"Cannot slice the table of feature {name!r} of layer "
                        f"{layer.name!r}: model {model.name!r} still references its "
                        f"full-width variable {variable.name!r}, e.g. because the "
                        "model also holds the per-feature layer as its own attribute. "
                        "Keep it only in the SequentialAttentionWidth layer. The "
                        "layers were left unchanged."
                    )


# ----------------------------------------------------------- functional
def _is_functional(model: tf.keras.Model) -> bool:
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


def _plan_functional(
    model: tf.keras.Model,
    layers: list[SequentialAttentionEmbedding],
    width_layers: list[SequentialAttentionWidth],
) -> dict[str, Any]:
    """Which inputs the pruned graph still needs; every layer that reads a
    feature dict (a gate, a width layer) needs only its kept features."""
    kept = {
        id(layer): set(layer._tables if layer.is_pruned else layer.selected_features)
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


def _rebuild_functional(model: tf.keras.Model, plan: dict[str, Any]) -> tf.keras.Model:
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
