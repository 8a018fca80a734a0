"""The Sequential Attention gate over per-feature embeddings, for Keras 3."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from seqattn_tfrs.core import embedding_shape, evidence, probe, signals
from seqattn_tfrs.core import pairs as pairs_lib
from seqattn_tfrs.core import selection as selection_lib
from seqattn_tfrs.core.modes import DENSE
from seqattn_tfrs.core.ops import NUMPY
from seqattn_tfrs.core.options import AttentionOptions
from seqattn_tfrs.keras3 import (
    arguments,
    dependence_check,
    learning,
    saved_state,
    tables,
)


@keras.saving.register_keras_serializable(package="seqattn_tfrs")
class SequentialAttentionEmbedding(keras.layers.Layer):
    """Wraps per-feature embeddings with Sequential Attention gates (Keras 3).

    The Keras 3 twin of the tf-keras layer of the same name, running on JAX,
    TensorFlow and PyTorch. Each feature's embedding ``[batch, d]`` is
    multiplied by a scalar gate and returned in a dict keyed by feature name.
    :class:`~seqattn_tfrs.keras3.SequentialAttentionCallback` moves the layer
    through warm-up (gates 1), selection rounds (selected gates 1, the others
    a softmax over attention logits that learn) and a fine-tune (unselected
    gates exactly 0), so :func:`~seqattn_tfrs.keras3.prune` can then drop the
    unselected tables without changing a prediction.

    The attention logits and their update state are trainable variables made
    with ``overwrite_with_gradient=True``: the gate's backward pass runs this
    package's own logit rule (``seqattn_tfrs.core``) and hands back their new
    values, which the optimizer assigns instead of stepping. The user's
    optimizer never moves them, and nothing is assigned inside the compiled
    step, which is what JAX needs.

    Args:
      embeddings: a mapping from feature name to a Keras layer that maps that
        feature's input to a ``[batch, d]`` tensor (e.g. ``keras.layers.
        Embedding``), or a ``keras_rs.layers.DistributedEmbedding`` built from
        a flat dict of ``FeatureConfig`` keyed by feature name.
      num_selected: how many features to select, in ``[1, N]``. Pass exactly
        one of ``num_selected`` and ``budget_bytes``.
      budget_bytes: select by memory: each round picks among the features
        whose table still fits what is left of this many bytes.
      feature_bytes: optional bytes per feature instead of the measured ones.
      selections_per_round, budget_rule, entry_z, attention_learning_rate,
        attention_momentum, attention_signal: see
        :class:`seqattn_tfrs.core.options.AttentionOptions`.
      pruned_feature_widths: set by ``prune``: features whose tables were
        removed, mapped to their width; they output zeros.
      feature_names: the output order when ``pruned_feature_widths`` is given.
      **kwargs: base ``Layer`` arguments (``name``, ``dtype``, ...).

    Example:
      >>> gate = SequentialAttentionEmbedding(
      ...     {"a": keras.layers.Embedding(10, 2), "b": keras.layers.Embedding(5, 3)},
      ...     num_selected=1)
      >>> out = gate({"a": np.array([1, 2]), "b": np.array([0, 4])})
      >>> {name: tuple(value.shape) for name, value in out.items()}
      {'a': (2, 2), 'b': (2, 3)}
      >>> gate.gate_values()
      {'a': 1.0, 'b': 1.0}
    """

    def __init__(
        self,
        embeddings: Mapping[str, keras.layers.Layer] | Any,
        num_selected: int | None = None,
        *,
        budget_bytes: int | None = None,
        feature_bytes: Mapping[str, int] | None = None,
        selections_per_round: int = 1,
        budget_rule: str = "attention_per_byte",
        entry_z: float | str | None = "auto",
        attention_learning_rate: float = 0.05,
        attention_momentum: float = 0.9,
        attention_signal: str = "partial",
        pruned_feature_widths: Mapping[str, int] | None = None,
        feature_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.options = AttentionOptions(
            selections_per_round=selections_per_round,
            budget_rule=budget_rule,
            entry_z=entry_z,
            attention_learning_rate=attention_learning_rate,
            attention_momentum=attention_momentum,
            attention_signal=attention_signal,
        ).resolved(budgeted=budget_bytes is not None, num_selected=num_selected)
        self._distributed = tables.is_distributed(embeddings)
        names, pruned = arguments.check(
            embeddings,
            num_selected=num_selected,
            budget_bytes=budget_bytes,
            feature_bytes=feature_bytes,
            pruned_feature_widths=pruned_feature_widths,
            feature_names=feature_names,
        )
        self.embeddings = embeddings
        self.num_selected = None if num_selected is None else int(num_selected)
        self.budget_bytes = None if budget_bytes is None else int(budget_bytes)
        self.feature_bytes = {k: int(v) for k, v in (feature_bytes or {}).items()}
        self._pruned_widths = pruned
        self._feature_names = tuple(names)
        self.spec = selection_lib.SelectionSpec(
            layer_name=self.name,
            feature_names=self._feature_names,
            num_selected=self.num_selected,
            budget_bytes=self.budget_bytes,
            selections_per_round=self.options.selections_per_round,
            budget_rule=self.options.budget_rule,
            entry_z=self.options.entry_z,
        )
        self.num_rounds = self.spec.num_rounds(list(self.feature_costs().values()))
        self.heldout_pass = False  # set while the callback traces a held-out step
        self.probe_pass = False  # set while it traces the held-out probe's pass
        self.pair_pass = False  # and its pair test's
        # The features the probe hashes; with no values to group, all, which
        # its pass tests by the score test (seen when called).
        self.probe_features = self.score_probe_features = ()
        # The probe's z and the pair test's, for the next commit only.
        self._probe_scores: np.ndarray | None = None
        self._pair_scores: np.ndarray | None = None
        # Each feature's embedding width, seen when called (for pruning).
        self.output_widths: dict[str, int] = dict(pruned or {})
        # Raw inputs and table outputs of eager calls while `recording_inputs`
        # is active; set without Keras's attribute tracking (it would wrap
        # the list), with the tables' compiled lookups where asked for.
        object.__setattr__(self, "_recorded_inputs", None)
        object.__setattr__(self, "_recording_lookups", None)

    # ------------------------------------------------------------------ state
    def build(self, input_shape: Any = None) -> None:
        n = len(self._feature_names)
        if isinstance(input_shape, Mapping):  # build the tables here, not in call
            shapes = {name: input_shape[name] for name in self.kept_features}
            if self._distributed:
                if not self.embeddings.built:
                    self.embeddings.build(shapes)
            else:
                for name, layer in self.embeddings.items():
                    if not layer.built:
                        layer.build(shapes[name])

        def state(name, shape, dtype="float32", value=0.0, overwrite=False):
            return self.add_weight(
                name=name,
                shape=shape,
                dtype=dtype,
                # from numpy, not an eager op per shape (each one a compile on
                # JAX); a backend tensor, since Keras hands an unbuilt model's
                # tracing (PyTorch's symbolic build) what this returns
                initializer=lambda shape, dtype: ops.convert_to_tensor(
                    np.full(shape, value, dtype)
                ),
                trainable=overwrite,
                autocast=False,
                overwrite_with_gradient=overwrite,
            )

        # Handed back by the backward pass (see learning.py), in this order.
        self.learning_state = [
            state("attention_logits", (n,), overwrite=True),
            state("logit_momentum", (n,), overwrite=True),
            state("logit_second_moment", (), overwrite=True),
            state("logit_steps", (), overwrite=True),
            state("nonfinite_logit_steps", (), overwrite=True),
        ]
        self.learning_state += [  # the settled model's score test
            state("score_sum", (n,), overwrite=True),
            state("score_squares", (n,), overwrite=True),
        ]
        self.learning_state += [  # held-out gate gradients while selecting
            state("heldout_score_sum", (n,), overwrite=True),
            state("heldout_score_squares", (n,), overwrite=True),
        ]
        self.learning_state += [  # the score test's null-model variance factors
            state("score_upstream_norms", (n,), overwrite=True),
            state("score_projections", (n,), overwrite=True),
        ]
        # The held-out batches of the held-out sums, and (set by the callback)
        # the batches in one pass of `selection_data`: rows read twice in a
        # round inflate the z (core.evidence.revisit_factor).
        self.learning_state.append(state("heldout_batches", (), overwrite=True))
        # And the held-out batches of the score test's sums.
        self.learning_state.append(state("score_batches", (), overwrite=True))
        # The held-out probe's state (learning.probe_state).
        self.learning_state += learning.probe_state(state, n, self.is_pruned)
        self.heldout_pass_batches: int | None = None
        self.attention_logits = self.learning_state[0]
        self.selected_mask = state("selected_mask", (n,))
        self.selection_order = state("selection_order", (n,), "int32", -1)
        self.rounds_done = state("rounds_done", (), "int32", 0)
        self.gate_mode = state("gate_mode", (), "int32", DENSE)
        self.schedule_origin = state("schedule_origin", (2,), "int32", -1)  # core
        self.learn_from_fit_batches = state("learn_from_fit_batches", (), "int32", 1)
        self.budget_closed = state("budget_closed", (), "int32", 0)
        # 1 while the next settles run the score test on their training rows
        # (after a commit by count with held-out evidence; see learning.py).
        self.settled_test_active = state("settled_test_active", (), "int32", 0)
        rows = self.spec.history_rows(self.num_rounds)
        self.round_gates = state("round_gates", (rows, n))
        # [c, s] = 1: feature c is a function of feature s on the rows the
        # callback checked (core.dependence); all 0 until a check ran.
        self.dependence = state("functional_dependence", (n, n))
        self.dependence_checked = state("dependence_checked", (), "int32", 0)
        if self.is_pruned:  # a pruned layer: the kept features are selected
            index = {name: i for i, name in enumerate(self._feature_names)}
            kept = [index[name] for name in self.kept_features]
            mask = np.zeros(n, np.float32)
            mask[kept] = 1.0
            order = np.full(n, -1, np.int32)
            order[: len(kept)] = kept
            self.selected_mask.assign(mask)
            self.selection_order.assign(order)
            self.budget_closed.assign(1)

    def save_own_variables(self, store: Any) -> None:
        """Saves the layer's own variables by name (see
        :mod:`seqattn_tfrs.keras3.saved_state`)."""
        saved_state.save(self._own_variables(), store)

    def load_own_variables(self, store: Any) -> None:
        """Loads them by name, or by an earlier release's layout."""
        saved_state.load(self.name, self._own_variables(), store)

    def _own_variables(self) -> list:
        # What Keras saves for a layer itself: not its tables' variables.
        return list(self._trainable_variables) + list(self._non_trainable_variables)

    # ------------------------------------------------------------ public view
    @property
    def feature_names(self) -> tuple[str, ...]:
        """All feature names, in output order."""
        return self._feature_names

    @property
    def kept_features(self) -> tuple[str, ...]:
        """Features whose tables this layer holds (after pruning: the kept ones)."""
        if self._distributed:
            return tuple(tables.feature_tables(self.embeddings))
        return tuple(self.embeddings)

    @property
    def is_distributed(self) -> bool:
        """Whether the tables are one keras-rs ``DistributedEmbedding``."""
        return self._distributed

    @property
    def is_pruned(self) -> bool:
        """Whether ``prune`` removed the unselected tables (perhaps none)."""
        return self._pruned_widths is not None

    @property
    def pruned_feature_widths(self) -> dict[str, int]:
        """Features whose tables were removed by pruning, with their widths."""
        return dict(self._pruned_widths or {})

    def record(self) -> selection_lib.SelectionRecord:
        """The committed selection state, read from the variables.

        On JAX during ``fit``, call ``model.jax_state_sync()`` first.
        """
        self._ensure_built()
        return selection_lib.SelectionRecord(
            selected=keras.ops.convert_to_numpy(self.selected_mask) > 0,
            order=keras.ops.convert_to_numpy(self.selection_order),
            rounds_done=int(keras.ops.convert_to_numpy(self.rounds_done)),
            round_gates=keras.ops.convert_to_numpy(self.round_gates),
            closed=bool(keras.ops.convert_to_numpy(self.budget_closed)),
        )

    @property
    def selected_features(self) -> tuple[str, ...]:
        """Selected feature names, in the order they were selected."""
        order = self.record().order
        return tuple(self._feature_names[i] for i in order if i >= 0)

    @property
    def selection_complete(self) -> bool:
        """Whether the count is reached or the budget is closed."""
        return self.record().complete(self.spec)

    def gate_values(self) -> dict[str, float]:
        """The current gate of every feature, by name."""
        self._ensure_built()
        gates = self.host_gates()
        return {name: float(g) for name, g in zip(self._feature_names, gates)}

    def gate_history(self) -> list[dict[str, float]]:
        """Gate values recorded just before each completed selection round."""
        record = self.record()
        rows = record.round_gates[: record.rounds_done]
        return [dict(zip(self._feature_names, map(float, row))) for row in rows]

    def progress(self) -> str:
        """How far the selection is, for messages, e.g. ``"1 of 3 features"``."""
        count = len(self.selected_features)
        if self.budget_bytes is None:
            return f"{count} of {self.num_selected} features"
        return f"{count} features within a budget of {self.budget_bytes} bytes"

    @property
    def functional_dependencies(self) -> dict[str, tuple[str, ...]] | None:
        """Per feature, the features it is a function of on ``selection_data``
        (only features with any; None before a check). A round passes over a
        copy (each a function of the other) of a selected feature.

        On JAX during ``fit``, call ``model.jax_state_sync()`` first.
        """
        self._ensure_built()
        matrix = self._checked_dependence()
        if matrix is None:
            return None
        names = self._feature_names
        return {
            names[c]: tuple(names[s] for s in np.flatnonzero(matrix[c]))
            for c in range(len(names))
            if matrix[c].any()
        }

    def _checked_dependence(self) -> np.ndarray | None:
        """The ``[N, N]`` functional dependence found on data, or None before
        a check (no relations known is not the same as none found)."""
        if int(keras.ops.convert_to_numpy(self.dependence_checked)) == 0:
            return None
        return keras.ops.convert_to_numpy(self.dependence) > 0

    def entry_evidence(self) -> dict[str, float]:
        """Per feature, this round's score statistic so far (see ``entry_z``):
        how many standard errors say raising its gate lowers the loss.

        Kept in the first round with ``selection_data``, and in every round
        with ``entry_z`` or ``"gain_per_byte"``; 0 before any evidence.
        """
        return self._statistics(5)

    def heldout_evidence(self) -> dict[str, float]:
        """Per feature, this round's statistic of the held-out gate gradients
        while the logits learn: how many standard errors say more of it lowers
        the held-out loss (see :func:`seqattn_tfrs.core.selection.commit_round`;
        0 without ``selection_data``). On JAX during ``fit``, call
        ``model.jax_state_sync()`` first."""
        self._ensure_built()
        state = self._learned_state()
        return dict(zip(self._feature_names, map(float, self._heldout_z(state))))

    def _learned_state(self) -> list[np.ndarray]:
        """``learning_state``'s values but the probe's (host copies)."""
        return [
            keras.ops.convert_to_numpy(v)
            for v in self.learning_state[: learning.LEARNED]
        ]

    def probe_summed(self) -> bool:
        """Whether this round's settle summed the held-out probe's training
        side (or, with no values to group, ran the score test): a commit by
        count with held-out evidence asked for it. On JAX during ``fit``,
        call ``model.jax_state_sync()`` first."""
        self._ensure_built()
        active = int(keras.ops.convert_to_numpy(self.settled_test_active)) == 1
        probed = self.probe_features or self.score_probe_features
        return active and bool(probed) and not self.selection_complete

    def set_probe_scores(self, scores: Mapping[str, float]) -> None:
        """Hands the next commit the held-out probe's z per feature (none
        for a feature left out; see :mod:`seqattn_tfrs.keras3.heldout_probe`)."""
        self._probe_scores = probe.score_vector(self.name, self._feature_names, scores)

    def pairs_to_test(self) -> list[tuple[str, str]]:
        """The candidate pairs whose held-out pair test the next commit reads
        (:func:`seqattn_tfrs.core.evidence.pairs_to_test`); empty where it
        reads none (a budget, no probe z)."""
        if self.budget_bytes is not None or self._probe_scores is None:
            return []
        record = self.record()
        pairs = evidence.pairs_to_test(
            record.selected,
            self._checked_dependence(),
            self._heldout_z(self._learned_state()),
            self._probe_scores,
            self.num_selected - record.num_picked,
        )
        return [(self._feature_names[i], self._feature_names[j]) for i, j in pairs]

    def set_pair_scores(self, scores: Mapping[tuple[str, str], float]) -> None:
        """Hands the next commit the held-out pair test's z per pair."""
        self._pair_scores = pairs_lib.pair_matrix(
            self.name, self._feature_names, scores
        )

    def _heldout_z(self, state: list[np.ndarray]) -> np.ndarray:
        """The held-out z from ``learning_state``'s values, less the inflation
        of rows read more than once this round."""
        return selection_lib.heldout_statistics(
            state[7], state[8], float(state[11]), self.heldout_pass_batches
        )

    def set_heldout_pass_batches(self, batches: int | None) -> None:
        """Records how many batches one pass of ``selection_data`` holds (None:
        unknown), so that the held-out z discounts the rows a round reads more
        than once (:func:`seqattn_tfrs.core.evidence.revisit_factor`)."""
        self.heldout_pass_batches = evidence.checked_pass_batches(self.name, batches)

    def _statistics(self, first: int) -> dict[str, float]:
        """Per feature, the z-statistics of the sums and sums of squares in
        ``learning_state[first]`` and ``learning_state[first + 1]``."""
        self._ensure_built()
        total, squares = (
            keras.ops.convert_to_numpy(v)
            for v in self.learning_state[first : first + 2]
        )
        scores = selection_lib.entry_statistics(total, squares)
        return dict(zip(self._feature_names, map(float, scores)))

    def feature_costs(self) -> dict[str, int | None]:
        """Bytes of each feature's table (``feature_bytes`` where given; 0 for a
        pruned feature; ``None`` for a layer not yet built)."""
        if self._distributed:
            measured = tables.distributed_costs(self.embeddings)
        else:
            measured = {n: tables.layer_bytes(t) for n, t in self.embeddings.items()}
        return {
            name: self.feature_bytes.get(name, measured.get(name, 0))
            for name in self._feature_names
        }

    def _ensure_built(self) -> None:
        if not self.built:
            self.build(None)
            self.built = True

    # ------------------------------------------------------------------ gates
    def complete_flag(self) -> Any:
        """Whether the selection is complete, as a tensor (inside a step)."""
        if self.budget_bytes is None:
            picked = ops.sum(ops.cast(self.selected_mask > 0, "int32"))
            return picked >= self.num_selected
        return ops.equal(self.budget_closed, 1)

    def host_gates(self) -> np.ndarray:
        """Every feature's gate ``[N]`` now, computed on the host with numpy.

        On JAX during ``fit``, call ``model.jax_state_sync()`` first.
        """
        self._ensure_built()
        record = self.record()
        return signals.gate_values(
            NUMPY,
            keras.ops.convert_to_numpy(self.attention_logits).astype(np.float64),
            record.selected.astype(np.float64),
            int(keras.ops.convert_to_numpy(self.gate_mode)),
            record.complete(self.spec),
        )

    # ------------------------------------------------------------------- call
    def call(self, features: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(features, Mapping):
            raise TypeError(
                f"{self.name} expects a dict of feature tensors, got "
                f"{type(features).__name__}."
            )
        missing = [name for name in self.kept_features if name not in features]
        if missing:
            raise KeyError(
                f"{self.name}: feature(s) {missing} missing from the inputs; got "
                f"keys {sorted(features)}."
            )
        if self._recording_lookups is not None:
            embedded = self._recording_lookups(features)
        elif self._distributed:
            embedded = self.embeddings({n: features[n] for n in self.kept_features})
        else:
            embedded = {n: layer(features[n]) for n, layer in self.embeddings.items()}
        if self._recorded_inputs is not None:
            rows = {
                n: (
                    dependence_check.row_values(features[n]),
                    dependence_check.row_values(embedded[n]),
                )
                for n in self.kept_features
            }
            if all(v is not None for pair in rows.values() for v in pair):
                self._recorded_inputs.append(rows)
        for name, value in embedded.items():
            self.output_widths[name] = int(value.shape[-1])
            problem = embedding_shape.rank_problem(self.name, name, value.shape)
            if problem:
                raise ValueError(problem)
        if self.is_pruned:  # kept gates are exactly 1
            batch = ops.shape(next(iter(embedded.values())))[0]
            return {
                name: embedded[name]
                if name in embedded
                else ops.zeros((batch, self._pruned_widths[name]), self.compute_dtype)
                for name in self._feature_names
            }
        values = [embedded[name] for name in self._feature_names]
        keys = [learning.row_keys(features[n]) for n in self._feature_names]
        self.probe_features = tuple(
            n for n, k in zip(self._feature_names, keys) if k is not None
        )
        values_to_group = any(
            _has_values_to_group(features[n]) for n in self.kept_features
        )
        self.score_probe_features = () if values_to_group else self._feature_names
        gated = learning.gate_and_learn(
            self, values, values_to_group=values_to_group, keys=keys
        )
        return dict(zip(self._feature_names, gated))

    def compute_output_spec(self, features: Mapping[str, Any]) -> dict[str, Any]:
        if self._distributed:
            widths = tables.distributed_widths(self.embeddings)
            embedded = {
                n: keras.KerasTensor(
                    (features[n].shape[0], widths[n]), dtype=self.compute_dtype
                )
                for n in self.kept_features
            }
        else:
            embedded = {
                n: layer.compute_output_spec(features[n])
                for n, layer in self.embeddings.items()
            }
        batch = next(iter(embedded.values())).shape[0]
        return {
            name: embedded[name]
            if name in embedded
            else keras.KerasTensor(
                (batch, self._pruned_widths[name]), dtype=self.compute_dtype
            )
            for name in self._feature_names
        }

    # ------------------------------------------------------------- selection
    def commit_round(self, require_learning: bool = False) -> list[str]:
        """Commits the next round's picks (core rule); resets the logits.

        Used by the callback; on JAX during ``fit`` it must be preceded by
        ``model.jax_state_sync()``.

        Args:
          require_learning: refuse when no logit update was applied this round.

        Returns:
          The names committed, in order.

        Raises:
          RuntimeError: the round had no logit step, or the selection is
            complete.
        """
        record = self.record()
        state = self._learned_state()
        probe_scores, self._probe_scores = self._probe_scores, None
        pair_scores, self._pair_scores = self._pair_scores, None
        if require_learning and float(state[3]) == 0.0:
            raise RuntimeError(
                f"{self.name}: no logit update was applied in selection round "
                f"{record.rounds_done + 1} ({int(state[4])} had a NaN/inf "
                "gradient), so there is nothing to pick from. Fix a NaN loss (on "
                "JAX an id beyond a table's rows embeds as NaN: check the held-out "
                "ids), or lengthen the round or lower `settle_fraction`; if fit "
                "began past the round's learning steps (`optimizer.iterations` "
                "or `initial_epoch` > 0 before any pick), select from epoch 0."
            )
        entry = selection_lib.entry_statistics(state[5], state[6])
        # What `entry_z` (and by count the first round's "helps alone") compares
        # with: less the inflation of held-out rows the score test read twice.
        entry_z = selection_lib.heldout_statistics(
            state[5], state[6], float(state[12]), self.heldout_pass_batches
        )
        heldout = self._heldout_z(state)
        first = selection_lib.rao_statistics(state[5], state[9], state[10])
        gates = self.host_gates()
        record, picks = selection_lib.commit_round(
            self.spec,
            record,
            state[0],
            gates,
            num_rounds=self.num_rounds,
            costs=list(self.feature_costs().values()),
            entry_scores=entry,
            entry_z_scores=entry_z,
            dependence=self._checked_dependence(),
            heldout_scores=heldout,
            first_scores=first,
            probe_scores=probe_scores,
            pair_scores=pair_scores,
            no_values_to_hash=bool(self.score_probe_features),
        )
        wanted = self.spec.budget_bytes is None and probe.probe_wanted(
            record.selected, heldout, record.complete(self.spec)
        )
        self.settled_test_active.assign(int(wanted))
        self.selected_mask.assign(record.selected.astype(np.float32))
        self.selection_order.assign(record.order.astype(np.int32))
        self.rounds_done.assign(record.rounds_done)
        self.round_gates.assign(record.round_gates)
        self.budget_closed.assign(int(record.closed))
        directions = learning.next_directions(self.learning_state, len(gates))
        for variable in self.learning_state:
            if variable is not self.learning_state[4]:  # keep the NaN count
                variable.assign(np.zeros(variable.shape, np.float32))
        self.learning_state[learning.PROBE_AXES].assign(directions)
        return [self._feature_names[i] for i in picks]

    def reset_evidence(self) -> None:
        """Zeroes the round's score-test sums (see ``entry_evidence``).

        Used by the callback; on JAX during ``fit`` it must be preceded by
        ``model.jax_state_sync()``.
        """
        for variable in (
            self.learning_state[5:7]
            + self.learning_state[9:11]
            + [self.learning_state[12]]
        ):
            variable.assign(np.zeros(variable.shape, np.float32))

    def set_functional_dependence(self, dependence: np.ndarray) -> None:
        """Stores ``[N, N]`` booleans, ``[c, s]``: ``c`` is a function of ``s``
        (:func:`seqattn_tfrs.core.dependence.functional_dependence`), and marks
        the layer checked.

        Raises:
          ValueError: ``dependence`` is not ``[N, N]``.
        """
        n = len(self._feature_names)
        dependence = np.asarray(dependence)
        if dependence.shape != (n, n):
            raise ValueError(
                f"{self.name}: `dependence` must have shape ({n}, {n}) (one row "
                f"and column per feature), got {dependence.shape}."
            )
        self._ensure_built()
        self.dependence.assign(dependence.astype(np.float32))
        self.dependence_checked.assign(1)

    @contextlib.contextmanager
    def recording_inputs(
        self, into: list | None = None, compiled_lookups: bool = False
    ) -> Iterator[list]:
        """While active, each eager call appends, per feature, its raw input
        and its table's output (numpy) to ``into`` (a new list by default),
        which it yields; traced calls append nothing. With
        ``compiled_lookups`` (JAX, a dict of tables), the tables' outputs come
        from one compiled program (:func:`tables.compiled_lookups`)."""
        recorded = [] if into is None else into
        lookups = None
        if compiled_lookups and not self._distributed:
            lookups = tables.compiled_lookups(self.embeddings)
        object.__setattr__(self, "_recorded_inputs", recorded)
        object.__setattr__(self, "_recording_lookups", lookups)
        try:
            yield recorded
        finally:
            object.__setattr__(self, "_recorded_inputs", None)
            object.__setattr__(self, "_recording_lookups", None)

    # ---------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "embeddings": tables.serialize(self.embeddings),
                "num_selected": self.num_selected,
                "budget_bytes": self.budget_bytes,
                "feature_bytes": dict(self.feature_bytes) or None,
                **self.options.as_kwargs(),
                "pruned_feature_widths": self._pruned_widths,
                "feature_names": list(self._feature_names),
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SequentialAttentionEmbedding:
        config = dict(config)
        return cls(tables.deserialize(config.pop("embeddings")), **config)


def _has_values_to_group(value: Any) -> bool:
    """Whether a raw input holds values to group rows by (integers, strings),
    not floating-point or boolean ones."""
    dtype = keras.backend.standardize_dtype(value.dtype)
    return not (dtype == "bool" or "float" in dtype)
