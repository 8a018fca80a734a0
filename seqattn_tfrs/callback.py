"""The Keras callback that runs greedy forward selection during ``model.fit``."""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf

from seqattn_tfrs import (
    _compat,  # noqa: F401  (Keras 2 check)
    dependence_check,
    heldout_probe,
)
from seqattn_tfrs import heldout as heldout_lib
from seqattn_tfrs.core import modes, round_report
from seqattn_tfrs.core import options as options_lib
from seqattn_tfrs.core import schedule as schedule_lib
from seqattn_tfrs.core.schedule import SelectionSchedule
from seqattn_tfrs.discovery import find_feature_gates, find_gated_layers, keras_layers
from seqattn_tfrs.gate import SequentialAttentionEmbedding


class SequentialAttentionCallback(tf.keras.callbacks.Callback):
    """Greedy forward selection of features across ``model.fit``.

    For every :class:`~seqattn_tfrs.SequentialAttentionEmbedding` in the model:
    a dense warm-up (all gates 1), then selection rounds - the attention logits
    learn while the softmax gate is active, and at the end of the round
    ``selections_per_round`` unselected features are committed (gate 1), the
    remaining logits reset - then a fine-tune in which the unselected gates
    are exactly 0. From training batches a round commits the largest logits;
    with ``selection_data`` the picks rest on held-out evidence as well (the
    first on the score test of the model with every gate at 0, later ones on
    the held-out probe and gate scores: ``seqattn_tfrs.core.selection.
    commit_round`` says how). The callback changes only variable
    values, so nothing is retraced; all selection state lives in the layer's
    variables, so checkpoints and ``BackupAndRestore`` resume it exactly.

    Rounds last ``epochs_per_selection`` epochs, or ``steps_per_selection``
    training steps when that is given. ``fit`` must run at least
    ``warmup_epochs + num_rounds * round_length + finetune_epochs`` epochs (the
    fine-tune takes whatever is left); this is checked before any training.
    A layer selecting under ``budget_bytes`` reserves the most rounds its budget
    can need; when no unselected feature fits any more it closes early, picks
    nothing in its remaining rounds, and its unselected gates are 0 from then on.

    The attention logits learn with this package's own update rule, never with
    the model's optimizer. By default they learn from the training batches.
    With ``selection_data`` (held-out batches in the same format as the
    training data) they learn only from the loss on those batches, every
    ``selection_interval`` training steps during a round; the model's weights
    never learn from them. Pass held-out data whenever some features can
    memorise the training labels (ids, high-cardinality fields).

    With ``selection_data``, before training the callback also reads up to
    50,000 of its rows through the model and finds which features are exact
    functions of others (``layer.functional_dependencies``). A round passes
    over a candidate that groups the rows exactly as a selected feature does
    (a copy under another name, a re-coding of its ids): its table can add
    nothing the selected one's cannot. A one-way function (a coarsening, a
    user attribute next to the user id) still competes: it pools rare values.

    Args:
      warmup_epochs: dense epochs before the first round.
      epochs_per_selection: epochs per selection round (epoch mode; default 1).
      finetune_epochs: minimum epochs after the last pick.
      steps_per_selection: if given, rounds last this many training steps
        instead of epochs (warm-up and fine-tune still count epochs).
      within_fit: lay the whole schedule inside the steps ``fit`` runs
        (:func:`seqattn_tfrs.core.schedule.within_fit`): the warm-up takes
        ``warmup_fraction`` of them, the fine-tune at least
        ``finetune_fraction``, and the rounds share the rest, each at least
        40 and at most 100 steps (fewer is refused before training; steps
        beyond 100 a round go to the fine-tune). Excludes the explicit
        schedule arguments above.
      warmup_fraction: with ``within_fit``, the warm-up's share of the steps.
      finetune_fraction: with ``within_fit``, the fine-tune's least share.
      settle_fraction: the first part of every round, in which the logits do
        not learn and the model trains on the selected features alone (the
        other gates are 0) - in the first round, with nothing selected yet,
        on all of them (gates 1), so its logits learn for as long as every
        other round's. The logits then learn what each
        candidate adds to a model fitted to the selected set, as Orthogonal
        Matching Pursuit scores candidates against the residual of the
        selected ones. Without it, the model still splits what a committed
        feature explains with its near copies, and a copy can win.
      selection_data: optional held-out ``tf.data.Dataset`` the logits learn on.
        Held-out steps cycle over it; where a round reads its rows more than
        once, the held-out z is discounted for it, which needs the batches in
        one pass: the dataset's cardinality, or one count over its pipeline
        when training begins where tf.data cannot tell (an endless dataset
        is not discounted).
      selection_interval: training steps between held-out logit steps. With
        ``steps_per_execution`` > 1 in ``compile`` (as on TPUs) the callback
        sees only every execution's last step: modes change and rounds pick at
        execution boundaries, and at most one held-out step runs per execution.
      verbose: 0 silent; 1 (or 2, as for `fit`) prints each pick.
      log_dir: if given, every gate value is written per epoch as TensorBoard
        scalars ``<layer>/gate/<feature>``.

    Example:
      >>> callback = SequentialAttentionCallback(warmup_epochs=1, finetune_epochs=1)
      >>> callback.schedule_length(num_rounds=3)
      5
    """

    def __init__(
        self,
        *,
        warmup_epochs: int | None = None,
        epochs_per_selection: int | None = None,
        finetune_epochs: int | None = None,
        steps_per_selection: int | None = None,
        within_fit: bool = False,
        warmup_fraction: float = 0.1,
        finetune_fraction: float = 0.1,
        settle_fraction: float = 0.8,
        selection_data: tf.data.Dataset | None = None,
        selection_interval: int = 1,
        verbose: int = 1,
        log_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        # It reads no batch logs, so it takes them as they are: no host sync per
        # step, and ParameterServerStrategy's fit (which refuses batch hooks that
        # need numpy logs) accepts it.
        self._supports_tf_logs = True
        options = schedule_lib.ScheduleOptions(
            warmup_epochs=warmup_epochs,
            epochs_per_selection=epochs_per_selection,
            finetune_epochs=finetune_epochs,
            steps_per_selection=steps_per_selection,
            within_fit=within_fit,
            warmup_fraction=warmup_fraction,
            finetune_fraction=finetune_fraction,
            settle_fraction=settle_fraction,
            selection_interval=selection_interval,
            verbose=verbose,
        )
        if selection_data is not None and not isinstance(
            selection_data, tf.data.Dataset
        ):
            raise TypeError(
                "`selection_data` must be a tf.data.Dataset of held-out batches, "
                f"got {type(selection_data).__name__}."
            )
        self.schedule_options = options
        self.settle_fraction = float(settle_fraction)
        self.warmup_epochs = options.warmup_epochs
        self.epochs_per_selection = epochs_per_selection or 1
        self.finetune_epochs = options.finetune_epochs
        self.steps_per_selection = steps_per_selection
        self.within_fit = bool(within_fit)
        self.warmup_fraction = float(warmup_fraction)
        self.finetune_fraction = float(finetune_fraction)
        self.selection_data = selection_data
        self.selection_interval = selection_interval
        self.verbose = verbose
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.events: list[dict[str, Any]] = []
        self.gate_history: list[dict[str, Any]] = []
        self._layers: list[SequentialAttentionEmbedding] = []
        self._schedules: dict[int, SelectionSchedule] = {}
        self._writer = None
        self._heldout_iterator = None
        self._heldout_step = None
        self._coordinator = None
        self._steps_done = 0  # of the schedule: since the selection began
        self._origin = schedule_lib.NOT_BEGUN  # see _begin_clock
        self._clock_pending = False
        self._finished = False  # every layer had finished when fit began
        self._first_batch = 0
        self._epoch = 0
        self._pending_logs: dict[str, float] = {}
        self._modes: dict[int, int] = {}
        # Host-side mirrors of each layer's selection state, so that the batch
        # hooks read no variable (a device-to-host copy and a sync per step):
        # refreshed at the start of training and of every epoch, and after
        # every pick.
        self._rounds_done: dict[int, int] = {}
        self._has_selected: dict[int, bool] = {}
        self._complete: dict[int, bool] = {}
        self._steps_per_epoch: int | None = None
        self._settle_units: dict[int, int] = {}

    # ------------------------------------------------------------- schedule
    def schedule_length(self, num_rounds: int, steps_per_epoch: int | None = None):
        """Epochs the schedule needs for ``num_rounds``; with
        ``steps_per_selection``, steps, which need ``steps_per_epoch`` (``fit``
        then runs ``ceil(steps / steps_per_epoch)`` epochs)."""
        return self.schedule_options.length(num_rounds, steps_per_epoch)

    def _schedule(
        self, num_rounds: int, steps_per_epoch: int | None, epochs: int | None = None
    ) -> SelectionSchedule:
        return self.schedule_options.schedule(num_rounds, steps_per_epoch, epochs)

    @property
    def _step_mode(self) -> bool:
        return self.schedule_options.step_mode

    # ----------------------------------------------------------- fit hooks
    def on_train_begin(self, logs=None):
        self._layers = find_gated_layers(self.model)
        if not self._layers:
            raise ValueError(
                "SequentialAttentionCallback found no SequentialAttentionEmbedding "
                f"in model {self.model.name!r}; wrap its embeddings first."
            )
        # A later fit (more training) after the last pick: the gates stay.
        self._finished = round_report.nothing_to_select(self._layers, self.verbose)
        if self._finished:
            return
        epochs = self.params.get("epochs")
        steps = self.params.get("steps")
        available = epochs * steps if self._step_mode and steps else epochs
        unit = "steps" if self._step_mode else "epochs"
        self._schedules = {}
        for layer in self._layers:
            schedule = self._schedule(layer.num_rounds, steps, epochs)
            if schedule.total > available:
                raise ValueError(
                    f"The selection schedule of layer {layer.name!r} needs "
                    f"{schedule.total} {unit} (warm-up {schedule.warmup}, "
                    f"{schedule.num_rounds} rounds x {schedule.per_round}, "
                    f"fine-tune {schedule.finetune}) but fit runs {available} "
                    f"{unit} (epochs={epochs}, steps per epoch={steps})."
                )
            self._schedules[id(layer)] = schedule
            layer.learn_from_fit_batches.assign(0 if self.selection_data else 1)
        self._clock_pending = True  # the schedule's origin: at the first epoch
        self._steps_per_epoch = steps
        per_call = getattr(self.model, "_steps_per_execution", None)
        per_call = 1 if per_call is None else int(tf.keras.backend.get_value(per_call))
        # Each layer settles for its own rounds' share (layers selecting
        # different numbers of features get rounds of different lengths).
        self._settle_units = {}
        for layer in self._layers:
            round_length = (
                self._schedules[id(layer)].per_round
                if self._step_mode
                else self.epochs_per_selection * (steps or 1)
            )
            settle = int(self.settle_fraction * round_length)
            self._settle_units[id(layer)] = settle
            in_steps = self._step_mode or steps
            # Modes change only between calls of `steps_per_execution` steps.
            if in_steps and -(-settle // per_call) * per_call >= round_length:
                raise ValueError(
                    f"`settle_fraction`={self.settle_fraction} leaves no step in "
                    f"which the logits of layer {layer.name!r} learn: rounds of "
                    f"{round_length} steps, settling for {settle}, and modes "
                    f"change every {per_call} steps (`steps_per_execution`); "
                    "lower `settle_fraction` or lengthen the rounds."
                )
            if self.settle_fraction > 0 and settle == 0:
                raise ValueError(
                    f"`settle_fraction`={self.settle_fraction} gives layer "
                    f"{layer.name!r} no settling step in rounds of {round_length} "
                    f"{'steps' if in_steps else 'epochs'}; pass `steps_per_epoch` "
                    "to fit (or a dataset of known size), lengthen the rounds, or "
                    "set `settle_fraction=0`."
                )
        if self.selection_data is not None:
            schedule_lib.check_selection_interval(self.selection_interval, steps)
        tested = [layer.name for layer in self._layers if layer.options.tracks_evidence]
        if tested and self.settle_fraction == 0:
            raise ValueError(options_lib.settle_needed_message(tested))
        if self.selection_data is not None:
            heldout_lib.check_selection_data(
                self.model, self.selection_data, self._layers
            )
            self._check_dependence()
            pass_batches = heldout_lib.pass_batches(self.selection_data)
            for layer in self._layers:
                layer.set_heldout_pass_batches(pass_batches)
        # The held-out probe's training side is traced into training steps
        # only with held-out data, and only for layers of raw inputs.
        probing = {id(layer) for layer in find_feature_gates(self.model, self._layers)}
        changed = [
            layer.sum_probe_in_training(
                self.selection_data is not None and id(layer) in probing
            )
            for layer in self._layers
        ]
        unprobed = [
            layer.name
            for layer in self._layers
            if self.selection_data is not None
            and id(layer) in probing
            and not layer.selection_state.probe_supported
        ]
        if unprobed and self.verbose:
            strategy = _strategy_name(self.model.distribute_strategy)
            print(
                f"SequentialAttention {unprobed}: built under {strategy}, whose "
                "replicas' sums the held-out probe cannot add up, so it does not "
                "run; picks after the first rest on the gate's held-out z alone "
                "(docs/distributed.md).",
                flush=True,
            )
        if any(changed) and _traced(self.model.train_function):
            # A step traced before would keep the old sums; an untraced one (a
            # fit's first) reads the flag when it traces. Rebuilding walks every
            # tracked attribute (0.1 s at 26 vocabularies of 1,000 strings).
            self.model.make_train_function(force=True)  # sets train_function
        self._modes = {
            id(layer): int(layer.gate_mode.numpy()) for layer in self._layers
        }
        self._early_settle: dict[int, bool] = {}
        self._first_test: dict[int, bool] = {}
        self._refresh_mirrors()
        strategy = self.model.distribute_strategy
        self._coordinator = (
            tf.distribute.experimental.coordinator.ClusterCoordinator(strategy)
            if isinstance(strategy, tf.distribute.ParameterServerStrategy)
            else None
        )
        if self.log_dir and self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        if self.selection_data is not None:
            heldout = strategy.experimental_distribute_dataset(
                self.selection_data.repeat()
            )
            if self._coordinator is not None:  # an iterator on every worker
                heldout = self._coordinator.create_per_worker_dataset(heldout)
            self._heldout_iterator = iter(heldout)
            self._heldout_step = None  # built at first use: metrics exist by then
        self._probes: dict[int, heldout_probe.HeldoutProbe] = {}
        _build_optimizer(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        if self._finished:
            return
        self._epoch = epoch
        self._refresh_mirrors()  # a checkpoint may have been restored
        if self._clock_pending:  # after any restore in on_train_begin
            self._begin_clock(epoch)
        if not self._step_mode:
            self._advance(completed=epoch - self._origin[1], logs=None)
            self._set_modes(units=epoch - self._origin[1], steps_into_unit=0)

    def on_train_batch_begin(self, batch, logs=None):
        if self._finished:
            return
        # With steps_per_execution > 1 (as on TPUs), one pair of batch hooks
        # brackets several steps: begin gets the first one's index, end the last.
        self._first_batch = batch

    def on_train_batch_end(self, batch, logs=None):
        if self._finished:
            return
        if self._step_mode:
            self._steps_done += int(batch - self._first_batch + 1)
            self._advance(completed=self._steps_done, logs=self._pending_logs)
            self._set_modes(units=self._steps_done, steps_into_unit=0)
        else:
            self._set_modes(
                units=self._epoch - self._origin[1], steps_into_unit=batch + 1
            )
        if (
            self._heldout_iterator is not None
            and (batch + 1) // self.selection_interval
            > self._first_batch // self.selection_interval
            and any(self._collects_heldout(layer) for layer in self._layers)
        ):
            if self._heldout_step is None:
                self._heldout_step = self._make_heldout_step()
            # The first round's score test: the held-out batch sees every gate
            # at 0 (the intercept-only model) while training stays dense.
            testing = [g for g in self._layers if self._first_test.get(id(g))]
            if testing:
                self._wait_for_scheduled_steps()
            for layer in testing:
                layer.set_gate_mode(modes.SETTLING)
            if self._coordinator is None:
                self._heldout_step(self._heldout_iterator)
            else:
                # It saves and restores the metrics, which a training step running
                # at the same time on another worker would lose: it runs alone.
                self._coordinator.join()
                self._coordinator.schedule(
                    self._heldout_step, args=(self._heldout_iterator,)
                )
                self._coordinator.join()
            for layer in testing:
                layer.set_gate_mode(self._modes[id(layer)])

    def on_epoch_end(self, epoch, logs=None):
        if self._finished:
            return
        logs = logs if logs is not None else {}
        self._wait_for_scheduled_steps()
        if not self._step_mode:
            self._advance(completed=epoch + 1 - self._origin[1], logs=logs)
        logs.update(self._pending_logs)
        self._pending_logs = {}
        prefix = round_report.log_prefixes(self._layers)
        for layer in self._layers:
            gates = layer.gate_values()
            skipped = int(layer.nonfinite_logit_steps.numpy())
            if skipped:
                logs[f"{prefix[id(layer)]}nonfinite_logit_steps"] = float(skipped)
                if self.verbose:
                    print(
                        f"\nSequentialAttention [{layer.name}]: {skipped} logit "
                        "step(s) so far had a NaN/inf gradient and were not applied.",
                        flush=True,
                    )
            logs[f"{prefix[id(layer)]}num_selected"] = float(
                len(layer.selected_features)
            )
            self.gate_history.append(
                {"epoch": epoch, "layer": layer.name, "gates": gates}
            )
            if self._writer is not None:
                with self._writer.as_default(step=epoch):
                    for feature, value in gates.items():
                        tf.summary.scalar(f"{layer.name}/gate/{feature}", value)
        if self._writer is not None:
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._finished:
            return
        if self._writer is not None:
            self._writer.flush()
        for layer in self._layers:
            round_report.warn_if_incomplete(
                layer,
                self._schedules[id(layer)],
                rounds_done=int(layer.rounds_done.numpy()),
                step_mode=self._step_mode,
                steps_per_epoch=self._steps_per_epoch,
                first_epoch=max(self._origin[1], 0),
            )

    # -------------------------------------------------------------- logic
    def _begin_clock(self, epoch: int) -> None:
        """Counts the schedule from where the selection began (stored in the
        layers, else now) and refuses a fit too short for the rest of it
        (``core.schedule.begin_clock``)."""
        origins = {g.name: g.selection_state.schedule_origin for g in self._layers}
        self._origin, position, left = schedule_lib.begin_clock(
            {name: tuple(int(v) for v in o.numpy()) for name, o in origins.items()},
            {g.name: self._schedules[id(g)] for g in self._layers},
            now=(int(self.model.optimizer.iterations.numpy()), epoch),
            progressed=frozenset(
                g.name for g in self._layers if self._rounds_done[id(g)]
            ),
            epochs=self.params.get("epochs"),
            steps_per_epoch=self._steps_per_epoch,
            step_mode=self._step_mode,
        )
        for origin in origins.values():
            origin.assign(self._origin)
        self._steps_done = position if self._step_mode else 0
        self._clock_pending = False
        self._record_schedules(position + left)

    def _record_schedules(self, units_to_end: int) -> None:
        """Each layer's schedule record, with the fine-tune that runs (an
        explicit schedule's takes the rest of ``units_to_end``, the units from
        the selection's origin to this fit's end); the first epoch's logs (and
        so History) carry it."""
        unit = "steps" if self._step_mode else "epochs"
        prefix = round_report.log_prefixes(self._layers)
        for layer in self._layers:
            schedule = self._schedules[id(layer)]
            record = {
                "unit": unit,
                "warmup": schedule.warmup,
                "rounds": schedule.num_rounds,
                "per_round": schedule.per_round,
                "finetune": units_to_end
                - schedule.warmup
                - schedule.num_rounds * schedule.per_round,
                "within_fit": self.within_fit,
            }
            layer.record_schedule(record)
            for key in ("warmup", "per_round", "finetune"):
                self._pending_logs[f"{prefix[id(layer)]}schedule/{key}_{unit}"] = float(
                    record[key]
                )

    def _check_dependence(self) -> None:
        """Finds which features are functions of others on ``selection_data``
        (once per layer: the result is in the layer's variables)."""
        unchecked = [
            layer
            for layer in find_feature_gates(self.model, self._layers)
            if layer.functional_dependencies is None and not layer.selection_complete
        ]
        dependence_check.check_functional_dependence(
            self.model, unchecked, self.selection_data
        )
        if self.verbose:
            for layer in unchecked:
                found = layer.functional_dependencies
                print(
                    f"SequentialAttention [{layer.name}] functions of other "
                    f"features (copies are passed over once one is selected): "
                    f"{found}",
                    flush=True,
                )

    def _refresh_mirrors(self) -> None:
        """Reads each layer's selection state into the host-side mirrors."""
        for layer in self._layers:
            key = id(layer)
            self._rounds_done[key] = int(layer.rounds_done.numpy())
            self._has_selected[key] = bool(layer.selected_features)
            self._complete[key] = layer.selection_complete

    def _collects_heldout(self, layer: SequentialAttentionEmbedding) -> bool:
        """Whether a held-out step now teaches ``layer`` something (never once
        its selection is complete: the fine-tune)."""
        if self._complete[id(layer)] or self._early_settle.get(id(layer)):
            return False
        if self._first_test.get(id(layer)):
            return True
        return layer.collects_evidence(self._modes[id(layer)])

    def _wait_for_scheduled_steps(self) -> None:
        """Under ParameterServerStrategy, waits until every scheduled step has run.

        There the batch hooks run on the coordinator when a step is scheduled, not
        when a worker has run it; a pick or a gate-mode change must see every
        earlier step and apply to every later one.
        """
        if self._coordinator is not None:
            self._coordinator.join()

    def _advance(self, completed: int, logs: dict | None) -> None:
        """Brings every layer to the state the schedule wants after ``completed``."""
        prefix = round_report.log_prefixes(self._layers)
        for layer in self._layers:
            schedule = self._schedules[id(layer)]
            key = id(layer)
            done = self._rounds_done[key]
            # A budgeted layer may close before its reserved rounds: nothing fits.
            while done < schedule.rounds_due(completed) and not self._complete[key]:
                self._wait_for_scheduled_steps()
                done += 1
                probed = self._run_probe(layer)
                paired = self._run_pair_test(layer) if probed is not None else None
                settled = self._settled_scores(layer)
                event = round_report.commit_and_report(
                    layer,
                    round_number=done,
                    num_rounds=schedule.num_rounds,
                    epoch=self._epoch,
                    step=completed if self._step_mode else None,
                    log_prefix=prefix[id(layer)],
                    logs=logs,
                    verbose=self.verbose,
                    probed=probed,
                    paired=paired,
                    settled=settled,
                )
                self.events.append(event)
                self._rounds_done[key] = done
                self._has_selected[key] = self._has_selected[key] or bool(
                    event["features"]
                )
                self._complete[key] = layer.selection_complete

    def _run_probe(
        self, layer: SequentialAttentionEmbedding
    ) -> tuple[dict[str, float], dict[str, float]] | None:
        """Before a commit whose settle summed the probe's training side (by
        count, after the first round), hands the layer the held-out probe's z
        (see :mod:`seqattn_tfrs.core.probe`) and returns it with the gate's z
        of every candidate (also those with no values to hash, which have no
        probe z); None where the probe does not run."""
        if self.selection_data is None or not layer.probe_summed:
            return None  # e.g. resumed without selection_data
        evidence = layer.heldout_evidence()
        if id(layer) not in self._probes:  # traced once, reused in later rounds
            self._probes[id(layer)] = heldout_probe.HeldoutProbe(self.model, layer)
        scores = self._probes[id(layer)].scores(self.selection_data)
        if scores is None:
            return None
        layer.set_probe_scores(scores)
        return round_report.probe_report(layer, scores, evidence, self.verbose)

    def _run_pair_test(
        self, layer: SequentialAttentionEmbedding
    ) -> dict[tuple[str, str], float] | None:
        """After the probe's pass, before a commit by count in which no
        candidate helps alone or one looks like an interaction's member,
        hands the layer the held-out pair test's z of the pairs it asks for
        (see :mod:`seqattn_tfrs.core.pairs`) and returns them; None where the
        commit reads none."""
        pairs = layer.pairs_to_test()
        if not pairs:
            return None
        scores = self._probes[id(layer)].pair_scores(pairs)
        layer.set_pair_scores(scores)
        return round_report.pair_report(layer, scores, self.verbose)

    @staticmethod
    def _settled_scores(
        layer: SequentialAttentionEmbedding,
    ) -> tuple[dict[str, float], dict[str, float]] | None:
        """Before a commit whose settle ran the score test in place of the
        probe's training side (a layer with no values to hash), the
        candidates' settled score z, whose sums rank them
        (:func:`seqattn_tfrs.core.selection.commit_round`), and their gate's
        z; None otherwise (a layer with values to hash)."""
        if not layer.probe_summed or layer.selection_state.values_to_hash:
            return None
        return round_report.settled_scores(layer)

    def _set_modes(self, units: int, steps_into_unit: int) -> None:
        """Sets each layer's gate mode for the next training step.

        ``units`` whole units (epochs or steps) are complete, plus
        ``steps_into_unit`` steps of the current epoch in epoch mode.
        """
        for layer in self._layers:
            schedule = self._schedules[id(layer)]
            into_round = schedule.units_into_round(units)
            if self._step_mode:
                progress = into_round
            elif self._steps_per_epoch:
                progress = into_round * self._steps_per_epoch + steps_into_unit
            else:
                progress = into_round  # whole epochs when steps are unknown
            mode = schedule.mode(
                units,
                in_settle=progress < self._settle_units[id(layer)],
                any_selected=self._has_selected[id(layer)],
            )
            settle = self._settle_units[id(layer)]
            early = schedule_lib.early_settle(mode, progress, settle)
            self._first_test[id(layer)] = (
                self._heldout_iterator is not None
                and schedule_lib.first_round_test(
                    mode, progress, settle, schedule.in_warmup(units)
                )
            )
            if self._early_settle.get(id(layer)) and not early:
                layer.reset_evidence()
            self._early_settle[id(layer)] = early
            if self._modes.get(id(layer)) != mode:
                self._wait_for_scheduled_steps()
                layer.set_gate_mode(mode)
                self._modes[id(layer)] = mode

    # ----------------------------------------------------------- held-out
    def _make_heldout_step(self):
        return heldout_lib.make_heldout_step(self.model, self._layers)


def _build_optimizer(model: tf.keras.Model) -> None:
    """Creates the optimizer's variables (Adam's moments, ...) before ``fit``
    traces its first step: the same ones, for the same variables, that its
    first ``apply_gradients`` would create. Created inside that trace, they make
    ``tf.function`` trace the step a second time, and the gated step's trace
    is the long part of a short fit's fixed cost (docs/fit_cost.md). Only
    where every layer of the model is built (a subclassed model, such as a
    TFRS one, may build some in that first trace: an optimizer built before
    would not know their variables) and the optimizer has ``build``
    (tf-keras' optimizers, not the legacy ones); ``build`` does nothing once
    the optimizer is built."""
    build = getattr(getattr(model, "optimizer", None), "build", None)
    if build is None or not model.built:
        return
    if not all(layer.built for layer in keras_layers(model)):
        return
    with model.distribute_strategy.scope():
        build(model.trainable_variables)


def _strategy_name(strategy: tf.distribute.Strategy) -> str:
    """The public name of ``strategy``'s class (TensorFlow's classes behind
    some of them are named otherwise: ``ParameterServerStrategyV2``)."""
    for name in ("ParameterServerStrategy", "TPUStrategy"):
        if isinstance(strategy, getattr(tf.distribute, name)):
            return name
    return type(strategy).__name__


def _traced(function: Any) -> bool:
    """Whether ``fit``'s train function was traced (or may have been: not a
    ``tf.function``, whose traces cannot be counted)."""
    if function is None:
        return False
    count = getattr(function, "experimental_get_tracing_count", None)
    return count is None or count() > 0
