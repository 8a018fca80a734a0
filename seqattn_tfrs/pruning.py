"""Removes the unselected features' lookup layers and tables from a trained model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from seqattn_tfrs import (
    _compat,  # noqa: F401  (Keras 2 check)
    functional_pruning,
)
from seqattn_tfrs.discovery import find_gated_layers, find_width_layers
from seqattn_tfrs.gate import SequentialAttentionEmbedding
from seqattn_tfrs.sizes import model_variables, table_variables, variable_stats
from seqattn_tfrs.width import SequentialAttentionWidth, final_embedding


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
      >>> _ = gate.commit_round()
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
        functional_pruning.plan(model, layers, to_slice)
        if functional_pruning.is_functional(model)
        else None
    )

    # Everything that can fail without side effects happens before any change.
    plans = {id(layer): _plan_layer(layer) for layer in to_prune}
    undo: list[Any] = []
    sliced: list[tuple[SequentialAttentionWidth, dict[str, Any]]] = []
    try:
        for layer in to_prune:
            plan = plans[id(layer)]
            undo.append(
                layer.replace_tables(plan["kept"], plan["widths"], plan["report"])
            )
        for width_layer in to_slice:
            before = width_layer.embedding_layers
            undo.append(width_layer.slice_tables())
            sliced.append((width_layer, before))
        result = (
            model
            if graph_plan is None
            else functional_pruning.rebuild(model, graph_plan)
        )
        _check_dropped_unreachable(result, to_prune, plans)
        _check_wide_tables_unreachable(result, sliced)
    except BaseException:
        for restore in reversed(undo):
            restore()
        raise
    for module in [model, *model.submodules]:
        if isinstance(module, tf.keras.Model):
            module._reset_compile_cache()
    return result


# ------------------------------------------------------------- planning
def _plan_layer(layer: SequentialAttentionEmbedding) -> dict[str, Any]:
    kept = list(layer.selected_features)
    dropped = [name for name in layer.feature_names if name not in kept]
    widths = {name: embedding_width(layer, name) for name in dropped}
    tables = layer.embedding_layers
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


def embedding_width(layer: SequentialAttentionEmbedding, name: str) -> int:
    """The last dimension of what feature ``name``'s layer outputs.

    Traces the per-feature layer on the input spec Keras recorded when it was
    first called (no variable changes, works for any layer), and falls back to
    ``output_dim`` of an ``Embedding`` that ends the layer if it was never called.
    """
    feature_layer = layer.embedding_layers[name]
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
        for name, table in before.items():
            for variable in table_variables(final_embedding(table)):
                if variable.ref() in reachable:
                    raise ValueError(
                        f"Cannot slice the table of feature {name!r} of layer "
                        f"{layer.name!r}: model {model.name!r} still references its "
                        f"full-width variable {variable.name!r}, e.g. because the "
                        "model also holds the per-feature layer as its own attribute. "
                        "Keep it only in the SequentialAttentionWidth layer. The "
                        "layers were left unchanged."
                    )
