"""The gate's backward pass, where the attention logits learn.

The gated embeddings are ``e_i * g_i``. Their custom gradient hands the model
the usual upstream gradient times the gate and, while a selection round is on,
also computes per-example gate gradients, turns them into the logits' descent
direction (:mod:`seqattn_tfrs.core.signals`) and applies the logits' own
update rule (:class:`~seqattn_tfrs.selection_state.SelectionState`). The
backward pass runs only when a gradient is taken - in ``fit`` or the
callback's held-out step - never in ``predict``, ``evaluate`` or serving.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from seqattn_tfrs.core import signals
from seqattn_tfrs.selection_state import SelectionState
from seqattn_tfrs.tf_ops import TF


def gate_and_learn(
    state: SelectionState,
    hook: tf.Tensor,
    embeddings: Sequence[tf.Tensor],
    gates: tf.Tensor,
    *,
    always_learn: bool = False,
) -> list[tf.Tensor]:
    """Multiplies each ``[B, d]`` embedding by its gate; the backward pass learns.

    Args:
      state: the layer's selection state.
      hook: the layer's gradient hook (a trainable scalar that is always 0 with
        a 0 gradient, so every backward pass reaches the gate).
      embeddings: per feature, in the layer's order, ``[B, d]`` tensors in the
        compute dtype.
      gates: ``[N]`` float32 gate values.
      always_learn: learn even when the logits are told to learn only from
        held-out batches (set while the callback traces its held-out step).

    Returns:
      The gated embeddings, in the embeddings' dtypes.
    """
    signal = state.options.attention_signal

    @tf.custom_gradient
    def gate(hook, *values):
        outputs = [v * tf.cast(gates[i], v.dtype) for i, v in enumerate(values)]

        def backward(*upstream):
            # d loss / d (scale on column j of feature i), per example, float32
            # whatever the compute dtype.
            learn = (
                tf.constant(True)
                if always_learn
                else tf.equal(state.learn_from_fit_batches, 1)
            )

            def gradients(centered=False):
                """Per feature ``[B, d]`` column gradients, and per example the
                gate gradients ``[B, N]``; built only inside the conds below,
                so steps in which nothing learns never compute them. With
                ``centered``, of each embedding less its batch mean (a shift
                the model's own biases can make carries no information)."""

                def centre(v):
                    v = tf.cast(v, tf.float32)
                    return v - tf.reduce_mean(v, axis=0) if centered else v

                columns = [
                    tf.reshape(
                        tf.cast(u, tf.float32) * centre(v),
                        [tf.shape(v)[0], -1],
                    )
                    for u, v in zip(upstream, values)
                ]
                per_example = tf.stack(
                    [tf.reduce_sum(c, axis=1) for c in columns], axis=1
                )
                nuisance = (
                    _selected_columns(state, columns) if signal == "partial" else None
                )
                return per_example, nuisance

            def descent():
                per_example, nuisance = gradients()
                return signals.logit_descent(
                    TF, per_example, gates, state.selected_mask, nuisance, signal
                )

            # Computed only while the logits learn: outside selection rounds the
            # backward pass costs no more than a plain multiply's.
            direction = tf.cond(
                tf.logical_and(state.learning(), learn),
                descent,
                lambda: tf.zeros_like(gates),
            )
            update = [state.apply_logit_gradient(direction, learn)]
            if state.options.entry_z is not None:
                # The score test: with the candidates' gates at 0 (settling),
                # does raising one lower the loss of the selected model?
                def evidence():
                    return tf.stack(
                        signals.evidence_sums(TF, *gradients(centered=True))
                    )

                sums = tf.cond(  # computed only while settling
                    tf.logical_and(state.settling(), learn),
                    evidence,
                    lambda: tf.zeros([2, len(values)]),
                )
                # Outside the cond: under a strategy the sums across replicas
                # synchronise, which control flow must not contain.
                update += state.add_evidence(sums[0], sums[1])
            with tf.control_dependencies(update):
                return [tf.zeros_like(hook)] + [
                    tf.identity(u * tf.cast(gates[i], u.dtype))
                    for i, u in enumerate(upstream)
                ]

        return outputs, backward

    return list(gate(hook, *embeddings))


def _selected_columns(state: SelectionState, columns: Sequence[tf.Tensor]) -> tf.Tensor:
    """The selected features' per-example column gradients ``[B, D]``."""
    widths = tf.stack([tf.shape(c)[1] for c in columns])
    selected = tf.where(tf.repeat(state.selected_mask, widths) > 0)
    return tf.gather(tf.concat(columns, axis=1), selected[:, 0], axis=1)
