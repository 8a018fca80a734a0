"""The callback's check of which features are functions of others.

Runs the model forward (inference mode, metrics left as they were; a TFRS
model whose ``call`` leaves a gated layer out, through its loss) on up to
``max_rows`` rows of ``selection_data``, records each gated layer's raw inputs
and its tables' outputs, and stores in the layer which feature is a function
of which, rows grouped as each table groups them
(:mod:`seqattn_tfrs.core.dependence`). A selection round then passes over a
candidate that is a function of a selected feature. Each forward pass stops
once every gated layer has recorded its batch (the rest of the model does not
run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import tensorflow as tf

from seqattn_tfrs import gate_checks, heldout
from seqattn_tfrs.core import dependence
from seqattn_tfrs.gate import SequentialAttentionEmbedding

MAX_ROWS = 50_000


def check_functional_dependence(
    model: tf.keras.Model,
    layers: Sequence[SequentialAttentionEmbedding],
    dataset: tf.data.Dataset,
    max_rows: int = MAX_ROWS,
) -> dict[str, int]:
    """Finds, per layer, the features that are functions of others, and stores
    them in the layer. Returns the rows checked per layer name.

    Raises:
      RuntimeError: a layer was not called on ``dataset``'s batches.
    """
    if not layers:
        return {}
    metric_variables = [v for m in model.metrics for v in m.variables]
    saved = [v.numpy() for v in metric_variables]
    try:
        for forward in _forward_passes(model):
            try:
                records = dependence.record_batches(layers, dataset, forward, max_rows)
            except gate_checks.EmbeddingShapeError:
                raise  # the model's tables, not the data
            except (tf.errors.OpError, TypeError, ValueError) as error:
                # The first time `selection_data` goes through the model.
                raise ValueError(
                    f"`selection_data`'s batches could not go through model "
                    f"{model.name!r}: {type(error).__name__}: {error} Expected "
                    "batches like the training data's: the same keys, dtypes "
                    "and shapes."
                ) from error
            if all(records):
                break
    finally:
        for variable, value in zip(metric_variables, saved):
            variable.assign(value)
    checked = {}
    for layer, recorded in zip(layers, records):
        if not recorded:
            raise RuntimeError(
                f"{layer.name} was not called on `selection_data`'s batches, so "
                "the callback cannot check which of its features are functions "
                "of others; expected batches that the model's forward pass (or, "
                "for a TFRS model, its loss) feeds through the layer."
            )
        found, rows_checked = dependence.of_batches(layer.feature_names, recorded)
        layer.set_functional_dependence(found)
        checked[layer.name] = rows_checked
    return checked


def _forward_passes(model: tf.keras.Model) -> list:
    """The passes that may feed a batch through the gated layers, in order of
    preference: ``model(x)`` (inference, no metric, no loss, so it also runs in
    a distribution strategy's cross-replica context); for a TFRS model, the
    loss ``fit`` minimises, which also reaches layers its ``call`` leaves out
    (the candidate tower of a two-tower retrieval model)."""
    if not heldout.is_tfrs_model(model):
        return [
            lambda batch: model(
                tf.keras.utils.unpack_x_y_sample_weight(batch)[0], training=False
            )
        ]
    loss = heldout.loss_function(model)
    if type(model).call is tf.keras.Model.call:
        return [loss]

    def call(batch):  # a dict, or (features, labels) for the experimental ranker
        if not isinstance(batch, Mapping):
            batch = tf.keras.utils.unpack_x_y_sample_weight(batch)[0]
        return model(batch, training=False)

    return [call, loss]
