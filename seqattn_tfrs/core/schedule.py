"""The selection schedule: warm-up, selection rounds, then fine-tune."""

from __future__ import annotations

import dataclasses
import math

from seqattn_tfrs.core import modes


def _check_count(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class SelectionSchedule:
    """A warm-up, ``num_rounds`` selection rounds, then a fine-tune, in units.

    The unit is epochs or training steps. Round ``r`` (1-based) picks at the end
    of unit ``warmup + r * per_round``; the model then fine-tunes for at least
    ``finetune`` units.

    Example:
      >>> s = SelectionSchedule(warmup=1, per_round=2, finetune=1, num_rounds=3)
      >>> s.total, s.rounds_due(3), s.rounds_due(7)
      (8, 1, 3)
    """

    warmup: int
    per_round: int
    finetune: int
    num_rounds: int

    def __post_init__(self) -> None:
        _check_count("warmup", self.warmup, 0)
        _check_count("per_round", self.per_round, 1)
        _check_count("finetune", self.finetune, 0)
        _check_count("num_rounds", self.num_rounds, 1)

    @property
    def total(self) -> int:
        """Units needed to finish the schedule."""
        return self.warmup + self.num_rounds * self.per_round + self.finetune

    def rounds_due(self, completed_units: int) -> int:
        """How many rounds must have picked after ``completed_units`` units."""
        if completed_units <= self.warmup:
            return 0
        return min(self.num_rounds, (completed_units - self.warmup) // self.per_round)

    def in_warmup(self, completed_units: int) -> bool:
        """Whether the unit after ``completed_units`` belongs to the warm-up."""
        return completed_units < self.warmup

    def units_into_round(self, completed_units: int) -> int:
        """Whole units of the current round completed (after the warm-up)."""
        return (completed_units - self.warmup) % self.per_round

    def mode(self, completed_units: int, *, in_settle: bool, any_selected: bool) -> int:
        """The gate mode of the unit after ``completed_units``.

        ``DENSE`` in the warm-up. In a round's settle part (``in_settle``, the
        caller's count): ``SETTLING`` once anything is selected, else
        ``DENSE`` - before the first pick there is nothing to settle on, and
        the first round's logits learn for as long as every other round's.
        Otherwise ``SELECTING`` (after the last pick the layer itself zeroes
        the unselected gates whatever the mode).

        Example:
          >>> s = SelectionSchedule(warmup=1, per_round=2, finetune=0, num_rounds=1)
          >>> s.mode(0, in_settle=False, any_selected=False)
          0
          >>> s.mode(1, in_settle=True, any_selected=False)
          0
          >>> s.mode(1, in_settle=True, any_selected=True)
          2
          >>> s.mode(1, in_settle=False, any_selected=False)
          1
        """
        if self.in_warmup(completed_units):
            return modes.DENSE
        if in_settle:
            return modes.SETTLING if any_selected else modes.DENSE
        return modes.SELECTING


def last_pick_epoch(
    schedule: SelectionSchedule, step_mode: bool, steps_per_epoch: int | None
) -> int:
    """The 1-based epoch of ``fit`` whose end follows the schedule's last pick.

    Example:
      >>> s = SelectionSchedule(warmup=1, per_round=2, finetune=1, num_rounds=3)
      >>> last_pick_epoch(s, step_mode=False, steps_per_epoch=None)
      7
      >>> s = SelectionSchedule(warmup=10, per_round=42, finetune=10, num_rounds=2)
      >>> last_pick_epoch(s, step_mode=True, steps_per_epoch=8)
      12
    """
    end = schedule.warmup + schedule.num_rounds * schedule.per_round
    if step_mode:
        return -(-end // steps_per_epoch)
    return end


def early_settle(mode: int, progress: int, settle_units: int) -> bool:
    """Whether a step is in a settle's first half, which the score test behind
    ``entry_z`` (and the ``"gain_per_byte"`` rule) does not count: the model
    is still adapting to the last pick. Both callbacks zero the test's sums
    when it ends, and run no held-out step for the test before.

    ``progress``: steps (or units) into the round; ``settle_units``: the
    settle's length in the same count.

    Example:
      >>> early_settle(modes.SETTLING, 3, 8), early_settle(modes.SETTLING, 4, 8)
      (True, False)
      >>> early_settle(modes.DENSE, 0, 8)
      False
    """
    return mode == modes.SETTLING and progress < settle_units // 2


def first_round_test(
    mode: int, progress: int, settle_units: int, in_warmup: bool
) -> bool:
    """Whether a step's held-out batch runs the first round's score test.

    Outside the warm-up, ``DENSE`` means a settle before the first pick (see
    :meth:`SelectionSchedule.mode`); in its second half, with held-out
    ``selection_data``, each held-out batch sees every gate at 0 (the
    intercept-only model) and the score test counts which feature would lower
    its loss. The first pick follows that test rather than the logits:
    scale-free, and on least squares exactly Orthogonal Matching Pursuit's
    first step. The caller checks that held-out data exist.

    Example:
      >>> first_round_test(modes.DENSE, 4, 8, in_warmup=False)
      True
      >>> first_round_test(modes.DENSE, 3, 8, in_warmup=False)
      False
      >>> first_round_test(modes.SELECTING, 6, 4, in_warmup=False)
      False
    """
    return not in_warmup and mode == modes.DENSE and progress >= settle_units // 2


# The fewest training steps a selection round may have when the schedule is
# laid inside a fit (see ``within_fit``). Measured with
# benchmarks/round_budget.py (docs/benchmarks.md, "Rounds inside one fit"):
# the planted CTR problem selected right on 3 of 3 seeds at 40 and 80 steps
# per round, on 1 of 3 at 10 and 20.
MIN_STEPS_PER_ROUND = 40

# The most training steps a round gets when the schedule is laid inside a fit;
# the steps a longer round would have had go to the fine-tune. The defaults'
# quality is measured on rounds of 40-100 steps (the generated problems'
# one-epoch rounds are 62-100, docs/generated_quality.md); far longer rounds
# can select worse (docs/benchmarks.md, section 6: on MovieLens two rounds of
# 253 steps took `movie_release_year` second on 3 of 3 seeds, where rounds
# capped at 60 or 100 steps take `user_id`; the planted problems, which have
# no table that memorises, selected as well at 160-320 steps).
MAX_STEPS_PER_ROUND = 100


def within_fit(
    total_steps: int,
    num_rounds: int,
    *,
    warmup_fraction: float = 0.1,
    finetune_fraction: float = 0.1,
    min_steps_per_round: int | None = None,
    max_steps_per_round: int | None = None,
    steps_per_epoch: int | None = None,
) -> SelectionSchedule:
    """Lays warm-up, every round and fine-tune inside ``total_steps`` steps.

    The warm-up takes ``warmup_fraction`` of the steps (rounded down), the
    fine-tune at least ``finetune_fraction``, and the rounds share the rest
    equally, up to ``max_steps_per_round`` each; steps left over go to the
    fine-tune. A long fit with few rounds thus selects early and trains the
    selected features for the rest: the selection does not wait while the
    tables of every candidate memorise the training rows.

    Args:
      total_steps: the training steps ``fit`` runs (epochs x steps per epoch).
      num_rounds: the selection rounds to fit in.
      warmup_fraction: share of the steps for the dense warm-up, in [0, 1).
      finetune_fraction: share of the steps for the fine-tune, in [0, 1).
      min_steps_per_round: refuse rounds shorter than this (default:
        ``MIN_STEPS_PER_ROUND``).
      max_steps_per_round: rounds get at most this many steps (default:
        ``MAX_STEPS_PER_ROUND``); at least ``min_steps_per_round``.
      steps_per_epoch: where known, a refusal also names the epochs needed.

    Raises:
      ValueError: the fractions leave no room, or the rounds would be shorter
        than ``min_steps_per_round`` (the message names the numbers).

    Example:
      >>> s = within_fit(500, 6)
      >>> s.warmup, s.per_round, s.finetune, s.total
      (50, 66, 54, 500)
      >>> s = within_fit(1000, 2)  # rounds of 400 steps, capped at 100
      >>> s.warmup, s.per_round, s.finetune, s.total
      (100, 100, 700, 1000)
      >>> within_fit(200, 6)  # doctest: +ELLIPSIS, +NORMALIZE_WHITESPACE
      Traceback (most recent call last):
      ...
      ValueError: 6 selection rounds do not fit in 200 training steps: ... each
      round gets 26 steps, fewer than the 40 a round needs ... at least 300 ...
    """
    if min_steps_per_round is None:
        min_steps_per_round = MIN_STEPS_PER_ROUND
    _check_count("min_steps_per_round", min_steps_per_round, 1)
    if max_steps_per_round is None:
        max_steps_per_round = max(MAX_STEPS_PER_ROUND, min_steps_per_round)
    _check_count("max_steps_per_round", max_steps_per_round, min_steps_per_round)
    _check_count("total_steps", total_steps, 1)
    _check_count("num_rounds", num_rounds, 1)
    for name, value in (
        ("warmup_fraction", warmup_fraction),
        ("finetune_fraction", finetune_fraction),
    ):
        if not (isinstance(value, (int, float)) and 0 <= value < 1):
            raise ValueError(f"`{name}` must be a number in [0, 1), got {value!r}.")
    if warmup_fraction + finetune_fraction >= 1:
        raise ValueError(
            f"`warmup_fraction` + `finetune_fraction` must be < 1, got "
            f"{warmup_fraction} + {finetune_fraction}."
        )
    warmup = int(warmup_fraction * total_steps)
    finetune = int(finetune_fraction * total_steps)
    per_round = (total_steps - warmup - finetune) // num_rounds
    if per_round < min_steps_per_round:
        needed = (
            min_steps_per_round
            * num_rounds
            / (1.0 - warmup_fraction - finetune_fraction)
        )
        needed = math.ceil(needed)
        epochs = ""
        if steps_per_epoch:
            epochs = (
                f" (at least {math.ceil(needed / steps_per_epoch)} epochs of "
                f"{steps_per_epoch} steps, where fit runs "
                f"{total_steps / steps_per_epoch:g})"
            )
        raise ValueError(
            f"{num_rounds} selection rounds do not fit in {total_steps} training "
            f"steps: after a warm-up of {warmup} and a fine-tune of {finetune} "
            f"steps each round gets {per_round} steps, fewer than the "
            f"{min_steps_per_round} a round needs to select well. Train for at "
            f"least {needed} steps{epochs}, commit more features (or width "
            "blocks) per round (`selections_per_round`), or lower the warm-up "
            "and fine-tune fractions."
        )
    per_round = min(per_round, max_steps_per_round)
    return SelectionSchedule(
        warmup=warmup,
        per_round=per_round,
        finetune=total_steps - warmup - num_rounds * per_round,
        num_rounds=num_rounds,
    )


@dataclasses.dataclass(frozen=True)
class ScheduleOptions:
    """A selection callback's schedule arguments, checked once for both
    front-ends, and the schedule they give for a fit.

    Either ``within_fit`` (the rounds share the fit's steps by
    ``warmup_fraction`` and ``finetune_fraction``) or the explicit arguments:
    ``warmup_epochs`` and ``finetune_epochs`` (default 1 each) and rounds of
    ``epochs_per_selection`` epochs (default 1) or ``steps_per_selection``
    steps. See ``SequentialAttentionCallback`` for every argument.

    Example:
      >>> ScheduleOptions(warmup_epochs=2).schedule(3, steps_per_epoch=10).total
      6
      >>> ScheduleOptions(within_fit=True).schedule(2, 50, epochs=4).per_round
      80
    """

    warmup_epochs: int | None = None
    epochs_per_selection: int | None = None
    finetune_epochs: int | None = None
    steps_per_selection: int | None = None
    within_fit: bool = False
    warmup_fraction: float = 0.1
    finetune_fraction: float = 0.1
    settle_fraction: float = 0.8
    selection_interval: int = 1
    verbose: int = 1

    def __post_init__(self) -> None:
        if self.within_fit:
            given = {
                name: getattr(self, name)
                for name in (
                    "warmup_epochs",
                    "epochs_per_selection",
                    "finetune_epochs",
                    "steps_per_selection",
                )
                if getattr(self, name) is not None
            }
            if given:
                raise ValueError(
                    f"`within_fit=True` lays the schedule inside fit's steps by "
                    f"`warmup_fraction` and `finetune_fraction`; got explicit {given}. "
                    "Pass either within_fit or the explicit schedule arguments."
                )
            # Checked now, so that a bad fraction fails before any training.
            within_fit(
                10**9,
                1,
                warmup_fraction=self.warmup_fraction,
                finetune_fraction=self.finetune_fraction,
                min_steps_per_round=1,
            )
        for name in ("warmup_epochs", "finetune_epochs"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, 1)
            _check_count(name, getattr(self, name), 0)
        if (
            self.epochs_per_selection is not None
            and self.steps_per_selection is not None
        ):
            raise ValueError(
                "Pass at most one of `epochs_per_selection` "
                f"(got {self.epochs_per_selection!r}) and `steps_per_selection` "
                f"(got {self.steps_per_selection!r})."
            )
        for name in ("epochs_per_selection", "steps_per_selection"):
            if getattr(self, name) is not None:
                _check_count(name, getattr(self, name), 1)
        _check_count("selection_interval", self.selection_interval, 1)
        settle = self.settle_fraction
        if not (isinstance(settle, (int, float)) and 0 <= settle < 1):
            raise ValueError(
                f"`settle_fraction` must be a number in [0, 1), got {settle!r}."
            )
        if self.verbose not in (0, 1, 2):
            raise ValueError(f"`verbose` must be 0, 1 or 2, got {self.verbose!r}.")

    @property
    def step_mode(self) -> bool:
        """Whether rounds are counted in training steps (else epochs)."""
        return self.steps_per_selection is not None or self.within_fit

    def schedule(
        self, num_rounds: int, steps_per_epoch: int | None, epochs: int | None = None
    ) -> SelectionSchedule:
        """The schedule for ``num_rounds`` rounds in a fit of ``epochs`` epochs of
        ``steps_per_epoch`` steps (in steps in step mode, else in epochs)."""
        if self.within_fit:
            if not steps_per_epoch or not epochs:
                raise ValueError(
                    "`within_fit=True` needs the number of steps fit runs; pass "
                    "`steps_per_epoch` to fit or use data of known size "
                    f"(got epochs={epochs}, steps per epoch={steps_per_epoch})."
                )
            return within_fit(
                epochs * steps_per_epoch,
                num_rounds,
                warmup_fraction=self.warmup_fraction,
                finetune_fraction=self.finetune_fraction,
                steps_per_epoch=steps_per_epoch,
            )
        if self.steps_per_selection is None:
            return SelectionSchedule(
                warmup=self.warmup_epochs,
                per_round=self.epochs_per_selection or 1,
                finetune=self.finetune_epochs,
                num_rounds=num_rounds,
            )
        if steps_per_epoch is None:
            raise ValueError(
                "`steps_per_selection` needs the number of steps per epoch; pass "
                "`steps_per_epoch` to fit or use data of known size."
            )
        return SelectionSchedule(
            warmup=self.warmup_epochs * steps_per_epoch,
            per_round=self.steps_per_selection,
            finetune=self.finetune_epochs * steps_per_epoch,
            num_rounds=num_rounds,
        )

    def length(self, num_rounds: int, steps_per_epoch: int | None = None) -> int:
        """Epochs the schedule needs for ``num_rounds``; with
        ``steps_per_selection``, steps (``fit`` then needs
        ``ceil(length / steps_per_epoch)`` epochs)."""
        if self.within_fit:
            raise ValueError(
                "A `within_fit` schedule takes exactly the steps fit runs; it has "
                "no length of its own."
            )
        if self.steps_per_selection is not None and steps_per_epoch is None:
            raise ValueError(
                "With `steps_per_selection` the schedule's length is in steps and "
                "its warm-up and fine-tune are in epochs: pass `steps_per_epoch` "
                "(got None) to schedule_length."
            )
        return self.schedule(num_rounds, steps_per_epoch).total


def check_selection_interval(interval: int, steps_per_epoch: int | None) -> None:
    """Refuses a ``selection_interval`` longer than an epoch: the held-out
    logit steps come every ``interval`` batches of an epoch, counted from its
    first, so none would ever run (where the epoch's length is known).

    Example:
      >>> check_selection_interval(4, steps_per_epoch=4)
      >>> check_selection_interval(5, steps_per_epoch=4)
      Traceback (most recent call last):
      ...
      ValueError: `selection_interval`=5 is more than the 4 steps of an epoch, ...
    """
    if steps_per_epoch and interval > steps_per_epoch:
        raise ValueError(
            f"`selection_interval`={interval} is more than the {steps_per_epoch} "
            "steps of an epoch, whose batches it counts: no held-out logit step "
            f"would run. Expected at most {steps_per_epoch}."
        )


#: A layer's stored origin before any selection began (both clocks).
NOT_BEGUN = (-1, -1)


def schedule_origin(
    stored: dict[str, tuple[int, int]],
    now: tuple[int, int],
    progressed: frozenset[str] = frozenset(),
) -> tuple[int, int]:
    """Where a callback's schedule counts from: ``(training steps, epoch)``.

    A selection's schedule counts from the optimizer's ``iterations`` and
    ``fit``'s epoch when its first fit with a callback began, not from 0:
    a model trained before (or a fit from ``initial_epoch`` > 0) selects in
    the training that follows. Each gated layer stores the pair in its
    variables, so that a restored checkpoint resumes the same schedule.

    Args:
      stored: each layer's stored pair, :data:`NOT_BEGUN` where none began.
      now: ``(optimizer iterations, epoch)`` at this fit's first epoch.
      progressed: the layers that committed a round. One without a stored
        pair was saved before releases stored it; its schedule counted from
        ``(0, 0)``, as then.

    Returns:
      The origin: the begun layers', else ``now`` (the selection begins in
      this fit).

    Raises:
      ValueError: begun layers stored different origins (one callback runs
        one schedule).

    Example:
      >>> schedule_origin({"a": NOT_BEGUN, "b": NOT_BEGUN}, now=(300, 0))
      (300, 0)
      >>> schedule_origin({"a": (300, 0), "b": NOT_BEGUN}, now=(420, 3))
      (300, 0)
      >>> schedule_origin({"a": NOT_BEGUN}, now=(420, 3), progressed={"a"})
      (0, 0)
    """
    stored = {
        name: (0, 0) if name in progressed and tuple(pair) == NOT_BEGUN else pair
        for name, pair in stored.items()
    }
    begun = {tuple(pair) for pair in stored.values() if tuple(pair) != NOT_BEGUN}
    if len(begun) > 1:
        raise ValueError(
            "The gated layers began their selections at different (step, epoch) "
            f"origins {stored}; one callback runs one schedule for all of them. "
            "Expected layers that began selecting in the same fit."
        )
    return begun.pop() if begun else tuple(now)


def check_schedule_left(
    name: str,
    schedule: SelectionSchedule,
    *,
    position: int,
    left: int,
    unit: str,
    epoch: int,
) -> None:
    """Refuses a fit too short for the rest of a layer's schedule.

    Args:
      name: the layer, named in the error.
      schedule: its schedule (in ``unit``).
      position: units of the schedule done when this fit's first epoch begins.
      left: units this fit runs from there.
      unit: ``"steps"`` or ``"epochs"``.
      epoch: this fit's first epoch (``initial_epoch``).

    Example:
      >>> s = SelectionSchedule(warmup=1, per_round=1, finetune=1, num_rounds=2)
      >>> check_schedule_left("gate", s, position=0, left=4, unit="epochs", epoch=2)
      >>> check_schedule_left("gate", s, position=0, left=3, unit="epochs", epoch=3)
      ... # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      ValueError: ... needs 4 epochs ... but fit runs 3 epochs from epoch 3 ...
    """
    if schedule.total - position <= left:
        return
    done = f", {position} done before this fit" if position else ""
    raise ValueError(
        f"The selection schedule of layer {name!r} needs {schedule.total} {unit} "
        f"(warm-up {schedule.warmup}, {schedule.num_rounds} rounds x "
        f"{schedule.per_round}, fine-tune {schedule.finetune}{done}) but fit "
        f"runs {left} {unit} from epoch {epoch} (`initial_epoch`), where this "
        f"selection's schedule {'continues' if position else 'begins'}. Expected "
        f"{schedule.total - position - left} more {unit} of fit (a `within_fit` "
        "schedule is laid over all of fit's epochs: start it at epoch 0)."
    )


def begin_clock(
    stored: dict[str, tuple[int, int]],
    schedules: dict[str, SelectionSchedule],
    *,
    now: tuple[int, int],
    progressed: frozenset[str],
    epochs: int,
    steps_per_epoch: int | None,
    step_mode: bool,
) -> tuple[tuple[int, int], int, int]:
    """A callback's clock at its fit's first epoch: the schedule's origin
    (:func:`schedule_origin`, for every layer to store), the units of the
    schedule already done and the units this fit runs, with each layer's
    rest checked against the fit (:func:`check_schedule_left`).

    Args:
      stored: each layer's stored origin.
      schedules: each layer's schedule.
      now: ``(optimizer iterations, epoch)``: this fit's first epoch.
      progressed: the layers that committed a round.
      epochs: ``fit``'s ``epochs``.
      steps_per_epoch: its steps per epoch (needed in step mode).
      step_mode: whether the schedules count steps (else epochs).

    Example:
      >>> s = SelectionSchedule(warmup=10, per_round=42, finetune=10, num_rounds=2)
      >>> begin_clock({"gate": NOT_BEGUN}, {"gate": s}, now=(40, 0),
      ...             progressed=frozenset(), epochs=13, steps_per_epoch=8,
      ...             step_mode=True)
      ((40, 0), 0, 104)
      >>> begin_clock({"gate": (40, 0)}, {"gate": s}, now=(0, 0),
      ...             progressed=frozenset(), epochs=13, steps_per_epoch=8,
      ...             step_mode=True)  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      ValueError: ... began at optimizer step 40, and the optimizer is at step 0...
    """
    origin = schedule_origin(stored, now, progressed)
    iterations, epoch = now
    if step_mode:
        position, left = iterations - origin[0], (epochs - epoch) * steps_per_epoch
    else:
        position, left = epoch - origin[1], epochs - epoch
    if position < 0:
        clock = (
            f"optimizer step {origin[0]}, and the optimizer is at step {iterations}"
            if step_mode
            else f"epoch {origin[1]}, and this fit begins at epoch {epoch}"
        )
        raise ValueError(
            f"The selection of layer(s) {sorted(schedules)} began at {clock}: the "
            "clock went back (weights restored without the optimizer, as .h5 "
            "weights are, or a resumed fit without its `initial_epoch`). "
            "Expected the optimizer restored with the weights "
            "(tf.train.Checkpoint, TF-format save_weights, .keras, "
            "BackupAndRestore) and the resumed fit's `initial_epoch`."
        )
    unit = "steps" if step_mode else "epochs"
    for name, schedule in schedules.items():
        check_schedule_left(
            name, schedule, position=position, left=left, unit=unit, epoch=epoch
        )
    return origin, position, left
