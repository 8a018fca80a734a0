"""The Sequential Attention gate over a recommender's per-feature embeddings.

The layer is the Keras anatomy only: it validates its arguments, makes its
variables in ``build`` (:mod:`seqattn_tfrs.selection_state`), gates in
``call`` (whose backward pass, :mod:`seqattn_tfrs.logit_learning`, is where
the logits learn) and describes itself in ``get_config``. The decisions are
the shared algorithm in :mod:`seqattn_tfrs.core`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from seqattn_tfrs import (
    _compat,  # noqa: F401  (Keras 2 check)
    budget,
    gate_checks,
    logit_learning,
    tf_ops,
)
from seqattn_tfrs.core import evidence, modes, probe, selection
from seqattn_tfrs.core.modes import DENSE, SELECTING, SETTLING
from seqattn_tfrs.core.options import ATTENTION_SIGNALS, AttentionOptions
from seqattn_tfrs.probe_capture import ProbeCapture
from seqattn_tfrs.selection_state import SelectionState

__all__ = [
    "ATTENTION_SIGNALS",
    "DENSE",
    "SELECTING",
    "SETTLING",
    "SequentialAttentionEmbedding",
]


@tf.keras.utils.register_keras_serializable(package="seqattn_tfrs")
class SequentialAttentionEmbedding(tf.keras.layers.Layer):
    """Wraps per-feature embedding layers with Sequential Attention gates.

    Each feature's layer maps that feature's raw input to a ``[batch, d]``
    embedding; the layer multiplies it by a scalar gate and returns a dict of
    gated embeddings keyed by feature name, in the constructor's order. While
    :class:`~seqattn_tfrs.SequentialAttentionCallback` selects, the gate of a
    selected feature is 1 and the others share a softmax over their attention
    logits; once ``num_selected`` features are selected the others are exactly 0,
    so the model no longer depends on them and :func:`~seqattn_tfrs.prune` can
    drop their tables without changing a prediction.

    The attention logits are not trainable weights: the user's optimizer never
    sees them. They learn with this package's own update rule (see
    :mod:`seqattn_tfrs.core.logit_rule`), from the training batches, or only from
    held-out batches when the callback is given ``selection_data``.

    Args:
      embeddings: mapping from feature name to a Keras layer that maps that
        feature's input to a ``[batch, d]`` tensor, e.g.
        ``Sequential([StringLookup(...), Embedding(...)])``.
      num_selected: how many features to select, 1 <= num_selected <= number of
        features. Pass exactly one of ``num_selected`` and ``budget_bytes``.
      budget_bytes: select by memory instead of by count: each round picks among
        the unselected features whose table still fits in what is left of this
        many bytes, and the selection ends when none fits or, by default,
        when none that fits helps (``entry_z``); the kept tables' bytes never
        exceed it. A feature's cost is the bytes of all variables of
        its layer (see :mod:`seqattn_tfrs.budget`). The number of rounds is at
        most ``ceil(m / selections_per_round)``, ``m`` the most features the
        budget can hold (every feature when some cost is unknown before the
        layers are built); the callback's schedule reserves that many.
      feature_bytes: optional cost per feature (all or some of them) used
        instead of the measured bytes of its layer, e.g. for a layer whose
        variables are not what serving stores.
      budget_rule: how a budgeted round ranks the features that fit:
        ``"attention_per_byte"`` (default: the largest softmax weight per byte,
        logit minus log bytes) or ``"attention"`` (the largest logit). A
        round's logits spread over a few tenths while log bytes differ by
        several units, so per byte in effect takes the smallest tables first
        (unless they crowd out a table a knapsack plan is clearly worth more
        with: :func:`seqattn_tfrs.core.budget.planned_pick`). It won where
        large tables memorise (Criteo-shaped data, 11 of 12 runs, up to 0.11
        test AUC) and lost where the informative tables are the large ones
        (MovieLens blocks at a 5% budget, by 0.04-0.05; ``docs/pareto.md``).
        ``"gain_per_byte"``: ``entry_z``'s score statistic squared per byte,
        a loss gain comparable across tables (by logit without held-out data).
      entry_z: with ``budget_bytes`` only: also stop when no affordable feature
        helps. After the first round, a feature may be picked only if its score
        test says, by more than ``entry_z`` standard errors, that it lowers the
        loss: the per-example gradients of the loss with respect to its gate,
        taken while the round settles (every candidate's gate at 0, so the
        model is the selected one), with the selected features' columns
        regressed out under the ``"partial"`` signal, summed and divided by
        the root of their summed squares. The selection closes in the first
        round where no affordable feature passes, or when the rounds the
        callback reserved are used up (a round that picks fewer than
        ``selections_per_round`` still counts as one). ``"auto"`` (default):
        3 with ``budget_bytes`` and the default ``budget_rule``, otherwise
        ``None``: fill the budget. Needs the callback's ``settle_fraction`` >
        0; with held-out ``selection_data`` the callback runs its held-out
        steps while settling too, and the test measures help on unseen data.
        With the per-byte rule, stopping at 3 beat filling the budget on the
        Criteo-shaped data by about 0.02 test AUC at 5%, 10% and 20% of the
        bytes and never lost to "smallest tables first" or to the count
        selection cut to fit (``docs/pareto.md``). A pair of fields that
        matter only together passes the test only once one of them is in;
        per byte takes small tables first, the other rules can miss such a
        pair, so they fill by default.
      selections_per_round: how many features each selection round commits (at
        most ``num_selected``); the last round commits the remainder when it
        does not divide ``num_selected``.
      attention_learning_rate: step size of the logit update rule, in logit units.
      attention_momentum: momentum (first-moment decay) of the logit update rule.
      attention_signal: what the logits learn from. ``"partial"`` (default):
        the paper's gradient of the loss with respect to the logits, computed
        from each candidate's gate gradient after regressing out, example by
        example, what a rescaling of the selected features' embedding columns
        could explain (Rao's efficient score, with those scales as nuisance
        parameters). A candidate that only repeats a selected field - a copy,
        or a channel that merely speeds up fitting a field the model still
        underfits - scores about zero, whatever the optimizer. ``"gradient"``:
        the paper's plain gradient. ``"score"``: the score-test statistic of
        each candidate's per-example gate gradients (scale-free; better on least
        squares, worse where a near copy of a selected field must lose).
      pruned_feature_widths: set by :func:`~seqattn_tfrs.prune`: features whose
        tables were removed, mapped to their embedding width; they output zeros.
      feature_names: the output order when ``pruned_feature_widths`` is given
        (defaults to the order of ``embeddings``).
      **kwargs: base ``Layer`` arguments (``name``, ``dtype``, ...).

    Example:
      >>> layer = SequentialAttentionEmbedding(
      ...     {"a": tf.keras.layers.Reshape((1,)), "b": tf.keras.layers.Reshape((1,))},
      ...     num_selected=1)
      >>> out = layer({"a": tf.constant([2.0]), "b": tf.constant([3.0])})
      >>> {name: value.numpy().tolist() for name, value in out.items()}
      {'a': [[2.0]], 'b': [[3.0]]}
      >>> layer.gate_values()
      {'a': 1.0, 'b': 1.0}

      Under a byte budget, only tables that fit compete (10 x 4 float32 rows
      are 160 bytes; 1,000 x 4 are 16,000):

      >>> budgeted = SequentialAttentionEmbedding(
      ...     {"a": tf.keras.layers.Embedding(10, 4),
      ...      "b": tf.keras.layers.Embedding(1000, 4)}, budget_bytes=1000)
      >>> budgeted.feature_costs(), budgeted.num_rounds
      ({'a': 160, 'b': 16000}, 1)
    """

    def __init__(
        self,
        embeddings: Mapping[str, tf.keras.layers.Layer],
        num_selected: int | None = None,
        *,
        budget_bytes: int | None = None,
        feature_bytes: Mapping[str, int] | None = None,
        budget_rule: str = "attention_per_byte",
        entry_z: float | str | None = "auto",
        selections_per_round: int = 1,
        attention_learning_rate: float = 0.05,
        attention_momentum: float = 0.9,
        attention_signal: str = "partial",
        pruned_feature_widths: Mapping[str, int] | None = None,
        feature_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        gate_checks.check_embeddings(embeddings)
        pruned = gate_checks.check_pruned_widths(pruned_feature_widths, embeddings)
        all_names = list(embeddings) + list(pruned or {})
        feature_names = list(all_names if feature_names is None else feature_names)
        if sorted(feature_names) != sorted(all_names) or len(set(feature_names)) != len(
            feature_names
        ):
            raise ValueError(
                f"`feature_names` must list each feature once, got {feature_names!r} "
                f"for features {sorted(all_names)!r}."
            )
        if (num_selected is None) == (budget_bytes is None):
            raise ValueError(
                "Pass exactly one of `num_selected` (a feature count) and "
                f"`budget_bytes` (a memory budget); got num_selected={num_selected!r}"
                f" and budget_bytes={budget_bytes!r}."
            )
        if num_selected is not None and (
            isinstance(num_selected, bool)
            or not isinstance(num_selected, (int, np.integer))
            or not 1 <= num_selected <= len(feature_names)
        ):
            raise ValueError(
                f"`num_selected` must be an int in [1, {len(feature_names)}] (the "
                f"number of features), got {num_selected!r}."
            )
        if pruned is not None and num_selected not in (None, len(embeddings)):
            raise ValueError(
                f"A pruned layer keeps exactly `num_selected`={num_selected} tables, "
                f"got {len(embeddings)} in `embeddings`."
            )
        self.budget_bytes = budget.check_budget_bytes(budget_bytes)
        self.options = AttentionOptions(
            selections_per_round=selections_per_round,
            budget_rule=budget_rule,
            entry_z=entry_z,
            attention_learning_rate=attention_learning_rate,
            attention_momentum=attention_momentum,
            attention_signal=attention_signal,
        ).resolved(budgeted=self.budget_bytes is not None, num_selected=num_selected)
        self.feature_bytes = budget.check_feature_bytes(feature_bytes, feature_names)
        self._feature_names = tuple(feature_names)
        self._tables = dict(embeddings)
        self._pruned_widths = pruned
        object.__setattr__(self, "_table_bytes", budget.TableBytes())
        costs = self.feature_costs()
        if self.budget_bytes is not None:
            budget.check_fits(self.budget_bytes, costs)
        self.num_selected = None if num_selected is None else int(num_selected)
        self.spec = selection.SelectionSpec(
            layer_name=self.name,
            feature_names=self._feature_names,
            num_selected=self.num_selected,
            budget_bytes=self.budget_bytes,
            selections_per_round=self.options.selections_per_round,
            budget_rule=self.options.budget_rule,
            entry_z=self.options.entry_z,
        )
        self.num_rounds = self.spec.num_rounds(list(costs.values()))
        self.selection_state: SelectionState | None = None
        # First-seen dtype per feature; untracked (not part of checkpoints).
        object.__setattr__(self, "_input_dtypes", {})
        self._heldout_pass = False  # set while the callback traces a held-out step
        self._recorded_inputs: list[dict[str, np.ndarray]] | None = None
        self._probe_capture: ProbeCapture | None = None
        self._sums_probe = False  # set by the callback before training traces
        self._prune_report: dict[str, Any] | None = None
        self._schedule_record: dict[str, Any] | None = None

    # The six attention settings, readable under their keyword names.
    budget_rule = property(lambda self: self.options.budget_rule)
    entry_z = property(lambda self: self.options.entry_z)
    selections_per_round = property(lambda self: self.options.selections_per_round)
    attention_learning_rate = property(
        lambda self: self.options.attention_learning_rate
    )
    attention_momentum = property(lambda self: self.options.attention_momentum)
    attention_signal = property(lambda self: self.options.attention_signal)

    # ------------------------------------------------------------------ state
    def build(self, input_shape: Any = None) -> None:
        index = {name: i for i, name in enumerate(self._feature_names)}
        preselected = [index[name] for name in self._tables] if self.is_pruned else []
        self.selection_state = SelectionState(
            self.spec, self.options, self.num_rounds, self.add_weight, preselected
        )
        # Tracked: checkpointed.
        self.probe_sums = self.selection_state.probe_sums
        self.probe_axes = self.selection_state.probe_axes
        self.probe_moments = self.selection_state.probe_moments
        # A trainable scalar whose gradient is always exactly 0: it makes every
        # training step's backward pass run through the gate (even when the
        # per-feature layers have no weights), where the logits learn. Being 0
        # with a 0 gradient, no optimizer or weight decay ever changes it.
        self.gradient_hook = self.add_weight(
            name="gradient_hook",
            shape=[],
            dtype=tf.float32,
            initializer="zeros",
            trainable=True,
            experimental_autocast=False,
        )
        super().build(input_shape)

    def _state(self) -> SelectionState:
        if not self.built:
            self.build(None)
        return self.selection_state

    # The state's variables, under the names users and checkpoints know.
    attention_logits = property(lambda self: self._state().logits)
    selected_mask = property(lambda self: self._state().selected_mask)
    selection_order = property(lambda self: self._state().selection_order)
    num_picked = property(lambda self: self._state().num_picked)
    rounds_done = property(lambda self: self._state().rounds_done)
    gate_mode = property(lambda self: self._state().gate_mode)
    learn_from_fit_batches = property(lambda self: self._state().learn_from_fit_batches)
    round_gates = property(lambda self: self._state().round_gates)
    budget_closed = property(lambda self: self._state().budget_closed)
    nonfinite_logit_steps = property(lambda self: self._state().nonfinite_logit_steps)

    # ------------------------------------------------------------ public view
    @property
    def feature_names(self) -> tuple[str, ...]:
        """All feature names, in output order."""
        return self._feature_names

    @property
    def embedding_layers(self) -> dict[str, tf.keras.layers.Layer]:
        """The per-feature layers still held (after pruning: the kept ones)."""
        return dict(self._tables)

    @property
    def pruned_feature_widths(self) -> dict[str, int]:
        """Features whose tables were removed by pruning, with their widths."""
        return dict(self._pruned_widths or {})

    @property
    def is_pruned(self) -> bool:
        """Whether :func:`~seqattn_tfrs.prune` removed the unselected tables
        (perhaps none: a selection may keep every feature)."""
        return self._pruned_widths is not None

    @property
    def prune_report(self) -> dict[str, Any] | None:
        """What :func:`~seqattn_tfrs.prune` kept and dropped (sizes), or None."""
        return self._prune_report

    @property
    def selected_features(self) -> tuple[str, ...]:
        """Selected feature names, in the order they were selected."""
        order = self._state().selection_order.numpy()
        return tuple(self._feature_names[i] for i in order if i >= 0)

    @property
    def selection_complete(self) -> bool:
        """Whether ``num_selected`` features are selected, or the budget is spent."""
        return bool(self._state().complete().numpy())

    def progress(self) -> str:
        """How far the selection is, for messages, e.g. ``"1 of 3 features"``."""
        count = len(self.selected_features)
        if self.budget_bytes is None:
            return f"{count} of {self.num_selected} features"
        return f"{count} features within a budget of {self.budget_bytes} bytes"

    def feature_costs(self) -> dict[str, int | None]:
        """Bytes each feature's table costs (``feature_bytes`` where given).

        Measured on the built layers; ``None`` for a layer whose bytes cannot be
        known before it is called, and 0 for a feature pruned away.
        """
        return budget.feature_costs(
            self._tables, self._feature_names, self.feature_bytes, self._table_bytes
        )

    def gate_values(self) -> dict[str, float]:
        """The current gate of every feature, by name."""
        gates = self._state().gates().numpy()
        return {name: float(g) for name, g in zip(self._feature_names, gates)}

    def gate_history(self) -> list[dict[str, float]]:
        """Gate values recorded just before each completed selection round."""
        record = self._state().record()
        rows = record.round_gates[: record.rounds_done]
        return [dict(zip(self._feature_names, map(float, row))) for row in rows]

    @property
    def functional_dependencies(self) -> dict[str, tuple[str, ...]] | None:
        """Per feature, the features it is a function of on ``selection_data``
        (only features with any; None before a check). A round passes over a
        copy (each a function of the other) of a selected feature."""
        matrix, names = self._state().checked_dependence(), self._feature_names
        if matrix is None:
            return None
        return {
            names[c]: tuple(names[s] for s in np.flatnonzero(row))
            for c, row in enumerate(matrix)
            if row.any()
        }

    def entry_evidence(self) -> dict[str, float]:
        """Per feature, this round's score statistic so far (see ``entry_z``):
        how many standard errors the settled model's per-example gradients say
        raising its gate lowers the loss (0 without evidence; kept in round 1
        with ``selection_data``, every round with ``entry_z`` or
        ``"gain_per_byte"``)."""
        scores = self._state().entry_scores()
        return dict(zip(self._feature_names, map(float, scores)))

    def heldout_evidence(self) -> dict[str, float]:
        """Per feature, this round's statistic of the held-out gate gradients
        while the logits learn: how many standard errors say more of it lowers
        the held-out loss (see :func:`seqattn_tfrs.core.selection.commit_round`;
        0 without ``selection_data``)."""
        scores = self._state().heldout_scores()
        return dict(zip(self._feature_names, map(float, scores)))

    # --------------------------------------------------- used by the callback
    def commit_round(self, require_learning: bool = False) -> list[str]:
        """Commits the next selection round; returns the picked names, in order.

        Called by :class:`~seqattn_tfrs.SequentialAttentionCallback` at the end
        of each round (and by hand in tests). By count, the largest logits,
        except where held-out evidence decides (round 1's score test, later
        rounds' probe: see :func:`seqattn_tfrs.core.selection.commit_round`).
        With ``budget_bytes``, only
        features whose table fits what is left of the budget compete (ranked
        by ``budget_rule``); the selection closes when nothing else fits,
        nothing that fits passes ``entry_z``, or the reserved rounds are used
        up. The logits and their update state are
        then reset.

        Args:
          require_learning: refuse to pick when no logit update was applied in
            this round (the callback sets it: a pick must come from trained
            logits).

        Raises:
          FloatingPointError: an unselected logit is NaN or infinite.
          RuntimeError: the selection is already complete, or (with
            ``require_learning``) the logits never learned this round.
          ValueError: with ``budget_bytes``, no feature fits the budget (first
            pick), or a feature's bytes cannot be measured.
        """
        # Bytes rank the picks under a budget and, by count, the candidates
        # once none helps (the cheapest first).
        costs = list(self.feature_costs().values())
        picks = self._state().commit_round(costs, require_learning)
        return [self._feature_names[i] for i in picks]

    def reset_evidence(self) -> None:
        """Zeroes the round's score-test sums so far (see ``entry_evidence``)."""
        self._state().reset_evidence()

    def set_functional_dependence(self, dependence: np.ndarray) -> None:
        """Stores ``[N, N]`` booleans, ``[c, s]``: ``c`` is a function of ``s``
        (:func:`seqattn_tfrs.core.dependence.functional_dependence`)."""
        self._state().set_dependence(dependence)

    @contextlib.contextmanager
    def recording_inputs(self, into: list | None = None) -> Iterator[list]:
        """While active, eager calls append ``{name: (raw, table output)}``."""
        self._recorded_inputs = [] if into is None else into
        try:
            yield self._recorded_inputs
        finally:
            self._recorded_inputs = None

    @contextlib.contextmanager
    def capturing_outputs(self) -> Iterator[ProbeCapture]:
        """While active, calls (and traces) hand their gated outputs and their
        inputs' hash buckets to the yielded :class:`ProbeCapture` (the held-out
        probe's pass; see :attr:`probe_capture`)."""
        self._probe_capture = ProbeCapture()
        try:
            yield self._probe_capture
        finally:
            self._probe_capture = None

    def sum_probe_in_training(self, enabled: bool) -> bool:
        """Whether training steps traced from now on sum the held-out probe's
        training side (the callback enables it with ``selection_data``);
        returns whether that changed, so that a training function traced
        before must be traced again."""
        changed = bool(enabled) != self._sums_probe
        self._sums_probe = bool(enabled)
        return changed

    @property
    def probe_capture(self) -> ProbeCapture | None:
        """The active :meth:`capturing_outputs` capture, or None."""
        return self._probe_capture

    @property
    def probe_summed(self) -> bool:
        """Whether this round's settle sums the held-out probe's training
        side (read its sums with :meth:`probe_training_sums`)."""
        return self._state().probe_summed()

    def probe_training_sums(self) -> np.ndarray | None:
        """The held-out probe's training-side sums ``[N, PROBE_BUCKETS]``
        summed in this round's settle, or None where they were not summed
        (see :mod:`seqattn_tfrs.core.probe`)."""
        return self._state().probe_training_sums()

    def pairs_to_test(self) -> list[tuple[str, str]]:
        """The candidate pairs whose held-out pair test the next commit reads
        (:mod:`seqattn_tfrs.core.pairs`): by count, with at least two picks
        left, where no candidate helps alone but functions of a selected
        feature, or beside a member of an interaction; empty otherwise."""
        return self._state().pairs_to_test()

    def set_pair_scores(self, scores: Mapping[tuple[str, str], float]) -> None:
        """Hands the next commit the held-out pair test's z per pair of
        features (a pair left out has none)."""
        self._state().set_pair_scores(scores)

    def set_probe_scores(self, scores: Mapping[str, float]) -> None:
        """Stores the held-out probe's z per feature for the next commit
        (NaN for a feature it has none of)."""
        self._state().set_probe_scores(
            probe.score_vector(self.name, self._feature_names, scores)
        )

    def set_heldout_pass_batches(self, batches: int | None) -> None:
        """Records how many batches one pass of ``selection_data`` holds (None:
        unknown or endless), so that the held-out z discounts the rows a round
        reads more than once (:func:`seqattn_tfrs.core.evidence.revisit_factor`)."""
        self._state().heldout_pass_batches = evidence.checked_pass_batches(
            self.name, batches
        )

    def set_gate_mode(self, mode: int) -> None:
        """Sets the gate mode (``seqattn_tfrs.core.modes``) for the next steps."""
        if mode not in modes.NAMES:
            raise ValueError(
                f"`mode` must be one of {sorted(modes.NAMES)}, got {mode!r}."
            )
        self._state().gate_mode.assign(mode)

    def collects_evidence(self, mode: int) -> bool:
        """Whether a held-out step in ``mode`` teaches the layer something: its
        logits learn (selecting), or its ``entry_z`` test collects (settling)."""
        return mode == modes.SELECTING or (
            mode == modes.SETTLING and self.options.tracks_evidence
        )

    def record_schedule(self, record: Mapping[str, Any]) -> None:
        """Keeps the schedule the callback laid out (for reports and export)."""
        self._schedule_record = dict(record)

    @property
    def schedule_record(self) -> dict[str, Any] | None:
        """The callback's schedule for this layer (warm-up, rounds, steps or
        epochs per round, fine-tune), or None before any ``fit``."""
        return None if self._schedule_record is None else dict(self._schedule_record)

    @contextlib.contextmanager
    def heldout_step(self) -> Iterator[None]:
        """While a held-out step is traced inside this context, the gates'
        backward pass updates the logits even when they learn only from
        held-out data."""
        self._heldout_pass = True
        try:
            yield
        finally:
            self._heldout_pass = False

    def apply_logit_gradient(
        self, grad: tf.Tensor, enabled: tf.Tensor | bool = True
    ) -> tf.Operation:
        """Updates the attention logits from ``dLoss/dlogits`` with the own rule.

        A no-op unless the layer is in a selection round (and ``enabled``); a
        NaN or infinite gradient is counted in ``nonfinite_logit_steps`` and
        not applied (see :class:`~seqattn_tfrs.selection_state.SelectionState`).
        """
        return self._state().apply_logit_gradient(grad, enabled)

    # --------------------------------------------------------- used by prune
    def replace_tables(
        self,
        kept: Sequence[str],
        pruned_widths: Mapping[str, int],
        report: dict[str, Any] | None = None,
    ) -> Callable[[], None]:
        """Holds only the ``kept`` features' layers; the others output zeros.

        Used by :func:`~seqattn_tfrs.prune`. The layers no longer held leave
        the layer's tracked weights.

        Args:
          kept: the features whose layers stay, in their new order.
          pruned_widths: every other feature, with the width of its zeros.
          report: what was kept and dropped, for :attr:`prune_report`.

        Returns:
          A function that undoes the change exactly (for a failed prune).
        """
        if set(kept) | set(pruned_widths) != set(self._feature_names) or set(
            kept
        ) & set(pruned_widths):
            raise ValueError(
                f"{self.name}: kept {sorted(kept)} and pruned {sorted(pruned_widths)} "
                f"must split the features {list(self._feature_names)}."
            )
        before = (self._tables, self._pruned_widths, self._prune_report)
        tracked = getattr(self, "_self_tracked_trackables", None)
        tracked_before = None if tracked is None else list(tracked)
        self._tables = {name: self._tables[name] for name in kept}
        self._pruned_widths = dict(pruned_widths)
        self._prune_report = report

        def undo() -> None:
            self._tables, self._pruned_widths, self._prune_report = before
            if tracked_before is not None:
                self._self_tracked_trackables[:] = tracked_before

        return undo

    # ------------------------------------------------------------------- call
    # Plain TensorFlow ops and tf.cond only: AutoGraph's conversion would cost
    # about 0.75 s per process for nothing (docs/fit_cost.md).
    @tf.autograph.experimental.do_not_convert
    def call(self, features: Mapping[str, Any], training: bool | None = None):
        if not isinstance(features, Mapping):
            raise TypeError(
                f"{self.name} expects a dict of feature tensors, got "
                f"{type(features).__name__}."
            )
        missing = [name for name in self._tables if name not in features]
        if missing:
            raise KeyError(
                f"{self.name}: feature(s) {missing} missing from the inputs; got "
                f"keys {sorted(features)}."
            )
        embedded = {}
        for name, layer in self._tables.items():
            self._check_input_dtype(name, features[name])
            embedded[name] = gate_checks.check_embedding(
                self.name, name, layer(features[name])
            )
        gate_checks.check_batch_sizes(self.name, embedded)
        if self._recorded_inputs is not None and tf.executing_eagerly():
            self._recorded_inputs.append(tf_ops.raw_and_looked_up(features, embedded))

        if self.is_pruned:  # kept gates are exactly 1: no multiply needed
            batch = tf.shape(next(iter(embedded.values())))[0]
            # The dtype the embeddings had before pruning (a mixed-precision
            # model's tables give the compute dtype of their own policy).
            dtypes = {value.dtype for value in embedded.values()}
            dtype = dtypes.pop() if len(dtypes) == 1 else self.compute_dtype
            return {
                name: embedded[name]
                if name in embedded
                else tf.zeros([batch, self._pruned_widths[name]], dtype)
                for name in self._feature_names
            }

        state = self._state()
        values = [embedded[name] for name in self._feature_names]
        # Always the learning path: its forward pass is a plain multiply, and its
        # backward pass (which updates the logits in a selection round) runs only
        # when a gradient is taken - never in predict, evaluate or serving. It does
        # not depend on `training`, which TFRS models often leave unset.
        gated = logit_learning.gate_and_learn(
            state,
            tf.identity(self.gradient_hook),
            values,
            state.gates(),
            always_learn=self._heldout_pass,
            # The probe's training side, where the callback asked for it; not
            # in the probe's own held-out pass.
            raw_inputs=[features[name] for name in self._feature_names]
            if self._sums_probe and self._probe_capture is None
            else None,
        )
        outputs = dict(zip(self._feature_names, gated))
        if self._probe_capture is not None:
            outputs = self._probe_capture.capture(outputs, features, embedded)
        return outputs

    def _check_input_dtype(self, name: str, value: Any) -> None:
        """Raises if a feature arrives with another dtype than on the first call."""
        dtype = getattr(value, "dtype", None)
        if dtype is None:
            return
        seen = self._input_dtypes.setdefault(name, tf.as_dtype(dtype).name)
        if tf.as_dtype(dtype).name != seen:
            raise TypeError(
                f"{self.name}: feature {name!r} arrived as {tf.as_dtype(dtype).name}, "
                f"but the layer was first called with {seen}; expected the same "
                "dtype on every call."
            )

    # ---------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "embeddings": {
                    name: tf.keras.layers.serialize(layer)
                    for name, layer in self._tables.items()
                },
                "num_selected": self.num_selected,
                "budget_bytes": self.budget_bytes,
                "feature_bytes": dict(self.feature_bytes) or None,
                **self.options.as_kwargs(),
                "pruned_feature_widths": self.pruned_feature_widths
                if self.is_pruned
                else None,
                "feature_names": list(self._feature_names),
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SequentialAttentionEmbedding:
        return cls(**with_deserialized_embeddings(config))


def with_deserialized_embeddings(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a layer config whose ``embeddings`` are layers again."""
    config = dict(config)
    config["embeddings"] = {
        name: tf.keras.layers.deserialize(layer)
        for name, layer in config["embeddings"].items()
    }
    return config
