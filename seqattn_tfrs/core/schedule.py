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
