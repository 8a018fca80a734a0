"""Rebuilds a trained functional Keras 3 model with only the kept tables."""

from __future__ import annotations

from typing import Any

import keras

from seqattn_tfrs.keras3 import tables
from seqattn_tfrs.keras3.callback import find_gated_layers
from seqattn_tfrs.keras3.gate import SequentialAttentionEmbedding


def pruned_gate(gate: SequentialAttentionEmbedding) -> SequentialAttentionEmbedding:
    """A copy of ``gate`` holding only its selected features' tables.

    The kept per-feature layers are shared with ``gate`` (a
    ``DistributedEmbedding`` is rebuilt with the kept features and the tables
    they use; its weights are copied once the new layer is built, see
    :func:`prune`). A dropped feature outputs zeros of its width, which is what
    its gate of 0 produced, so predictions do not change.

    Raises:
      ValueError: the selection is not complete, or a dropped feature's width
        is unknown (the layer was never called).
    """
    if not gate.selection_complete:
        raise ValueError(
            f"Layer {gate.name!r} has not finished its selection (selected "
            f"{list(gate.selected_features)}); expected a complete selection - fit "
            "with SequentialAttentionCallback for the whole schedule first."
        )
    kept = list(gate.selected_features)
    dropped = [name for name in gate.feature_names if name not in kept]
    unknown = [name for name in dropped if name not in gate.output_widths]
    if unknown:
        raise ValueError(
            f"Layer {gate.name!r}: the widths of {unknown} are unknown; expected a "
            "layer that was called on data."
        )
    if gate.is_distributed:
        embeddings = tables.kept_distributed(gate.embeddings, kept)
    else:
        embeddings = {name: gate.embeddings[name] for name in kept}
    config = gate.get_config()
    for key in ("embeddings", "pruned_feature_widths", "feature_names"):
        config.pop(key)
    if config["num_selected"] is not None:
        config["num_selected"] = len(kept)
    return SequentialAttentionEmbedding(
        embeddings,
        pruned_feature_widths={name: gate.output_widths[name] for name in dropped},
        feature_names=gate.feature_names,
        **config,
    )


def prune(model: keras.Model) -> keras.Model:
    """A new functional model that holds and reads only the kept features.

    Every :class:`SequentialAttentionEmbedding` in ``model`` must have finished
    its selection. Each is replaced by :func:`pruned_gate`, and the new model's
    inputs are ``model``'s minus the dropped features, so their tables and
    inputs are gone from it and from any SavedModel exported from it. Every
    other layer is shared with ``model`` (weights included); the new model is
    not compiled. Its predictions equal ``model``'s, and its gates keep the
    selection order and ``gate_history()``.

    Args:
      model: a functional ``keras.Model`` whose inputs are a dict keyed by
        feature name (as ``keras.Input(..., name=feature)`` gives).

    Returns:
      The pruned functional model.

    Raises:
      TypeError: ``model`` is not a functional Keras 3 model with dict inputs.
      ValueError: it holds no gated layer, or a selection is not complete.
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "_run_through_graph"):
        raise TypeError(
            "`prune` rebuilds functional Keras 3 models, got "
            f"{type(model).__name__}; for a subclassed model, replace each gate "
            "with `seqattn_tfrs.keras3.pruning.pruned_gate(gate)` yourself."
        )
    if not isinstance(model.input, dict):
        raise TypeError(
            "`prune` needs a model whose inputs are a dict keyed by feature name, "
            f"got inputs {model.input!r}."
        )
    gates = find_gated_layers(model)
    if not gates:
        raise ValueError(
            f"Model {model.name!r} holds no SequentialAttentionEmbedding to prune."
        )
    replacements = {id(gate): pruned_gate(gate) for gate in gates}
    dropped = {
        name for gate in replacements.values() for name in gate.pruned_feature_widths
    }
    new_gates = {id(gate) for gate in replacements.values()}

    def clone(layer: Any) -> Any:
        return replacements.get(id(layer), layer)

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        if id(layer) in new_gates:
            features = {k: v for k, v in args[0].items() if k not in dropped}
            return layer(features, *args[1:], **kwargs)
        return layer(*args, **kwargs)

    inputs = {
        key: keras.Input(batch_shape=tensor.shape, dtype=tensor.dtype, name=key)
        for key, tensor in model.input.items()
    }
    clone_of = keras.models.clone_model(
        model, input_tensors=inputs, clone_function=clone, call_function=call
    )
    pruned = keras.Model(
        {k: v for k, v in inputs.items() if k not in dropped},
        clone_of.outputs if len(clone_of.outputs) > 1 else clone_of.output,
        name=model.name,
    )
    for old, new in zip(gates, (replacements[id(g)] for g in gates)):
        if new.is_distributed:
            tables.copy_distributed_tables(old.embeddings, new.embeddings)
        # The gate values before each round, for `gate_history` and the
        # export's selection.json (the rounds are as many: same features,
        # the same count or budget); copies, as JAX's fit donates buffers.
        for name in ("round_gates", "rounds_done"):
            getattr(new, name).assign(keras.ops.convert_to_numpy(getattr(old, name)))
    return pruned
