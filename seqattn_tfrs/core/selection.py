"""Round commits: which features a selection round picks, as a pure function.

A front-end's selection state reads its variables into a
:class:`SelectionRecord`, calls :func:`commit_round` with the round's logits,
and writes the returned record back; the logits and their update state are
then reset by the front-end. Keeping the decision a function of arrays makes
it the same on every backend and testable with tiny hand-made cases.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from seqattn_tfrs.core import budget as budget_lib
from seqattn_tfrs.core import dependence as dependence_lib
from seqattn_tfrs.core import least_harm
from seqattn_tfrs.core.evidence import (
    CLEARLY_WEAKER,
    final_pick_scores,
    helping,
    pair_to_pick,
    probe_evidence,
    revisit_factor,
    signal_threshold,
)


@dataclasses.dataclass(frozen=True)
class SelectionSpec:
    """What a layer selects: by count, or within a byte budget.

    Attributes:
      layer_name: for messages.
      feature_names: every feature, in the layer's order.
      num_selected: the count to select, or None under ``budget_bytes``.
      budget_bytes: the byte budget, or None under ``num_selected``.
      selections_per_round: picks per round (the last takes the remainder).
      budget_rule: ranking among affordable features (budget only).
      entry_z: score-test threshold (budget only), or None.
    """

    layer_name: str
    feature_names: tuple[str, ...]
    num_selected: int | None
    budget_bytes: int | None
    selections_per_round: int
    budget_rule: str = "attention_per_byte"
    entry_z: float | None = None

    def num_rounds(self, costs: Sequence[int | None]) -> int:
        """Rounds to reserve: ``ceil(k / per_round)``, ``k`` the count or the
        most features the budget can hold (unknown costs count as 0)."""
        most = self.num_selected
        if self.budget_bytes is not None:
            most = budget_lib.max_affordable(costs, self.budget_bytes)
        return math.ceil(most / self.selections_per_round)

    def history_rows(self, num_rounds: int) -> int:
        """Rows of gate history to keep: one per possible round (under a
        budget the reserved rounds depend on costs, which pruning changes)."""
        if self.budget_bytes is None:
            return num_rounds
        return math.ceil(len(self.feature_names) / self.selections_per_round)


@dataclasses.dataclass(frozen=True)
class SelectionRecord:
    """The committed part of a layer's selection state, as arrays.

    Attributes:
      selected: ``[N]`` bool, committed features.
      order: ``[N]`` int, feature indices in pick order, then -1.
      rounds_done: committed rounds (a budgeted round may pick fewer than
        ``selections_per_round``, so this is not derived from ``order``).
      round_gates: ``[R, N]`` gate values just before each committed round.
      closed: under a budget, whether nothing more can be picked.
    """

    selected: np.ndarray
    order: np.ndarray
    rounds_done: int
    round_gates: np.ndarray
    closed: bool = False

    @property
    def num_picked(self) -> int:
        return int(np.sum(self.order >= 0))

    def complete(self, spec: SelectionSpec) -> bool:
        """Whether the selection is done (count reached, or budget closed)."""
        if spec.budget_bytes is None:
            return self.num_picked >= spec.num_selected
        return self.closed


def commit_round(
    spec: SelectionSpec,
    record: SelectionRecord,
    logits: np.ndarray,
    gates: np.ndarray,
    *,
    num_rounds: int,
    costs: Sequence[int | None] | None = None,
    entry_scores: np.ndarray | None = None,
    dependence: np.ndarray | None = None,
    heldout_scores: np.ndarray | None = None,
    first_scores: np.ndarray | None = None,
    probe_scores: np.ndarray | None = None,
    pair_scores: np.ndarray | None = None,
    entry_z_scores: np.ndarray | None = None,
    no_values_to_hash: bool = False,
) -> tuple[SelectionRecord, list[int]]:
    """Commits one round: the picks, and the record after them.

    By count: the ``selections_per_round`` unselected features with the
    largest logits (ties to the earlier feature); the last round picks the
    remainder. In the first round, where ``first_scores`` (or, without them,
    ``entry_scores``) hold evidence (the callback's held-out score test of the
    model with every gate at 0), the first pick by those instead: scale-free,
    and with ``first_scores`` on least squares Orthogonal Matching Pursuit's
    first pick. When the round's ``heldout_scores`` rank first a feature that
    helps only with others (no marginal evidence in ``entry_scores``:
    :func:`_joint_only_lead`), that one is the first pick where more than one
    feature is to be selected, or where no feature helps alone (a two-tower
    model's tower: :func:`_any_helps_alone`). Under a budget: greedy picks among the
    unselected features that fit what is left (ranked by ``spec.budget_rule``;
    with ``entry_z``, after the first round only features whose score test
    passes compete), and the record closes when nothing else fits, nothing
    that fits helps, or the reserved rounds are used up.

    With ``dependence``, a candidate that groups the rows exactly as a selected
    feature does (an exact copy or a re-coding: each a function of the other;
    see :func:`seqattn_tfrs.core.dependence.redundant_candidates`) is passed
    over: by count (where this includes a feature picked earlier in the same
    round) it is picked only when every other candidate is one too; under a
    budget it does not compete (a round in which only such candidates fit
    closes the selection).

    By count, once something is selected, ``heldout_scores`` (the held-out
    gate gradients of the round's selecting part, as z-statistics) say which
    candidates help: those whose statistic clears :func:`signal_threshold`.
    The logits choose among them; the others follow by the largest statistic,
    the features whose weight hurts the held-out loss least (in a round of
    several picks, once the helping ones are taken), or, where ``costs``
    are all known, by that statistic among the tables no larger than the
    largest selected one (functions of a selected feature behind them), then
    by the fewest bytes (:func:`.least_harm.least_cost_first`). When none
    helps (see :func:`signal_exhausted`) the logits rank noise, and the
    round picks by that order alone. Where ``probe_scores`` (the held-out probe's z,
    :mod:`seqattn_tfrs.core.probe`; NaN where it has none) hold evidence,
    the gate's and the probe's z combined rank in place of both, first the
    candidates that help by the gate's z or the combined z (or, once no gate
    z helps, the probe's alone; see :func:`probe_evidence`); the selection's
    final pick, which no partner can follow, ranks those by what each brings
    alone, near ties by the combined z (:func:`.evidence.final_pick_scores`).
    In a layer with ``no_values_to_hash`` (floats and booleans only), whose
    settles run the settled model's score test on their training rows, that
    test ranks the candidates that help instead of the logits: its Rao
    statistic (``first_scores``) where summed, else its z
    (``entry_scores``); on a linear model Orthogonal Matching Pursuit's
    criterion. There ``probe_scores`` hold the same test on the held-out
    rows (each candidate's gate at 0), which makes a candidate help as the
    probe's z does elsewhere, but does not rank (nor, where the settle ran
    no test, replace the logits).
    Copies of a selected feature stay last while some other candidate helps:
    at the soft gates of the last few candidates the statistic measures more
    or less of a feature, and a needed one can score below a copy. Once none
    helps, a function of a selected feature goes ahead of every table larger
    than it and than every selected one where ``costs`` rank them, and a copy
    (it can neither help nor hurt) is picked when every other candidate's
    held-out gate statistic is at most 0 (an estimated harm) and at most its
    own. Before that, where at least two
    picks are left and ``pair_scores`` hold a pair of candidates that
    clears the threshold together (:mod:`seqattn_tfrs.core.pairs`), the
    round picks both (one round more than its count, so the selection
    completes a round early) when no candidate but functions of a selected
    feature helps, or when one helps by the gate's z but not the probe's
    (an interaction's member) and the pair's z squared exceeds the two best
    single picks' (:func:`.evidence.pair_to_pick`).

    Args:
      spec: what the layer selects.
      record: the state before this round.
      logits: ``[N]`` attention logits trained in this round.
      gates: ``[N]`` gate values now (kept as this round's history row).
      num_rounds: the rounds reserved for the layer.
      costs: bytes per feature (under a budget None entries are refused; by
        count they rank the candidates that do not help, where all known).
      entry_scores: per-feature score statistics of the settled model (all
        zero where none was collected).
      dependence: ``[N, N]`` booleans, ``[c, s]``: feature ``c`` is a function
        of feature ``s`` (:func:`seqattn_tfrs.core.dependence.functional_dependence`).
      heldout_scores: per-feature statistics of the held-out gate gradients
        while the logits learned (all zero, or None, without held-out data).
      first_scores: per-feature :func:`rao_statistics` of the settled model
        (all zero, or None, where none were collected).
      probe_scores: per-feature z of the held-out probe (NaN for a feature
        without one; all zero, or None, where none was computed); by count,
        after the first round.
      entry_z_scores: ``entry_scores`` less the inflation of held-out rows
        read more than once in the round (:func:`heldout_statistics`); None:
        ``entry_scores``. What a threshold compares with: ``entry_z``, and by
        count in the first round whether a feature helps on its own. The
        rankings and the knapsack plan read ``entry_scores``.
      no_values_to_hash: the layer has no feature with values to hash, so
        ``probe_scores`` hold the held-out score test (see above).
      pair_scores: ``[N, N]`` z of the held-out pair test
        (:func:`seqattn_tfrs.core.pairs.pair_z`; NaN for an untested pair),
        where :func:`.evidence.pairs_to_test` asked for it.

    Returns:
      ``(new_record, picks)``, picks as feature indices in order.

    Raises:
      RuntimeError: the selection is already complete.
      FloatingPointError: an unselected logit is NaN or infinite.
      ValueError: under a budget, a cost is unknown or nothing fits at all.

    Example:
      >>> spec = SelectionSpec("gate", ("a", "b", "c"), 2, None, 1)
      >>> record = SelectionRecord(np.zeros(3, bool), np.full(3, -1), 0,
      ...                          np.zeros((2, 3)))
      >>> record, picks = commit_round(spec, record, np.array([0.1, 0.3, 0.2]),
      ...                              np.full(3, 1 / 3), num_rounds=2)
      >>> picks, record.order.tolist(), record.complete(spec)
      ([1], [1, -1, -1], False)
    """
    if record.complete(spec):
        raise RuntimeError(f"{spec.layer_name}: the selection is already complete.")
    selected = np.array(record.selected, bool)
    logits = np.asarray(logits, np.float64)
    names = spec.feature_names
    bad = [names[i] for i in np.flatnonzero(~selected) if not np.isfinite(logits[i])]
    if bad:
        raise FloatingPointError(
            f"{spec.layer_name}: attention logits of {bad} are not finite "
            f"({logits.tolist()}); refusing to pick from them. Lower "
            "`attention_learning_rate` or fix the NaN/inf loss."
        )
    closed = record.closed
    if spec.budget_bytes is None:
        count = min(spec.selections_per_round, spec.num_selected - record.num_picked)
        final = record.num_picked + count == spec.num_selected  # completes it
        if first_scores is None or not np.any(first_scores):
            first_scores = entry_scores
        first_test = first_scores is not None and np.any(first_scores)
        if first_test and not selected.any():
            # Round 1 with held-out evidence: the first pick by the intercept-only
            # model's score test, which no table's embedding scale sways; any
            # more picks of the round as later rounds pick (the test is
            # marginal: it would rank a near-copy of that pick next).
            first_scores = np.asarray(first_scores, np.float64)
            ranked = _ranked_picks(first_scores, selected, 1, dependence)
            # Whether a feature helps on its own: the score test's z less the
            # inflation of held-out rows it read more than once.
            marginal_z = entry_scores if entry_z_scores is None else entry_z_scores
            if dependence is not None and marginal_z is not None:
                marginal = np.asarray(marginal_z, np.float64)
                helps = marginal >= signal_threshold(len(names))  # none selected yet
                if helps[ranked[0]]:  # its source in its place (finest_source)
                    ranked[0] = dependence_lib.finest_source(
                        int(ranked[0]), helps, dependence, first_scores
                    )
            joint = _joint_only_lead(selected, heldout_scores, marginal_z, dependence)
            alone = _any_helps_alone(marginal_z)
            if joint is not None and not alone and dependence is not None:
                # No marginal evidence to weigh a source by: the soft gates'.
                soft = np.asarray(heldout_scores, np.float64)
                helps = soft >= signal_threshold(len(names))
                joint = dependence_lib.finest_source(joint, helps, dependence, soft)
            if joint is not None and (spec.num_selected > 1 or not alone):
                ranked = np.array([joint], np.int64)
            if count > 1:
                after = selected.copy()
                after[ranked] = True
                more = _later_picks(
                    logits,
                    after,
                    count - 1,
                    dependence,
                    heldout_scores,
                    probe_scores,
                    final=final,
                    costs=_known_costs(costs),
                )
                ranked = np.concatenate([ranked, more])
        else:
            pair = None
            if pair_scores is not None:
                pair = pair_to_pick(
                    selected,
                    dependence,
                    heldout_scores,
                    probe_scores,
                    pair_scores,
                    spec.num_selected - record.num_picked,
                    probe_rounds(num_rounds),
                )
            after = selected.copy()
            after[pair or []] = True
            ranked = _later_picks(
                logits,
                after,
                max(count - len(pair or []), 0),
                dependence,
                heldout_scores,
                probe_scores,
                settled_scores=first_scores if no_values_to_hash else entry_scores,
                final=final,
                probe_rounds=probe_rounds(num_rounds),
                costs=_known_costs(costs),
                score_probe=no_values_to_hash,
            )
            ranked = np.concatenate([np.array(pair or [], np.int64), ranked])
    else:
        ranked, closed = _affordable_picks(
            spec,
            record,
            logits,
            selected,
            num_rounds,
            costs,
            entry_scores,
            dependence,
            entry_scores if entry_z_scores is None else entry_z_scores,
        )
    picked = record.num_picked
    order = np.array(record.order)
    order[picked : picked + len(ranked)] = ranked
    selected[ranked] = True
    history = np.array(record.round_gates, np.float32)
    history[record.rounds_done] = gates
    new = SelectionRecord(
        selected=selected,
        order=order,
        rounds_done=record.rounds_done + 1,
        round_gates=history,
        closed=closed,
    )
    return new, [int(i) for i in ranked]


def _joint_only_lead(
    selected: np.ndarray,
    heldout_scores: np.ndarray | None,
    entry_scores: np.ndarray | None,
    dependence: np.ndarray | None,
) -> int | None:
    """In the first round, the feature the soft gates' held-out statistic
    ranks first when it helps only together with others: its statistic
    clears :func:`signal_threshold` while its marginal score test (the
    intercept-only model's, ``entry_scores``) does not. None otherwise, or
    without both statistics.

    A marginal test cannot rank a member of an interaction (an XOR pair)
    first, yet with its partner it may be worth more than the strongest
    main effect; the soft gates see the pair.

    Example (``a`` has the marginal evidence, ``b`` the soft gates' alone):
      >>> _joint_only_lead(np.zeros(3, bool), np.array([9.0, 12.0, 1.0]),
      ...                  np.array([15.0, 0.5, 0.2]), None)
      1
      >>> print(_joint_only_lead(np.zeros(3, bool), np.array([12.0, 9.0, 1.0]),
      ...                        np.array([15.0, 0.5, 0.2]), None))
      None
    """
    if heldout_scores is None or entry_scores is None:
        return None
    soft = np.asarray(heldout_scores, np.float64)
    marginal = np.asarray(entry_scores, np.float64)
    if not soft.any() or not marginal.any():
        return None
    threshold = signal_threshold(int((~selected).sum()))
    lead = int(_ranked_picks(soft, selected, 1, dependence)[0])
    if soft[lead] >= threshold > marginal[lead]:
        return lead
    return None


def _any_helps_alone(marginal_z: np.ndarray | None) -> bool:
    """Whether the first round's score test says some feature helps on its
    own (its z clears :func:`signal_threshold`; nothing is selected yet).

    Where none does, the marginal test holds no evidence to pick by: every
    feature may act only with others, as in a two-tower retrieval model, whose
    in-batch softmax gives a tower's features no gradient at gate 0 while the
    other tower's gates are 0 too. The soft gates' held-out lead then takes
    even a single pick (:func:`_joint_only_lead`).

    Example:
      >>> _any_helps_alone(np.array([0.5, -0.2, 1.9])), _any_helps_alone(None)
      (False, False)
      >>> _any_helps_alone(np.array([0.5, 2.5, 1.9]))  # threshold 2.13
      True
    """
    if marginal_z is None:
        return False
    marginal = np.asarray(marginal_z, np.float64)
    return bool(np.any(marginal >= signal_threshold(len(marginal))))


def probe_rounds(num_rounds: int) -> int:
    """The rounds whose commit may read a held-out probe: all after the first (>= 1)."""
    return max(1, num_rounds - 1)


def _known_costs(costs: Sequence[int | None] | None) -> np.ndarray | None:
    """``costs`` as an array where every feature's bytes are known, else None."""
    if costs is None or any(cost is None for cost in costs):
        return None
    return np.asarray(costs, np.float64)


def _later_picks(
    logits: np.ndarray,
    selected: np.ndarray,
    count: int,
    dependence: np.ndarray | None,
    heldout_scores: np.ndarray | None,
    probe_scores: np.ndarray | None = None,
    settled_scores: np.ndarray | None = None,
    final: bool = False,
    probe_rounds: int = 1,
    costs: np.ndarray | None = None,
    score_probe: bool = False,
) -> np.ndarray:
    """Picks by count once something is selected: with held-out statistics,
    the largest logits among the features that help, the rest by the least
    harm; without, the largest logits. Where ``probe_scores`` hold evidence,
    the gate's and the probe's z combined rank instead, the features that
    help first (:func:`probe_evidence`); the selection's ``final`` pick, which
    no partner can follow, ranks those that help by what each brings alone
    (:func:`final_pick_scores`). With ``score_probe`` (a layer with no
    values to hash) ``probe_scores`` are instead the settled model's score
    test on held-out rows: they add to the features that help
    (:func:`probe_evidence`), they do not rank. Where ``settled_scores``
    hold evidence and the probe's z does not rank (the same test's
    statistic on the settle's training rows, which such a layer runs),
    those rank the features that help instead of the logits.

    Only ranking: the settled z is not held out (a candidate's embedding was
    fitted to the same rows in the warm-up, so a candidate without signal
    can score well there), so which candidates help is still the held-out
    gate statistic's and the held-out score test's call
    (docs/generated_quality.md, "Session 19" and "Session 58")."""
    helps = helping(selected, heldout_scores)
    if helps is None:
        return _ranked_picks(logits, selected, count, dependence)
    scores = np.asarray(heldout_scores, np.float64)
    probe_z = None if probe_scores is None else np.asarray(probe_scores, np.float64)
    probed = probe_z is not None and np.any(np.nan_to_num(probe_z))
    if score_probe and probed:
        # No values to hash: the probe's z is the held-out score test, which
        # says which help; the settled statistic (else the logits) ranks.
        spent = not helps.any()
        helps = (
            helps | probe_evidence(selected, scores, probe_z, spent, probe_rounds)[0]
        )
    elif probed:
        spent = not helps.any()
        more, combined = probe_evidence(selected, scores, probe_z, spent, probe_rounds)
        helpful = helps | more
        last = final_pick_scores(selected, scores, probe_z, helpful) if final else None
        return _ranked_picks(
            combined,
            selected,
            count,
            dependence,
            preferred=helpful,
            fallback=combined,
            harm=scores,
            last=last,
            costs=costs,
        )
    if settled_scores is not None and np.any(settled_scores):
        logits = np.asarray(settled_scores, np.float64)
    return _ranked_picks(
        logits,
        selected,
        count,
        dependence,
        preferred=helps,
        fallback=scores,
        harm=scores,
        costs=costs,
    )


def _ranked_picks(
    logits: np.ndarray,
    selected: np.ndarray,
    count: int,
    dependence: np.ndarray | None,
    preferred: np.ndarray | None = None,
    fallback: np.ndarray | None = None,
    harm: np.ndarray | None = None,
    last: np.ndarray | None = None,
    costs: np.ndarray | None = None,
) -> np.ndarray:
    """The ``count`` unselected features with the largest logits (ties to the
    earlier feature), one at a time: ``preferred`` ones first, the others by
    the largest ``fallback`` where given (with ``costs``, among the tables of
    at most the largest chosen one's bytes, the cap, then by the fewest bytes:
    :func:`.least_harm.least_cost_first`), copies of a selected one last.
    ``last``, where given, ranks the last of the ``count`` picks in place of
    the logits.

    Once no ``preferred`` feature is left but copies of a selected one (the
    evidence says nothing helps any more) and ``harm`` is given (the held-out
    gate statistic: the larger, the less a feature's weight hurts the
    held-out loss), a copy of a selected feature (it can neither help nor
    hurt) is the pick when every other candidate's ``harm`` is at most 0 and
    at most its own (:func:`.least_harm.copy_when_all_hurt`). Its probe z, if
    any, says nothing, as it cannot help; so the comparison is on ``harm``
    alone (docs/generated_quality.md, "Session 20"). Where ``costs`` rank
    them, a function of a chosen feature goes behind the other tables of at
    most the cap and ahead of the larger ones
    (:func:`.least_harm.coarsenings_by_cost`); a pick's source that helps
    takes its place unless clearly weaker by ``fallback``."""
    chosen = np.array(selected, bool)
    picks = []
    for index in range(count):
        scores = last if last is not None and index == count - 1 else logits
        cap = None if costs is None else costs[chosen].max()
        candidates = np.flatnonzero(~chosen)
        order = candidates[np.argsort(-scores[candidates], kind="stable")]
        if preferred is not None:
            first = np.asarray(preferred, bool)[order]
            lead, rest = order[first], order[~first]
            if dependence is not None:
                # A function of a chosen feature, or one that a chosen feature
                # is a function of, adds to a group already covered.
                related = dependence_lib.related_to(dependence, chosen)
                lead = np.concatenate([lead[~related[lead]], lead[related[lead]]])
            if fallback is not None:
                rest = rest[np.argsort(-fallback[rest], kind="stable")]
                if costs is not None:
                    rest = least_harm.least_cost_first(rest, costs, cap)
            order = np.concatenate([lead, rest])
        if dependence is not None:
            redundant = dependence_lib.redundant_candidates(dependence, chosen)
            order = np.concatenate([order[~redundant[order]], order[redundant[order]]])
            spent = preferred is not None and not np.any(
                np.asarray(preferred, bool) & ~chosen & ~redundant
            )
            if spent and costs is not None and fallback is not None:
                coarser = dependence_lib.functions_of(dependence, chosen)
                order = least_harm.coarsenings_by_cost(
                    order, costs, coarser[order], cap
                )
            if spent and harm is not None:
                order = least_harm.copy_when_all_hurt(order, harm, redundant[order])
        pick = int(order[0])
        if preferred is not None and dependence is not None:
            # Not a copy of a chosen feature: it would cover nothing new.
            helps = np.asarray(preferred, bool) & ~chosen & ~redundant
            if helps[pick]:
                pick = dependence_lib.finest_source(
                    pick, helps, dependence, scores, fallback, CLEARLY_WEAKER
                )
        picks.append(pick)
        chosen[pick] = True
    return np.array(picks, np.int64)


def _affordable_picks(
    spec: SelectionSpec,
    record: SelectionRecord,
    logits: np.ndarray,
    selected: np.ndarray,
    num_rounds: int,
    costs: Sequence[int | None] | None,
    entry_scores: np.ndarray | None,
    dependence: np.ndarray | None,
    entry_z_scores: np.ndarray | None,
) -> tuple[np.ndarray, bool]:
    """This round's budgeted picks, and whether the selection closes after them."""
    names = spec.feature_names
    costs = list(costs or [None] * len(names))
    unknown = [name for name, cost in zip(names, costs) if cost is None]
    if unknown:
        raise ValueError(
            f"{spec.layer_name}: cannot measure the bytes of {unknown} (their layers "
            "were never called); call the model on a batch first or pass "
            "`feature_bytes`."
        )
    cost = np.array(costs, np.int64)
    remaining = budget_lib.bytes_left(costs, selected, spec.budget_bytes)
    eligible = np.ones(len(cost), bool)
    if spec.entry_z is not None and selected.any():  # round 1 never stops
        eligible = np.asarray(entry_z_scores) > spec.entry_z
    if dependence is not None:
        eligible &= ~dependence_lib.redundant_candidates(dependence, selected)
    ranked = budget_lib.pick_within_budget(
        logits,
        np.where(eligible, cost, remaining + 1),  # the others cannot fit
        selected,
        remaining,
        spec.selections_per_round,
        spec.budget_rule,
        entry_scores,
        dependence,
    )
    if not ranked and not eligible.all():  # nothing that fits helps: stop
        return np.array([], np.int64), True
    if not ranked:
        cheapest = int(np.argmin(np.where(selected, np.iinfo(np.int64).max, cost)))
        raise ValueError(
            f"{spec.layer_name}: `budget_bytes`={spec.budget_bytes} fits no feature; "
            f"the cheapest, {names[cheapest]!r}, takes {int(cost[cheapest])} bytes. "
            "Expected a budget that fits at least one feature's table."
        )
    after = selected.copy()
    after[ranked] = True
    closed = (
        not budget_lib.unselected_that_fit(costs, after, spec.budget_bytes).any()
        or record.rounds_done + 1 >= num_rounds
    )
    return np.array(ranked, np.int64), closed


def entry_statistics(total: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """Score statistics: ``-sum / sqrt(sum of squares)`` (0 where no evidence).

    Example:
      >>> entry_statistics(np.array([-4.0, 1.0, 0.0]), np.array([4.0, 1.0, 0.0]))
      array([ 2., -1.,  0.])
    """
    total = np.asarray(total, np.float64)
    squares = np.asarray(squares, np.float64)
    return np.divide(
        -total, np.sqrt(squares), out=np.zeros_like(total), where=squares > 0
    )


def heldout_statistics(
    total: np.ndarray,
    squares: np.ndarray,
    batches_read: float,
    pass_batches: int | None,
) -> np.ndarray:
    """The round's held-out gate z: :func:`entry_statistics` of the held-out
    sums over :func:`seqattn_tfrs.core.evidence.revisit_factor` (rows read
    more than once this round), for both front-ends.

    Example (8 batches of a pass of 2: every row read 4 times, z halved):
      >>> heldout_statistics(np.array([-8.0, 2.0]), np.array([4.0, 1.0]), 8, 2)
      array([ 2., -1.])
    """
    factor = revisit_factor(batches_read, pass_batches)
    return entry_statistics(total, squares) / factor


def rao_statistics(
    total: np.ndarray, norms: np.ndarray, projections: np.ndarray
) -> np.ndarray:
    """Rao's score statistics for ranking: ``-sum / sqrt(norms * projections)``.

    ``total`` is the sum of a feature's gate gradients, ``norms`` and
    ``projections`` the sums of :func:`seqattn_tfrs.core.signals.
    information_sums`; 0 where no evidence. The statistic is a z-statistic
    up to a factor common to all features, so it ranks, it does not test.

    Example:
      >>> rao_statistics(np.array([-4.0, 1.0, 0.0]), np.array([4.0, 1.0, 0.0]),
      ...                np.array([1.0, 4.0, 0.0]))
      array([ 2. , -0.5,  0. ])
    """
    spread = np.asarray(norms, np.float64) * np.asarray(projections, np.float64)
    return entry_statistics(total, spread)
