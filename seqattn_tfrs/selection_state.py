"""A gated layer's selection state: its variables, gates, logit steps and commits.

Everything that must survive a restart lives in these variables (created on
the owning layer, so checkpoints and ``BackupAndRestore`` carry them). The
decisions themselves are the shared algorithm in :mod:`seqattn_tfrs.core`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from seqattn_tfrs.core import evidence, logit_rule, modes, probe, selection, signals
from seqattn_tfrs.core import pairs as pairs_lib
from seqattn_tfrs.core.options import AttentionOptions
from seqattn_tfrs.tf_ops import TF

_AGGREGATION = {
    "mean": tf.VariableAggregation.MEAN,
    "sum": tf.VariableAggregation.SUM,
    "first": tf.VariableAggregation.ONLY_FIRST_REPLICA,
}


# Strategies whose replicas each hold a copy of a variable, updated alone by
# the replica where it has no aggregation: the probe's sums are summed there.
_REPLICA_LOCAL_SUMS = (
    tf.distribute.OneDeviceStrategy,
    tf.distribute.MirroredStrategy,
    tf.distribute.MultiWorkerMirroredStrategy,
)


def _replica_total(
    strategy: tf.distribute.Strategy, variable: tf.Variable
) -> np.ndarray:
    """The sum of ``variable``'s copies over ``strategy``'s replicas, each read
    where it lives (an all-reduce across workers); the value itself with one
    replica."""
    if strategy.num_replicas_in_sync == 1:
        return variable.numpy()
    copies = strategy.run(lambda: tf.identity(variable))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, copies, axis=None).numpy()


class SelectionState:
    """The variables of one gated layer's selection, and what changes them.

    Args:
      spec: what the layer selects (count or budget).
      options: the attention settings.
      num_rounds: rounds reserved for the selection.
      add_weight: the owning layer's ``add_weight``, so the variables are the
        layer's (tracked, checkpointed, mirrored under a strategy).
      preselected: feature indices already selected, in order (a layer restored
        from a pruned config).
    """

    def __init__(
        self,
        spec: selection.SelectionSpec,
        options: AttentionOptions,
        num_rounds: int,
        add_weight: Callable[..., tf.Variable],
        preselected: Sequence[int] = (),
    ) -> None:
        self.spec = spec
        self.options = options
        self.num_rounds = num_rounds
        self._pair_scores: np.ndarray | None = None  # see set_pair_scores
        n = len(spec.feature_names)
        selected = np.zeros([n], np.float32)
        order = np.full([n], -1, np.int32)
        for position, index in enumerate(preselected):
            selected[index] = 1.0
            order[position] = index

        def state(name, shape, dtype, initial, aggregation="first"):
            return add_weight(
                name=name,
                shape=shape,
                dtype=dtype,
                initializer=tf.keras.initializers.Constant(initial),
                trainable=False,
                aggregation=_AGGREGATION[aggregation],
                # Selection state stays float32 under a mixed-precision policy.
                experimental_autocast=False,
            )

        self.logits = state("attention_logits", [n], tf.float32, 0.0, "mean")
        self.selected_mask = state("selected_mask", [n], tf.float32, selected)
        self.selection_order = state("selection_order", [n], tf.int32, order)
        self.num_picked = state("num_picked", [], tf.int32, len(preselected))
        # Committed rounds; not num_picked / selections_per_round, since a
        # budgeted round may pick fewer than selections_per_round.
        done = -(-len(preselected) // options.selections_per_round)
        self.rounds_done = state("rounds_done", [], tf.int32, done)
        self.gate_mode = state("gate_mode", [], tf.int32, modes.DENSE)
        # (optimizer iterations, epoch) when the selection's first fit began;
        # the schedule counts from there (core.schedule.schedule_origin).
        self.schedule_origin = state("schedule_origin", [2], tf.int32, -1)
        self.learn_from_fit_batches = state("learn_from_fit_batches", [], tf.int32, 1)
        rows = spec.history_rows(num_rounds)
        self.round_gates = state("round_gates", [rows, n], tf.float32, 0.0)
        self.budget_closed = None
        if spec.budget_bytes is not None:
            # 1 once no unselected feature fits what is left of the budget (set
            # by the pick that exhausted it; a pruned layer is closed).
            closed = int(bool(preselected))
            self.budget_closed = state("budget_closed", [], tf.int32, closed)
        self.momentum = state("logit_momentum", [n], tf.float32, 0.0, "mean")
        # This round's sums of per-example scores and of their squares, over
        # every replica's examples (the score test of the settled model).
        self.score_sum = state("score_sum", [n], tf.float32, 0.0, "sum")
        self.score_squares = state("score_squares", [n], tf.float32, 0.0, "sum")
        # With them, the factors of the same test with the null model's
        # variance (core.signals.information_sums): the first pick's ranking.
        self.score_norms = state("score_upstream_norms", [n], tf.float32, 0.0, "sum")
        self.score_projections = state("score_projections", [n], tf.float32, 0.0, "sum")
        # The held-out batches the score sums came from (0 when they came from
        # training batches): under a budget, rows read more than once in a
        # round inflate the z that `entry_z` reads, as for the held-out sums
        # below (docs/pareto.md, "A budget family where size says nothing").
        self.score_batches = state("score_batches", [], tf.float32, 0.0, "sum")
        # The same sums of the held-out gate gradients while the logits learn
        # (candidates partly on): whether any candidate still helps.
        self.heldout_sum = state("heldout_score_sum", [n], tf.float32, 0.0, "sum")
        self.heldout_squares = state(
            "heldout_score_squares", [n], tf.float32, 0.0, "sum"
        )
        # The held-out batches those sums came from (each replica adds its
        # share), and, set by the callback, the batches in one pass of
        # `selection_data` (None: unknown): rows read twice in a round
        # inflate the z (core.evidence.revisit_factor).
        self.heldout_batches = state("heldout_batches", [], tf.float32, 0.0, "sum")
        self.heldout_pass_batches: int | None = None
        # [c, s] = 1: feature c is a function of feature s on the data checked
        # (see core.dependence); all 0 until a check ran.
        self.dependence = state("functional_dependence", [n, n], tf.float32, 0.0)
        self.dependence_checked = state("dependence_checked", [], tf.int32, 0)
        self.second_moment = state("logit_second_moment", [], tf.float32, 0.0, "mean")
        self.logit_steps = state("logit_steps", [], tf.float32, 0.0)
        self.nonfinite_logit_steps = state("nonfinite_logit_steps", [], tf.int32, 0)
        # The held-out probe (core.probe): 1 while the settles sum its training
        # side, the sums themselves (``N * PROBE_BUCKETS`` numbers while on,
        # one 0 otherwise, so a finished or trimmed layer stores 4 bytes) and
        # the z of the last held-out pass, read by the next commit. Under a
        # strategy of mirrored replicas each replica's steps add to its own
        # copy of the sums (they are not synchronised: no aggregation), and
        # the host adds the copies up (`gather_probe_sums`); not under other
        # strategies (a parameter server's, a TPU's).
        self.probe_active = state("probe_active", [], tf.int32, 0)
        self.probe_scores = state("probe_scores", [n], tf.float32, 0.0)
        # One 0 while off (not empty: a parameter server's partitioner
        # refuses a 0-sized variable). Where it stays off, with a fixed
        # shape: the same weights as without a strategy, for
        # get_weights/set_weights across the two.
        self._strategy = tf.distribute.get_strategy()
        # Whether a raw input has values to hash (set where the layer's call
        # hands them to the probe; None before): else the probe's pass runs
        # the held-out score test.
        self.values_to_hash: bool | None = None
        self.probe_supported = not tf.distribute.has_strategy() or isinstance(
            self._strategy, _REPLICA_LOCAL_SUMS
        )
        self._probe_sums_gathered = False
        self.probe_sums = tf.Variable(
            tf.zeros([1]),
            shape=tf.TensorShape(None) if self.probe_supported else [1],
            trainable=False,
            name="probe_sums",
        )
        # The probe's direction per feature ``[N, W]`` and, summed over
        # training rows since the last commit, the second moments ``[N, W,
        # W]`` of the features' upstream gradients that give the next ones
        # (core.probe.principal_axes); flat, and one 0 until a step that sums
        # the probe traces (W, the widest embedding, is known only then).
        self.probe_axes, self.probe_moments = (
            tf.Variable(
                tf.zeros([1]),
                shape=tf.TensorShape(None) if self.probe_supported else [1],
                trainable=False,
                name=name,
            )
            for name in ("probe_axes", "probe_moments")
        )

    # ------------------------------------------------------------ in-graph
    def complete(self) -> tf.Tensor:
        """Whether the selection is done (a boolean tensor)."""
        if self.spec.budget_bytes is None:
            return self.num_picked >= self.spec.num_selected
        return tf.equal(self.budget_closed, 1)

    def gates(self) -> tf.Tensor:
        """Every feature's gate ``[N]``, float32."""
        return signals.gate_values(
            TF, self.logits, self.selected_mask, self.gate_mode, self.complete()
        )

    def learning(self) -> tf.Tensor:
        """Whether the logits learn now (a selection round, not yet complete)."""
        return tf.logical_and(
            tf.equal(self.gate_mode, modes.SELECTING), tf.logical_not(self.complete())
        )

    def settling(self) -> tf.Tensor:
        """Whether a round is settling (the score test collects evidence)."""
        return tf.logical_and(
            tf.equal(self.gate_mode, modes.SETTLING), tf.logical_not(self.complete())
        )

    def apply_logit_gradient(
        self, grad: tf.Tensor, enabled: tf.Tensor | bool = True
    ) -> tf.Operation:
        """Updates the logits from ``dLoss/dlogits`` with the package's own rule.

        A no-op unless a selection round is on (and ``enabled``). A gradient
        with a NaN or infinite entry changes nothing and is counted in
        ``nonfinite_logit_steps`` instead. Written without control flow (the
        no-op is a 0/1 factor), so that under a ``tf.distribute`` strategy the
        variable updates may synchronise replicas.
        """
        grad = tf.convert_to_tensor(grad, tf.float32)
        finite = tf.reduce_all(tf.math.is_finite(grad))
        learning = tf.logical_and(self.learning(), tf.cast(enabled, tf.bool))
        go = tf.cast(tf.logical_and(learning, finite), tf.float32)
        step = self.logit_steps + go
        delta, momentum, second = logit_rule.normalized_momentum_step(
            TF,
            tf.where(tf.math.is_finite(grad), grad, tf.zeros_like(grad)),
            1.0 - self.selected_mask,
            self.momentum,
            self.second_moment,
            tf.maximum(step, 1.0),
            learning_rate=self.options.attention_learning_rate,
            beta1=self.options.attention_momentum,
        )
        keep = 1.0 - go
        return tf.group(
            self.logits.assign_add(go * delta),
            self.momentum.assign(go * momentum + keep * self.momentum),
            self.second_moment.assign(go * second + keep * self.second_moment),
            self.logit_steps.assign(step),
            self.nonfinite_logit_steps.assign_add(
                tf.cast(tf.logical_and(learning, tf.logical_not(finite)), tf.int32)
            ),
        )

    def add_evidence(
        self,
        total: tf.Tensor,
        squares: tf.Tensor,
        norms: tf.Tensor,
        projections: tf.Tensor,
        heldout_batches: tf.Tensor | float = 0.0,
    ) -> list[tf.Operation]:
        """Adds a batch's score sums to the round's score-test evidence
        (``heldout_batches``: 1 for a held-out batch that counts, else 0)."""
        return [
            self.score_sum.assign_add(total),
            self.score_squares.assign_add(squares),
            self.score_norms.assign_add(norms),
            self.score_projections.assign_add(projections),
            self.score_batches.assign_add(_replica_share(heldout_batches)),
        ]

    def add_heldout_evidence(
        self, total: tf.Tensor, squares: tf.Tensor, batches: tf.Tensor | float = 1.0
    ) -> list[tf.Operation]:
        """Adds a held-out batch's gate-gradient sums while the logits learn
        (``batches``: 1 for a batch that counts, 0 for one that does not)."""
        return [
            self.heldout_sum.assign_add(total),
            self.heldout_squares.assign_add(squares),
            self.heldout_batches.assign_add(_replica_share(batches)),
        ]

    def probing(self) -> tf.Tensor:
        """Whether this training step sums the probe's training side (a
        round settling after a commit that asked for it)."""
        return tf.logical_and(self.settling(), tf.equal(self.probe_active, 1))

    def add_probe(self, values: tf.Tensor, slots: tf.Tensor) -> tf.Operation:
        """Adds a batch's probe values at their flat slots of the sums (see
        :func:`seqattn_tfrs.core.probe.probe_slots`), repeats summed: work in
        the batch's size, not the sums'."""
        return self.probe_sums.scatter_add(tf.IndexedSlices(values, slots)).op

    # ------------------------------------------------------------ host side
    def probe_summed(self) -> bool:
        """Whether this round's settle sums the probe's training side."""
        return int(self.probe_active.numpy()) == 1

    def gather_probe_sums(self) -> None:
        """Sets every replica's copy of the probe's training-side sums to
        their total over replicas, once the settle is over (the held-out pass
        reads the copy where it runs; the next settle zeroes them); nothing
        with one replica."""
        if self._probe_sums_gathered or self._strategy.num_replicas_in_sync == 1:
            return
        total = _replica_total(self._strategy, self.probe_sums)
        self.probe_sums.assign(total, read_value=False)
        self._probe_sums_gathered = True

    def probe_training_sums(self) -> np.ndarray | None:
        """The probe's training-side sums ``[N, PROBE_BUCKETS]`` (over every
        replica), or None where the settle did not sum them."""
        if not self.probe_summed():
            return None
        sums = (  # read, not gathered: a settle may still be adding to them
            self.probe_sums.numpy()
            if self._probe_sums_gathered
            else _replica_total(self._strategy, self.probe_sums)
        )
        return sums.reshape(len(self.spec.feature_names), probe.PROBE_BUCKETS)

    def set_probe_scores(self, scores: np.ndarray) -> None:
        """Stores the probe's z per feature for the next commit."""
        self.probe_scores.assign(np.asarray(scores, np.float32))

    def pairs_to_test(self) -> list[tuple[str, str]]:
        """The pairs of candidates whose held-out pair test the next commit
        reads; empty where it reads none
        (:func:`seqattn_tfrs.core.evidence.pairs_to_test`)."""
        if self.spec.budget_bytes is not None:
            return []
        pairs = evidence.pairs_to_test(
            self.selected_mask.numpy() > 0,
            self.dependence.numpy() > 0,
            self.heldout_scores(),
            self.probe_scores.numpy(),
            self.spec.num_selected - int(self.num_picked.numpy()),
        )
        names = self.spec.feature_names
        return [(names[i], names[j]) for i, j in pairs]

    def set_pair_scores(self, scores: Mapping[tuple[str, str], float]) -> None:
        """Hands the next commit the held-out pair test's z per pair of
        features (NaN for a pair left out). Not a variable: the callback
        computes it from the held-out pass right before the commit that
        reads it, which then drops it."""
        self._pair_scores = pairs_lib.pair_matrix(
            self.spec.layer_name, self.spec.feature_names, scores
        )

    def prepare_probe_axes(self, widths: Sequence[int]) -> None:
        """Sets the probe's directions to
        :func:`seqattn_tfrs.core.probe.initial_axes` for embeddings of
        ``widths``, with the moments zeroed, where they hold another shape or
        were never set (all 0: a draw is never 0); eagerly, even when called
        while a step traces."""
        count, width = len(widths), max(widths)
        with tf.init_scope():
            axes = self.probe_axes
            if int(tf.size(axes)) != count * width or not np.any(axes.numpy()):
                axes = probe.initial_axes(widths).reshape(-1)
                self.probe_axes.assign(axes, read_value=False)
                moments = tf.zeros([axes.size * width])
                self.probe_moments.assign(moments, read_value=False)

    def probe_axes_for(self, widths: Sequence[int]) -> tf.Tensor:
        """The probe's directions ``[N, max(widths)]`` (a read where it is
        called), prepared first (:meth:`prepare_probe_axes`)."""
        self.prepare_probe_axes(widths)
        return tf.reshape(self.probe_axes, [len(widths), max(widths)])

    def measuring_axes(self) -> tf.Tensor:
        """Whether this training step adds to the moments behind the next
        probe directions: before the selection completes, outside the
        rounds' selecting parts (the warm-up, the settles)."""
        return tf.logical_and(
            tf.not_equal(self.gate_mode, modes.SELECTING),
            tf.logical_not(self.complete()),
        )

    def add_moments(self, values: tf.Tensor, slots: tf.Tensor) -> tf.Operation:
        """Adds second-moment entries at their flat slots of the moments."""
        return self.probe_moments.scatter_add(tf.IndexedSlices(values, slots)).op

    def _next_probe_axes(self, complete: bool) -> None:
        """At a commit: the moments summed since the last one give the next
        settle's probe directions, and restart from 0 (nothing before the
        first traced step that sums them). A complete selection needs
        neither: one 0 each, as under a strategy (the same weights)."""
        if complete:
            if self.probe_supported:
                for variable in (self.probe_axes, self.probe_moments):
                    variable.assign(tf.zeros([1]), read_value=False)
            return
        count = len(self.spec.feature_names)
        size = int(tf.size(self.probe_axes))
        if size == 1:
            return
        width = size // count
        moments = _replica_total(self._strategy, self.probe_moments)
        moments = moments.reshape(count, width, width)
        previous = self.probe_axes.numpy().reshape(count, width)
        axes = probe.principal_axes(moments, previous)
        self.probe_axes.assign(axes.reshape(-1), read_value=False)
        self.probe_moments.assign(tf.zeros_like(self.probe_moments), read_value=False)

    def _set_probe(self, active: bool) -> None:
        """Starts (zeroed) or stops the probe's sums for the next settle."""
        self.probe_active.assign(int(active and self.probe_supported))
        if not self.probe_supported:
            return
        self._probe_sums_gathered = False
        size = len(self.spec.feature_names) * probe.PROBE_BUCKETS if active else 1
        self.probe_sums.assign(tf.zeros([size]), read_value=False)

    def record(self) -> selection.SelectionRecord:
        """The committed state as arrays."""
        return selection.SelectionRecord(
            selected=self.selected_mask.numpy() > 0,
            order=self.selection_order.numpy(),
            rounds_done=int(self.rounds_done.numpy()),
            round_gates=self.round_gates.numpy(),
            closed=self.budget_closed is not None
            and int(self.budget_closed.numpy()) == 1,
        )

    def entry_scores(self) -> np.ndarray:
        """Per feature, this round's score statistic (see ``entry_z``)."""
        return selection.entry_statistics(
            self.score_sum.numpy(), self.score_squares.numpy()
        )

    def entry_z_scores(self) -> np.ndarray:
        """:meth:`entry_scores` less the inflation of held-out rows read more
        than once this round: what ``entry_z`` compares with."""
        return selection.heldout_statistics(
            self.score_sum.numpy(),
            self.score_squares.numpy(),
            float(self.score_batches.numpy()),
            self.heldout_pass_batches,
        )

    def first_scores(self) -> np.ndarray:
        """Per feature, this round's Rao statistic (the first pick's ranking)."""
        return selection.rao_statistics(
            self.score_sum.numpy(),
            self.score_norms.numpy(),
            self.score_projections.numpy(),
        )

    def heldout_scores(self) -> np.ndarray:
        """Per feature, this round's held-out gate-gradient statistic, less
        the inflation of rows read more than once this round."""
        return selection.heldout_statistics(
            self.heldout_sum.numpy(),
            self.heldout_squares.numpy(),
            float(self.heldout_batches.numpy()),
            self.heldout_pass_batches,
        )

    def commit_round(
        self, costs: Sequence[int | None] | None, require_learning: bool = False
    ) -> list[int]:
        """Commits the next round's picks; returns their feature indices.

        Args:
          costs: bytes per feature (None entries where unknown: refused
            under a budget; by count, candidates that do not help then keep
            their statistic's order).
          require_learning: refuse when no logit step was applied this round.

        Raises:
          RuntimeError, FloatingPointError, ValueError: see
            :func:`seqattn_tfrs.core.selection.commit_round`; RuntimeError also
            when ``require_learning`` and the logits never learned.
        """
        record = self.record()
        if require_learning and float(self.logit_steps.numpy()) == 0.0:
            skipped = int(self.nonfinite_logit_steps.numpy())
            raise RuntimeError(
                f"{self.spec.layer_name}: no logit update was applied in selection "
                f"round {record.rounds_done + 1} ({skipped} had a NaN/inf gradient "
                "so far), so there is nothing to pick from. Fix the NaN loss, or "
                "lengthen the round / lower `settle_fraction` or "
                "`selection_interval`; or, if this fit began past the round's "
                "learning steps (`optimizer.iterations` or `initial_epoch` above "
                "0 for a selection not yet begun), select with a freshly "
                "compiled model from epoch 0."
            )
        if record.complete(self.spec):
            raise RuntimeError(
                f"{self.spec.layer_name}: the selection is already complete."
            )
        new, picks = selection.commit_round(
            self.spec,
            record,
            self.logits.numpy(),
            self.gates().numpy(),
            num_rounds=self.num_rounds,
            costs=costs,
            entry_scores=self.entry_scores(),
            entry_z_scores=self.entry_z_scores(),
            dependence=self.checked_dependence(),
            heldout_scores=self.heldout_scores(),
            first_scores=self.first_scores(),
            probe_scores=self.probe_scores.numpy(),
            pair_scores=self._pair_scores,
            no_values_to_hash=self.values_to_hash is False,
        )
        self._pair_scores = None
        self.round_gates.assign(new.round_gates)
        self.selection_order.assign(new.order.astype(np.int32))
        self.selected_mask.assign(new.selected.astype(np.float32))
        self.num_picked.assign(new.num_picked)
        self.rounds_done.assign(new.rounds_done)
        if self.budget_closed is not None:
            self.budget_closed.assign(int(new.closed))
        wanted = self.spec.budget_bytes is None and probe.probe_wanted(
            new.selected, self.heldout_scores(), new.complete(self.spec)
        )
        self._reset_round()
        self._next_probe_axes(new.complete(self.spec))
        self._set_probe(wanted)
        return picks

    def reset_evidence(self) -> None:
        """Zeroes the round's score-test sums."""
        self.score_sum.assign(tf.zeros_like(self.score_sum))
        self.score_squares.assign(tf.zeros_like(self.score_squares))
        self.score_norms.assign(tf.zeros_like(self.score_norms))
        self.score_projections.assign(tf.zeros_like(self.score_projections))
        self.score_batches.assign(0.0)

    def checked_dependence(self) -> np.ndarray | None:
        """The ``[N, N]`` functional dependence found on data, or None before
        a check (no relations known is not the same as none found)."""
        if int(self.dependence_checked.numpy()) == 0:
            return None
        return self.dependence.numpy() > 0

    def set_dependence(self, dependence: np.ndarray) -> None:
        """Stores the ``[N, N]`` functional dependence found on data."""
        n = len(self.spec.feature_names)
        dependence = np.asarray(dependence)
        if dependence.shape != (n, n):
            raise ValueError(
                f"{self.spec.layer_name}: `dependence` must have shape ({n}, {n}) "
                f"(one row and column per feature), got {dependence.shape}."
            )
        self.dependence.assign(dependence.astype(np.float32))
        self.dependence_checked.assign(1)

    def _reset_round(self) -> None:
        """Zeroes the logits and their update state for the next round."""
        self.logits.assign(tf.zeros_like(self.logits))
        self.momentum.assign(tf.zeros_like(self.momentum))
        self.reset_evidence()
        self.heldout_sum.assign(tf.zeros_like(self.heldout_sum))
        self.heldout_squares.assign(tf.zeros_like(self.heldout_squares))
        self.heldout_batches.assign(0.0)
        self.probe_scores.assign(tf.zeros_like(self.probe_scores))
        self.second_moment.assign(0.0)
        self.logit_steps.assign(0.0)


def _replica_share(batches: tf.Tensor | float) -> tf.Tensor:
    """A batch count as this replica's share: under a strategy every replica
    adds its share, and the variable's sum over replicas counts the batch once."""
    share = tf.cast(batches, tf.float32)
    if tf.distribute.has_strategy():
        share /= tf.distribute.get_strategy().num_replicas_in_sync
    return share
