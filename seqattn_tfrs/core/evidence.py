"""Held-out evidence: which candidates help, and when none does.

The rules :func:`seqattn_tfrs.core.selection.commit_round` applies to the
round's held-out statistics: a Bonferroni threshold over the candidates
(:func:`signal_threshold`), the gate's z (:func:`helping`), the gate's and
the held-out probe's z combined (:func:`probe_evidence`), what a candidate
brings alone (:func:`alone_scores`, :func:`final_pick_scores`), whether a pick
followed the least harm (:func:`exhausted_after`), and, once no candidate
helps alone or beside a member of an interaction the probe does not see,
the held-out pair test (:func:`pairs_to_test`, :func:`pair_to_pick`,
:mod:`seqattn_tfrs.core.pairs`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Mapping

import numpy as np

from seqattn_tfrs.core import dependence as dependence_lib
from seqattn_tfrs.core import pairs as pairs_lib

# The family-wise error rate at which "some unselected feature still helps"
# is declared (one-sided, Bonferroni over the candidates).
SIGNAL_ALPHA = 0.05


def signal_threshold(num_candidates: int) -> float:
    """The z a held-out statistic must clear for a candidate to count as
    helping: one-sided, Bonferroni-corrected over ``num_candidates`` at
    ``SIGNAL_ALPHA``.

    Example:
      >>> round(signal_threshold(1), 3), round(signal_threshold(30), 3)
      (1.645, 2.935)
    """
    if num_candidates < 1:
        raise ValueError(f"`num_candidates` must be >= 1, got {num_candidates}.")
    return statistics.NormalDist().inv_cdf(1.0 - SIGNAL_ALPHA / num_candidates)


# How far one held-out z must fall short of another's to be clearly weaker:
# the one-sided ``SIGNAL_ALPHA`` bound on the difference of two independent
# unit-variance z, 1.645 x sqrt(2) = 2.33.
CLEARLY_WEAKER = signal_threshold(1) * math.sqrt(2)


def revisit_factor(batches_read: float, pass_batches: int | None) -> float:
    """How far re-read held-out rows inflate a round's held-out z.

    A round's held-out steps cycle over ``selection_data`` (``pass_batches``
    batches a pass); after ``batches_read`` of them every batch was read ``q``
    or ``q + 1`` times. A re-read row gives about the same gradient again, so
    its sum grows like its count ``c`` while the sum of squares grows like
    ``c``: the z of a feature that does not help spreads by
    ``sqrt(sum c^2 / sum c)`` (``sqrt(passes)`` for whole passes). 1 while no
    batch was read twice, or when the pass is not known
    (docs/generated_quality.md, "Held-out rows revisited within a round").

    Example:
      >>> revisit_factor(8, 16), revisit_factor(32, 16), revisit_factor(4, None)
      (1.0, 1.4142135623730951, 1.0)
      >>> round(revisit_factor(24, 16), 4)  # half the batches twice: sqrt(10/6)
      1.291
    """
    if pass_batches is None or batches_read <= pass_batches:
        return 1.0
    if pass_batches < 1:
        raise ValueError(f"`pass_batches` must be >= 1 or None, got {pass_batches}.")
    passes = batches_read / pass_batches
    whole = np.floor(passes)
    extra = passes - whole  # the share of batches read once more
    squares = (1.0 - extra) * whole**2 + extra * (whole + 1.0) ** 2
    return float(np.sqrt(squares / passes))


def checked_pass_batches(layer_name: str, batches: int | None) -> int | None:
    """``batches`` (a pass of ``selection_data``) if a positive int or None.

    Raises:
      ValueError: naming ``layer_name``, the value and what was expected.
    """
    if batches is None or (
        isinstance(batches, (int, np.integer))
        and not isinstance(batches, bool)
        and batches >= 1
    ):
        return None if batches is None else int(batches)
    raise ValueError(
        f"{layer_name}: `batches` (one pass of `selection_data`) must be a "
        f"positive int or None (unknown), got {batches!r}."
    )


def signal_exhausted(selected: np.ndarray, heldout_scores: np.ndarray | None) -> bool:
    """Whether, after the first pick, no unselected feature's held-out
    statistic clears :func:`signal_threshold`: the logits then rank noise.

    False without evidence (no statistic is non-zero) and before any pick.

    Example:
      >>> signal_exhausted(np.array([True, False, False]), np.array([0, 1.0, -2]))
      True
      >>> signal_exhausted(np.array([True, False, False]), np.array([0, 3.0, -2]))
      False
      >>> signal_exhausted(np.array([False, False]), np.array([0.5, 1.0]))
      False
    """
    helps = helping(selected, heldout_scores)
    return helps is not None and not helps.any()


def helping(
    selected: np.ndarray, heldout_scores: np.ndarray | None
) -> np.ndarray | None:
    """The unselected features whose held-out statistic clears
    :func:`signal_threshold`; None without evidence, before the first pick or
    with nothing left.

    Example:
      >>> helping(np.array([True, False, False]), np.array([9.0, 5.0, 1.0]))
      array([False,  True, False])
      >>> helping(np.array([False, False]), np.array([5.0, 1.0])) is None
      True
    """
    selected = np.asarray(selected, bool)
    if heldout_scores is None or not np.any(heldout_scores):
        return None
    if not selected.any() or selected.all():
        return None
    scores = np.asarray(heldout_scores, np.float64)
    return ~selected & (scores >= signal_threshold(int((~selected).sum())))


# What a callback adds to its message for such a pick.
EXHAUSTED_NOTE = (
    " (no candidate helped on held-out data any more: this pick is the least "
    "harm on held-out data among the tables no larger than a selected one, "
    "else the smallest table left; fewer features may serve as well)"
)


def exhausted_after(
    evidence: Mapping[str, float],
    selected: Collection[str],
    by_count: bool = True,
    probe: Mapping[str, float] | None = None,
    dependencies: Mapping[str, Collection[str]] | None = None,
    probe_rounds: int = 1,
) -> bool:
    """:func:`signal_exhausted` from a gate's ``heldout_evidence()`` and its
    ``selected_features``, and, where the held-out probe ran (``probe``: its
    z per feature, NaN for a feature without one), no candidate helps by the
    probe either (as :func:`.selection.commit_round` decides it): whether the next pick
    by count will be the least harmful rather than one that helps. A copy of
    a selected feature (by the gate's ``functional_dependencies``,
    ``dependencies``) does not count as helping, as the commit passes over
    it. Always False when not ``by_count`` (a budget's picks do not follow
    this rule).

    Example (``b`` does not help by the gate's z; by the probe's it does):
      >>> exhausted_after({"a": 0.0, "b": 0.5, "c": -1.0}, ["a"])
      True
      >>> exhausted_after({"a": 0.0, "b": 0.5, "c": -1.0}, ["a"],
      ...                 probe={"a": 0.0, "b": 6.0, "c": 0.2})
      False
      >>> exhausted_after({"a": 0.0, "b": 0.5, "c": -1.0}, ["a"], by_count=False)
      False

    (``c`` helps by the gate's z, but it is a copy of the selected ``a``):
      >>> exhausted_after({"a": 0.0, "b": 0.5, "c": 9.0}, ["a"])
      False
      >>> exhausted_after({"a": 0.0, "b": 0.5, "c": 9.0}, ["a"],
      ...                 dependencies={"a": ("c",), "c": ("a",)})
      True
    """
    if not by_count:
        return False
    names = list(evidence)
    chosen = np.array([name in selected for name in names], bool)
    gate_z = np.array([evidence[name] for name in names], np.float64)
    copies = dependence_lib.copies_of_chosen(names, chosen, dependencies)
    helps = helping(chosen, gate_z)
    if helps is None or (helps & ~copies).any():
        return False
    if probe is None:
        return True
    probe_z = np.array([probe.get(name, np.nan) for name in names], np.float64)
    if not np.any(np.nan_to_num(probe_z)):
        return True
    # As the commit: the probe alone counts only where no gate z helps at all.
    probe_helps, _ = probe_evidence(
        chosen, gate_z, probe_z, spent=not helps.any(), probe_rounds=probe_rounds
    )
    return not (probe_helps & ~copies).any()


# The pair test's candidates at most: their pairs are each a grouping of the
# held-out rows in numpy (6 ms a pair at 50,000 rows on a 2-core CPU), so
# every pair of 200 candidates would take two minutes a round. Where more are
# eligible, the interaction suspects and then the largest gate z stay (the
# gate's z sees a member of an interaction beside its partner). No problem
# measured here has more than 38 (the Criteo-shaped one's 39 fields less one).
MAX_PAIR_CANDIDATES = 40


def pairs_to_test(
    selected: np.ndarray,
    dependence: np.ndarray | None,
    heldout_scores: np.ndarray | None,
    probe_scores: np.ndarray | None,
    remaining: int,
    probe_rounds: int = 1,
) -> list[tuple[int, int]]:
    """The pairs (index pairs, first < second) the held-out pair test
    (:mod:`seqattn_tfrs.core.pairs`) scores before a commit by count, among
    the candidates: the unselected features with a probe z that are no
    function of a selected feature (a coarsening or a copy, which adds
    nothing), at most ``MAX_PAIR_CANDIDATES`` of them (the suspects first,
    then by the gate's z). Every pair of them where none helps alone (by the
    gate's z, the probe's, or both; :func:`probe_evidence`) or where every
    one that does is an :func:`interaction_suspects` (a gate z that the
    probe does not back: an interaction's member, or a noise field that
    cleared the threshold by chance, and the pair it would take a slot from
    may have neither member among them); else those with a suspect member
    (the pairs :func:`pair_to_pick` can take there); none with fewer than
    two picks left, without a probe z, or where some candidate helps alone
    and none is a suspect.

    Example (``a`` selected; ``c`` a coarsening of ``a``; nothing helps):
      >>> dependence = np.zeros([4, 4], bool)
      >>> dependence[2, 0] = True
      >>> chosen, probe = np.array([True, False, False, False]), np.full(4, 0.5)
      >>> pairs_to_test(chosen, dependence, np.array([0, 0.3, 9.0, 0.1]), probe, 2)
      [(1, 3)]

    (``b`` helps by both z: no pair; by the gate's alone: a suspect):
      >>> pairs_to_test(chosen, None, np.array([0, 9.0, 0.2, 0.1]),
      ...               np.array([0, 9.0, 0.5, 0.5]), 2)
      []
      >>> pairs_to_test(chosen, None, np.array([0, 9.0, 0.2, 5.0]),
      ...               np.array([0, 0.5, 0.5, 5.0]), 2)
      [(1, 2), (1, 3)]

    (``b`` the only one that helps, by the gate's z alone: every pair):
      >>> pairs_to_test(chosen, None, np.array([0, 9.0, 0.2, 0.1]),
      ...               np.array([0, 0.5, 0.5, 0.5]), 2)
      [(1, 2), (1, 3), (2, 3)]
    """
    state = _pair_state(
        selected, dependence, heldout_scores, probe_scores, remaining, probe_rounds
    )
    if state is None:
        return []
    eligible, helps_alone, suspects = state
    anchors = suspects if (helps_alone & ~suspects).any() else eligible
    members = np.flatnonzero(eligible)
    if len(members) > MAX_PAIR_CANDIDATES:
        gate_z = np.nan_to_num(np.asarray(heldout_scores, np.float64)[members])
        first = np.lexsort((-gate_z, ~suspects[members]))  # suspects, then by z
        members = np.sort(members[first[:MAX_PAIR_CANDIDATES]])
    return [
        (int(i), int(j))
        for n, i in enumerate(members)
        for j in members[n + 1 :]
        if anchors[i] or anchors[j]
    ]


def interaction_suspects(
    selected: np.ndarray, heldout_scores: np.ndarray, probe_scores: np.ndarray
) -> np.ndarray:
    """``[N]`` booleans: the unselected features with a probe z whose gate z
    helps (:func:`helping`) while their probe z alone is below
    :func:`signal_threshold` over those features: the gate measures a
    candidate beside the other candidates' soft gates, the probe with them
    at 0, so a member of an interaction whose partner is still a candidate
    (an XOR pair) is seen by the first and not by the second.

    Example (``b``: gate 6.3, probe -1.2; ``c`` helps by both):
      >>> interaction_suspects(np.array([True, False, False, False]),
      ...     np.array([0, 6.3, 4.0, 0.1]), np.array([0, -1.2, 6.6, 0.5])).tolist()
      [False, True, False, False]
    """
    helps = helping(selected, heldout_scores)
    probe_z = np.asarray(probe_scores, np.float64)
    keyed = ~np.asarray(selected, bool) & np.isfinite(probe_z)
    if helps is None or not keyed.any():
        return np.zeros(len(probe_z), bool)
    weak = np.nan_to_num(probe_z) < signal_threshold(int(keyed.sum()))
    return helps & keyed & weak


def _pair_state(
    selected, dependence, heldout_scores, probe_scores, remaining, probe_rounds
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The pair test's candidates (unselected, with a probe z, no function of
    a selected feature), those among them that help alone, and the
    :func:`interaction_suspects` among them; None where no test applies:
    fewer than two picks left or two candidates, no probe z, or a candidate
    that helps alone while none is a suspect."""
    if remaining < 2 or probe_scores is None:
        return None
    probe_z = np.asarray(probe_scores, np.float64)
    selected = np.asarray(selected, bool)
    helps = helping(selected, heldout_scores)
    if helps is None or not np.any(np.nan_to_num(probe_z)):
        return None
    gate_z = np.asarray(heldout_scores, np.float64)
    probe_helps, _ = probe_evidence(
        selected, gate_z, probe_z, not helps.any(), probe_rounds
    )
    new = ~selected
    if dependence is not None:
        new &= ~np.asarray(dependence, bool)[:, selected].any(axis=1)
    eligible = new & np.isfinite(probe_z)
    suspects = interaction_suspects(selected, gate_z, probe_z) & eligible
    helps_alone = (helps | probe_helps) & new
    if eligible.sum() < 2 or (helps_alone.any() and not suspects.any()):
        return None
    return eligible, helps_alone, suspects


def pair_found(pair_scores: Mapping[tuple[str, str], float]) -> bool:
    """Whether some pair of the held-out pair test clears
    :func:`signal_threshold` over all the pairs tested (the commit then picks
    the best pair: :func:`pair_to_pick`).

    Example:
      >>> pair_found({("a", "b"): 4.0, ("a", "c"): 0.3, ("b", "c"): -1.0})
      True
      >>> pair_found({("a", "b"): 1.5}), pair_found({})  # 1 test: 1.645
      (False, False)
    """
    return bool(pair_scores) and max(pair_scores.values()) >= signal_threshold(
        len(pair_scores)
    )


def pair_to_pick(
    selected,
    dependence,
    heldout_scores,
    probe_scores,
    pair_scores,
    remaining,
    probe_rounds: int = 1,
) -> list[int] | None:
    """The pair :func:`.selection.commit_round` picks, or None: the best
    pair of the held-out pair test where it clears the threshold and either
    no candidate helps alone (:func:`pairs_to_test`) or, beside an
    :func:`interaction_suspects`, what it brings beyond its members alone
    (its z squared less their combined z squared) exceeds the two best
    single picks' combined z squared added up: two picks either way, and a
    z squared is a gain in loss units times the rows' information (the
    pair's test uses half the rows, so it wins only where its gain is
    clearly the larger). A main effect with a noise partner brings nothing
    beyond its member.

    Example (``b`` and ``c`` matter together, combined z 3.54 and 0; ``d``
    helps alone: gate and probe z 5.0, combined 7.07):
      >>> z = np.full((4, 4), np.nan)
      >>> z[1, 2] = z[2, 1] = 9.0
      >>> chosen = np.array([True, False, False, False])
      >>> pair_to_pick(chosen, None, np.array([0, 6.0, 1.0, 5.0]),
      ...              np.array([0, -1.0, -1.0, 5.0]), z, remaining=2)
      [1, 2]
      >>> z[1, 2] = z[2, 1] = 8.0  # 64 - 3.54**2 < 7.07**2 + 3.54**2: d, then b
      >>> print(pair_to_pick(chosen, None, np.array([0, 6.0, 1.0, 5.0]),
      ...                    np.array([0, -1.0, -1.0, 5.0]), z, remaining=2))
      None
    """
    state = _pair_state(
        selected, dependence, heldout_scores, probe_scores, remaining, probe_rounds
    )
    if state is None:
        return None
    eligible, helps_alone, _ = state
    gate_z = np.asarray(heldout_scores, np.float64)
    probe_z = np.asarray(probe_scores, np.float64)
    _, combined = probe_evidence(selected, gate_z, probe_z)
    scores = np.asarray(pair_scores, np.float64)
    pair = pairs_lib.pair_picks(scores, eligible, combined, signal_threshold)
    if pair is None or not helps_alone.any():
        return pair
    gains = np.clip(combined, 0.0, None) ** 2
    joint = scores[pair[0], pair[1]] ** 2 - gains[pair].sum()  # beyond each alone
    return pair if joint > np.sort(gains[helps_alone])[-2:].sum() else None


def alone_scores(
    selected: np.ndarray, gate_z: np.ndarray, probe_z: np.ndarray
) -> np.ndarray:
    """What each unselected feature brings alone, given the selected ones:
    its held-out probe z (measured with every candidate's gate at 0), or its
    gate's z where it has no probe z (floats, booleans); -inf for a selected
    feature.

    The gate's z measures a candidate beside the soft gates of the other
    candidates, so a member of an interaction pair scores high there while
    its partner is half on; the selection's last pick cannot be followed by
    the partner, so it ranks by this instead (``core.selection``).

    Example (``b`` helps only beside ``c``'s soft gate; ``d`` has no probe z):
      >>> alone_scores(np.array([True, False, False, False]),
      ...     np.array([0.0, 8.0, 0.7, 2.0]), np.array([0.0, 0.2, 6.1, np.nan]))
      array([-inf,  0.2,  6.1,  2. ])
    """
    unselected = ~np.asarray(selected, bool)
    probe_z = np.asarray(probe_z, np.float64)
    alone = np.where(np.isfinite(probe_z), probe_z, np.asarray(gate_z, np.float64))
    return np.where(unselected, alone, -np.inf)


def final_pick_scores(
    selected: np.ndarray,
    gate_z: np.ndarray,
    probe_z: np.ndarray,
    helps: np.ndarray,
) -> np.ndarray:
    """How the selection's last pick ranks the features that ``helps``: by
    what each brings alone (:func:`alone_scores`), except that those not
    clearly weaker alone than the best of them (within ``CLEARLY_WEAKER``)
    rank first, by the gate's and the probe's z combined
    (:func:`probe_evidence`). Scores are ranks: larger is better, ties to the
    earlier feature; -inf for a selected feature.

    What a candidate brings alone keeps a member of an interaction whose
    partner cannot follow from the last pick (its gate's z is high beside
    the partner's soft gate, its probe's z is not). Where two candidates'
    alone z are that close, it cannot tell them apart, and the combined z,
    twice the evidence, does: a noise field's probe z of 3.06 against a
    real field's 2.76 (gate z 1.14 against 2.03) no longer takes the last
    pick (docs/generated_quality.md, "Session 47").

    Example (c is within 2.33 of b alone and ahead combined; d, an
    interaction's member, is high only by its gate's z):
      >>> chosen = np.array([True, False, False, False])
      >>> gate, probe = np.array([0.0, 1.1, 2.0, 8.0]), np.array([0.0, 3.1, 2.8, 0.2])
      >>> helps = np.array([False, True, True, True])
      >>> order = final_pick_scores(chosen, gate, probe, helps)
      >>> [int(i) for i in np.argsort(-order, kind="stable")]
      [2, 1, 3, 0]
    """
    alone = alone_scores(selected, gate_z, probe_z)
    helps = np.asarray(helps, bool) & np.isfinite(alone)
    if not helps.any():
        return alone
    gate_z, probe_z = np.asarray(gate_z, np.float64), np.asarray(probe_z, np.float64)
    _, combined = probe_evidence(selected, gate_z, probe_z)
    near = helps & (alone >= alone[helps].max() - CLEARLY_WEAKER)
    by = np.where(near, -combined, -alone)
    order = np.lexsort((np.arange(len(alone)), by, ~near))
    ranks = np.empty(len(alone))
    ranks[order] = -np.arange(len(alone), dtype=np.float64)
    return np.where(np.isfinite(alone), ranks, -np.inf)


def probe_evidence(
    selected: np.ndarray,
    gate_z: np.ndarray,
    probe_z: np.ndarray,
    spent: bool = True,
    probe_rounds: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """The features that help by the held-out probe (beyond the gate's z
    alone), and the order of all, from the gate's z and the probe's (NaN
    where a feature has none).

    The probe sees what a retrained table would bring, which a candidate's
    embedding, trained in the warm-up and unchanged since, hides (an XOR
    partner of a selected field, a field whose signal the warm-up did not
    learn); the gate sees what the soft gates of the round's candidates do
    together. So the two are combined, as independent tests of one null
    hypothesis: ``(gate_z + probe_z) / sqrt(2)`` (Stouffer), the gate's z
    alone without a probe z. A feature helps when its combined z clears
    :func:`signal_threshold`, Bonferroni-counting every test made in the
    round (the gate's, the probe's and the combined); the combined z ranks.
    While the gate still finds help, the probe alone is not enough: on
    MovieLens a 5,000-value noise field reached a probe z of 4.5 in such a
    round (docs/generated_quality.md, "Session 18"). In a ``spent`` round (no
    gate z helps) the probe z alone also counts, against a threshold that
    Bonferroni-counts the round's tests in each of the ``probe_rounds``
    rounds that read a probe: a field is tested in every round of a fit, so
    a per-round 5% would let a noise field through once in a few fits
    (docs/generated_quality.md, "Session 27"). It counts alone only where the
    gate's z is at least 0: where turning the gate up raised the held-out
    loss, the probe's z is not evidence by itself (on MovieLens a 5,000-value
    noise field reached a probe z of 3.70 with a gate z of -1.39;
    docs/generated_quality.md, "Session 29"). It still enters the combined z.

    Example (c's probe z of 2.3 alone is no evidence, 7 tests needing 2.45;
    with its gate's 1.4 it is, 2.62; the rest rank by the combined z):
      >>> helps, order = probe_evidence(np.array([True, False, False, False]),
      ...     np.array([0.0, 1.5, 1.4, -0.5]), np.array([0.0, 0.1, 2.3, np.nan]))
      >>> helps.tolist(), order.round(2).tolist()
      ([False, False, True, False], [0.0, 1.13, 2.62, -0.5])

    (a spent round: c's probe z of 2.6 alone clears 2.45 for one round's 7
    tests, not 2.69 for two rounds' 14):
      >>> chosen, gate = np.array([True, False, False, False]), np.zeros(4)
      >>> probe = np.array([0.0, 0.1, 2.6, np.nan])
      >>> probe_evidence(chosen, gate, probe, spent=True)[0].tolist()
      [False, False, True, False]
      >>> probe_evidence(chosen, gate, probe, spent=True, probe_rounds=2)[0].tolist()
      [False, False, False, False]

    (the same round where c's gate z points the other way, -0.3):
      >>> against = np.array([0.0, 0.0, -0.3, 0.0])
      >>> probe_evidence(chosen, against, probe, spent=True)[0].tolist()
      [False, False, False, False]
    """
    unselected = ~np.asarray(selected, bool)
    keyed = unselected & np.isfinite(probe_z)
    probe = np.nan_to_num(probe_z)
    combined = np.where(keyed, (gate_z + probe) / np.sqrt(2), gate_z)
    tests = int(unselected.sum() + 2 * keyed.sum())
    helps = keyed & (combined >= signal_threshold(tests))
    if spent:  # the probe alone: Bonferroni over every round's tests too,
        # and only where the gate's own z does not point the other way
        alone = probe >= signal_threshold(tests * max(1, probe_rounds))
        helps |= keyed & alone & (np.asarray(gate_z) >= 0.0)
    return unselected & helps, combined
