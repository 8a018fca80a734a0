"""The held-out pair test: two fields that help only together are picked together."""

import numpy as np
import pytest
import tensorflow as tf
from helpers.selection_fit import fit_selecting

from seqattn_tfrs import SequentialAttentionEmbedding
from seqattn_tfrs.core import evidence
from seqattn_tfrs.core.pairs import pair_picks, pair_z
from seqattn_tfrs.core.selection import SelectionRecord, SelectionSpec, commit_round


def test_pair_z_tests_the_odd_rows_against_the_even_rows_sums_by_hand():
    # Rows 0, 2, 4 fit: cell (0, 0) sums (1, 2), cell (1, 0) (2, 0), cell
    # (1, 1) (1, 1). Odd rows: (3, -1) in (0, 0) gives 3 - 2 = 1; (5, 5) in
    # (1, 1) gives 10; (-1, 4) in (1, 0) gives -2. z = 9 / sqrt(105).
    keys = np.array([[0, 0], [0, 0], [1, 0], [1, 1], [1, 1], [1, 0]])
    projected = np.array([[1, 2], [3, -1], [2, 0], [5, 5], [1, 1], [-1, 4]], float)
    z = pair_z(keys, projected)
    assert z[0, 1] == z[1, 0] == pytest.approx(9 / np.sqrt(105))
    assert np.isnan(z[0, 0]) and np.isnan(z[1, 1])


def parity_rows(rng, rows, opposed=False):
    """Keys of two 4-value fields and a 3-value one; the projected gradient
    of the first two carries the parity of the first two fields' values (in
    opposite directions with ``opposed``), the third's is noise."""
    keys = np.stack([rng.integers(0, 4, rows), rng.integers(0, 4, rows),
                     rng.integers(0, 3, rows)], axis=1)  # fmt: skip
    parity = np.where((keys[:, 0] + keys[:, 1]) % 2 == 0, 0.3, -0.3)
    residual = parity + rng.normal(size=rows)
    second = -residual if opposed else residual
    return keys, np.stack([residual, second, rng.normal(size=rows)], axis=1)


def test_a_parity_pair_stands_out_whichever_way_its_directions_point():
    rng = np.random.default_rng(0)
    for opposed in (False, True):
        z = pair_z(*parity_rows(rng, 4000, opposed))
        assert z[0, 1] > 6  # the pair (an effect of 0.3 against noise of 1)
        assert abs(z[0, 2]) < 3 and abs(z[1, 2]) < 3


def test_pair_z_is_a_standard_normal_where_the_pair_carries_nothing():
    """Over 300 null draws the z has mean 0 and variance 1: testing each half
    against the other and adding both would give a variance of 2."""
    rng = np.random.default_rng(1)
    draws = [
        pair_z(
            np.stack([rng.integers(0, 3, 400), rng.integers(0, 5, 400)], axis=1),
            rng.standard_t(4, size=(400, 2)),  # heavy-tailed gradients
        )[0, 1]
        for _ in range(300)
    ]
    assert abs(np.mean(draws)) < 0.15
    assert 0.85 < np.std(draws) < 1.15


def test_pair_z_names_the_shapes_it_got():
    with pytest.raises(ValueError, match=r"\(4, 2\) and \(4, 3\)"):
        pair_z(np.zeros([4, 2]), np.zeros([4, 3]))


def test_the_best_eligible_pair_is_picked_where_it_clears_the_threshold():
    z = np.full((4, 4), np.nan)
    z[0, 1] = z[1, 0] = 9.0  # the best pair, but 1 is not eligible
    z[2, 3] = z[3, 2] = 3.0
    z[0, 2] = z[2, 0] = 1.0
    z[0, 3] = z[3, 0] = -1.0
    eligible = np.array([True, False, True, True])
    combined = np.array([0.0, 0.0, 0.1, 0.2])
    # Three pairs tested among 0, 2 and 3: the threshold for 3 tests is 2.13.
    assert pair_picks(z, eligible, combined, evidence.signal_threshold) == [3, 2]
    assert pair_picks(z, eligible, combined, lambda tests: 3.5) is None
    assert pair_picks(z, np.array([True, True, False, False]), combined,
                      evidence.signal_threshold) == [0, 1]  # fmt: skip


SPEC = SelectionSpec("gate", ("a", "b", "c", "d", "e"), 4, None, 1)


def commit_after_a(gate_z, pairs, picked=1, dependence=None, spec=SPEC, probe_z=None):
    """Commits a round after ``a`` (and ``picked - 1`` more of the first
    features) were selected: the gate's z ``gate_z``, every probe z 0.5 (or
    ``probe_z``) and the pair test's z ``pairs``; returns the picks' names."""
    selected = np.arange(5) < picked
    order = np.full(5, -1)
    order[:picked] = np.arange(picked)
    record = SelectionRecord(selected, order, picked, np.zeros((4, 5)))
    matrix = np.full((5, 5), np.nan)
    for (i, j), z in pairs.items():
        matrix[i, j] = matrix[j, i] = z
    probe = np.where(selected, 0.0, 0.5 if probe_z is None else np.asarray(probe_z))
    _, picks = commit_round(
        spec,
        record,
        np.array([0.0, 0.1, 0.2, 0.3, 0.4]),  # the logits favour e
        np.zeros(5),
        num_rounds=4,
        dependence=dependence,
        heldout_scores=np.array(gate_z, float),
        probe_scores=probe,
        pair_scores=matrix,
    )
    return [spec.feature_names[i] for i in picks]


def test_a_round_where_nothing_helps_alone_picks_the_pair_that_helps_together():
    spent = [0.0, 0.3, 1.0, -0.2, 0.8]  # b-e: nothing helps alone
    # c has the larger combined z of the pair (b, c): first.
    assert commit_after_a(spent, {(1, 2): 8.0, (3, 4): 0.5}) == ["c", "b"]
    # No pair clears the threshold: one pick by the least harm, as before.
    assert commit_after_a(spent, {(1, 2): 1.0, (3, 4): 0.5}) == ["c"]
    # Something helps alone by the gate and the probe: it goes first, and no
    # pair is read.
    both = [0.0, 0.5, 0.5, 9.0, 0.5]
    assert commit_after_a([0.0, 0.3, 1.0, 9.0, 0.8], {(1, 2): 8.0}, probe_z=both) == [
        "d"
    ]
    # One pick left (a, b, c selected): a pair cannot be completed.
    assert commit_after_a(spent, {(3, 4): 8.0}, picked=3) == ["e"]
    # The last round's two picks: the pair takes both, nothing more.
    last_two = SelectionSpec("gate", SPEC.feature_names, 3, None, 2)
    assert commit_after_a(spent, {(1, 2): 8.0}, spec=last_two) == ["c", "b"]


def test_a_coarsening_of_a_selected_feature_that_helps_does_not_block_the_pair():
    dependence = np.zeros((5, 5), bool)
    dependence[4, 0] = True  # e is a function of the selected a
    gate_z = [0.0, 0.3, 1.0, -0.2, 9.0]  # only e "helps"
    pairs = {(1, 3): 8.0}
    assert commit_after_a(gate_z, pairs, dependence=dependence) == ["b", "d"]
    assert evidence.pairs_to_test(
        np.arange(5) < 1, dependence, np.array(gate_z), np.full(5, 0.5), 3
    ) == [(1, 2), (1, 3), (2, 3)]


def test_a_fit_picks_a_parity_pair_that_an_additive_model_cannot_see():
    """``m`` has a main effect; ``x`` and ``y`` matter only by their parity,
    which a model adding one column per table cannot fit, so neither the gates
    nor the probe of either field sees them; ``n`` is noise. After ``m`` no
    candidate helps alone, and the pair test picks ``x`` and ``y`` together
    in round 2 (the event carries every pair's z)."""
    rng = np.random.default_rng(0)
    count = 12000
    features = {n: rng.integers(0, 4, count) for n in ("m", "x", "y", "n")}
    effect = np.array([-1.5, -0.5, 0.5, 1.5])[features["m"]]
    parity = np.where((features["x"] + features["y"]) % 2 == 0, 1.0, -1.0)
    logit = effect + parity
    labels = (rng.random(count) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    names = ("m", "x", "y", "n")
    inputs = {n: tf.keras.Input([], dtype=tf.int64, name=n) for n in names}
    layer = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Embedding(4, 2) for n in names}, 3, name="gate"
    )
    gated = layer(inputs)
    hidden = tf.keras.layers.Concatenate()([gated[n] for n in names])
    output = tf.keras.layers.Dense(1, activation="sigmoid")(hidden)
    model = tf.keras.Model(inputs, output)
    model.compile(tf.keras.optimizers.Adam(0.01), "binary_crossentropy")
    callback = fit_selecting(
        model, features, labels, batch_size=250, split=8000, held_batch=500
    )
    assert layer.selected_features[0] == "m"
    assert sorted(layer.selected_features[1:]) == ["x", "y"]
    second = callback.events[1]
    assert sorted(second["features"]) == ["x", "y"]  # one round, both
    assert second["signal_exhausted"] is False
    assert set(second["pair_scores"]) == {"x & y", "x & n", "y & n"}
    assert second["pair_scores"]["x & y"] > 6
    assert layer.selection_complete


def test_a_pair_beats_single_picks_only_where_its_z_squared_is_larger():
    """``d`` helps by the gate's z (9.0) but not by the probe's (0.5): the
    signature of an interaction's member, so the pair test is read though
    something helps. The pair (b, c) is picked where its z squared, less
    what its members bring alone (combined z 0.57 and 1.06: 1.45), exceeds
    the two best single picks' combined z squared added up (here only d
    helps: (9.0 + 0.5) / sqrt(2) = 6.72, 45.1), else d goes first."""
    gate_z = [0.0, 0.3, 1.0, 9.0, 0.8]
    assert commit_after_a(gate_z, {(1, 2): 7.0}) == ["c", "b"]  # 47.6 > 45.1
    assert commit_after_a(gate_z, {(1, 2): 6.8}) == ["d"]  # 44.8 < 45.1
    # d also helps by its probe: not a suspect, and the pair is not read.
    assert commit_after_a(
        gate_z, {(1, 2): 30.0}, probe_z=[0.0, 0.5, 0.5, 9.0, 0.5]
    ) == ["d"]
    # Which pairs the callback asks the test for: those with a suspect (d)
    # while something else helps alone (e, by both z); every pair of
    # candidates where only suspects help, or none does.
    selected, probe = np.arange(5) < 1, np.full(5, 0.5)
    with_e = np.array([0.0, 0.3, 1.0, 9.0, 5.0])
    probe_e = np.array([0.0, 0.5, 0.5, 0.5, 5.0])
    asked = evidence.pairs_to_test(selected, None, with_e, probe_e, 3)
    assert asked == [(1, 3), (2, 3), (3, 4)]
    asked = evidence.pairs_to_test(selected, None, np.array(gate_z), probe, 3)
    assert len(asked) == 6  # d helps by the gate alone: chance or a member
    spent = np.array([0.0, 0.3, 1.0, -0.2, 0.8])
    assert len(evidence.pairs_to_test(selected, None, spent, probe, 3)) == 6
    assert evidence.pairs_to_test(selected, None, spent, probe, 1) == []


def test_pair_test_takes_at_most_max_pair_candidates():
    """Past ``MAX_PAIR_CANDIDATES`` eligible candidates the pairs are among
    the interaction suspects and then the largest gate z: every pair of 200
    candidates would cost minutes of numpy a round."""
    cap = evidence.MAX_PAIR_CANDIDATES
    n = cap + 12
    selected, probe = np.arange(n) < 1, np.full(n, 0.5)
    spent = np.random.default_rng(0).normal(0, 0.5, n)  # none helps alone
    asked = evidence.pairs_to_test(selected, None, spent, probe, 3)
    members = {i for pair in asked for i in pair}
    assert len(asked) == cap * (cap - 1) // 2
    assert members == {int(i) for i in np.argsort(-spent[1:])[:cap] + 1}
    # Below the cap, every pair, as before.
    few = spent[: cap + 1]
    assert (
        len(evidence.pairs_to_test(selected[: cap + 1], None, few, probe[: cap + 1], 3))
        == cap * (cap - 1) // 2
    )
    # A suspect (gate z 6, probe z -1) below the cap's gate z stays in: the
    # pairs asked are its own, with the 39 largest gate z of the others
    # (helpers by both z, so no suspects).
    gate_z, probe_z = np.full(n, 9.0), np.full(n, 9.0)
    gate_z[-1], probe_z[-1] = 6.0, -1.0
    gate_z[1:-1] += np.linspace(0, 1, n - 2)
    asked = evidence.pairs_to_test(selected, None, gate_z, probe_z, 3)
    partners = sorted(i for pair in asked for i in pair if i != n - 1)
    assert len(asked) == cap - 1 and all(n - 1 in pair for pair in asked)
    assert partners == list(range(n - cap, n - 1))
