"""Selection rounds committed and reported alike by every front-end's callback."""

from __future__ import annotations

import warnings
from typing import Any, Protocol

from seqattn_tfrs.core import schedule as schedule_lib
from seqattn_tfrs.core import selection as selection_lib


class CommittingLayer(Protocol):
    """What :func:`commit_and_report` needs of a gate layer (both front-ends')."""

    name: str
    budget_bytes: int | None

    @property
    def selected_features(self) -> tuple[str, ...]: ...

    @property
    def selection_complete(self) -> bool: ...

    def progress(self) -> str: ...

    def heldout_evidence(self) -> dict[str, float]: ...

    def commit_round(self, require_learning: bool = False) -> list[str]: ...


def commit_and_report(
    layer: CommittingLayer,
    *,
    round_number: int,
    num_rounds: int,
    epoch: int,
    step: int | None,
    log_prefix: str,
    logs: dict | None,
    verbose: int,
) -> dict[str, Any]:
    """Commits ``layer``'s round ``round_number`` (1-based) and reports it.

    The event (returned, for the callback's ``events``) names the picks and
    whether they followed the least harm because no candidate helped on
    held-out data any more (:func:`seqattn_tfrs.core.selection.exhausted_after`,
    read before the commit). Each pick's 1-based position goes to ``logs``
    under ``"<log_prefix>picked/<feature>"``; with ``verbose``, one line is
    printed.

    Example:
      >>> class Layer:  # a stand-in for a gate layer
      ...     name, budget_bytes, selected_features = "gate", None, ("a",)
      ...     def heldout_evidence(self):
      ...         return {"a": 0.0, "b": 3.0, "c": -1.0}
      ...     def commit_round(self, require_learning=False):
      ...         self.selected_features += ("b",)
      ...         return ["b"]
      >>> logs = {}
      >>> commit_and_report(Layer(), round_number=2, num_rounds=3, epoch=4,
      ...                   step=None, log_prefix="", logs=logs, verbose=0)
      {'epoch': 4, 'step': None, 'layer': 'gate', 'round': 2, 'features': ['b'], \
'signal_exhausted': False}
      >>> logs
      {'picked/b': 2.0}
    """
    exhausted = selection_lib.exhausted_after(
        layer.heldout_evidence(),
        layer.selected_features,
        by_count=layer.budget_bytes is None,
    )
    names = list(layer.commit_round(require_learning=True))
    event = {
        "epoch": epoch,
        "step": step,
        "layer": layer.name,
        "round": round_number,
        "features": names,
        "signal_exhausted": exhausted,
    }
    if logs is not None:
        start = len(layer.selected_features) - len(names)
        for offset, name in enumerate(names):
            logs[f"{log_prefix}picked/{name}"] = float(start + offset + 1)
    if verbose:
        print(
            f"\nSequentialAttention [{layer.name}] round {round_number}/"
            f"{num_rounds}: selected {names}; so far {list(layer.selected_features)}"
            + (selection_lib.EXHAUSTED_NOTE if exhausted else ""),
            flush=True,
        )
    return event


def incomplete_selection_message(
    layer_name: str, progress: str, rounds_done: int, num_rounds: int, epoch: int
) -> str:
    """What a callback says when ``fit`` ended before a layer's last pick
    (``epoch``: :func:`seqattn_tfrs.core.schedule.last_pick_epoch`).

    Example:
      >>> incomplete_selection_message("gate", "1 of 3 features", 1, 3, 4)
      ... # doctest: +ELLIPSIS
      "fit ended before layer 'gate' finished selecting: 1 of 3 features after 1 \
of 3 rounds (the last pick falls in epoch 4). ...start_from_epoch=4."
    """
    return (
        f"fit ended before layer {layer_name!r} finished selecting: {progress} "
        f"after {rounds_done} of {num_rounds} rounds (the last pick falls in "
        f"epoch {epoch}). `prune` refuses an incomplete selection. If "
        "EarlyStopping stopped the fit (or restored weights from before the "
        f"last pick), pass it start_from_epoch={epoch}."
    )


def warn_if_incomplete(
    layer: CommittingLayer,
    schedule: schedule_lib.SelectionSchedule,
    *,
    rounds_done: int,
    step_mode: bool,
    steps_per_epoch: int | None,
) -> None:
    """At the end of ``fit``: warns (:func:`incomplete_selection_message`)
    when ``layer`` has not made its last pick, which ``prune`` would refuse."""
    if layer.selection_complete:
        return
    epoch = schedule_lib.last_pick_epoch(schedule, step_mode, steps_per_epoch)
    warnings.warn(
        incomplete_selection_message(
            layer.name, layer.progress(), rounds_done, schedule.num_rounds, epoch
        ),
        stacklevel=3,
    )
