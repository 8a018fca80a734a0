"""The callback's held-out logit step: the logits learn on unseen batches.

One forward and backward pass of a held-out batch down to the gates; the
gates' backward pass updates the logits (the model's weights never learn from
these batches) and the model's metrics are left as they were.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import tensorflow as tf

from seqattn_tfrs.core import batch_checks
from seqattn_tfrs.discovery import find_feature_gates, find_width_layers, keras_layers
from seqattn_tfrs.gate import SequentialAttentionEmbedding


def is_tfrs_model(model: tf.keras.Model) -> bool:
    """Whether ``model`` is a ``tfrs.models.Model`` (without importing TFRS)."""
    tfrs = sys.modules.get("tensorflow_recommenders")
    return tfrs is not None and isinstance(model, tfrs.models.Model)


def loss_function(model: tf.keras.Model) -> Callable[[Any], tf.Tensor]:
    """The model's loss on one batch as ``fit`` sees it, in inference mode.

    A TFRS retrieval task's factorized metrics (``FactorizedTopK``, which
    scores every candidate) are left out: TFRS computes them when
    ``compute_loss`` runs with ``training=False``, and the held-out passes
    need the loss alone (they restore the metrics' variables anyway).
    """
    if is_tfrs_model(model):
        tasks = _retrieval_tasks(model)

        def tfrs_loss_of(batch):
            with _without_factorized_metrics(tasks):
                return model.compute_loss(batch, training=False)

        return tfrs_loss_of

    def loss_of(batch):
        x, y, sample_weight = tf.keras.utils.unpack_x_y_sample_weight(batch)
        y_pred = model(x, training=False)
        return model.compute_loss(x, y, y_pred, sample_weight)

    return loss_of


def _retrieval_tasks(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    """The ``tfrs.tasks.Retrieval`` layers of ``model``."""
    tfrs = sys.modules.get("tensorflow_recommenders")
    if tfrs is None:
        return []
    return [x for x in keras_layers(model) if isinstance(x, tfrs.tasks.Retrieval)]


@contextlib.contextmanager
def _without_factorized_metrics(tasks: Sequence[tf.keras.layers.Layer]):
    """Within it (a pass, or the trace of a ``tf.function``) the tasks update
    no factorized metric."""
    saved = [task.factorized_metrics for task in tasks]
    for task in tasks:
        task.factorized_metrics = []
    try:
        yield
    finally:
        for task, metrics in zip(tasks, saved):
            task.factorized_metrics = metrics


def make_heldout_step(
    model: tf.keras.Model, layers: Sequence[SequentialAttentionEmbedding]
) -> Callable[[Any], None]:
    """A ``tf.function`` that takes a distributed iterator and runs one step."""
    metric_variables = [v for m in model.metrics for v in m.variables]
    loss_of = loss_function(model)

    def replica_step(batch):
        saved = [tf.identity(v) for v in metric_variables]
        with contextlib.ExitStack() as stack:
            for layer in layers:  # traced into the graph: the gates learn here
                stack.enter_context(layer.heldout_step())
            with tf.GradientTape() as tape:
                loss = loss_of(batch)
            hooks = [layer.gradient_hook for layer in layers]
            tape.gradient(loss, hooks)  # runs the gates' backward: logits learn
        for variable, value in zip(metric_variables, saved):
            variable.assign(value)

    strategy = model.distribute_strategy

    @tf.function
    def step(iterator):
        strategy.run(replica_step, args=(next(iterator),))

    return step


def pass_batches(dataset: tf.data.Dataset) -> int | None:
    """The batches in one pass of ``dataset``: its cardinality, or, where
    tf.data cannot tell (a filter, say), a count over one pass of its
    pipeline (no model step); None for an endless dataset.

    Example:
      >>> pass_batches(tf.data.Dataset.range(10).batch(4))
      3
      >>> pass_batches(tf.data.Dataset.range(10).filter(lambda v: v < 5).batch(2))
      3
      >>> pass_batches(tf.data.Dataset.range(10).repeat()) is None
      True
    """
    batches = int(dataset.cardinality())
    if batches == tf.data.INFINITE_CARDINALITY:
        return None
    if batches == tf.data.UNKNOWN_CARDINALITY:
        batches = int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
    return batches


def check_selection_data(
    model: tf.keras.Model,
    dataset: tf.data.Dataset,
    layers: Sequence[SequentialAttentionEmbedding],
) -> None:
    """Checks ``selection_data``'s first element before any training.

    It must be non-empty, shaped like what ``fit`` takes for this model (what
    a TFRS model's ``compute_loss`` takes: one dict of features with the label
    inside, or ``(features, labels)`` for
    ``tfrs.experimental.models.Ranking``; an ``(x, y)`` or
    ``(x, y, sample_weight)`` tuple otherwise), hold every feature the gated
    layers read (in a dict at any depth: the experimental ranking model's
    ``sparse_features``), and be batched.

    Raises:
      ValueError: with the problem and the fix.
    """
    element = next(iter(dataset.take(1)), None)
    if element is None:
        raise ValueError(
            "`selection_data` is empty; expected a tf.data.Dataset of held-out "
            "batches in the training data's format (e.g. "
            "`validation_ds.batch(batch_size)`)."
        )
    if is_tfrs_model(model):
        # Not under a distribution strategy, whose cross-replica context a
        # loss (its metrics' updates) may refuse; the held-out step runs it
        # per replica.
        if not isinstance(element, Mapping) and not tf.distribute.has_strategy():
            _check_tfrs_loss_takes(model, element)
        features = element
    else:
        features = batch_checks.check_labelled(
            element,
            model.name,
            "`tf.data.Dataset.from_tensor_slices((features, labels)).batch(n)`",
        )
    batch_checks.check_features(features, _raw_features(model, layers), rank=_rank)


def _rank(value: Any) -> int | None:
    shape = getattr(value, "shape", None)
    return None if shape is None else shape.rank


def _check_tfrs_loss_takes(model: tf.keras.Model, element: Any) -> None:
    """Raises where a TFRS model's ``compute_loss`` cannot take ``element``, a
    batch that is not a dict (its metrics are left as they were)."""
    saved = [(v, v.numpy()) for m in model.metrics for v in m.variables]
    try:
        loss_function(model)(element)
    except Exception as error:  # the user's compute_loss: any error it raises
        raise ValueError(
            f"`selection_data` yields {batch_checks.describe(element)}, which the "
            f"compute_loss of model {model.name!r} (a tfrs.models.Model, whose "
            "compute_loss receives each batch as it is) could not take: "
            f"{type(error).__name__}: {error}. Expected batches like the "
            "training data's: for most TFRS models one dict of features with the "
            "label inside, not an (x, y) tuple."
        ) from error
    finally:
        for variable, value in saved:
            variable.assign(value)


def _raw_features(
    model: tf.keras.Model, layers: Sequence[SequentialAttentionEmbedding]
) -> set[str]:
    """The raw features the gated layers read: a width layer's inner block
    gate reads column blocks, so its width layer's features count instead."""
    names = {
        name
        for layer in find_feature_gates(model, list(layers))
        for name in layer.embedding_layers
    }
    width_layers = find_width_layers(model)
    names.update(name for width in width_layers for name in width.embedding_layers)
    return names
