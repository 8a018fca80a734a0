"""The Sequential Attention gate over a recommender's per-feature embeddings."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from seqattn_tfrs import (
    _compat,  # noqa: F401  (Keras 2 check)
    budget,
    logit_update,
)

# Values of the `gate_mode` variable. The callback moves the layer through them.
DENSE = 0  # every gate is 1 (warm-up, or no callback at all)
SELECTING = 1  # selected gates 1, the others a softmax over logits that learn
SETTLING = 2  # selected gates 1, the others 0: the model fits the selected set

ATTENTION_SIGNALS = ("partial", "gradient", "score")


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
    :mod:`seqattn_tfrs.logit_update`), from the training batches, or only from
    held-out batches when the callback is given ``selection_data``.

    Args:
      embeddings: mapping from feature name to a Keras layer that maps that
        feature's input to a ``[batch, d]`` tensor, e.g.
        ``Sequential([StringLookup(...), Embedding(...)])``.
      num_selected: how many features to select, 1 <= num_selected <= number of
        features. Pass exactly one of ``num_selected`` and ``budget_bytes``.
      budget_bytes: select by memory instead of by count: each round picks among
        the unselected features whose table still fits in what is left of this
        many bytes, and the selection ends when none fits; the kept tables'
        bytes never exceed it. A feature's cost is the bytes of all variables of
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
        several units, so per byte in effect takes the smallest tables first,
        attention ordering tables of similar size. It won where large tables
        memorise (Criteo-shaped data, 11 of 12 runs, up to 0.11 test AUC) and
        lost where the informative tables are the large ones (MovieLens
        blocks at a 5% budget, by 0.04-0.05; ``docs/pareto.md``).
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
        ``selections_per_round`` still counts as one). ``None`` (default):
        fill the budget. Needs the callback's ``settle_fraction`` > 0; with
        held-out ``selection_data`` the callback runs its held-out steps while
        settling too, and the test measures help on unseen data.
      selections_per_round: how many features each selection round commits; the
        last round commits the remainder when it does not divide
        ``num_selected``.
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
        entry_z: float | None = None,
        selections_per_round: int = 1,
        attention_learning_rate: float = 0.05,
        attention_momentum: float = 0.9,
        attention_signal: str = "partial",
        pruned_feature_widths: Mapping[str, int] | None = None,
        feature_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(embeddings, Mapping):
            raise TypeError(
                "`embeddings` must be a mapping from feature name to a Keras layer, "
                f"got {type(embeddings).__name__}: {embeddings!r}."
            )
        pruned = dict(pruned_feature_widths or {})
        if not embeddings:
            raise ValueError(
                "`embeddings` must hold at least one feature, got an empty mapping."
            )
        for name, layer in embeddings.items():
            if not isinstance(name, str) or not name:
                raise TypeError(
                    "`embeddings` keys must be non-empty feature-name strings, "
                    f"got {name!r}."
                )
            if not isinstance(layer, tf.keras.layers.Layer):
                raise TypeError(
                    f"`embeddings[{name!r}]` must be a tf.keras layer, got "
                    f"{type(layer).__name__}: {layer!r}."
                )
        for name, width in pruned.items():
            if name in embeddings:
                raise ValueError(
                    f"Feature {name!r} is in both `embeddings` and "
                    "`pruned_feature_widths`; expected each feature in one of them."
                )
            if not isinstance(width, int) or width < 1:
                raise ValueError(
                    f"`pruned_feature_widths[{name!r}]` must be a positive int, "
                    f"got {width!r}."
                )
        all_names = list(embeddings) + list(pruned)
        if feature_names is None:
            feature_names = all_names
        feature_names = list(feature_names)
        if sorted(feature_names) != sorted(all_names) or len(set(feature_names)) != len(
            feature_names
        ):
            raise ValueError(
                f"`feature_names` must list each feature once, got {feature_names!r} "
                f"for features {sorted(all_names)!r}."
            )
        num_features = len(feature_names)
        if (num_selected is None) == (budget_bytes is None):
            raise ValueError(
                "Pass exactly one of `num_selected` (a feature count) and "
                f"`budget_bytes` (a memory budget); got num_selected={num_selected!r}"
                f" and budget_bytes={budget_bytes!r}."
            )
        if num_selected is not None and (
            isinstance(num_selected, bool)
            or not isinstance(num_selected, (int, np.integer))
            or not 1 <= num_selected <= num_features
        ):
            raise ValueError(
                f"`num_selected` must be an int in [1, {num_features}] (the number "
                f"of features), got {num_selected!r}."
            )
        costs = self._check_budget(
            embeddings, feature_names, budget_bytes, feature_bytes, budget_rule
        )
        if pruned and num_selected is not None and len(embeddings) != num_selected:
            raise ValueError(
                f"A pruned layer keeps exactly `num_selected`={num_selected} tables, "
                f"got {len(embeddings)} in `embeddings`."
            )
        if (
            isinstance(selections_per_round, bool)
            or not isinstance(selections_per_round, (int, np.integer))
            or selections_per_round < 1
        ):
            raise ValueError(
                "`selections_per_round` must be an int >= 1, got "
                f"{selections_per_round!r}."
            )
        if not (
            isinstance(attention_learning_rate, (int, float))
            and math.isfinite(attention_learning_rate)
            and attention_learning_rate > 0
        ):
            raise ValueError(
                "`attention_learning_rate` must be a finite number > 0, got "
                f"{attention_learning_rate!r}."
            )
        if not (
            isinstance(attention_momentum, (int, float)) and 0 <= attention_momentum < 1
        ):
            raise ValueError(
                "`attention_momentum` must be a number in [0, 1), got "
                f"{attention_momentum!r}."
            )
        if attention_signal not in ATTENTION_SIGNALS:
            raise ValueError(
                f"`attention_signal` must be one of {ATTENTION_SIGNALS}, got "
                f"{attention_signal!r}."
            )
        if entry_z is not None:
            if budget_bytes is None:
                raise ValueError(
                    f"`entry_z`={entry_z!r} stops a byte-budgeted selection early; "
                    "it needs `budget_bytes` (a count selection always picks "
                    "`num_selected` features)."
                )
            if not (
                isinstance(entry_z, (int, float))
                and not isinstance(entry_z, bool)
                and math.isfinite(entry_z)
                and entry_z > 0
            ):
                raise ValueError(
                    f"`entry_z` must be a finite number > 0 (standard errors), got "
                    f"{entry_z!r}."
                )
        self.entry_z = None if entry_z is None else float(entry_z)
        self.attention_signal = attention_signal
        # First-seen dtype per feature; untracked (not part of checkpoints).
        object.__setattr__(self, "_input_dtypes", {})
        self._heldout_pass = False  # set while the callback traces a held-out step
        self._feature_names = tuple(feature_names)
        self._tables = dict(embeddings)
        self._pruned_widths = pruned
        self.num_selected = None if num_selected is None else int(num_selected)
        self.budget_bytes = None if budget_bytes is None else int(budget_bytes)
        self.feature_bytes = {k: int(v) for k, v in (feature_bytes or {}).items()}
        self.budget_rule = budget_rule
        self.selections_per_round = int(selections_per_round)
        self.attention_learning_rate = float(attention_learning_rate)
        self.attention_momentum = float(attention_momentum)
        most = (
            self.num_selected
            if self.budget_bytes is None
            else budget.max_affordable(costs, self.budget_bytes)
        )
        self.num_rounds = math.ceil(most / self.selections_per_round)

    def _check_budget(self, embeddings, names, budget_bytes, feature_bytes, rule):
        """Validates the budget arguments; returns the known cost per feature."""
        if not (
            budget_bytes is None
            or (
                isinstance(budget_bytes, (int, np.integer))
                and not isinstance(budget_bytes, bool)
                and budget_bytes >= 1
            )
        ):
            raise ValueError(
                f"`budget_bytes` must be an int >= 1 (bytes), got {budget_bytes!r}."
            )
        if rule not in budget.RULES:
            raise ValueError(
                f"`budget_rule` must be one of {budget.RULES}, got {rule!r}."
            )
        given = dict(feature_bytes or {})
        for name, cost in given.items():
            if name not in names:
                raise ValueError(
                    f"`feature_bytes` names {name!r}, which is not a feature; "
                    f"expected some of {list(names)}."
                )
            if (
                isinstance(cost, bool)
                or not isinstance(cost, (int, np.integer))
                or cost < 0
            ):
                raise ValueError(
                    f"`feature_bytes[{name!r}]` must be an int >= 0, got {cost!r}."
                )
        costs = [
            int(given[name])
            if name in given
            else (budget.layer_bytes(embeddings[name]) if name in embeddings else 0)
            for name in names
        ]
        known = [c for c in costs if c is not None]
        if budget_bytes is not None and len(known) == len(costs) and known:
            cheapest = min(range(len(costs)), key=lambda i: costs[i])
            if costs[cheapest] > budget_bytes:
                raise ValueError(
                    f"`budget_bytes`={budget_bytes} is smaller than the cheapest "
                    f"feature, {names[cheapest]!r} ({costs[cheapest]} bytes); "
                    "expected a budget that fits at least one feature's table."
                )
        return costs

    # ------------------------------------------------------------------ state
    def build(self, input_shape: Any = None) -> None:
        n = len(self._feature_names)
        index = {name: i for i, name in enumerate(self._feature_names)}
        selected = np.zeros([n], np.float32)
        order = np.full([n], -1, np.int32)
        if self._pruned_widths:  # restored from a pruned config: selection done
            for position, name in enumerate(self._tables):
                selected[index[name]] = 1.0
                order[position] = index[name]

        def state(name, shape, dtype, initial, aggregation="mean"):
            return self.add_weight(
                name=name,
                shape=shape,
                dtype=dtype,
                initializer=tf.keras.initializers.Constant(initial),
                trainable=False,
                aggregation={
                    "mean": tf.VariableAggregation.MEAN,
                    "sum": tf.VariableAggregation.SUM,
                    "first": tf.VariableAggregation.ONLY_FIRST_REPLICA,
                }[aggregation],
            )

        first = "first"
        self.attention_logits = state("attention_logits", [n], tf.float32, 0.0)
        self.selected_mask = state("selected_mask", [n], tf.float32, selected, first)
        self.selection_order = state("selection_order", [n], tf.int32, order, first)
        self.num_picked = state("num_picked", [], tf.int32, int(selected.sum()), first)
        # Committed rounds; not num_picked / selections_per_round, since a
        # budgeted round may pick fewer than selections_per_round.
        done = math.ceil(int(selected.sum()) / self.selections_per_round)
        self.rounds_done = state("rounds_done", [], tf.int32, done, first)
        self.gate_mode = state("gate_mode", [], tf.int32, DENSE, first)
        self.learn_from_fit_batches = state(
            "learn_from_fit_batches", [], tf.int32, 1, first
        )
        # Under a budget, one row per possible round: the reserved rounds depend
        # on the costs, which differ once pruned, and the shape must not.
        rows = (
            self.num_rounds
            if self.budget_bytes is None
            else math.ceil(n / self.selections_per_round)
        )
        self.round_gates = state("round_gates", [rows, n], tf.float32, 0.0, first)
        if self.budget_bytes is not None:
            # 1 once no unselected feature fits what is left of the budget (set by
            # the pick that exhausted it; a pruned layer is closed).
            self.budget_closed = state(
                "budget_closed", [], tf.int32, int(bool(self._pruned_widths)), first
            )
        self._logit_momentum = state("logit_momentum", [n], tf.float32, 0.0)
        if self.entry_z is not None:
            # This round's sums of per-example scores and of their squares, over
            # every replica's examples.
            self._score_sum = state("score_sum", [n], tf.float32, 0.0, "sum")
            self._score_squares = state("score_squares", [n], tf.float32, 0.0, "sum")
        self._logit_second_moment = state("logit_second_moment", [], tf.float32, 0.0)
        self._logit_steps = state("logit_steps", [], tf.float32, 0.0, first)
        self.nonfinite_logit_steps = state(
            "nonfinite_logit_steps", [], tf.int32, 0, first
        )
        # A trainable scalar whose gradient is always exactly 0: it makes every
        # training step's backward pass run through the gate (even when the
        # per-feature layers have no weights), where the logits learn. Being 0
        # with a 0 gradient, no optimizer or weight decay ever changes it.
        self._gradient_hook = self.add_weight(
            name="gradient_hook",
            shape=[],
            dtype=tf.float32,
            initializer="zeros",
            trainable=True,
        )
        super().build(input_shape)

    def _ensure_built(self) -> None:
        if not self.built:
            self.build(None)

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
        return dict(self._pruned_widths)

    @property
    def is_pruned(self) -> bool:
        """Whether :func:`~seqattn_tfrs.prune` removed the unselected tables."""
        return bool(self._pruned_widths)

    @property
    def selected_features(self) -> tuple[str, ...]:
        """Selected feature names, in the order they were selected."""
        self._ensure_built()
        order = self.selection_order.numpy()
        return tuple(self._feature_names[i] for i in order if i >= 0)

    @property
    def selection_complete(self) -> bool:
        """Whether ``num_selected`` features are selected, or the budget is spent."""
        self._ensure_built()
        return bool(self._complete().numpy())

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
        return {
            name: self.feature_bytes.get(name, self._measured_bytes(name))
            for name in self._feature_names
        }

    def _measured_bytes(self, name: str) -> int | None:
        if name not in self._tables:
            return 0
        return budget.layer_bytes(self._tables[name])

    def _complete(self) -> tf.Tensor:
        if self.budget_bytes is None:
            return self.num_picked >= self.num_selected
        return tf.equal(self.budget_closed, 1)

    def gate_values(self) -> dict[str, float]:
        """The current gate of every feature, by name."""
        self._ensure_built()
        gates = self._gates().numpy()
        return {name: float(g) for name, g in zip(self._feature_names, gates)}

    def gate_history(self) -> list[dict[str, float]]:
        """Gate values recorded just before each completed selection round."""
        self._ensure_built()
        rounds = int(self.rounds_done.numpy())
        history = self.round_gates.numpy()[:rounds]
        return [dict(zip(self._feature_names, map(float, row))) for row in history]

    # ------------------------------------------------------------------ gates
    def _gates(self) -> tf.Tensor:
        selected = self.selected_mask
        unselected = 1.0 - selected
        logits = self.attention_logits
        masked = tf.where(unselected > 0, logits, tf.fill(tf.shape(logits), -1e30))
        shifted = tf.exp(masked - tf.reduce_max(masked)) * unselected
        softmax = tf.math.divide_no_nan(shifted, tf.reduce_sum(shifted))
        selecting = selected + unselected * softmax
        only_selected = tf.logical_or(
            self._complete(), tf.equal(self.gate_mode, SETTLING)
        )
        return tf.where(
            only_selected,
            selected,
            tf.where(
                tf.equal(self.gate_mode, DENSE), tf.ones_like(selected), selecting
            ),
        )

    def _learning(self) -> tf.Tensor:
        return tf.logical_and(
            tf.equal(self.gate_mode, SELECTING), tf.logical_not(self._complete())
        )

    def apply_logit_gradient(
        self, grad: tf.Tensor, enabled: tf.Tensor | bool = True
    ) -> tf.Operation:
        """Updates the attention logits from ``dLoss/dlogits`` with the own rule.

        A no-op unless the layer is in a selection round (and ``enabled``). A
        gradient with a NaN or infinite entry (a NaN loss) changes nothing and is
        counted in ``nonfinite_logit_steps`` instead, which the callback reports,
        so one bad batch cannot corrupt a round's logits. Written without
        control flow (the no-op is a 0/1 factor), so that under a
        ``tf.distribute`` strategy the variable updates may synchronise replicas.
        """
        grad = tf.convert_to_tensor(grad, tf.float32)
        finite = tf.reduce_all(tf.math.is_finite(grad))
        learning = tf.logical_and(self._learning(), tf.cast(enabled, tf.bool))
        go = tf.cast(tf.logical_and(learning, finite), tf.float32)
        step = self._logit_steps + go
        delta, momentum, second = logit_update.normalized_momentum_step(
            tf.where(tf.math.is_finite(grad), grad, tf.zeros_like(grad)),
            1.0 - self.selected_mask,
            self._logit_momentum,
            self._logit_second_moment,
            tf.maximum(step, 1.0),
            learning_rate=self.attention_learning_rate,
            beta1=self.attention_momentum,
        )
        keep = 1.0 - go
        return tf.group(
            self.attention_logits.assign_add(go * delta),
            self._logit_momentum.assign(go * momentum + keep * self._logit_momentum),
            self._logit_second_moment.assign(
                go * second + keep * self._logit_second_moment
            ),
            self._logit_steps.assign(step),
            self.nonfinite_logit_steps.assign_add(
                tf.cast(tf.logical_and(learning, tf.logical_not(finite)), tf.int32)
            ),
        )

    def _logit_signal(
        self,
        per_example: tf.Tensor,
        gates: tf.Tensor,
        column_grads: Sequence[tf.Tensor],
    ) -> tf.Tensor:
        """The logits' descent direction from per-example gate gradients ``[B, N]``.

        ``column_grads`` holds per feature a ``[B, d]`` tensor: per example, the
        gradient of the loss with respect to a scale on each embedding column;
        ``"partial"`` uses the selected features' columns.

        ``"score"``: per feature, the sum of the per-example gradients over the
        root of the sum of their squares - the score-test statistic for adding
        the feature (its gradient over the square root of its empirical Fisher
        information). It does not depend on the scale of the feature's embedding
        or of the weights downstream of it; on least squares it is Orthogonal
        Matching Pursuit's |X_j' r| / ||X_j|| up to a factor common to all
        features. ``"gradient"``: the paper's gradient of the loss with respect
        to the softmax logits.
        """
        unselected = 1.0 - self.selected_mask
        nuisance = self._nuisance(column_grads)
        if nuisance is not None:
            total = _efficient_score(per_example, nuisance)
        else:
            total = tf.reduce_sum(per_example, axis=0)
        if self.attention_signal == "score":
            spread = tf.sqrt(tf.reduce_sum(tf.square(per_example), axis=0))
            return tf.math.divide_no_nan(total, spread) * unselected
        # d gate_j / d w_i = p_j (delta_ij - p_i) on the unselected set U.
        probs = gates * unselected
        return probs * (total - tf.reduce_sum(probs * total)) * unselected

    def _nuisance(self, column_grads: Sequence[tf.Tensor]) -> tf.Tensor | None:
        """Under ``"partial"``, the selected features' per-example column
        gradients ``[B, D]`` that the candidates' scores are regressed on."""
        if self.attention_signal != "partial":
            return None
        widths = tf.stack([tf.shape(c)[1] for c in column_grads])
        selected_columns = tf.where(tf.repeat(self.selected_mask, widths) > 0)
        return tf.gather(
            tf.concat(column_grads, axis=1), selected_columns[:, 0], axis=1
        )

    def _evidence_sums(
        self, per_example: tf.Tensor, column_grads: Sequence[tf.Tensor]
    ) -> tf.Tensor:
        """A batch's sums of per-example scores and of their squares, ``[2, N]``
        (zeros if any is not finite)."""
        nuisance = self._nuisance(column_grads)
        scores = (
            per_example if nuisance is None else _residual_scores(per_example, nuisance)
        )
        sums = tf.stack(
            [tf.reduce_sum(scores, axis=0), tf.reduce_sum(tf.square(scores), axis=0)]
        )
        finite = tf.reduce_all(tf.math.is_finite(sums))
        return tf.where(finite, sums, tf.zeros_like(sums))

    def _gate_and_learn(self, embeddings, gates, always_learn=False):
        """Gates embeddings; their backward pass also updates the logits."""

        @tf.custom_gradient
        def gate(hook, *values):
            outputs = [v * tf.cast(gates[i], v.dtype) for i, v in enumerate(values)]

            def backward(*upstream):
                # d loss / d (scale on column j of feature i), per example.
                columns = [
                    tf.reshape(tf.cast(u * v, tf.float32), [tf.shape(v)[0], -1])
                    for u, v in zip(upstream, values)
                ]
                per_example = tf.stack(
                    [tf.reduce_sum(c, axis=1) for c in columns], axis=1
                )
                learn = (
                    tf.constant(True)
                    if always_learn
                    else tf.equal(self.learn_from_fit_batches, 1)
                )
                # The signal is computed only while the logits learn: outside
                # selection rounds the backward pass costs no more than a plain
                # multiply's.
                signal = tf.cond(
                    tf.logical_and(self._learning(), learn),
                    lambda: self._logit_signal(per_example, gates, columns),
                    lambda: tf.zeros_like(gates),
                )
                update = [self.apply_logit_gradient(signal, learn)]
                if self.entry_z is not None:
                    # The score test: with the candidates' gates at 0 (settling),
                    # does raising one lower the loss of the selected model?
                    settling = tf.logical_and(
                        tf.equal(self.gate_mode, SETTLING),
                        tf.logical_not(self._complete()),
                    )
                    sums = tf.cond(  # computed only while settling
                        tf.logical_and(settling, learn),
                        lambda: self._evidence_sums(per_example, columns),
                        lambda: tf.zeros([2, tf.shape(per_example)[1]]),
                    )
                    # Outside the cond: under a strategy the sums across replicas
                    # synchronise, which control flow must not contain.
                    update += [
                        self._score_sum.assign_add(sums[0]),
                        self._score_squares.assign_add(sums[1]),
                    ]
                with tf.control_dependencies(update):
                    return [tf.zeros_like(hook)] + [
                        tf.identity(u * tf.cast(gates[i], u.dtype))
                        for i, u in enumerate(upstream)
                    ]

            return outputs, backward

        return list(gate(tf.identity(self._gradient_hook), *embeddings))

    # ------------------------------------------------------------------- call
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
            value = layer(features[name])
            if isinstance(value, tf.RaggedTensor) or value.shape.rank != 2:
                raise ValueError(
                    f"{self.name}: the layer of feature {name!r} must return a dense "
                    f"[batch, d] tensor, got {value!r}."
                )
            embedded[name] = value

        if self.is_pruned:  # kept gates are exactly 1: no multiply needed
            batch = tf.shape(next(iter(embedded.values())))[0]
            return {
                name: embedded[name]
                if name in embedded
                else tf.zeros([batch, self._pruned_widths[name]], self.compute_dtype)
                for name in self._feature_names
            }

        gates = self._gates()
        values = [embedded[name] for name in self._feature_names]
        # Always the learning path: its forward pass is a plain multiply, and its
        # backward pass (which updates the logits in a selection round) runs only
        # when a gradient is taken - never in predict, evaluate or serving. It does
        # not depend on `training`, which TFRS models often leave unset.
        gated = self._gate_and_learn(values, gates, self._heldout_pass)
        return dict(zip(self._feature_names, gated))

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

    # ------------------------------------------------------------- selection
    def entry_evidence(self) -> dict[str, float]:
        """Per feature, this round's score statistic so far (see ``entry_z``).

        How many standard errors the per-example gradients summed over the
        round's logit steps say that raising the feature's gate lowers the
        loss; 0 before any evidence. Needs ``entry_z``.
        """
        if self.entry_z is None:
            raise ValueError(
                f"{self.name}: `entry_evidence` is tracked only with `entry_z` set."
            )
        self._ensure_built()
        return dict(zip(self._feature_names, map(float, self._entry_scores())))

    def _entry_scores(self) -> np.ndarray:
        """``entry_evidence`` as an array in feature order."""
        total = self._score_sum.numpy().astype(np.float64)
        squares = self._score_squares.numpy().astype(np.float64)
        return np.divide(
            -total, np.sqrt(squares), out=np.zeros_like(total), where=squares > 0
        )

    def _commit_round(self, require_learning: bool = False) -> list[str]:
        """Selects the next round's features by largest logit. Used by the callback.

        With ``budget_bytes``, only features whose table fits what is left of the
        budget compete (ranked by ``budget_rule``); the round picks up to
        ``selections_per_round`` of them and closes the selection when nothing
        else fits or the reserved rounds are used up.

        Args:
          require_learning: refuse to pick when no logit update was applied in
            this round (the callback sets it: a pick must come from trained
            logits).

        Returns:
          The names committed, in order.

        Raises:
          FloatingPointError: an unselected logit is NaN or infinite.
          RuntimeError: the selection is already complete.
          ValueError: with ``budget_bytes``, no feature fits the budget (first
            pick), or a feature's bytes cannot be measured.
        """
        self._ensure_built()
        picked = int(self.num_picked.numpy())
        if self.selection_complete:
            raise RuntimeError(f"{self.name}: the selection is already complete.")
        selected = self.selected_mask.numpy() > 0
        logits = self.attention_logits.numpy()
        bad = [
            self._feature_names[i]
            for i in np.flatnonzero(~selected)
            if not np.isfinite(logits[i])
        ]
        if require_learning and float(self._logit_steps.numpy()) == 0.0:
            skipped = int(self.nonfinite_logit_steps.numpy())
            raise RuntimeError(
                f"{self.name}: no logit update was applied in selection round "
                f"{int(self.rounds_done.numpy()) + 1} ({skipped} had a NaN/inf "
                "gradient so far), so there is nothing to pick from. Fix the NaN "
                "loss, or lengthen the round / lower `settle_fraction` or "
                "`selection_interval`."
            )
        if bad:
            raise FloatingPointError(
                f"{self.name}: attention logits of {bad} are not finite "
                f"({logits.tolist()}); refusing to pick from them. Lower "
                "`attention_learning_rate` or fix the NaN/inf loss."
            )
        if self.budget_bytes is None:
            count = min(self.selections_per_round, self.num_selected - picked)
            candidates = np.flatnonzero(~selected)
            # Largest logit first; ties go to the earlier feature (stable sort).
            ranked = candidates[np.argsort(-logits[candidates], kind="stable")][:count]
        else:
            ranked, closed = self._affordable_picks(logits, selected)
            count = len(ranked)
            self.budget_closed.assign(int(closed))
        round_index = int(self.rounds_done.numpy())
        gates = self._gates().numpy()
        order = self.selection_order.numpy()
        order[picked : picked + count] = ranked
        selected[ranked] = True
        history = self.round_gates.numpy()
        history[round_index] = gates
        self.round_gates.assign(history)
        self.selection_order.assign(order)
        self.selected_mask.assign(selected.astype(np.float32))
        self.num_picked.assign(picked + count)
        self.rounds_done.assign(round_index + 1)
        self.attention_logits.assign(tf.zeros_like(self.attention_logits))
        self._logit_momentum.assign(tf.zeros_like(self._logit_momentum))
        if self.entry_z is not None:
            self._score_sum.assign(tf.zeros_like(self._score_sum))
            self._score_squares.assign(tf.zeros_like(self._score_squares))
        self._logit_second_moment.assign(0.0)
        self._logit_steps.assign(0.0)
        return [self._feature_names[i] for i in ranked]

    def _affordable_picks(
        self, logits: np.ndarray, selected: np.ndarray
    ) -> tuple[np.ndarray, bool]:
        """This round's budgeted picks, and whether the selection closes after them."""
        measured = self.feature_costs()
        unknown = [name for name, cost in measured.items() if cost is None]
        if unknown:
            raise ValueError(
                f"{self.name}: cannot measure the bytes of {unknown} (their layers "
                "were never called); call the model on a batch first or pass "
                "`feature_bytes`."
            )
        costs = np.array([measured[name] for name in self._feature_names], np.int64)
        remaining = self.budget_bytes - int(costs[selected].sum())
        eligible = np.ones(len(costs), bool)
        if self.entry_z is not None and selected.any():
            eligible = self._entry_scores() > self.entry_z
        ranked = budget.pick_within_budget(
            logits,
            np.where(eligible, costs, remaining + 1),  # the others cannot fit
            selected,
            remaining,
            self.selections_per_round,
            self.budget_rule,
        )
        if not ranked and not eligible.all():  # nothing that fits helps: stop
            return np.array([], np.int64), True
        if not ranked:
            cheapest = int(np.argmin(np.where(selected, np.iinfo(np.int64).max, costs)))
            raise ValueError(
                f"{self.name}: `budget_bytes`={self.budget_bytes} fits no feature; "
                f"the cheapest, {self._feature_names[cheapest]!r}, takes "
                f"{int(costs[cheapest])} bytes. Expected a budget that fits at "
                "least one feature's table."
            )
        after = selected.copy()
        after[ranked] = True
        left = remaining - int(costs[ranked].sum())
        rounds = int(self.rounds_done.numpy()) + 1  # with this one
        closed = not np.any(~after & (costs <= left)) or rounds >= self.num_rounds
        return np.array(ranked, np.int64), closed

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
                "budget_rule": self.budget_rule,
                "entry_z": self.entry_z,
                "selections_per_round": self.selections_per_round,
                "attention_learning_rate": self.attention_learning_rate,
                "attention_momentum": self.attention_momentum,
                "attention_signal": self.attention_signal,
                "pruned_feature_widths": dict(self._pruned_widths) or None,
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


def _efficient_score(scores: tf.Tensor, nuisance: tf.Tensor) -> tf.Tensor:
    """Sums ``scores`` ``[B, N]`` after regressing out the ``nuisance`` ``[B, D]``.

    Rao's efficient score ``U - F_sz F_zz^-1 U_z`` with per-example gradients as
    the Fisher information's factors; a ridge of 1e-4 of the mean diagonal keeps
    the solve stable. All-zero nuisance columns change nothing.

    >>> x = tf.constant([[1.0, 2.0], [3.0, 6.0], [-1.0, 1.0]])
    >>> [round(float(v), 3) for v in _efficient_score(x[:, :1], x[:, 1:])]
    [-1.17]
    """
    system, finite = _ridge_system(nuisance)
    sums = tf.where(tf.math.is_finite(nuisance), nuisance, 0.0)
    coef = tf.linalg.solve(system, tf.reduce_sum(sums, axis=0)[:, None])
    cross = tf.matmul(scores, nuisance, transpose_a=True)
    adjusted = tf.reduce_sum(scores, axis=0) - tf.linalg.matvec(cross, coef[:, 0])
    return tf.where(finite, adjusted, tf.fill(tf.shape(adjusted), math.nan))


def _residual_scores(scores: tf.Tensor, nuisance: tf.Tensor) -> tf.Tensor:
    """Per-example ``scores`` ``[B, N]`` with the ``nuisance`` ``[B, D]`` regressed
    out (the same ridge as :func:`_efficient_score`, whose result is their sum;
    NaN where the nuisance is not finite).

    >>> x = tf.constant([[1.0, 2.0], [3.0, 6.0], [-1.0, 1.0]])
    >>> [round(float(v), 3) for v in _residual_scores(x[:, :1], x[:, 1:])[:, 0]]
    [0.073, 0.22, -1.463]
    """
    system, finite = _ridge_system(nuisance)
    coef = tf.linalg.solve(system, tf.matmul(nuisance, scores, transpose_a=True))
    residual = scores - tf.matmul(nuisance, coef)
    return tf.where(finite, residual, tf.fill(tf.shape(residual), math.nan))


def _ridge_system(nuisance: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The nuisance's Gram matrix plus a ridge of 1e-4 of its mean diagonal,
    and whether it is finite (if not, an identity stands in: a NaN or inf loss
    then gives non-finite scores, which are counted and never applied, instead
    of a failed solve)."""
    zz = tf.matmul(nuisance, nuisance, transpose_a=True)
    width = tf.shape(zz)[0]
    mean_diagonal = tf.linalg.trace(zz) / tf.cast(tf.maximum(width, 1), tf.float32)
    ridge = 1e-4 * mean_diagonal + 1e-12
    finite = tf.logical_and(
        tf.reduce_all(tf.math.is_finite(zz)), tf.math.is_finite(ridge)
    )
    system = tf.where(finite, zz + ridge * tf.eye(width), tf.eye(width))
    return system, finite
