"""Held-out logit steps: the gates' backward pass on a held-out batch.

The attention logits may learn from held-out batches only (``selection_data``):
the loss on such a batch is differentiated with respect to the gates' learning
state alone, whose "gradients" are their new values (see ``learning.py``), and
those are assigned. The model's other weights and metrics are untouched. Taking
a gradient is the one thing ``keras.ops`` does not offer, so this module holds
one small function per backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import keras
import numpy as np


def one_pass(data: Any) -> Iterator[Any]:
    """``data``'s batches once, as numpy structures.

    ``data``: a ``tf.data.Dataset`` or any re-iterable of batches (a list, a
    ``keras.utils.PyDataset``), each ``(x, y)`` or ``(x, y, sample_weight)``.
    """
    if hasattr(data, "as_numpy_iterator"):
        source: Iterable[Any] = data.as_numpy_iterator()
    elif isinstance(data, keras.utils.PyDataset):
        source = (data[i] for i in range(len(data)))
    else:
        source = data
    for batch in source:
        yield keras.tree.map_structure(np.asarray, batch)


def batches(data: Any) -> Iterator[Any]:
    """Cycles forever over ``data``'s batches (see :func:`one_pass`)."""
    while True:
        empty = True
        for batch in one_pass(data):
            empty = False
            yield batch
        if empty:
            raise ValueError(
                "`selection_data` yielded no batch; expected held-out batches."
            )


def make_step(model: keras.Model, layers: list[Any]) -> Callable[[Any], None]:
    """A function that runs one held-out logit step of every gate on a batch.

    Raises:
      NotImplementedError: the backend is not jax, tensorflow or torch.
    """
    backend = keras.backend.backend()
    makers = {"jax": _jax_step, "tensorflow": _tf_step, "torch": _torch_step}
    if backend not in makers:
        raise NotImplementedError(
            "Held-out selection steps support the jax, tensorflow and torch "
            f"backends; got {backend!r}."
        )
    compiled = makers[backend](model, [v for g in layers for v in g.learning_state])

    def step(batch: Any) -> None:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(tuple(batch))
        for layer in layers:  # read while tracing: the logits learn regardless
            layer.heldout_pass = True
        try:
            compiled(x, y, sample_weight)
        finally:
            for layer in layers:
                layer.heldout_pass = False

    return step


def _jax_step(model: keras.Model, state: list[Any]) -> Callable[..., None]:
    import jax

    trainable = model.trainable_variables
    position = {id(v): i for i, v in enumerate(trainable)}
    index = [position[id(v)] for v in state]

    def loss_of(state_values, trainable_values, non_trainable, metrics, x, y, sw):
        values = list(trainable_values)
        for i, value in zip(index, state_values):
            values[i] = value
        y_pred, _ = model.stateless_call(values, non_trainable, x, training=False)
        loss, _ = model.stateless_compute_loss(
            values,
            non_trainable,
            metrics,
            x=x,
            y=y,
            y_pred=y_pred,
            sample_weight=sw,
            training=False,
        )
        return loss

    new_state = jax.jit(jax.grad(loss_of))

    def compiled(x: Any, y: Any, sample_weight: Any) -> None:
        model.jax_state_sync()  # fit's latest values into the variables
        new = new_state(
            [v.value for v in state],
            [v.value for v in trainable],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in model.metrics_variables],
            x,
            y,
            sample_weight,
        )
        for variable, value in zip(state, new):
            variable.assign(value)

    return compiled


def _tf_step(model: keras.Model, state: list[Any]) -> Callable[..., None]:
    import tensorflow as tf

    metrics = model.metrics_variables

    @tf.function(reduce_retracing=True)
    def compiled(x: Any, y: Any, sample_weight: Any) -> None:
        saved = [tf.identity(v.value) for v in metrics]
        with tf.GradientTape() as tape:
            y_pred = model(x, training=False)
            loss = model.compute_loss(x, y, y_pred, sample_weight, training=False)
        for variable, value in zip(state, tape.gradient(loss, state)):
            variable.assign(value)
        for variable, value in zip(metrics, saved):
            variable.assign(value)

    return compiled


def _torch_step(model: keras.Model, state: list[Any]) -> Callable[..., None]:
    import torch

    metrics = model.metrics_variables

    def compiled(x: Any, y: Any, sample_weight: Any) -> None:
        saved = [keras.ops.convert_to_numpy(v) for v in metrics]
        with torch.enable_grad():
            y_pred = model(x, training=False)
            loss = model.compute_loss(x, y, y_pred, sample_weight, training=False)
            new = torch.autograd.grad(loss, [v.value for v in state])
        with torch.no_grad():
            for variable, value in zip(state, new):
                variable.assign(value)
            for variable, value in zip(metrics, saved):
                variable.assign(value)

    return compiled
