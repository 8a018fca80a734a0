"""The attention settings every gated layer takes, validated in one place."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

ATTENTION_SIGNALS = ("partial", "gradient", "score")
BUDGET_RULES = ("attention", "attention_per_byte", "gain_per_byte")
DEFAULT_BUDGET_RULE = "attention_per_byte"
AUTO_ENTRY_Z = "auto"
"""``entry_z``'s default: :data:`DEFAULT_ENTRY_Z` under a byte budget ranked
``"attention_per_byte"``, else none (see :meth:`AttentionOptions.resolved`)."""
DEFAULT_ENTRY_Z = 3.0
"""What ``entry_z="auto"`` becomes under a byte budget with the default rule:
the selection stops when no affordable feature's score test clears 3 standard
errors. Measured by ``benchmarks/budget_quality.py`` (``docs/pareto.md``):
with the per-byte rule it turned 0 wins, 21 ties and 3 losses against both
trivial rules into 7 wins, 17 ties and no loss over 24 (problem, budget)
cells; with the other rules it lost more cells than filling (5 and 9, against
2 and 1), missing interaction pairs whose fields have no effect alone."""


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
        ``"attention_per_byte"`` (logit minus log bytes, following a
        knapsack plan on the score test where it is clearly worth more),
        ``"attention"``, or
        ``"gain_per_byte"`` (the settled model's score test, squared, per
        byte; see :func:`seqattn_tfrs.core.budget.pick_within_budget`).
      entry_z: with a byte budget only: stop when no affordable feature's
        score test clears this many standard errors (its z less the
        inflation of held-out rows a settle reads more than once, in the
        tf-keras front-end); ``None``: fill the budget; ``"auto"``
        (default): :data:`DEFAULT_ENTRY_Z` with a budget and the
        ``"attention_per_byte"`` rule, otherwise None. A layer holds its
        options :meth:`resolved`.
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
    budget_rule: str = DEFAULT_BUDGET_RULE
    entry_z: float | str | None = AUTO_ENTRY_Z
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
        if self.entry_z not in (None, AUTO_ENTRY_Z) and not (
            _is_number(self.entry_z)
            and math.isfinite(self.entry_z)
            and self.entry_z > 0
        ):
            raise ValueError(
                "`entry_z` must be a finite number > 0 (standard errors), None "
                f"or {AUTO_ENTRY_Z!r}, got {self.entry_z!r}."
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
        if self.entry_z not in (None, AUTO_ENTRY_Z):
            object.__setattr__(self, "entry_z", float(self.entry_z))

    def resolved(
        self, budgeted: bool, num_selected: int | None = None
    ) -> AttentionOptions:
        """These options for a layer with (``budgeted``) or without a byte
        budget: ``entry_z="auto"`` becomes :data:`DEFAULT_ENTRY_Z` under a
        budget ranked ``"attention_per_byte"``, else None (fill the budget).

        Raises:
          ValueError: a number ``entry_z`` or a ``budget_rule`` other than the
            default without a budget (a count selection always picks
            ``num_selected`` features, ranked by the gates), or ``selections_per_round``
            above ``num_selected`` (where given): a round cannot commit more
            features than the selection picks.

        Example:
          >>> AttentionOptions().resolved(budgeted=True).entry_z
          3.0
          >>> print(AttentionOptions().resolved(budgeted=False).entry_z)
          None
          >>> AttentionOptions(entry_z=None).resolved(budgeted=True).entry_z is None
          True
          >>> options = AttentionOptions(budget_rule="attention")
          >>> options.resolved(budgeted=True).entry_z is None
          True
          >>> AttentionOptions(selections_per_round=3).resolved(False, num_selected=2)
          Traceback (most recent call last):
          ...
          ValueError: `selections_per_round`=3 is more than the 2 features ...
        """
        if not budgeted and self.budget_rule != DEFAULT_BUDGET_RULE:
            raise ValueError(
                f"`budget_rule`={self.budget_rule!r} ranks the features that fit a "
                "byte budget; it needs `budget_bytes` (a count selection ranks by "
                "the gates). Expected the default "
                f"{DEFAULT_BUDGET_RULE!r} without a budget."
            )
        # (a count that is not a valid one is the layer's to refuse)
        counted = _is_int(num_selected) and not isinstance(num_selected, bool)
        if counted and 1 <= num_selected < self.selections_per_round:
            raise ValueError(
                f"`selections_per_round`={self.selections_per_round} is more than "
                f"the {num_selected} features (`num_selected`) the selection "
                "picks; expected at most that many (one round then commits them "
                "all)."
            )
        entry_z = self.entry_z
        if entry_z == AUTO_ENTRY_Z:
            per_byte = self.budget_rule == "attention_per_byte"
            entry_z = DEFAULT_ENTRY_Z if budgeted and per_byte else None
        elif entry_z is not None and not budgeted:
            raise ValueError(
                f"`entry_z`={entry_z!r} stops a byte-budgeted selection early; "
                "it needs `budget_bytes` (a count selection always picks "
                "`num_selected` features). Expected None or "
                f"{AUTO_ENTRY_Z!r} without a budget."
            )
        return dataclasses.replace(self, entry_z=entry_z)

    @property
    def tracks_evidence(self) -> bool:
        """Whether every round's settle runs the score test (for ``entry_z`` or
        the ``"gain_per_byte"`` rule), not only the first round's on held-out
        batches. Of :meth:`resolved` options."""
        return (
            self.entry_z not in (None, AUTO_ENTRY_Z)
            or self.budget_rule == "gain_per_byte"
        )

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


def settle_needed_message(layer_names: list[str]) -> str:
    """Why a callback refuses ``settle_fraction=0`` for layers whose options
    :attr:`~AttentionOptions.tracks_evidence` (both front-ends say it alike).

    Example:
      >>> settle_needed_message(["gate"])  # doctest: +ELLIPSIS
      "Layer(s) ['gate'] use the settled model's score test ... `entry_z=None`..."
    """
    return (
        f"Layer(s) {layer_names} use the settled model's score test (`entry_z` "
        "or `budget_rule='gain_per_byte'`), which runs while a round settles, "
        "but `settle_fraction`=0; expected `settle_fraction` > 0 (or, to fill "
        "a byte budget without the test, `entry_z=None`; its default is 3 "
        "under a budget ranked per byte)."
    )
