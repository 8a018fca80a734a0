"""The attention settings every gated layer takes, validated in one place."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

ATTENTION_SIGNALS = ("partial", "gradient", "score")
BUDGET_RULES = ("attention", "attention_per_byte", "gain_per_byte")


@dataclasses.dataclass(frozen=True)
class AttentionOptions:
    """How a gated layer's attention logits learn and how its rounds pick.

    The gate layers (both front-ends), the width layer, the MovieLens app's
    model, its config file and its command line all take these six settings
    under these names; this class validates them once.

    Attributes:
      selections_per_round: features each selection round commits; the last
        round commits the remainder.
      budget_rule: how a budgeted round ranks the features that fit:
        ``"attention_per_byte"`` (logit minus log bytes), ``"attention"``, or
        ``"gain_per_byte"`` (the settled model's score test, squared, per
        byte; see :func:`seqattn_tfrs.core.budget.pick_within_budget`).
      entry_z: with a byte budget only: stop when no affordable feature's
        score test clears this many standard errors (``None``: fill the
        budget). Whether a budget is set is the layer's to check.
      attention_learning_rate: step size of the logits' own update rule, in
        logit units.
      attention_momentum: momentum (first-moment decay) of that rule.
      attention_signal: what the logits learn from, one of
        ``ATTENTION_SIGNALS``.

    Example:
      >>> AttentionOptions(attention_signal="score").attention_signal
      'score'
      >>> AttentionOptions(attention_momentum=1.0)
      Traceback (most recent call last):
      ...
      ValueError: `attention_momentum` must be a number in [0, 1), got 1.0.
    """

    selections_per_round: int = 1
    budget_rule: str = "attention_per_byte"
    entry_z: float | None = None
    attention_learning_rate: float = 0.05
    attention_momentum: float = 0.9
    attention_signal: str = "partial"

    def __post_init__(self) -> None:
        count = self.selections_per_round
        if isinstance(count, bool) or not _is_int(count) or count < 1:
            raise ValueError(
                f"`selections_per_round` must be an int >= 1, got {count!r}."
            )
        if self.budget_rule not in BUDGET_RULES:
            raise ValueError(
                f"`budget_rule` must be one of {BUDGET_RULES}, got "
                f"{self.budget_rule!r}."
            )
        if self.entry_z is not None and not (
            _is_number(self.entry_z)
            and math.isfinite(self.entry_z)
            and self.entry_z > 0
        ):
            raise ValueError(
                "`entry_z` must be a finite number > 0 (standard errors), got "
                f"{self.entry_z!r}."
            )
        rate = self.attention_learning_rate
        if not (_is_number(rate) and math.isfinite(rate) and rate > 0):
            raise ValueError(
                f"`attention_learning_rate` must be a finite number > 0, got {rate!r}."
            )
        momentum = self.attention_momentum
        if not (_is_number(momentum) and 0 <= momentum < 1):
            raise ValueError(
                f"`attention_momentum` must be a number in [0, 1), got {momentum!r}."
            )
        if self.attention_signal not in ATTENTION_SIGNALS:
            raise ValueError(
                f"`attention_signal` must be one of {ATTENTION_SIGNALS}, got "
                f"{self.attention_signal!r}."
            )
        object.__setattr__(self, "selections_per_round", int(count))
        object.__setattr__(self, "attention_learning_rate", float(rate))
        object.__setattr__(self, "attention_momentum", float(momentum))
        if self.entry_z is not None:
            object.__setattr__(self, "entry_z", float(self.entry_z))

    @property
    def tracks_evidence(self) -> bool:
        """Whether every round's settle runs the score test (for ``entry_z`` or
        the ``"gain_per_byte"`` rule), not only the first round's on held-out
        batches."""
        return self.entry_z is not None or self.budget_rule == "gain_per_byte"

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The settings' names, which are also the layers' keyword names."""
        return tuple(field.name for field in dataclasses.fields(cls))

    def as_kwargs(self) -> dict[str, Any]:
        """The settings as keyword arguments for a layer or a config."""
        return dataclasses.asdict(self)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) or type(value).__name__.startswith(("int", "uint"))


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and (
        isinstance(value, (int, float)) or type(value).__name__.startswith("float")
    )
