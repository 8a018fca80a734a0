"""The callback's held-out pass of the probe (:mod:`seqattn_tfrs.core.probe`).

Before each commit after the first (by count, with ``selection_data``),
whose settle summed the probe's training side, one pass over up to
``max_rows`` rows of ``selection_data`` with the candidates' gates at 0
(settling) takes, per row, the loss's gradient with respect to each
feature's gated embedding, projects it on the feature's fixed direction
(less its batch mean) and tests it against the training side's sums. In a
layer where no feature has values to hash (floats, booleans), whose settle
ran the score test on its training rows instead, the pass runs that test on
the held-out rows, on the model as it stands after the round's selecting
part: per row, the gradient times the embedding less its batch mean (the
gate's gradient at 0). The pass is one ``tf.function`` per layer,
traced at its first use and reused in later rounds. The model's weights,
gates and metrics are left as they were.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from seqattn_tfrs import heldout, tf_ops
from seqattn_tfrs.core import modes, pairs, probe
from seqattn_tfrs.gate import SequentialAttentionEmbedding

MAX_ROWS = 50_000


class HeldoutProbe:
    """The held-out probe's pass for one gated layer of ``model``.

    Args:
      model: the model ``fit`` trains.
      layer: a gated layer of ``model`` whose features are raw inputs.
    """

    def __init__(
        self, model: tf.keras.Model, layer: SequentialAttentionEmbedding
    ) -> None:
        self.model = model
        self.layer = layer
        self._loss_of = heldout.loss_function(model)
        self._keyed: list[str] | None = None  # known once traced
        self._step = tf.function(self._replicated_sums, reduce_retracing=True)
        # Listed at the first pass (after training steps: the compiled metrics
        # exist), then kept: tf-keras walks every tracked attribute of every
        # layer to list them (8-13 ms a pass with 26 vocabularies of 1,000).
        self._metric_variables: list[tf.Variable] | None = None
        # The last pass's rows, for the pair test: keyed feature names, and
        # per row their bucket keys and projected gradients ([rows, keyed]).
        self._rows: tuple[list[str], np.ndarray, np.ndarray] | None = None

    def scores(
        self, dataset: tf.data.Dataset, max_rows: int = MAX_ROWS
    ) -> dict[str, float] | None:
        """The probe's z of each unselected feature with raw values to hash
        (integers, strings; not floats), or None where there is none or the
        settle did not sum the training side; in a layer where no feature
        has values to hash, each candidate's held-out score test z (positive:
        raising its gate from 0 lowers the held-out loss).

        Raises:
          RuntimeError: the layer was not called on ``dataset``'s batches.
        """
        layer = self.layer
        names = list(layer.feature_names)
        candidates = [n for n in names if n not in layer.selected_features]
        if not layer.probe_summed or not candidates:
            return None
        layer.selection_state.gather_probe_sums()  # every replica's rows
        if self._metric_variables is None:
            metrics = self.model.metrics
            self._metric_variables = [v for m in metrics for v in m.variables]
        metric_variables = self._metric_variables
        saved = [v.numpy() for v in metric_variables]
        mode = int(layer.gate_mode.numpy())
        total = np.zeros(len(names))
        squares = np.zeros(len(names))
        rows = 0
        keys, projected = [], []
        self._rows = None
        try:
            layer.set_gate_mode(modes.SETTLING)  # the candidates' gates at 0
            with layer.capturing_outputs():
                # One trace for every batch size (a last, smaller batch would
                # trace again: 0.2-0.3 s); a lookup once traced.
                self._step.get_concrete_function(dataset.element_spec)
            scored = self._keyed == []  # no feature has values to hash
            if self._keyed and not any(
                n in self._keyed for n in candidates
            ):  # known from the trace: no candidate has values to hash
                return None
            for batch in dataset:
                with layer.capturing_outputs():
                    sums = self._step(batch)
                batch_total, batch_squares, batch_rows, batch_keys, batch_projected = (
                    sums
                )
                if self._keyed is None:
                    raise RuntimeError(
                        f"{layer.name} was not called on `selection_data`'s "
                        "batches, so the callback cannot run its held-out probe; "
                        "expected batches the model's forward pass feeds through "
                        "the layer."
                    )
                if not scored and not any(n in self._keyed for n in candidates):
                    return None
                # Without values to hash, every feature's held-out score test.
                keyed = (
                    list(range(len(names)))
                    if scored
                    else [names.index(n) for n in self._keyed]
                )
                total[keyed] += batch_total.numpy()
                squares[keyed] += batch_squares.numpy()
                rows += int(batch_rows)
                keys.append(batch_keys.numpy())
                projected.append(batch_projected.numpy())
                if rows >= max_rows:
                    break
        finally:
            layer.set_gate_mode(mode)
            for variable, value in zip(metric_variables, saved):
                variable.assign(value)
        z = probe.probe_z(total, squares)
        if scored:
            return {name: float(z[names.index(name)]) for name in candidates}
        if keys:  # none where the dataset had no batch
            self._rows = (
                list(self._keyed),
                np.concatenate(keys),
                np.concatenate(projected),
            )
        return {
            name: float(z[names.index(name)])
            for name in candidates
            if name in self._keyed
        }

    def pair_scores(
        self, candidate_pairs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], float]:
        """The held-out pair test's z (:func:`seqattn_tfrs.core.pairs.pair_z`)
        of each of ``candidate_pairs`` whose features both have raw values to hash,
        from the rows of the last :meth:`scores` pass.

        Raises:
          RuntimeError: no pass ran since the last settle summed the probe.
        """
        if self._keyed == []:  # no feature has values to hash: no pair
            return {}
        if self._rows is None:
            raise RuntimeError(
                f"{self.layer.name}: the pair test reads the held-out probe's "
                "rows; expected a `scores` pass before it, got none."
            )
        keyed, keys, projected = self._rows
        return pairs.named_pair_scores(keyed, keys, projected, candidate_pairs)

    def _replicated_sums(self, batch):
        """:meth:`_batch_sums` in replica context, as a training step runs
        (the loss updates the metrics, replica-local variables under a
        strategy). Every replica takes the whole batch; the first's sums are
        returned (one replica without a strategy)."""
        strategy = self.model.distribute_strategy
        sums = strategy.run(self._batch_sums, args=(batch,))
        return tf.nest.map_structure(
            lambda value: strategy.experimental_local_results(value)[0], sums
        )

    def _batch_sums(self, batch):
        """Per feature with raw values to hash, ``sum(a)`` and ``sum(a^2)``
        over the batch's rows, and the rows (traced)."""
        layer = self.layer
        names = list(layer.feature_names)
        capture = layer.probe_capture
        # Only the gated outputs: no variable's gradient, no gate backward.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            capture.tape = tape
            loss = self._loss_of(batch)
        if not capture.outputs:  # the model did not call the layer
            return _no_rows()
        self._keyed = [n for n in names if capture.buckets.get(n) is not None]
        if not self._keyed:
            return self._score_sums(tape, loss)
        outputs = [capture.outputs[n] for n in self._keyed]
        grads = tape.gradient(loss, outputs)
        # A feature the loss does not read has a zero gradient.
        grads = [
            tf.zeros_like(o, tf.float32) if g is None else tf.cast(g, tf.float32)
            for o, g in zip(outputs, grads)
        ]
        keyed = [names.index(n) for n in self._keyed]
        widths = [capture.outputs[n].shape[1] for n in names]
        axes = layer.selection_state.probe_axes_for(widths)  # the training side's
        rows = tf.shape(grads[0])[0]
        # The loss is a batch mean: per-row gradients on one scale.
        joined = tf.concat(grads, axis=1)
        projected = tf_ops.project_on_axes(joined, axes, keyed, widths)  # [B, K]
        projected *= tf.cast(rows, tf.float32)
        # Less its batch mean, as the training side: a mean that every row
        # shares would add to every bucket's product, a term that grows with
        # the rows per value (docs/generated_quality.md, "Session 19").
        projected -= tf.reduce_mean(projected, axis=0)
        keys = tf.stack([capture.buckets[n] for n in self._keyed], axis=1)
        slots = probe.probe_slots(keys, keyed)  # [B, K]
        # Each row's step is its value's training sum over the batch's rows
        # of that value (core.probe: a value most rows share must not weigh
        # in by its count).
        steps = tf.gather(tf.reshape(layer.probe_sums, [-1]), slots)
        a = projected * steps / tf_ops.value_counts(slots)
        sums = tf.reduce_sum(a, axis=0), tf.reduce_sum(a * a, axis=0), rows
        return (*sums, keys, projected)

    def _score_sums(self, tape, loss):
        """Where no feature has values to hash: per feature, ``sum(a)`` and
        ``sum(a^2)`` of the held-out score test's per-row ``a = -<g, e -
        mean(e)>``, minus the gate's gradient at 0 (as Keras 3's pass: its
        ``probe_z`` is positive where raising the gate lowers the loss), and
        the rows."""
        capture = self.layer.probe_capture
        names = list(self.layer.feature_names)
        outputs = [capture.outputs[n] for n in names]
        grads = tape.gradient(loss, outputs)
        columns = []
        for name, grad in zip(names, grads):
            embedding = tf.cast(capture.embeddings[name], tf.float32)
            embedding -= tf.reduce_mean(embedding, axis=0)
            g = tf.zeros_like(embedding) if grad is None else tf.cast(grad, tf.float32)
            columns.append(-tf.reduce_sum(g * embedding, axis=1))
        a = tf.stack(columns, axis=1)
        rows = tf.shape(a)[0]
        a *= tf.cast(rows, tf.float32)
        empty = tf.zeros([0, 0])
        return (
            tf.reduce_sum(a, axis=0),
            tf.reduce_sum(a * a, axis=0),
            rows,
            tf.cast(empty, tf.int64),
            empty,
        )


def _no_rows():
    """The pass's outputs for a batch with no feature to hash."""
    empty = tf.zeros([0, 0])
    return tf.zeros([0]), tf.zeros([0]), tf.constant(0), tf.cast(empty, tf.int64), empty
