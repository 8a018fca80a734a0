"""Field-selection baselines for the selection-quality benchmark.

Each ranks the fields of a ``DCNRankingModel``-shaped problem; none is part of
the library. Shapes follow the methods compared in the ERASE benchmark (Jia et
al., KDD 2024), written here from their descriptions:

* permutation importance: the rise in validation log loss of a trained model
  when one field's column is shuffled;
* SFS-style sensitivity: at initialisation, the size of the gradient of the
  training loss with respect to an all-ones mask on each field's embedding,
  summed over one pass of training batches;
* LPFS-style polarizing gates: each field's embedding is scaled by
  ``x**2 / (x**2 + eps)`` with a learnable ``x`` under an L1 penalty while
  ``eps`` decays geometrically, so gates polarise to 0 or 1; rank by ``|x|``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf


class FieldScale(tf.keras.layers.Layer):
    """Multiplies a field's embedding by a learnable scalar ``x`` (initially 1).

    With ``epsilon`` (a shared variable) the factor is the smoothed-L0 gate
    ``x**2 / (x**2 + epsilon)`` and ``penalty * |x|`` is added to the loss.
    """

    def __init__(
        self, epsilon: tf.Variable | None = None, penalty: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.penalty = penalty

    def build(self, input_shape: Any) -> None:
        self.x = self.add_weight(name="x", shape=(), initializer="ones")

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        if self.epsilon is None:
            return inputs * self.x
        if self.penalty:
            self.add_loss(self.penalty * tf.abs(self.x))
        squared = tf.square(self.x)
        return inputs * (squared / (squared + self.epsilon))


def scaled_layers(
    make_layer: Callable[[str], tf.keras.layers.Layer],
    names: Sequence[str],
    epsilon: tf.Variable | None = None,
    penalty: float = 0.0,
) -> tuple[dict[str, tf.keras.layers.Layer], dict[str, FieldScale]]:
    """Per-field layers each followed by a :class:`FieldScale`, and the scales."""
    scales = {name: FieldScale(epsilon, penalty) for name in names}
    layers = {
        name: tf.keras.Sequential([make_layer(name), scales[name]]) for name in names
    }
    return layers, scales


def rank(scores: Mapping[str, float]) -> list[str]:
    """Field names by decreasing score (ties: the earlier field first)."""
    names = list(scores)
    values = np.array([scores[name] for name in names])
    return [names[i] for i in np.argsort(-values, kind="stable")]


def permutation_importance(
    model: tf.keras.Model,
    columns: Mapping[str, Any],
    make_dataset: Callable[[Mapping[str, Any]], tf.data.Dataset],
    names: Sequence[str],
    seed: int,
    repeats: int = 1,
) -> dict[str, float]:
    """Rise in log loss on ``columns`` when each field alone is shuffled.

    Args:
      model: a trained model whose ``evaluate`` reports ``log_loss``.
      columns: validation columns (tensors, ragged allowed), with the label.
      make_dataset: turns columns into batches for ``evaluate``.
      names: the fields to score.
      seed: seeds the shuffles.
      repeats: shuffles per field, averaged. With 1 (the benchmarks' stored
        rows) every field is shuffled by the same row order; with more, each
        field and repeat draws its own, as scikit-learn's
        ``permutation_importance`` does (``n_repeats``, default 5).
    """

    def log_loss(cols: Mapping[str, Any]) -> float:
        return model.evaluate(make_dataset(cols), return_dict=True, verbose=0)[
            "log_loss"
        ]

    if repeats < 1:
        raise ValueError(f"`repeats` must be at least 1, got {repeats}.")
    base = log_loss(columns)
    rows = int(next(iter(columns.values())).shape[0])
    rng = np.random.default_rng(seed)
    if repeats == 1:
        order = rng.permutation(rows)
        return {
            name: log_loss({**columns, name: tf.gather(columns[name], order)}) - base
            for name in names
        }

    def shuffled(name: str) -> float:
        order = rng.permutation(rows)
        return log_loss({**columns, name: tf.gather(columns[name], order)})

    return {
        name: float(np.mean([shuffled(name) for _ in range(repeats)])) - base
        for name in names
    }


def mask_sensitivity(
    model: tf.keras.Model, scales: Mapping[str, FieldScale], data: tf.data.Dataset
) -> dict[str, float]:
    """|sum over batches of d loss / d mask| per field, for an untrained model."""
    names = list(scales)

    @tf.function
    def gradient(batch):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(batch, training=True)
        return tape.gradient(loss, [scales[name].x for name in names])

    total = np.zeros(len(names))
    for batch in data:
        total += np.array([g.numpy() for g in gradient(batch)])
    return dict(zip(names, np.abs(total).tolist()))


class EpsilonDecay(tf.keras.callbacks.Callback):
    """Decays ``epsilon`` geometrically from ``start`` to ``end`` over ``steps``."""

    def __init__(
        self, epsilon: tf.Variable, start: float, end: float, steps: int
    ) -> None:
        super().__init__()
        self.epsilon, self.start, self.end = epsilon, start, end
        self.steps = max(steps - 1, 1)
        self.step = 0

    def on_train_batch_begin(self, batch, logs=None):
        fraction = min(self.step / self.steps, 1.0)
        self.epsilon.assign(self.start * (self.end / self.start) ** fraction)
        self.step += 1
