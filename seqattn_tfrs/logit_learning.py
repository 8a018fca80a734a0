"""The gate's backward pass, where the attention logits learn.

The gated embeddings are ``e_i * g_i``. Their custom gradient hands the model
the usual upstream gradient times the gate and, while a selection round is on,
also computes per-example gate gradients, turns them into the logits' descent
direction (:mod:`seqattn_tfrs.core.signals`) and applies the logits' own
update rule (:class:`~seqattn_tfrs.selection_state.SelectionState`). The
backward pass runs only when a gradient is taken - in ``fit`` or the
callback's held-out step - never in ``predict``, ``evaluate`` or serving.

Every training step runs this graph and every ``fit`` traces it, so its cost
is measured (``docs/fit_cost.md``). Training steps multiply each embedding by
its gate (most of them do not learn, and per-feature multiplies move the least
data); the columns the logits learn from are joined only inside the conds in
which they learn. The callback's held-out step, which always learns, joins the
embeddings into one ``[B, D]`` tensor first, so that its conds capture two
tensors instead of two per feature (a shorter trace). Both compute the same
numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from seqattn_tfrs import tf_ops
from seqattn_tfrs.core import probe, signals
from seqattn_tfrs.selection_state import SelectionState
from seqattn_tfrs.tf_ops import TF


def gate_and_learn(
    state: SelectionState,
    hook: tf.Tensor,
    embeddings: Sequence[tf.Tensor],
    gates: tf.Tensor,
    *,
    always_learn: bool = False,
    raw_inputs: Sequence[object] | None = None,
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
      raw_inputs: per feature, the layer's raw input, from which training
        steps that settle sum the held-out probe's training side
        (:mod:`seqattn_tfrs.core.probe`); None for no probe. Where no
        feature has values to hash (floats, booleans), those steps run the
        settled model's score test instead, which then ranks the later
        picks (:func:`seqattn_tfrs.core.selection.commit_round`).

    Returns:
      The gated embeddings, in the embeddings' dtypes.
    """
    widths = [v.shape[1] for v in embeddings]
    static = all(isinstance(w, int) for w in widths)
    if always_learn and static and len({v.dtype for v in embeddings}) == 1:
        return _gate_joined(state, hook, embeddings, widths, gates, always_learn)
    probe_update = None
    settled_test = False
    if raw_inputs is not None:
        state.values_to_hash = any(tf_ops.has_row_keys(raw) for raw in raw_inputs)
    if raw_inputs is not None and static and state.probe_supported and not always_learn:
        probe_update = _probe_update(state, raw_inputs, widths)
        settled_test = not state.options.tracks_evidence and not state.values_to_hash
    return _gate_each(
        state,
        hook,
        embeddings,
        widths if static else None,
        gates,
        always_learn,
        probe_update,
        settled_test,
    )


def _gate_joined(state, hook, embeddings, widths, gates, always_learn):
    """One ``[B, D]`` multiply by the columns' gates, for the held-out step.

    Every held-out step learns, so joining the embeddings costs nothing extra
    there, and its conds capture two tensors instead of two per feature: a
    shorter trace (docs/fit_cost.md).
    """
    owner = np.repeat(np.arange(len(embeddings)), widths)  # each column's feature

    @tf.custom_gradient
    def gate(hook, joined):
        column_gates = tf.gather(gates, owner)
        output = joined * _as(column_gates, joined.dtype)

        def backward(upstream):
            def gradients(centered=False):
                # d loss / d (scale on column j), per example, float32.
                columns = _float32(upstream) * _centre(joined, centered)
                return (
                    tf_ops.per_feature_sums(columns, widths),
                    columns,
                    tf.constant(owner, tf.int32),
                    lambda: tf_ops.per_feature_sums(
                        tf.square(_float32(upstream)), widths
                    ),
                )

            update = _learn(state, gates, gradients, always_learn)
            with tf.control_dependencies(update):
                after = tf.identity(column_gates)
            return tf.zeros_like(hook), upstream * _as(after, upstream.dtype)

        return output, backward

    gated = gate(hook, tf.concat(embeddings, axis=1))
    return tf.split(gated, widths, axis=1)


def _gate_each(
    state, hook, embeddings, widths, gates, always_learn, probe_update, settled_test
):
    """One multiply per feature, for training steps (and embeddings of several
    dtypes or of widths unknown when traced).

    Most training steps do not learn (warm-up, settling, fine-tune, or logits
    that learn only from held-out data), and per-feature multiplies move a
    third of the data a joined multiply does (no concat and split forward or
    backward); the joined columns are built only inside the conds that learn.
    ``widths`` are the static widths, or None when some are unknown.
    """
    count = len(embeddings)

    @tf.custom_gradient
    def gate(hook, *values):
        outputs = _scaled(values, tf.unstack(gates, num=count))

        def backward(*upstream):
            def gradients(centered=False):
                # Two joins (float32, so several dtypes join too), one multiply.
                joined = tf.concat([_float32(u) for u in upstream], axis=1)
                embedded = tf.concat([_float32(v) for v in values], axis=1)
                columns = joined * _centre(embedded, centered)
                sizes = widths or [tf.shape(v)[1] for v in values]
                owner = (
                    tf.constant(np.repeat(np.arange(count), widths), tf.int32)
                    if widths
                    else tf.repeat(tf.range(count), tf.stack(sizes))
                )
                return (
                    tf_ops.per_feature_sums(columns, sizes),
                    columns,
                    owner,
                    lambda: tf_ops.per_feature_sums(tf.square(joined), sizes),
                )

            update = _learn(state, gates, gradients, always_learn, settled_test)
            if probe_update is not None:
                update.append(probe_update(upstream))
            with tf.control_dependencies(update):
                after = tf.unstack(tf.identity(gates), num=count)
            return [tf.zeros_like(hook)] + _scaled(upstream, after)

        return outputs, backward

    return list(gate(hook, *embeddings))


def _probe_update(
    state: SelectionState, raw_inputs: Sequence[object], widths: Sequence[int]
) -> Callable[[Sequence[tf.Tensor]], tf.Tensor] | None:
    """The ops that add a step's probe sums and direction moments, from the
    upstream gradients; None when no feature has raw values to hash. A
    settling step that sums the probe joins the keyed features' upstream
    gradients, projects each on its direction (``state.probe_axes_for``) less
    the batch mean, and scatter-adds them at their hash buckets; a step
    before the selection completes, outside the rounds' selecting parts, adds
    the second moments of its first ``AXIS_ROWS`` rows' gradients, which give the
    next settle's directions (:func:`seqattn_tfrs.core.probe.principal_axes`).
    Both are computed only inside their conds."""
    keyed = [i for i, raw in enumerate(raw_inputs) if tf_ops.has_row_keys(raw)]
    if not keyed:
        return None
    state.prepare_probe_axes(widths)  # the moments' shape, before any step
    width = max(widths)
    block = np.arange(width * width, dtype=np.int32)
    moment_slots = np.concatenate([i * width * width + block for i in keyed])

    def add(upstream: Sequence[tf.Tensor]) -> tf.Tensor:
        def accumulate() -> tf.Operation:
            joined = tf.concat([_float32(upstream[i]) for i in keyed], axis=1)
            axes = state.probe_axes_for(widths)  # read only where it sums
            projected = tf_ops.project_on_axes(joined, axes, keyed, widths)  # [B, K]
            projected -= tf.reduce_mean(projected, axis=0)
            keys = tf.stack(
                [tf_ops.row_keys(raw_inputs[i], probe.PROBE_BUCKETS) for i in keyed],
                axis=1,
            )
            slots = probe.probe_slots(keys, keyed)  # [B, K]
            return state.add_probe(tf.reshape(projected, [-1]), tf.reshape(slots, [-1]))

        def moments() -> tf.Operation:
            grads = [tf.reshape(_float32(upstream[i]), [-1, widths[i]]) for i in keyed]
            values = tf_ops.second_moments(grads, width, probe.AXIS_ROWS)
            return state.add_moments(tf.reshape(values, [-1]), moment_slots)

        return tf.group(
            _when(state.probing(), accumulate),
            _when(state.measuring_axes(), moments),
        )

    return add


def _learn(
    state: SelectionState,
    gates: tf.Tensor,
    gradients: Callable[..., tuple],
    always_learn: bool,
    settled_test: bool = False,
) -> list:
    """The backward pass's logit update and ``entry_z`` evidence, as ops.

    With ``settled_test`` (a training trace whose layer has no feature with
    values to hash, under the held-out probe), the steps that would sum the
    probe's training side (settling after a pick) run the score test,
    whether or not the logits learn from training batches.

    ``gradients(centered)`` builds, per example, the gate gradients ``[B, N]``,
    the column gradients ``[B, D]``, each column's feature ``[D]`` (with
    ``centered``, of each embedding less its batch mean: a shift the model's
    own biases can make carries no evidence) and a function that builds the
    squared norms ``[B, N]`` of each feature's upstream gradient; it is called
    only inside conds, so steps in which nothing learns never compute it.
    """
    signal = state.options.attention_signal
    learn = (
        tf.constant(True) if always_learn else tf.equal(state.learn_from_fit_batches, 1)
    )

    def signals_in(centered=False):
        per_example, columns, owner, norms = gradients(centered)
        nuisance = None
        if signal == "partial":  # the selected features' columns
            selected = tf.where(tf.gather(state.selected_mask, owner) > 0)
            nuisance = tf.gather(columns, selected[:, 0], axis=1)
        return per_example, nuisance, norms

    def descent():
        per_example, nuisance, _ = signals_in()
        return signals.logit_descent(
            TF, per_example, gates, state.selected_mask, nuisance, signal
        )

    def evidence():
        per_example, nuisance, _ = signals_in(centered=True)
        return tf.stack(signals.evidence_sums(TF, per_example, nuisance))

    def score_test():  # the sums and the factors of the null model's variance
        per_example, nuisance, norms = signals_in(centered=True)
        return tf.stack(
            signals.evidence_sums(TF, per_example, nuisance)
            + signals.information_sums(TF, per_example, norms())
        )

    learning = tf.logical_and(state.learning(), learn)
    # Held-out traces may run the score test (the first round's, for every
    # layer); training traces for `entry_z` or the gain per byte, and after the
    # first pick where the probe can hash no feature (`settled_test`).
    entry_test = state.options.tracks_evidence or always_learn
    if tf.distribute.has_strategy():
        # Under a strategy the logit update and the evidence sums synchronise
        # replicas (their variables aggregate), which control flow must not
        # contain: they run on every step (no-ops outside selection rounds)
        # and only what feeds them is computed in conds.
        direction = tf.cond(learning, descent, lambda: tf.zeros_like(gates))
        update = [state.apply_logit_gradient(direction, learn)]
        if always_learn:  # held-out: does any candidate still help?
            sums = tf.cond(learning, evidence, lambda: tf.zeros([2, gates.shape[0]]))
            update += state.add_heldout_evidence(sums[0], sums[1], learning)
        if entry_test:
            testing = tf.logical_and(state.settling(), learn)
            sums = tf.cond(  # computed only while settling
                testing, score_test, lambda: tf.zeros([4, gates.shape[0]])
            )
            counted = testing if always_learn else False  # held-out batches
            update += state.add_evidence(*tf.unstack(sums, num=4), counted)
        return update
    # Without one, steps in which the logits do not learn (warm-up, settling,
    # fine-tune, learning from held-out data only) skip the update altogether
    # (docs/fit_cost.md).
    update = [_when(learning, lambda: state.apply_logit_gradient(descent()))]
    if always_learn:  # held-out: does any candidate still help?
        update.append(
            _when(
                learning,
                lambda: tf.group(state.add_heldout_evidence(*tf.unstack(evidence()))),
            )
        )
    if entry_test or settled_test:
        # The score test: with the candidates' gates at 0 (settling), does
        # raising one lower the loss of the selected model?
        testing = tf.logical_and(state.settling(), learn) if entry_test else False
        if settled_test:  # the steps that sum the probe's training side
            testing = tf.logical_or(testing, state.probing())
        update.append(
            _when(
                testing,
                lambda: tf.group(
                    state.add_evidence(*tf.unstack(score_test()), float(always_learn))
                ),
            )
        )
    return update


def _when(condition: tf.Tensor, effect: Callable[[], tf.Operation]) -> tf.Tensor:
    """Runs the ops ``effect()`` makes only where ``condition`` holds."""

    def run() -> tf.Tensor:
        with tf.control_dependencies([effect()]):
            return tf.constant(True)

    return tf.cond(condition, run, lambda: tf.constant(False))


def _as(value: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    return value if value.dtype == dtype else tf.cast(value, dtype)


def _centre(value: tf.Tensor, centered: bool) -> tf.Tensor:
    value = _float32(value)
    return signals.centred(TF, value) if centered else value


def _float32(value: tf.Tensor) -> tf.Tensor:
    return _as(value, tf.float32)


def _scaled(values: Sequence[tf.Tensor], gates: Sequence[tf.Tensor]) -> list:
    """``values[i] * gates[i]``, each in its value's dtype."""
    return [v * _as(g, v.dtype) for v, g in zip(values, gates)]
