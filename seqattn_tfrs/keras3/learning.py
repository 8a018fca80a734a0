"""The gate's forward multiply and the backward pass where the logits learn.

Backend-agnostic (``keras.ops``): the features' embeddings are joined into one
``[B, D]`` tensor (PyTorch's ``custom_gradient`` takes one output) and passed
through a ``keras.ops.custom_gradient`` function together with the layer's
learning state. The backward pass computes, per example, the gradient of the
loss with respect to each gate, turns it into the logits' descent direction
(``seqattn_tfrs.core.signals``), applies the logit rule
(``seqattn_tfrs.core.logit_rule``) and returns the new state as the state's
"gradient"; the state variables are ``overwrite_with_gradient`` variables, so
the optimizer assigns them. Outside a selection round the new state equals
the old, and the signal's solve is skipped (``ops.cond``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from keras import backend, ops

from seqattn_tfrs.core import logit_rule, probe, signals
from seqattn_tfrs.core.modes import SELECTING, SETTLING

# The learning state's first entries that ``_learn`` updates; the held-out
# probe's state follows (``_probe_update``): the training side's sums, the
# held-out pass's totals and squares, the directions and their moments.
LEARNED = 13
PASS_SUMS = slice(LEARNED + 1, LEARNED + 3)
PROBE_AXES = LEARNED + 3

# Each feature's block of the probe's directions (and, squared, of their
# moments): a feature wider than this keeps its first, fixed direction.
AXIS_CAPACITY = 128


def row_keys(value: Any) -> Any:
    """Each row's raw value as a hash bucket of the held-out probe, int32
    ``[B]`` in ``[0, PROBE_BUCKETS)``: an integer id modulo the buckets; on
    the TensorFlow backend a string by ``tf.strings.to_hash_bucket_fast``
    (the buckets tf-keras's front-end gives it). None for an input the probe
    does not hash: floating-point or boolean values, several values a row,
    or strings on a backend that has none.

    Example:
      >>> ops.convert_to_numpy(row_keys(np.array([[3], [65539]]))).tolist()
      [3, 3]
      >>> row_keys(np.array([0.5, 1.5])) is None
      True
    """
    dtype = backend.standardize_dtype(value.dtype)
    strings = dtype == "string" and backend.backend() == "tensorflow"
    if not (strings or dtype.startswith(("int", "uint"))):
        return None
    shape = tuple(value.shape)
    if len(shape) == 2 and shape[1] == 1:
        value = ops.reshape(value, (-1,))
    elif len(shape) != 1:
        return None
    if strings:
        import tensorflow as tf

        keys = tf.strings.to_hash_bucket_fast(value, probe.PROBE_BUCKETS)
        return ops.cast(keys, "int32")
    return ops.cast(ops.mod(value, probe.PROBE_BUCKETS), "int32")


def probe_state(state: Callable[..., Any], n: int, pruned: bool) -> list:
    """The held-out probe's learning state for ``n`` features, made by
    ``state(name, shape, overwrite=True)``: the training side's sums per
    (feature, hash bucket), the held-out pass's ``sum(a)`` and ``sum(a^2)``,
    each feature's direction (a block of ``AXIS_CAPACITY``, first its fixed
    draw: :func:`seqattn_tfrs.core.probe.initial_axes`) and the second
    moments behind the next ones (a block of ``AXIS_CAPACITY`` squared). A
    pruned layer never learns: one float each, not 320 KiB a feature."""
    sums = 1 if pruned else n * probe.PROBE_BUCKETS
    cap = 1 if pruned else AXIS_CAPACITY
    variables = [
        state("probe_sums", (sums,), overwrite=True),
        state("probe_total", (n,), overwrite=True),
        state("probe_squares", (n,), overwrite=True),
        state("probe_axes", (n * cap,), overwrite=True),
        state("probe_moments", (n * cap * cap,), overwrite=True),
    ]
    variables[3].assign(probe.initial_axes([cap] * n).reshape(-1))
    return variables


def next_directions(learning_state: Sequence[Any], n: int) -> np.ndarray:
    """At a commit, the next settle's probe directions (flat, as
    ``probe_axes``) from the moments summed since the last one
    (:func:`seqattn_tfrs.core.probe.principal_axes`)."""
    axes, moments = (ops.convert_to_numpy(v) for v in learning_state[PROBE_AXES:])
    cap = axes.size // n
    return probe.principal_axes(
        moments.reshape(n, cap, cap), axes.reshape(n, cap)
    ).reshape(-1)


def gate_values(layer: Any) -> Any:
    """The layer's gates ``[N]``; the logits are read without a gradient."""
    return signals.gate_values(
        ops,
        ops.stop_gradient(ops.convert_to_tensor(layer.attention_logits)),
        ops.convert_to_tensor(layer.selected_mask),
        ops.convert_to_tensor(layer.gate_mode),
        layer.complete_flag(),
    )


def gate_and_learn(
    layer: Any,
    values: Sequence[Any],
    values_to_group: bool = True,
    keys: Sequence[Any | None] | None = None,
) -> list[Any]:
    """Multiplies each ``[B, d_i]`` embedding by its gate; learns on backward.

    Args:
      layer: the ``SequentialAttentionEmbedding`` (its variables and options).
      values: the features' embeddings, in the layer's feature order.
      values_to_group: whether any raw input has values to group rows by
        (integers, strings). Where none has (floats, booleans: the tf-keras
        front-end's probe could hash nothing), training passes that settle
        after a commit asking for it (``settled_test_active``) run the
        settled model's score test, whose z then ranks the later picks that
        help (:func:`seqattn_tfrs.core.selection.commit_round`), and the
        probe's pass sums the same test on held-out rows, as on tf-keras.
      keys: per feature, its rows' hash buckets ``[B]`` (int32, in
        ``[0, PROBE_BUCKETS)``) or None where it has no values to hash: the
        held-out probe's rows (:mod:`seqattn_tfrs.core.probe`). Training
        passes that settle after a commit asking for it sum the probe's
        training side; the probe's own pass (``layer.probe_pass``) tests
        held-out rows against those sums.

    Returns:
      The gated embeddings, in the same order.
    """
    widths = [int(v.shape[-1]) for v in values]
    # While the logits learn, at most num_selected - 1 features are selected.
    most = len(widths) if layer.num_selected is None else layer.num_selected - 1
    nuisance_width = max(1, sum(sorted(widths, reverse=True)[:most]))
    segments = np.zeros((sum(widths), len(widths)), np.float32)
    segments[np.arange(sum(widths)), np.repeat(np.arange(len(widths)), widths)] = 1.0
    segments = ops.convert_to_tensor(segments)
    dtype = values[0].dtype
    joined = ops.concatenate([ops.cast(v, dtype) for v in values], axis=1)
    gates = ops.stop_gradient(gate_values(layer))
    selected = ops.stop_gradient(ops.convert_to_tensor(layer.selected_mask))
    mode = ops.convert_to_tensor(layer.gate_mode)
    complete = layer.complete_flag()
    learns = ops.logical_not(complete)
    if not layer.heldout_pass:
        learns = ops.logical_and(learns, ops.equal(layer.learn_from_fit_batches, 1))
    selecting = ops.stop_gradient(
        ops.cast(ops.logical_and(learns, ops.equal(mode, SELECTING)), "float32")
    )
    settling = ops.stop_gradient(
        ops.cast(ops.logical_and(learns, ops.equal(mode, SETTLING)), "float32")
    )
    options = layer.options
    # Held-out passes may run the score test (the first round's, for every
    # layer); training passes for `entry_z` or the gain per byte, and, in a
    # layer with no values to group, while a settle after a pick asks for it.
    settled_test = not (
        values_to_group or layer.heldout_pass or options.tracks_evidence
    )
    score_test = options.tracks_evidence or layer.heldout_pass or settled_test
    testing = settling
    if settled_test:
        asked = ops.logical_and(
            ops.logical_and(ops.logical_not(complete), ops.equal(mode, SETTLING)),
            ops.equal(ops.convert_to_tensor(layer.settled_test_active), 1),
        )
        testing = ops.maximum(settling, ops.stop_gradient(ops.cast(asked, "float32")))
    probe_update = _probe_update(layer, widths, keys or [None] * len(widths), complete)

    @ops.custom_gradient
    def gate(x, *state):
        expanded = ops.matmul(segments, gates)  # [D]
        output = x * ops.cast(expanded, x.dtype)

        def backward(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            upstream32 = ops.cast(upstream, "float32")
            probed = list(state[LEARNED:])
            if probe_update is not None:
                probed = probe_update(upstream32, probed)
            if layer.probe_pass and not values_to_group:
                # No values to hash: the held-out score test, a = -<g, e - mean>.
                rows = ops.cast(ops.shape(upstream32)[0], "float32")
                centred = signals.centred(ops, ops.cast(x, "float32"))
                a = -ops.matmul(upstream32 * centred, segments) * rows  # [B, N]
                probed[1] = probed[1] + ops.sum(a, axis=0)
                probed[2] = probed[2] + ops.sum(a * a, axis=0)
            if layer.probe_pass or layer.pair_pass:  # the probe's passes: no more
                new_state = list(state[:LEARNED]) + probed
                return (ops.zeros_like(upstream), *new_state)
            columns = upstream32 * ops.cast(x, "float32")
            per_example = ops.matmul(columns, segments)  # [B, N]
            new_state = (
                _learn(
                    per_example,
                    columns,
                    lambda: upstream32 * signals.centred(ops, ops.cast(x, "float32")),
                    lambda: ops.matmul(ops.square(upstream32), segments),
                    segments,
                    gates,
                    selected,
                    selecting,
                    testing,
                    state,
                    options,
                    nuisance_width,
                    score_test,
                    layer.heldout_pass,
                )
                + probed
            )
            return (upstream * ops.cast(expanded, upstream.dtype), *new_state)

        return output, backward

    state = [ops.convert_to_tensor(v) for v in layer.learning_state]
    gated = gate(joined, *state)
    # Slices, not ops.split: PyTorch's split reads its offsets back from a
    # tensor, which a symbolic build on the "meta" device cannot.
    ends = np.cumsum(widths).tolist()
    return [
        ops.cast(gated[:, end - width : end], v.dtype)
        for end, width, v in zip(ends, widths, values)
    ]


def _probe_update(
    layer: Any, widths: Sequence[int], keys: Sequence, complete: Any
) -> Callable[[Any, list], list] | None:
    """The held-out probe's update of its state ``[sums, total, squares,
    axes, moments]`` from a backward pass's upstream gradients ``[B, D]``;
    None where no feature has values to hash.

    Each keyed feature's upstream gradient is projected on its direction (its
    block of ``axes``, :func:`seqattn_tfrs.core.probe.principal_axes`; a
    feature wider than ``AXIS_CAPACITY`` on its fixed one), less its batch
    mean. A training pass that settles after a commit asking for it
    (``settled_test_active``) adds the projections to the sums at their
    features' hash buckets (the training side); with held-out data (the logits
    not learning from training batches), a training pass before the selection
    completes, outside the rounds' selecting parts, adds the second moments
    of its first ``AXIS_ROWS`` rows' gradients, from which the commit sets the
    next directions; the probe's held-out pass (``layer.probe_pass``,
    candidates' gates at 0) adds, per keyed feature, ``sum(a)`` and
    ``sum(a^2)`` of ``a = p * S[bucket] / m`` (the per-row gradient, the loss
    being a batch mean, times the training side's sum, over the batch's ``m``
    rows of that bucket: :mod:`seqattn_tfrs.core.probe`); the pair test's pass
    (``layer.pair_pass``, after the probe's) writes its batch's ``[B, K]``
    per-row gradients, then their bucket keys, at the start of the sums, for
    the host to read (the sums are spent by then); a held-out logit step
    leaves all as they were.
    """
    keyed = [i for i, k in enumerate(keys) if k is not None]
    if not keyed:
        return None
    count, offsets = len(widths), np.cumsum([0, *widths])
    cap = AXIS_CAPACITY
    learned = [i for i in keyed if widths[i] <= cap]  # directions from moments
    # Per column: its feature's column of the projections [D, K], and where
    # its direction's entry is read: the axes (index, mask) or a fixed value.
    columns = np.zeros((int(offsets[-1]), len(keyed)), np.float32)
    index = np.zeros(int(offsets[-1]), np.int32)
    from_axes = np.zeros(int(offsets[-1]), np.float32)
    fixed = np.zeros(int(offsets[-1]), np.float32)
    for k, i in enumerate(keyed):
        span = slice(offsets[i], offsets[i + 1])
        columns[span, k] = 1.0
        if i in learned:
            index[span] = i * cap + np.arange(widths[i])
            from_axes[span] = 1.0
        else:
            fixed[span] = probe.probe_directions(widths, [i])[:, 0]
    # Each learned feature's w x w entries of its block of the moments.
    moment_slots = np.concatenate(
        [np.zeros(0, np.int64)]
        + [
            i * cap * cap + (np.arange(widths[i])[:, None] * cap + np.arange(widths[i]))
            for i in learned
        ],
        axis=None,
    ).astype(np.int32)
    to_features = np.zeros((len(keyed), count), np.float32)
    to_features[np.arange(len(keyed)), keyed] = 1.0
    # As tensors: on PyTorch with CUDA a numpy operand beside a device tensor
    # hands the tensor to numpy, which cannot read device memory.
    columns, to_features, index, from_axes, fixed, moment_slots = map(
        ops.convert_to_tensor,
        (columns, to_features, index, from_axes, fixed, moment_slots),
    )
    slots = ops.stack(
        [ops.cast(keys[i], "int32") + i * probe.PROBE_BUCKETS for i in keyed], axis=1
    )  # [B, K]
    mode = ops.convert_to_tensor(layer.gate_mode)
    settling = ops.equal(mode, SETTLING)
    asked = ops.equal(ops.convert_to_tensor(layer.settled_test_active), 1)
    open_round = ops.logical_and(ops.logical_not(complete), settling)
    summing = ops.stop_gradient(ops.cast(ops.logical_and(open_round, asked), "float32"))
    measuring = ops.logical_and(  # with held-out data: the probe runs only then
        ops.logical_and(ops.logical_not(complete), ops.not_equal(mode, SELECTING)),
        ops.equal(ops.convert_to_tensor(layer.learn_from_fit_batches), 0),
    )
    measuring = ops.stop_gradient(ops.cast(measuring, "float32"))
    size = count * probe.PROBE_BUCKETS

    def projections(upstream32, axes):
        direction = ops.take(axes, index) * from_axes + fixed  # [D]
        projected = ops.matmul(upstream32 * direction, columns)  # [B, K]
        return projected - ops.mean(projected, axis=0, keepdims=True)

    def moments_added(upstream32, moments):
        rows = upstream32[: probe.AXIS_ROWS]
        blocks = [
            ops.reshape(ops.matmul(ops.transpose(g), g), (-1,))
            for g in (rows[:, offsets[i] : offsets[i + 1]] for i in learned)
        ]
        added = ops.segment_sum(
            ops.concatenate(blocks), moment_slots, num_segments=moments.shape[0]
        )
        return moments + added

    def update(upstream32, state):
        sums, total, squares, axes, moments = state
        if layer.probe_pass:
            rows = ops.cast(ops.shape(upstream32)[0], "float32")
            # Each row's step over the batch's rows of its value (core.probe).
            flat = ops.reshape(slots, (-1,))
            counts = ops.segment_sum(
                ops.ones(ops.shape(flat), "float32"), flat, num_segments=size
            )
            steps = ops.take(sums, slots) / ops.take(counts, slots)
            a = projections(upstream32, axes) * rows * steps
            total = total + ops.matmul(ops.sum(a, axis=0), to_features)
            squares = squares + ops.matmul(ops.sum(a * a, axis=0), to_features)
        elif layer.pair_pass:
            rows = ops.cast(ops.shape(upstream32)[0], "float32")
            keyed_keys = ops.stack([ops.cast(keys[i], "float32") for i in keyed], 1)
            block = ops.concatenate(
                [
                    ops.reshape(projections(upstream32, axes) * rows, (-1,)),
                    ops.reshape(keyed_keys, (-1,)),
                ]
            )
            sums = ops.slice_update(sums, [0], block)
        elif not layer.heldout_pass:
            sums = ops.cond(
                summing > 0,
                lambda: (
                    sums
                    + ops.segment_sum(
                        ops.reshape(projections(upstream32, axes), (-1,)),
                        ops.reshape(slots, (-1,)),
                        num_segments=size,
                    )
                ),
                lambda: sums,
            )
            if learned:
                moments = ops.cond(
                    measuring > 0,
                    lambda: moments_added(upstream32, moments),
                    lambda: moments,
                )
        return [sums, total, squares, axes, moments]

    return update


def _learn(
    per_example,
    columns,
    centred_columns,
    upstream_norms,
    segments,
    gates,
    selected,
    selecting,
    testing,
    state,
    options,
    nuisance_width,
    score_test,
    heldout_pass,
):
    """The learning state after one backward pass (unchanged unless learning).

    ``centred_columns()`` builds the column gradients of each embedding less
    its batch mean, for the score test (:func:`seqattn_tfrs.core.signals.
    centred`), and ``upstream_norms()`` the squared norms ``[B, N]`` of each
    feature's upstream gradient, for its null-model variance
    (:func:`seqattn_tfrs.core.signals.information_sums`); they are called only
    while ``testing`` (a settling step whose score test collects), and only
    where ``score_test`` (static) allows the score test at all. On held-out
    passes (static ``heldout_pass``) the same sums of the gate gradients are
    kept while the logits learn: whether any candidate still helps.
    """
    logits, momentum, second, steps, nonfinite = state[:5]
    partial = options.attention_signal == "partial"
    column_mask = columns_of_selected = None
    if partial or score_test:
        column_mask = ops.matmul(segments, selected)  # [D], 1 on selected columns
        columns_of_selected = ops.sum(column_mask)

    def selected_columns(all_columns):
        """The selected features' columns (the partial signal's nuisance)."""
        nuisance = all_columns * column_mask
        if nuisance_width < int(segments.shape[0]):
            # The selected columns first (a static width: at most the widest
            # tables that can be selected while the logits learn), so the
            # ridge solve is [K, K] rather than [D, D].
            first = ops.argsort(-column_mask)[:nuisance_width]
            nuisance = ops.take(nuisance, first, axis=1)
        return nuisance

    descent_nuisance = selected_columns(columns) if partial else None

    def signal():
        return signals.logit_descent(
            ops,
            per_example,
            gates,
            selected,
            descent_nuisance,
            options.attention_signal,
            columns_of_selected,
        )

    grad = ops.cond(selecting > 0, signal, lambda: ops.zeros_like(gates))
    finite = ops.cast(ops.all(ops.isfinite(grad)), "float32")
    go = selecting * finite
    step = steps + go
    delta, new_momentum, new_second = logit_rule.normalized_momentum_step(
        ops,
        ops.where(ops.isfinite(grad), grad, ops.zeros_like(grad)),
        1.0 - selected,
        momentum,
        second,
        ops.maximum(step, 1.0),
        learning_rate=options.attention_learning_rate,
        beta1=options.attention_momentum,
    )
    keep = 1.0 - go
    new = [
        logits + go * delta,
        go * new_momentum + keep * momentum,
        go * new_second + keep * second,
        step,
        nonfinite + selecting * (1.0 - finite),
    ]

    def sums(with_information):
        centred = centred_columns()
        scores = ops.matmul(centred, segments)
        total, squares = signals.evidence_sums(
            ops,
            scores,
            selected_columns(centred) if partial else None,
            columns_of_selected,
        )
        if not with_information:
            return ops.stack([total, squares])
        norms, projections = signals.information_sums(ops, scores, upstream_norms())
        return ops.stack([total, squares, norms, projections])

    def added(old, when, with_information=False):
        if when is None:
            return list(old)
        evidence = ops.cond(
            when > 0,
            lambda: sums(with_information),
            lambda: ops.zeros((len(old), ops.shape(gates)[0])),
        )
        return [value + evidence[i] for i, value in enumerate(old)]

    score = added(state[5:7] + state[9:11], testing if score_test else None, True)
    new += score[:2]
    new += added(state[7:9], selecting if heldout_pass else None)
    new += score[2:]
    new.append(state[11] + selecting if heldout_pass else state[11])
    # The held-out batches the score test summed (its rows read twice in a
    # round inflate its z as they do the held-out z); a held-out pass always
    # allows the test.
    new.append(state[12] + testing if heldout_pass else state[12])
    return new
