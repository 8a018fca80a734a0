"""Selection rounds committed and reported alike by every front-end's callback."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from seqattn_tfrs.core import budget as budget_lib
from seqattn_tfrs.core import evidence as evidence_lib
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

    @property
    def functional_dependencies(self) -> dict[str, tuple[str, ...]] | None: ...

    def heldout_evidence(self) -> dict[str, float]: ...

    def entry_evidence(self) -> dict[str, float]: ...

    def feature_costs(self) -> dict[str, int | None]: ...

    def commit_round(self, require_learning: bool = False) -> list[str]: ...


def check_distinct_names(layers: Sequence[Any], model_name: str) -> list[Any]:
    """Returns ``layers`` (gated layers, found in ``model_name``) if their
    names differ: each layer's logs, events, ``size_report`` and
    ``selection.json`` entries, and its stored schedule, go by its name.

    Raises:
      ValueError: two layers share a name (two towers that each name their
        gate ``"gate"``, say).

    Example:
      >>> class Layer:
      ...     def __init__(self, name):
      ...         self.name = name
      >>> check_distinct_names([Layer("a"), Layer("a")], "m")  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      ValueError: Gated layers of model 'm' share the name(s) ['a']; their ...
    """
    names = [layer.name for layer in layers]
    shared = sorted({name for name in names if names.count(name) > 1})
    if shared:
        raise ValueError(
            f"Gated layers of model {model_name!r} share the name(s) {shared}; "
            "their picks, logs, size reports and selection.json entries go by "
            "name. Expected distinct names: pass `name=` to each gated layer "
            "(e.g. 'user_gate' and 'item_gate')."
        )
    return list(layers)


def log_prefixes(layers: Sequence[Any]) -> dict[int, str]:
    """The prefix of each gate layer's keys in ``fit``'s logs, by ``id``:
    ``"seqattn/"`` for a model's one gate layer, else ``"seqattn/<name>/"``.

    Example:
      >>> class Layer:
      ...     def __init__(self, name):
      ...         self.name = name
      >>> one, two = Layer("users"), Layer("items")
      >>> list(log_prefixes([one]).values())
      ['seqattn/']
      >>> list(log_prefixes([one, two]).values())
      ['seqattn/users/', 'seqattn/items/']
    """
    if len(layers) == 1:
        return {id(layers[0]): "seqattn/"}
    return {id(layer): f"seqattn/{layer.name}/" for layer in layers}


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
    probed: tuple[Mapping[str, float], Mapping[str, float]] | None = None,
    paired: Mapping[tuple[str, str], float] | None = None,
    settled: tuple[Mapping[str, float], Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """Commits ``layer``'s round ``round_number`` (1-based) and reports it.

    The event (returned, for the callback's ``events``) names the picks and
    whether they followed the least harm because no candidate helped on
    held-out data any more, by the gate's statistic nor by the held-out
    probe's z where ``probed`` (:func:`probe_report`'s probe and gate z) is
    given, copies of a selected feature aside
    (:func:`seqattn_tfrs.core.evidence.exhausted_after`, read before the
    commit), nor by the held-out pair test (``paired``, :func:`pair_report`'s
    z: a pair of them clears the threshold together, and the commit picks
    it). The statistics the commit read go into the event: ``probed`` as
    ``"probe_scores"`` and ``"heldout_scores"``, ``paired`` as
    ``"pair_scores"`` (keys ``"a & b"``), ``settled`` (:func:`settled_scores`)
    as ``"settled_scores"`` and ``"heldout_scores"``. When a
    byte-budgeted selection closes while unselected features still fit,
    ``"fit_but_not_picked"`` maps them to their score statistic before the
    commit (none passed ``entry_z``, or they copy a selected feature). Each
    pick's 1-based position goes to ``logs`` under
    ``"<log_prefix>picked/<feature>"``; with ``verbose``, one line is printed.

    Example:
      >>> class Layer:  # a stand-in for a gate layer
      ...     name, budget_bytes, selected_features = "gate", None, ("a",)
      ...     functional_dependencies = None  # no copies found
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
    exhausted = evidence_lib.exhausted_after(
        layer.heldout_evidence(),
        layer.selected_features,
        by_count=layer.budget_bytes is None,
        probe=None if probed is None else probed[0],
        dependencies=layer.functional_dependencies,
        probe_rounds=selection_lib.probe_rounds(num_rounds),
    ) and not (paired is not None and evidence_lib.pair_found(paired))
    evidence = layer.entry_evidence() if layer.budget_bytes is not None else None
    names = list(layer.commit_round(require_learning=True))
    event = {
        "epoch": epoch,
        "step": step,
        "layer": layer.name,
        "round": round_number,
        "features": names,
        "signal_exhausted": exhausted,
    }
    if probed is not None:
        event["probe_scores"], event["heldout_scores"] = probed
    if paired is not None:
        event["pair_scores"] = {f"{a} & {b}": z for (a, b), z in paired.items()}
    if settled is not None:
        event["settled_scores"], event["heldout_scores"] = settled
    if evidence is not None and layer.selection_complete:
        left = unpicked_that_fit(layer)
        if left:
            event["fit_but_not_picked"] = {name: evidence[name] for name in left}
    if logs is not None:
        start = len(layer.selected_features) - len(names)
        for offset, name in enumerate(names):
            logs[f"{log_prefix}picked/{name}"] = float(start + offset + 1)
    if verbose:
        print(
            f"\nSequentialAttention [{layer.name}] round {round_number}/"
            f"{num_rounds}: selected {names}; so far {list(layer.selected_features)}"
            + (evidence_lib.EXHAUSTED_NOTE if exhausted else "")
            + (
                f" (closed: {sorted(event['fit_but_not_picked'])} still fit, but "
                "none passed the score test of `entry_z` or each copies a "
                "selected feature)"
                if "fit_but_not_picked" in event
                else ""
            ),
            flush=True,
        )
    return event


def probe_report(
    layer: CommittingLayer,
    probe_scores: Mapping[str, float],
    gate_scores: Mapping[str, float],
    verbose: int,
) -> tuple[dict[str, float], dict[str, float]]:
    """Before a commit that the held-out probe informs, its z and the gate's
    z of every candidate, for the event; with ``verbose``, one line naming the
    probe's largest z.

    Example:
      >>> class Layer:  # a stand-in for a gate layer
      ...     name, selected_features = "gate", ("a",)
      >>> probe_report(Layer(), {"b": 2.5}, {"a": 9.0, "b": 1.0, "c": 0.2}, 0)
      ({'b': 2.5}, {'b': 1.0, 'c': 0.2})
    """
    if verbose and probe_scores:
        best = max(probe_scores, key=probe_scores.get)
        print(
            f"\nSequentialAttention [{layer.name}]: the held-out probe's "
            f"largest z is {best!r}'s ({probe_scores[best]:.2f}); combined with "
            "the gate's z it ranks the candidates, those that help first.",
            flush=True,
        )
    candidates = [n for n in gate_scores if n not in layer.selected_features]
    return dict(probe_scores), {name: gate_scores[name] for name in candidates}


def pair_report(
    layer: CommittingLayer, pair_scores: Mapping[tuple[str, str], float], verbose: int
) -> dict[tuple[str, str], float]:
    """Before a commit that reads the held-out pair test, its z per pair, for
    the event; with ``verbose`` and a pair tested, one line naming the
    largest.

    Example:
      >>> class Layer:  # a stand-in for a gate layer
      ...     name = "gate"
      >>> pair_report(Layer(), {("a", "b"): 6.0}, 1)
      <BLANKLINE>
      SequentialAttention [gate]: the held-out pair test's largest z is a & b's (6.00).
      {('a', 'b'): 6.0}
    """
    if verbose and pair_scores:
        best = max(pair_scores, key=pair_scores.get)
        print(
            f"\nSequentialAttention [{layer.name}]: the held-out pair test's "
            f"largest z is {best[0]} & {best[1]}'s ({pair_scores[best]:.2f}).",
            flush=True,
        )
    return dict(pair_scores)


def settled_scores(
    layer: CommittingLayer,
) -> tuple[dict[str, float], dict[str, float]] | None:
    """Before a commit, the candidates' settled score z (``entry_evidence``)
    and their gate's z (``heldout_evidence``), for an event whose settle ran
    the settled score test (the callers know when); None where the settle
    collected no score evidence for any candidate.

    Example:
      >>> class Layer:  # a stand-in for a gate layer
      ...     selected_features = ("a",)
      ...     def entry_evidence(self):
      ...         return {"a": 0.0, "b": 7.0, "c": 0.4}
      ...     def heldout_evidence(self):
      ...         return {"a": 0.0, "b": 3.0, "c": -1.0}
      >>> settled_scores(Layer())
      ({'b': 7.0, 'c': 0.4}, {'b': 3.0, 'c': -1.0})
    """
    entry, gate = layer.entry_evidence(), layer.heldout_evidence()
    candidates = [name for name in entry if name not in layer.selected_features]
    if not any(entry[name] for name in candidates):
        return None
    return (
        {name: entry[name] for name in candidates},
        {name: gate[name] for name in candidates},
    )


def unpicked_that_fit(layer: CommittingLayer) -> list[str]:
    """The unselected features of a byte-budgeted ``layer`` whose bytes fit
    what its selection leaves of the budget.

    Example:
      >>> class Layer:
      ...     budget_bytes, selected_features = 100, ("a",)
      ...     def feature_costs(self):
      ...         return {"a": 60, "b": 50, "c": 40}
      >>> unpicked_that_fit(Layer())
      ['c']
    """
    costs = layer.feature_costs()
    selected = [name in layer.selected_features for name in costs]
    fits = budget_lib.unselected_that_fit(
        list(costs.values()), selected, layer.budget_bytes
    )
    return [name for name, fit in zip(costs, fits) if fit]


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
    first_epoch: int = 0,
) -> None:
    """At the end of ``fit``: warns (:func:`incomplete_selection_message`)
    when ``layer`` has not made its last pick, which ``prune`` would refuse.
    ``first_epoch``: fit's epoch where the selection's schedule began."""
    if layer.selection_complete:
        return
    epoch = first_epoch + schedule_lib.last_pick_epoch(
        schedule, step_mode, steps_per_epoch
    )
    warnings.warn(
        incomplete_selection_message(
            layer.name, layer.progress(), rounds_done, schedule.num_rounds, epoch
        ),
        stacklevel=3,
    )


def nothing_to_select(layers: Sequence[Any], verbose: int) -> bool:
    """Whether a fit beginning now has nothing to select: every layer (with
    ``is_pruned`` and ``selection_complete``) finished its selection, so the
    callback stands aside and the fit trains with the picks (said when
    ``verbose``).

    Raises:
      ValueError: a layer is pruned (its unselected tables are gone).

    Example:
      >>> class Done:
      ...     name, is_pruned, selection_complete = "gate", False, True
      >>> nothing_to_select([Done()], verbose=0)
      True
    """
    pruned = [layer.name for layer in layers if layer.is_pruned]
    if pruned:
        raise ValueError(f"Layer(s) {pruned} are pruned; nothing to select.")
    finished = all(layer.selection_complete for layer in layers)
    if finished and verbose:
        print(
            "SequentialAttention: every layer's selection is complete; this fit "
            "trains with the selected features and selects nothing.",
            flush=True,
        )
    return finished
