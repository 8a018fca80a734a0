"""The selection schedule: warm-up, selection rounds, then fine-tune."""

from __future__ import annotations

import dataclasses

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

    def mode(self, completed_units: int, *, settling: bool) -> int:
        """The gate mode of the unit after ``completed_units``.

        ``DENSE`` in the warm-up; afterwards ``SETTLING`` when the caller says
        the round is still settling, else ``SELECTING`` (after the last pick
        the layer itself zeroes the unselected gates whatever the mode).

        Example:
          >>> s = SelectionSchedule(warmup=1, per_round=2, finetune=0, num_rounds=1)
          >>> s.mode(0, settling=False), s.mode(1, settling=True)
          (0, 2)
        """
        if self.in_warmup(completed_units):
            return modes.DENSE
        return modes.SETTLING if settling else modes.SELECTING


# The fewest training steps a selection round may have when the schedule is
# laid inside a fit (see ``within_fit``). Measured with
# benchmarks/round_budget.py (docs/benchmarks.md, "Rounds inside one fit"):
# the planted CTR problem selected right on 3 of 3 seeds at 40 and 80 steps
# per round, on 1 of 3 at 10 and 20.
MIN_STEPS_PER_ROUND = 40


def within_fit(
    total_steps: int,
    num_rounds: int,
    *,
    warmup_fraction: float = 0.1,
    finetune_fraction: float = 0.1,
    min_steps_per_round: int | None = None,
) -> SelectionSchedule:
    """Lays warm-up, every round and fine-tune inside ``total_steps`` steps.

    The warm-up takes ``warmup_fraction`` of the steps (rounded down), the
    fine-tune at least ``finetune_fraction``, and the rounds share the rest
    equally; steps left over by the division go to the fine-tune.

    Args:
      total_steps: the training steps ``fit`` runs (epochs x steps per epoch).
      num_rounds: the selection rounds to fit in.
      warmup_fraction: share of the steps for the dense warm-up, in [0, 1).
      finetune_fraction: share of the steps for the fine-tune, in [0, 1).
      min_steps_per_round: refuse rounds shorter than this (default:
        ``MIN_STEPS_PER_ROUND``).

    Raises:
      ValueError: the fractions leave no room, or the rounds would be shorter
        than ``min_steps_per_round`` (the message names the numbers).

    Example:
      >>> s = within_fit(500, 6)
      >>> s.warmup, s.per_round, s.finetune, s.total
      (50, 66, 54, 500)
      >>> within_fit(200, 6)  # doctest: +ELLIPSIS, +NORMALIZE_WHITESPACE
      Traceback (most recent call last):
      ...
      ValueError: 6 selection rounds do not fit in 200 training steps: ... each
      round gets 26 steps, fewer than the 40 a round needs ... at least 300 ...
    """
    if min_steps_per_round is None:
        min_steps_per_round = MIN_STEPS_PER_ROUND
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
        raise ValueError(
            f"{num_rounds} selection rounds do not fit in {total_steps} training "
            f"steps: after a warm-up of {warmup} and a fine-tune of {finetune} "
            f"steps each round gets {per_round} steps, fewer than the "
            f"{min_steps_per_round} a round needs to select well. Train for at "
            f"least {int(-(-needed // 1))} steps, commit more features per round "
            "(`selections_per_round`), or lower the warm-up and fine-tune "
            "fractions."
        )
    return SelectionSchedule(
        warmup=warmup,
        per_round=per_round,
        finetune=total_steps - warmup - num_rounds * per_round,
        num_rounds=num_rounds,
    )
