"""The Keras 3 callback that runs greedy forward selection during ``model.fit``."""

from __future__ import annotations

from typing import Any

import keras

from seqattn_tfrs.core import options as options_lib
from seqattn_tfrs.core import round_report
from seqattn_tfrs.core import schedule as schedule_lib
from seqattn_tfrs.core.modes import SELECTING, SETTLING
from seqattn_tfrs.core.schedule import SelectionSchedule
from seqattn_tfrs.keras3 import dependence_check, heldout, heldout_probe
from seqattn_tfrs.keras3.gate import SequentialAttentionEmbedding


def find_gated_layers(model: keras.Model) -> list[SequentialAttentionEmbedding]:
    """Every :class:`SequentialAttentionEmbedding` tracked by ``model``, once
    each; refused if two share a name (``core.round_report``)."""
    found: dict[int, SequentialAttentionEmbedding] = {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, SequentialAttentionEmbedding):
            found.setdefault(id(layer), layer)
    return round_report.check_distinct_names(list(found.values()), model.name)


class SequentialAttentionCallback(keras.callbacks.Callback):
    """Greedy forward selection of features across ``model.fit`` (Keras 3).

    The same schedule as the tf-keras callback (``seqattn_tfrs.core``): a dense
    warm-up, ``num_rounds`` selection rounds - each settles first (the model
    fits the selected features alone) and then lets the attention logits learn,
    and at its end commits the largest logits - then a fine-tune with the
    unselected gates at exactly 0. It changes only variable values at step or
    epoch boundaries, so the compiled step is never retraced; on JAX it calls
    ``model.jax_state_sync()`` before reading or writing them mid-epoch.

    With ``selection_data``, before training the callback also runs the model
    forward on up to 50,000 of its rows and finds which features are exact
    functions of others (``layer.functional_dependencies``). A round passes
    over a candidate that groups the rows exactly as a selected feature does
    (a copy under another name, a re-coding of its ids): its table can add
    nothing the selected one's cannot. A one-way function (a coarsening, a
    user attribute next to the user id) still competes: it pools rare values.

    Args:
      warmup_epochs: dense epochs before the first round.
      epochs_per_selection: epochs per selection round (default 1).
      finetune_epochs: minimum epochs after the last pick.
      steps_per_selection: if given, rounds last this many training steps.
      within_fit: lay the whole schedule inside the steps ``fit`` runs
        (``seqattn_tfrs.core.schedule.within_fit``): the warm-up takes
        ``warmup_fraction`` of them, the fine-tune at least
        ``finetune_fraction``, and the rounds share the rest, each at least
        40 and at most 100 steps (fewer is refused before training; steps
        beyond 100 a round go to the fine-tune). Excludes the explicit
        schedule arguments above.
      warmup_fraction: with ``within_fit``, the warm-up's share of the steps.
      finetune_fraction: with ``within_fit``, the fine-tune's least share.
      settle_fraction: the first part of every round, in which the logits do
        not learn and the other gates are 0 (1 in the first round, before any
        pick), in ``[0, 1)``.
      selection_data: optional held-out batches (a ``tf.data.Dataset`` or a
        re-iterable of ``(x, y)`` batches); the logits then learn only from
        the loss on them, every ``selection_interval`` training steps. On
        JAX without a Keras distribution, a numeric ``selection_data`` of up
        to 256 MiB is read once and its batches stay on the device
        (``heldout.DEVICE_BYTES``). Once a pass has ended, a round that
        reads its rows more than once has its held-out z discounted for it.
      selection_interval: training steps between held-out logit steps.
      verbose: 0 silent; 1 (or 2, as for `fit`) prints each pick.

    Example:
      >>> SequentialAttentionCallback(warmup_epochs=1).schedule_length(3)
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
        selection_data: Any = None,
        selection_interval: int = 1,
        verbose: int = 1,
    ) -> None:
        super().__init__()
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
        if selection_data is not None:
            heldout.check_reiterable(selection_data)
        self.schedule_options = options
        self.warmup_epochs = options.warmup_epochs
        self.epochs_per_selection = epochs_per_selection or 1
        self.finetune_epochs = options.finetune_epochs
        self.steps_per_selection = steps_per_selection
        self.within_fit = bool(within_fit)
        self.warmup_fraction = float(warmup_fraction)
        self.finetune_fraction = float(finetune_fraction)
        self.settle_fraction = float(settle_fraction)
        self.selection_data = selection_data
        self.selection_interval = selection_interval
        self.verbose = verbose
        self.events: list[dict[str, Any]] = []
        self.gate_history: list[dict[str, Any]] = []
        self._layers: list[SequentialAttentionEmbedding] = []
        self._schedules: dict[int, SelectionSchedule] = {}
        self._modes: dict[int, int] = {}
        self._heldout_batches = None
        self._heldout_step = None
        self._probe: heldout_probe.HeldoutProbe | None = None
        self._steps_done = 0  # of the schedule: since the selection began
        self._origin = schedule_lib.NOT_BEGUN  # see _begin_clock
        self._clock_pending = False
        self._finished = False  # every layer had finished when fit began
        self._epoch = 0
        self._steps_per_epoch: int | None = None
        self._settle_units: dict[int, int] = {}
        self._pending_logs: dict[str, float] = {}
        self._picked: dict[int, int] = {}
        # Per layer, the rounds done when its probe pass ran at a settle's end.
        self._probed: dict[int, int] = {}

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
    def _build_model(self, unbuilt: list[str], first: Any) -> None:
        """Builds the model on ``first``, ``selection_data``'s first batch: on
        JAX and PyTorch Keras builds a subclassed model before ``on_train_begin``, on
        TensorFlow (without a distribution strategy) only when it traces the
        first step, and the gates' state must exist before it."""
        if self.selection_data is None:
            raise ValueError(
                f"Layer(s) {unbuilt} of model {self.model.name!r} are not built "
                "when training begins (on the TensorFlow backend Keras builds a "
                "subclassed model at its first step); expected a built model: "
                "call it on a batch before `fit`, e.g. `model(x[:1])`."
            )
        x, _, _ = keras.utils.unpack_x_y_sample_weight(tuple(first))
        self.model(x, training=False)

    def on_train_begin(self, logs=None):
        self._layers = find_gated_layers(self.model)
        if not self._layers:
            raise ValueError(
                "SequentialAttentionCallback found no SequentialAttentionEmbedding "
                f"in model {self.model.name!r}; wrap its embeddings first."
            )
        first = None  # selection_data's first batch, read once here
        if self.selection_data is not None:
            first = heldout.check_first_batch(
                self.model,
                self.selection_data,
                {name for layer in self._layers for name in layer.kept_features},
            )
        unbuilt = [layer.name for layer in self._layers if not layer.built]
        if unbuilt:
            self._build_model(unbuilt, first)
        accumulation = getattr(
            self.model.optimizer, "gradient_accumulation_steps", None
        )
        if accumulation:
            raise ValueError(
                f"`gradient_accumulation_steps`={accumulation} is not supported: "
                "Keras merges the gates' handed-back state with a maximum. Expected "
                "an optimizer without gradient accumulation."
            )
        self._sync()
        # A later fit (more training) after the last pick: the gates stay.
        self._finished = round_report.nothing_to_select(self._layers, self.verbose)
        if self._finished:
            return
        epochs, steps = self.params.get("epochs"), self.params.get("steps")
        available = epochs * steps if self._step_mode and steps else epochs
        unit = "steps" if self._step_mode else "epochs"
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
        self._sync()
        for layer in self._layers:
            layer.learn_from_fit_batches.assign(0 if self.selection_data else 1)
        self._clock_pending = True  # the schedule's origin: at the first epoch
        self._steps_per_epoch = steps
        for layer in self._layers:
            per_round = self._schedules[id(layer)].per_round
            length = per_round if self._step_mode else per_round * (steps or 1)
            settle = int(self.settle_fraction * length)
            if self.settle_fraction > 0 and (settle == 0 or settle >= length):
                raise ValueError(
                    f"`settle_fraction`={self.settle_fraction} gives {settle} "
                    f"settling steps in rounds of {length} steps of layer "
                    f"{layer.name!r} (steps per epoch: {steps}); "
                    "expected at least one settling and one learning step. Pass "
                    "data of known size, lengthen the rounds, or set "
                    "`settle_fraction=0`."
                )
            self._settle_units[id(layer)] = settle
        if self.selection_data is not None:
            schedule_lib.check_selection_interval(self.selection_interval, steps)
        tested = [g.name for g in self._layers if g.options.tracks_evidence]
        if tested and self.settle_fraction == 0:
            raise ValueError(options_lib.settle_needed_message(tested))
        self._modes = {
            id(g): int(keras.ops.convert_to_numpy(g.gate_mode)) for g in self._layers
        }
        self._picked = {id(g): g.record().num_picked for g in self._layers}
        self._early_settle: dict[int, bool] = {}
        self._first_test: dict[int, bool] = {}
        if self.selection_data is not None:
            self._check_dependence()
            on_jax = keras.backend.backend() == "jax"
            # Measured on one device; under a Keras distribution (whose steps
            # lay batches out over devices) every pass reads the data, as before.
            keep = on_jax and keras.distribution.distribution() is None
            self._heldout_batches = heldout.Batches(
                self.selection_data, heldout.DEVICE_BYTES if keep else 0
            )
            # JAX compiles the steps ahead for the first batch's shapes: the
            # held-out step, and the probe's pass where a layer hashes values.
            example = first if on_jax else None
            self._heldout_step = heldout.make_step(self.model, self._layers, example)
            self._probe = heldout_probe.HeldoutProbe(self.model, self._layers, example)

    def on_epoch_begin(self, epoch, logs=None):
        if self._finished:
            return
        self._epoch = epoch
        if self._clock_pending:  # after any restore in on_train_begin
            self._begin_clock(epoch)
        if not self._step_mode:
            self._advance(completed=epoch - self._origin[1], logs=None)
            self._set_modes(units=epoch - self._origin[1], steps_into_unit=0)

    def on_train_batch_end(self, batch, logs=None):
        if self._finished:
            return
        if self._step_mode:
            self._steps_done += 1
            self._advance(completed=self._steps_done, logs=self._pending_logs)
            self._set_modes(units=self._steps_done, steps_into_unit=0)
        else:
            self._set_modes(
                units=self._epoch - self._origin[1], steps_into_unit=batch + 1
            )
        if (
            self._heldout_step is not None
            and (batch + 1) % self.selection_interval == 0
            and any(self._collects_heldout(g) for g in self._layers)
        ):
            # The first round's score test: the held-out batch sees every gate
            # at 0 (the intercept-only model) while training stays dense.
            testing = [g for g in self._layers if self._first_test.get(id(g))]
            if testing:
                self._sync()
            for layer in testing:
                layer.gate_mode.assign(SETTLING)
            self._heldout_step(next(self._heldout_batches))
            for layer in testing:
                layer.gate_mode.assign(self._modes[id(layer)])

    def on_epoch_end(self, epoch, logs=None):
        if self._finished:
            return
        logs = logs if logs is not None else {}
        if not self._step_mode:
            self._advance(completed=epoch + 1 - self._origin[1], logs=logs)
        logs.update(self._pending_logs)
        self._pending_logs = {}
        prefix = round_report.log_prefixes(self._layers)
        for layer in self._layers:
            logs[f"{prefix[id(layer)]}num_selected"] = float(
                len(layer.selected_features)
            )
            self.gate_history.append(
                {"epoch": epoch, "layer": layer.name, "gates": layer.gate_values()}
            )

    def on_train_end(self, logs=None):
        if self._finished:
            return
        self._sync()
        # Free the held-out batches kept on the device with the fit's step.
        self._heldout_batches = self._heldout_step = self._probe = None
        for layer in self._layers:
            round_report.warn_if_incomplete(
                layer,
                self._schedules[id(layer)],
                rounds_done=layer.record().rounds_done,
                step_mode=self._step_mode,
                steps_per_epoch=self._steps_per_epoch,
                first_epoch=max(self._origin[1], 0),
            )

    # -------------------------------------------------------------- logic
    def _begin_clock(self, epoch: int) -> None:
        """Counts the schedule from where the selection began (stored in the
        layers, else now) and refuses a fit too short for the rest of it
        (``core.schedule.begin_clock``)."""
        value = keras.ops.convert_to_numpy
        self._origin, position, _ = schedule_lib.begin_clock(
            {g.name: tuple(value(g.schedule_origin).tolist()) for g in self._layers},
            {g.name: self._schedules[id(g)] for g in self._layers},
            now=(int(value(self.model.optimizer.iterations)), epoch),
            progressed=frozenset(
                g.name for g in self._layers if g.record().rounds_done
            ),
            epochs=self.params.get("epochs"),
            steps_per_epoch=self._steps_per_epoch,
            step_mode=self._step_mode,
        )
        for layer in self._layers:
            layer.schedule_origin.assign(keras.ops.array(self._origin, "int32"))
        self._steps_done = position if self._step_mode else 0
        self._clock_pending = False

    def _check_dependence(self) -> None:
        """Finds which features are functions of others on ``selection_data``
        (once per layer: the result is in the layer's variables)."""
        unchecked = [
            layer
            for layer in self._layers
            if layer.functional_dependencies is None and not layer.selection_complete
        ]
        dependence_check.check_functional_dependence(
            self.model, unchecked, self.selection_data
        )
        if self.verbose:
            for layer in unchecked:
                print(
                    f"SequentialAttention [{layer.name}] functions of other "
                    f"features (copies are passed over once one is selected): "
                    f"{layer.functional_dependencies}",
                    flush=True,
                )

    def _collects_heldout(self, layer: SequentialAttentionEmbedding) -> bool:
        """Whether a held-out step teaches ``layer`` now: its logits learn
        (selecting), or its ``entry_z`` score test collects (settling)."""
        if self._early_settle.get(id(layer)):
            return False
        if self._first_test.get(id(layer)):
            return True
        mode = self._modes[id(layer)]
        return mode == SELECTING or (mode == SETTLING and layer.options.tracks_evidence)

    def _sync(self) -> None:
        """On JAX, writes fit's latest state into the variables (and makes the
        next step read them back), so reads and assigns here are not lost."""
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()

    def _advance(self, completed: int, logs: dict | None) -> None:
        """Commits every round the schedule wants done after ``completed`` units."""
        prefix = round_report.log_prefixes(self._layers)
        synced = False
        for layer in self._layers:
            schedule = self._schedules[id(layer)]
            due = schedule.rounds_due(completed)
            if due == 0:
                continue
            if not synced:
                self._sync()
                synced = True
            if self._heldout_batches is not None:
                layer.set_heldout_pass_batches(self._heldout_batches.pass_batches)
            record = layer.record()
            done = record.rounds_done
            while done < due and not record.complete(layer.spec):
                probed = self._run_probe(layer)
                paired = self._run_pair_test(layer) if probed is not None else None
                hashed = probed is not None and not layer.score_probe_features
                settled = None if hashed else _settled_scores(layer)
                event = round_report.commit_and_report(
                    layer,
                    round_number=done + 1,
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
                record = layer.record()
                done = record.rounds_done
                self._picked[id(layer)] = record.num_picked

    def _run_probe(
        self, layer: SequentialAttentionEmbedding
    ) -> tuple[dict[str, float], dict[str, float]] | None:
        """Before a commit whose settle summed the held-out probe's training
        side (by count, after the first round), hands the layer the probe's z
        (:mod:`seqattn_tfrs.keras3.heldout_probe`) from the pass at the
        settle's end (run now where the round had none, as when the settle is
        the whole round or the fit restarted after it) and returns it with
        the gate's z of every candidate (also those with no values to hash);
        None where the probe does not run or no candidate has values to
        hash."""
        if self._probe is None or not layer.probe_summed():
            return None
        gate_z = layer.heldout_evidence()
        if self._probed.pop(id(layer), None) != layer.record().rounds_done:
            self._probe.run_pass([layer], self.selection_data)
        scores = self._probe.scores(layer)
        if not scores:
            return None
        return round_report.probe_report(layer, scores, gate_z, self.verbose)

    def _run_pair_test(
        self, layer: SequentialAttentionEmbedding
    ) -> dict[tuple[str, str], float] | None:
        """After the probe's pass, before a commit by count in which no
        candidate helps alone or one looks like an interaction's member,
        hands the layer the held-out pair test's z of the pairs it asks for
        (:mod:`seqattn_tfrs.core.pairs`) and returns them; None where the
        commit reads none."""
        candidate_pairs = layer.pairs_to_test()
        if not candidate_pairs:
            return None
        scores = self._probe.pair_scores(layer, self.selection_data, candidate_pairs)
        return round_report.pair_report(layer, scores, self.verbose)

    def _set_modes(self, units: int, steps_into_unit: int) -> None:
        """Sets each layer's gate mode for the next training step; where a
        settle that summed the probe's training side ends, runs the probe's
        held-out pass first (:meth:`HeldoutProbe.run_pass
        <seqattn_tfrs.keras3.heldout_probe.HeldoutProbe.run_pass>`)."""
        changed = {}
        for layer in self._layers:
            schedule = self._schedules[id(layer)]
            into_round = schedule.units_into_round(units)
            if self._step_mode or not self._steps_per_epoch:
                progress = into_round
            else:
                progress = into_round * self._steps_per_epoch + steps_into_unit
            settle = self._settle_units[id(layer)]
            mode = schedule.mode(
                units,
                in_settle=progress < settle,
                any_selected=self._picked[id(layer)] > 0,
            )
            early = schedule_lib.early_settle(mode, progress, settle)
            self._first_test[id(layer)] = (
                self._heldout_step is not None
                and schedule_lib.first_round_test(
                    mode, progress, settle, schedule.in_warmup(units)
                )
            )
            if self._early_settle.get(id(layer)) and not early:
                self._sync()
                layer.reset_evidence()
            self._early_settle[id(layer)] = early
            if self._modes.get(id(layer)) != mode:
                changed[id(layer)] = (layer, mode)
        if not changed:
            return
        self._sync()
        settled = [
            layer
            for layer, mode in changed.values()
            if self._modes.get(id(layer)) == SETTLING
            and mode == SELECTING
            and self._probe is not None
            and layer.probe_summed()
        ]
        if settled:
            self._probe.run_pass(settled, self.selection_data)
            for layer in settled:
                self._probed[id(layer)] = layer.record().rounds_done
        for layer, mode in changed.values():
            layer.gate_mode.assign(mode)
            self._modes[id(layer)] = mode


def _settled_scores(
    layer: SequentialAttentionEmbedding,
) -> tuple[dict[str, float], dict[str, float]] | None:
    """Before a commit whose settle ran the settled score test (a layer with
    no values to group; see ``learning.gate_and_learn``), the candidates'
    settled z, which ranks them, and their gate's z; None otherwise. As the
    tf-keras callback's events."""
    active = int(keras.ops.convert_to_numpy(layer.settled_test_active))
    if layer.options.tracks_evidence or not active:
        return None
    return round_report.settled_scores(layer)
