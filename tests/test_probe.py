"""The held-out probe: hash keys, the settle's sums, the held-out pass and the
commit that uses it, each against a hand computation."""

import numpy as np
import pytest
import tensorflow as tf
from helpers.evidence import check_float_pick
from helpers.selection_fit import fit_selecting

from seqattn_tfrs import (
    SequentialAttentionEmbedding,
    heldout_probe,
    tf_ops,
)
from seqattn_tfrs.core import evidence, probe, round_report, selection
from seqattn_tfrs.gate import SELECTING, SETTLING

BUCKETS = probe.PROBE_BUCKETS


def test_row_keys_group_equal_rows_in_every_form():
    ids = tf.constant([3, 7, 3, 4099])
    assert tf_ops.row_keys(ids, 4096).numpy().tolist() == [3, 7, 3, 3]
    column = tf.reshape(ids, [-1, 1])  # [B, 1] keys as [B]
    assert tf_ops.row_keys(column, 4096).numpy().tolist() == [3, 7, 3, 3]
    words = tf.constant(["x", "y", "x"])
    np.testing.assert_array_equal(
        tf_ops.row_keys(words, 64), tf_ops.row_keys(tf.reshape(words, [-1, 1]), 64)
    )
    rows = tf_ops.row_keys(tf.constant([[1, 2], [2, 1], [1, 2]]), 1 << 20).numpy()
    assert rows[0] == rows[2] != rows[1]  # a row of several values is one value
    ragged = tf.ragged.constant([["a", "b"], ["a"], ["a", "b"]])
    keys = tf_ops.row_keys(ragged, 1 << 20).numpy()
    assert keys[0] == keys[2] != keys[1]

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64)])
    def traced(value):  # a width unknown when traced keys as an eager call
        return tf_ops.row_keys(value, 4096)

    assert traced(tf.constant([[5], [9]], tf.int64)).numpy().tolist() == [5, 9]
    np.testing.assert_array_equal(
        traced(tf.constant([[5, 1], [9, 1]], tf.int64)),
        tf_ops.row_keys(tf.constant([[5, 1], [9, 1]], tf.int64), 4096),
    )
    for unhashable in (
        tf.constant([0.5, 1.5]),
        tf.constant([True]),
        tf.sparse.from_dense(tf.constant([[1, 0]])),
    ):
        assert tf_ops.row_keys(unhashable, 8) is None


def test_the_probe_and_the_gate_combined_rank_once_the_probe_has_run():
    spec = selection.SelectionSpec("gate", ("a", "b", "c", "d"), 3, None, 1)
    record = selection.SelectionRecord(
        np.array([True, False, False, False]),
        np.array([0, -1, -1, -1]),
        1,
        np.zeros((3, 4)),
    )
    logits = np.array([0.0, 3.0, 0.0, 0.0])  # the logits favour b
    exhausted = np.array([0.0, 1.0, 0.5, -1.0])  # none clears 2.13 (3 candidates)
    probe_z = np.array([0.0, -0.5, 1.0, 4.0])

    def pick(heldout, probe_scores):
        return selection.commit_round(
            spec,
            record,
            logits,
            np.full(4, 0.25),
            num_rounds=3,
            heldout_scores=heldout,
            probe_scores=probe_scores,
        )[1]

    assert pick(exhausted, None) == [1]  # the least harm: b
    # d's probe z of 4 clears 2.77 (9 tests in each of the 2 rounds that read
    # a probe), but its gate z (-1) points the other way, so it does not help
    # alone; nothing helps and the combined z ranks d's 2.12 first.
    assert pick(exhausted, probe_z) == [3]
    # Three tests per keyed candidate (gate, probe, combined): helping means
    # z >= 2.539 (0.05 / 9). None does: c's probe 2.2, its combined
    # (0.5 + 2.2) / sqrt(2) = 1.91. All rank by the combined z: c (b's is
    # 0.35, d's 0.71), where the gate's least harm alone would take b.
    assert pick(exhausted, np.array([0.0, -0.5, 2.2, 2.0])) == [2]
    # c and d help by the probe alone (their gate z 0.5 and 0); the combined
    # z ranks them, not the logits (a tie between them at 0): d's
    # (0 + 3.2) / sqrt(2) = 2.26 against c's (0.5 + 2.9) / sqrt(2) = 2.40.
    neither_against = np.array([0.0, 1.0, 0.5, 0.0])
    assert pick(neither_against, np.array([0.0, 0.0, 2.9, 3.2])) == [2]
    assert pick(neither_against, np.array([0.0, 0.0, 2.9, 3.5])) == [3]  # 2.47
    # With d's gate z at -1 (it points the other way), d's probe 4.5 and
    # combined 2.47 do not help; c does, alone.
    assert pick(exhausted, np.array([0.0, 0.0, 2.9, 4.5])) == [2]
    # c's probe z of 2.6 alone would clear one round's 2.54, not the 2.77 of
    # the fit's two probe rounds: nothing helps, and the combined z ranks:
    # b's (1 + 2) / sqrt(2) = 2.12 over c's (0 + 2.6) / sqrt(2) = 1.84. At
    # 2.8 c helps alone, though its combined 1.98 still ranks below b's.
    gate_neutral_to_c = np.array([0.0, 1.0, 0.0, -1.0])
    assert pick(gate_neutral_to_c, np.array([0.0, 2.0, 2.6, 0.0])) == [1]
    assert pick(gate_neutral_to_c, np.array([0.0, 2.0, 2.8, 0.0])) == [2]
    # The probe alone counts only where the gate's own z does not point the
    # other way: with c's gate z at -1.2 the same 2.8 is no evidence, and b's
    # combined z ranks first (a 5,000-value noise field on MovieLens had a
    # probe z of 3.70 alone and a gate z of -1.39; generated_quality.md).
    gate_against_c = np.array([0.0, 1.0, -1.2, -1.0])
    assert pick(gate_against_c, np.array([0.0, 2.0, 2.8, 0.0])) == [1]
    # d's probe z of 3.0 alone clears 2.77 where its gate z is 0.2 (its
    # combined 2.26 does not clear 2.54) and picks it over c's combined 2.47;
    # at a gate z of -0.2 nothing helps and c's combined z ranks first.
    lead_c = np.array([0.0, -0.5, 2.5, 3.0])
    assert pick(np.array([0.0, 1.0, 1.0, 0.2]), lead_c) == [3]
    assert pick(np.array([0.0, 1.0, 1.0, -0.2]), lead_c) == [2]
    # Neither statistic alone, both together: c's gate 1.9 and probe 2.0
    # combine to 2.76; it helps and the logits' b does not.
    assert pick(np.array([0.0, 1.0, 1.9, -1.0]), np.array([0, 0, 2.0, 0])) == [2]
    # No probe z for b (a float feature: NaN): seven tests in each of two
    # probe rounds, helping alone means z >= 2.69; c's 2.72 clears it. With b
    # keyed (nine tests, 2.77) it does not, and b's combined z (2 + 0.9) /
    # sqrt(2) = 2.05 beats c's 1.92.
    gate_favours_b = np.array([0.0, 2.0, 0.0, -1.0])
    assert pick(gate_favours_b, np.array([0.0, np.nan, 2.72, 0.9])) == [2]
    assert pick(gate_favours_b, np.array([0.0, 0.9, 2.72, 0.9])) == [1]
    # b and c help by the gate (3.0 and 2.5 >= 2.13), d by the probe. Without
    # the probe the logits choose among the gate's (b); with it the combined
    # z: b's (3 - 0.5) / sqrt(2) = 1.77, c's (2.5 + 1) / sqrt(2) = 2.47, d's
    # (-1 + 4) / sqrt(2) = 2.12. An XOR partner of a selected field is such a
    # c: its probe sees what its warm-up embedding no longer shows the gate.
    helping = np.array([0.0, 3.0, 2.5, -1.0])
    assert pick(helping, None) == [1]
    assert pick(helping, probe_z) == [2]
    # While the gate finds help, a probe z alone does not: only b helps (by
    # the gate, 3.0), and d's combined 2.12 does not clear 2.54, though it
    # ranks above b's 1.77.
    assert pick(np.array([0.0, 3.0, 1.0, -1.0]), probe_z) == [1]


def second_pick(names, gate_z, probe_z, costs):
    """The pick by count of the round after ``names[0]`` was selected (3 to
    select), from the held-out gate and probe z and the tables' bytes."""
    count = len(names)
    order = np.array([0] + [-1] * (count - 1))
    record = selection.SelectionRecord(order == 0, order, 1, np.zeros((3, count)))
    return selection.commit_round(
        selection.SelectionSpec("gate", tuple(names), 3, None, 1),
        record,
        np.zeros(count),
        np.full(count, 0.25),
        num_rounds=3,
        costs=costs,
        heldout_scores=np.array(gate_z),
        probe_scores=np.array(probe_z),
    )[1]


def test_once_no_candidate_helps_the_cheapest_table_is_picked():
    """After the signal runs out, the candidates' statistics are draws of
    noise: a 10,000-value table whose draw leans positive ranked above a
    32-bucket one (docs/benchmarks.md, section 9). With the tables' bytes,
    each larger than every selected one (a's 64), the cheapest is the pick;
    the statistic decides between equal bytes and never against a candidate
    that helps."""

    def pick(gate_z, probe_z, costs):
        return second_pick(("a", "big", "small", "mid"), gate_z, probe_z, costs)

    spent_gate, spent_probe = [0.0, 1.2, -0.4, 0.3], [0.0, 1.9, 0.1, -0.2]
    bytes_ = [64, 640_000, 2_048, 8_192]
    # Nothing helps (combined z: big 2.19, small -0.21, mid 0.07; 2.54 needed
    # for 9 tests): by the statistic big, by bytes small.
    assert pick(spent_gate, spent_probe, None) == [1]
    assert pick(spent_gate, spent_probe, bytes_) == [2]
    # Equal bytes: the combined z decides (mid 0.07 over small -0.21).
    assert pick(spent_gate, spent_probe, [64, 640_000, 8_192, 8_192]) == [3]
    # A cost unknown (a table never built): the statistic's order.
    assert pick(spent_gate, spent_probe, [64, None, 2_048, 8_192]) == [1]
    # big helps (gate 3.0, combined 3.47): bytes do not count against it.
    assert pick([0.0, 3.0, -0.4, 0.3], spent_probe, bytes_) == [1]


def test_past_the_signal_tables_no_larger_than_a_selected_one_rank_by_evidence():
    """Generated census-like problem 0 (docs/generated_quality.md, "Session
    44"): once nothing helps, a sparse field's sibling (34 values, a weak
    effect: combined z 2.26, short of the 2.54 that 9 tests need) scored
    above a 2-value noise field (0.57), which the fewest-bytes order took.
    A table no larger than a selected one ranks by the evidence; a larger
    one still goes by its bytes, whatever its z."""

    def pick(gate_z, probe_z, costs):
        return second_pick(("a", "sibling", "tiny", "big"), gate_z, probe_z, costs)

    gate_z, probe_z = [0.0, 0.95, 0.23, -3.15], [0.0, 2.25, 0.58, 1.22]
    width = 16  # bytes a value: 4 float32 columns
    costs = [88 * width, 34 * width, 2 * width, 7061 * width]
    assert pick(gate_z, probe_z, costs) == [1]  # the sibling, by evidence
    # a holds 20 values: the sibling's table is larger than every selected
    # one, so the bytes rank it, behind the 2-value table.
    assert pick(gate_z, probe_z, [20 * width, *costs[1:]]) == [2]
    # The 7,061-value table goes by its bytes even with the largest z
    # (combined 2.40, short of 2.54): behind both smaller tables.
    assert pick(gate_z, [0.0, 2.25, 0.58, 6.55], costs) == [1]
    assert pick(gate_z, [0.0, 0.0, -0.5, 6.55], costs) == [1]  # sibling 0.67


# The record after "a" was picked, for the tests of a round's picks below.
A_PICKED = selection.SelectionRecord(
    np.array([True, False, False, False]),
    np.array([0, -1, -1, -1]),
    1,
    np.zeros((3, 4)),
)


def second_round_picks(num_selected, gate_z, probe_z, per_round=1):
    """The picks of round 2 of 3 after ``A_PICKED``, by these held-out z."""
    spec = selection.SelectionSpec(
        "gate", ("a", "b", "c", "d"), num_selected, None, per_round
    )
    return selection.commit_round(
        spec,
        A_PICKED,
        np.array([0.0, 0.3, 0.2, 0.1]),
        np.full(4, 0.25),
        num_rounds=3,
        heldout_scores=np.array(gate_z),
        probe_scores=np.array(probe_z),
    )[1]


def test_the_final_pick_ranks_the_helping_ones_by_what_each_brings_alone():
    """b helps only beside c's or d's soft gate (an interaction member: gate
    z 8, probe z 0.2), c alone (probe z 6.1), d has no probe z (gate z 3).
    With picks to follow, the combined z ranks (b: 5.94, c: 4.81); the
    selection's final pick, which no partner can follow, ranks by the probe
    z, or the gate's z without one (c: 6.1 over d: 3 over b: 0.2)."""
    gate_z = np.array([0.0, 8.0, 0.7, 3.0])
    probe_z = np.array([0.0, 0.2, 6.1, np.nan])

    def picks(num_selected, per_round=1):
        return second_round_picks(num_selected, gate_z, probe_z, per_round)

    assert picks(3) == [1]  # b, then one more pick may be its partner
    assert picks(2) == [2]  # the final pick: c, which helps alone
    assert picks(3, per_round=2) == [1, 2]  # one round: b, then c last
    # Without a probe z, d's gate z stands for what it brings alone.
    assert evidence.alone_scores(A_PICKED.selected, gate_z, probe_z)[3] == 3.0


def test_the_final_pick_breaks_near_ties_alone_by_the_combined_z():
    """b (a noise field: gate z 1.1, probe z 3.1) and c (a real one: 2.0,
    2.8) both help (combined 2.97 and 3.39 against 2.54 for the round's 9
    tests). Alone, 3.1 and 2.8 lie within 1.645 x sqrt(2) = 2.33 of each
    other: nothing to tell them apart, so the combined z, twice the
    evidence, takes the final pick (c). Where c is clearly weaker alone (an
    interaction's member: gate z 5.0, probe z 0.5, more than 2.33 short of
    b's 3.1), the final pick stays b, though c leads combined (3.89)."""
    near = [0.0, 1.1, 2.0, -1.0], [0.0, 3.1, 2.8, 0.1]
    assert second_round_picks(2, *near) == [2]  # the final pick: c
    assert second_round_picks(3, *near) == [2]  # picks to follow: combined, c
    apart = [0.0, 1.1, 5.0, -1.0], [0.0, 3.1, 0.5, 0.1]
    assert second_round_picks(2, *apart) == [1]  # final: b, c weaker alone
    assert second_round_picks(3, *apart) == [2]  # c: its partner may follow


def test_without_values_to_hash_the_settled_score_test_ranks_the_helping_ones():
    """In a later round of a layer with no values to hash (floats only: the
    settle ran the score test on its training rows, ``entry_scores``), its
    Rao statistic (``first_scores``, where summed) ranks the candidates that
    help instead of the logits, and does not make a candidate help; the
    probe's z there (the same test on the held-out rows) does, as the probe's
    z does elsewhere, and does not rank. A layer with values to hash ranks by
    the probe's and the gate's z combined, whatever score-test sums it holds
    (a settle beside another layer's held-out steps sums some)."""
    spec = selection.SelectionSpec("gate", ("a", "b", "c", "d"), 3, None, 1)
    record = selection.SelectionRecord(
        np.array([True, False, False, False]),
        np.array([0, -1, -1, -1]),
        1,
        np.zeros((3, 4)),
    )
    logits = np.array([0.0, 3.0, 0.0, 0.0])  # the logits favour b

    def pick(gate_z, entry, probe_scores=None, first=None, floats=True):
        return selection.commit_round(
            spec,
            record,
            logits,
            np.full(4, 0.25),
            num_rounds=3,
            entry_scores=entry,
            heldout_scores=gate_z,
            probe_scores=probe_scores,
            first_scores=first,
            no_values_to_hash=floats,
        )[1]

    b_c_help = np.array([0.0, 3.0, 2.5, -1.0])  # by the gate (>= 2.13)
    assert pick(b_c_help, None) == [1]  # the logits among the helping ones
    settled = np.array([0.0, 4.0, 6.0, 9.0])
    assert pick(b_c_help, settled) == [2]  # c's settled z, 6, over b's 4
    # Rao's statistic of the same sums, where summed, ranks in its place
    # (on a linear model OMP's criterion: residual against column).
    assert pick(b_c_help, settled, first=np.array([0.0, 5.0, 3.0, 0.0])) == [1]
    # d's 9 does not make it help; with none helping, the least harm by the
    # gate's z (b's 1.0) as before.
    spent = np.array([0.0, 1.0, 0.5, 0.3])
    assert pick(spent, settled) == [1]
    # The held-out test does: d's 9.0 there (its gate z of 0.3, whose soft
    # gate already carries it, says nothing); the settled z ranks, not the
    # combined z (b's (3 + 1) / sqrt(2) = 2.83 against c's 1.77).
    held = np.array([0.0, 0.2, -0.1, 9.0])
    assert pick(spent, settled, held) == [3]
    assert pick(b_c_help, settled, np.array([0.0, 1.0, 0.0, 0.0])) == [2]
    # Where the settle ran no test (no settled z), the logits rank the ones
    # that help, the held-out test's among them.
    assert pick(spent, None, held) == [3]
    assert pick(b_c_help, None, np.array([0.0, 0.5, 9.0, 0.0])) == [1]
    # With values to hash, stray score-test sums change nothing: the
    # combined z ranks (b's 2.83 over c's 1.77).
    combined = np.array([0.0, 1.0, 0.0, 0.0])
    assert pick(b_c_help, settled, combined, first=settled, floats=False) == [1]


def test_the_probe_sums_in_every_round_after_the_first_pick():
    layer = scalar_layer()
    state = layer.selection_state
    assert int(state.probe_active.numpy()) == 0  # round 1: nothing selected
    assert state.probe_sums.numpy().size == 1  # off: one 0
    commit_with_heldout(layer, [5.0, 0.0, 0.0, 0.0], [0.0, 4.0, 3.0, 0.0])
    assert int(state.probe_active.numpy()) == 1  # a was picked
    assert state.probe_sums.numpy().shape == (4 * BUCKETS,)
    assert layer.probe_training_sums().shape == (4, BUCKETS)
    state.probe_sums.assign(tf.ones([4 * BUCKETS]))
    commit_with_heldout(layer, [0.0, 5.0, 0.0, 0.0], [0.0, 0.0, 1.0, -0.5])
    assert int(state.probe_active.numpy()) == 1  # b too; every round sums anew
    assert not layer.probe_training_sums().any()
    commit_with_heldout(layer, [0.0, 0.0, 5.0, 0.0], [0.0, 0.0, 0.0, 0.0])
    assert layer.selection_complete
    assert int(state.probe_active.numpy()) == 0  # a finished layer holds none
    assert state.probe_sums.numpy().size == 1
    assert layer.probe_training_sums() is None


def test_without_heldout_evidence_the_probe_never_sums():
    layer = scalar_layer()
    commit_with_heldout(layer, [5.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0])
    assert layer.selected_features == ("a",)
    assert int(layer.selection_state.probe_active.numpy()) == 0
    assert layer.probe_training_sums() is None


def scalar_layer():
    layer = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Reshape((1,)) for n in "abcd"}, 3
    )
    layer({n: tf.zeros([1]) for n in "abcd"})
    return layer


def commit_with_heldout(layer, logits, z):
    """Commits a round whose held-out statistic is ``z`` (squares 1)."""
    state = layer.selection_state
    layer.attention_logits.assign(logits)
    state.heldout_sum.assign([-v for v in z])
    state.heldout_squares.assign([1.0] * len(z))
    return layer.commit_round()


def integer_model(num_selected=2, **options):
    """Features ``a`` and ``b`` (ids 0-7 into 3- and 2-wide tables) and ``c``
    (a float), gated (with the layer ``options``); the prediction is the sum
    of every gated column."""
    inputs = {
        "a": tf.keras.Input([], dtype=tf.int64, name="a"),
        "b": tf.keras.Input([], dtype=tf.int64, name="b"),
        "c": tf.keras.Input([], dtype=tf.float32, name="c"),
    }
    layer = SequentialAttentionEmbedding(
        {
            "a": tf.keras.layers.Embedding(8, 3),
            "b": tf.keras.layers.Embedding(8, 2),
            "c": tf.keras.layers.Reshape((1,)),
        },
        num_selected=num_selected,
        name="gate",
        **options,
    )
    gated = layer(inputs)
    total = tf.keras.layers.Concatenate()([gated[n] for n in "abc"])
    output = tf.keras.layers.Lambda(lambda x: tf.reduce_sum(x, 1, keepdims=True))(total)
    model = tf.keras.Model(inputs, output)
    model.compile(tf.keras.optimizers.SGD(0.0), "mse")
    return model, layer


def rows(seed, count):
    rng = np.random.default_rng(seed)
    features = {
        "a": rng.integers(0, 8, count),
        "b": rng.integers(0, 8, count),
        "c": rng.normal(size=count).astype(np.float32),
    }
    return features, rng.normal(size=count).astype(np.float32)


def start_probe(layer, first):
    """Selects ``first`` in a round that leaves no helping candidate: the next
    settle sums the probe."""
    names = list(layer.feature_names)
    layer.selection_state.heldout_sum.assign([-0.5] * 3)
    layer.selection_state.heldout_squares.assign([1.0] * 3)
    layer.attention_logits.assign([5.0 * (n == first) for n in names])
    assert layer.commit_round() == [first]
    layer.set_gate_mode(SETTLING)


def residuals(model, features, labels, selected):
    """``fit - y`` of every row with only ``selected`` gated on."""
    if selected == "c":
        return features["c"] - labels
    table = model.get_layer("gate").embedding_layers[selected].embeddings.numpy()
    return table[features[selected]].sum(1) - labels


def test_settling_steps_sum_the_projected_gradients_per_value():
    features, labels = rows(0, 64)
    model, layer = integer_model()
    start_probe(layer, "a")  # the callback would not enable summing: no sums
    model.fit(features, labels, batch_size=64, epochs=1, verbose=0)
    assert not np.any(layer.probe_training_sums())
    model, layer = integer_model()
    assert layer.sum_probe_in_training(True)  # as the callback with held-out data
    start_probe(layer, "a")
    model.fit(features, labels, batch_size=64, epochs=1, verbose=0)  # one step
    # Upstream of b's gated embedding per row: d mean((fit - y)^2) / d out_b =
    # 2 (fit - y) / 64 in both columns; projected on b's direction, less its
    # batch mean, summed per id.
    direction = probe.probe_directions([3, 2, 1], [1]).sum()
    upstream = 2 * residuals(model, features, labels, "a") / 64
    projected = upstream * direction
    projected -= projected.mean()
    expected = np.zeros(BUCKETS)
    np.add.at(expected, features["b"], projected)
    sums = layer.probe_training_sums()
    np.testing.assert_allclose(sums[1], expected, rtol=1e-5, atol=1e-8)
    assert not np.any(sums[2])  # a float feature has no values to key
    # Selecting steps sum nothing.
    layer.set_gate_mode(SELECTING)
    model.fit(features, labels, batch_size=64, epochs=1, verbose=0)
    np.testing.assert_array_equal(layer.probe_training_sums(), sums)
    # A float candidate (c) has no probe z; the integer one (b) has.
    dataset = tf.data.Dataset.from_tensor_slices((features, labels)).batch(32)
    assert set(heldout_probe.HeldoutProbe(model, layer).scores(dataset)) == {"b"}


def test_each_settle_learns_the_directions_the_next_one_projects_on():
    """The probe's direction of a candidate is the top eigenvector of its
    upstream gradients' second moment, summed over the training rows of the
    steps before the commit in which the logits did not learn."""
    features, labels = rows(0, 64)
    model, layer = integer_model(num_selected=3)
    layer.sum_probe_in_training(True)
    start_probe(layer, "a")
    state = layer.selection_state
    model.fit(features, labels, batch_size=64, epochs=1, verbose=0)  # one step
    initial = probe.initial_axes([3, 2, 1])
    np.testing.assert_array_equal(state.probe_axes.numpy().reshape(3, 3), initial)
    # b's upstream gradient is 2 (fit - y) / 64 in both columns: its moments
    # are the sum of its squares in every entry of b's 2 x 2 block.
    upstream = 2 * residuals(model, features, labels, "a") / 64
    moments = state.probe_moments.numpy().reshape(3, 3, 3)
    expected = np.zeros((3, 3))
    expected[:2, :2] = (upstream**2).sum()
    np.testing.assert_allclose(moments[1], expected, rtol=1e-5)
    assert not np.any(moments[2])  # a float feature: none
    layer.set_gate_mode(SELECTING)  # the logits learn: no moments added
    model.fit(features, labels, batch_size=64, epochs=1, verbose=0)
    np.testing.assert_array_equal(state.probe_moments.numpy().reshape(3, 3, 3), moments)
    commit_with_heldout(layer, [0.0, 0.0, 5.0], [0.0, -0.5, -0.5])
    axes = state.probe_axes.numpy().reshape(3, 3)
    np.testing.assert_allclose(axes[1], [0.5**0.5, 0.5**0.5, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(axes[2], initial[2])  # no moments: kept
    assert not np.any(state.probe_moments.numpy())
    # The next settle projects b's gradients on its new direction.
    layer.set_gate_mode(SETTLING)
    model.fit(features, labels, batch_size=64, epochs=1, verbose=0)
    projected = residuals(model, features, labels, "a") * 2 / 64
    if "c" in layer.selected_features:
        projected = projected + features["c"] * 2 / 64
    projected = projected * 2 * 0.5**0.5
    projected -= projected.mean()
    expected = np.zeros(BUCKETS)
    np.add.at(expected, features["b"], projected)
    sums = layer.probe_training_sums()
    np.testing.assert_allclose(sums[1], expected, rtol=1e-4, atol=1e-7)


def test_settling_steps_run_the_score_test_where_no_feature_has_values_to_hash():
    features, labels = rows(0, 64)
    model, layer = integer_model(attention_signal="gradient")
    layer.sum_probe_in_training(True)  # a and b have values to hash: no test
    start_probe(layer, "a")
    model.fit(features, labels, batch_size=64, epochs=1, verbose=0)
    assert not any(layer.entry_evidence().values())
    features = {n: v.astype(np.float32) for n, v in features.items()}
    model, layer = float_model(attention_signal="gradient")
    start_probe(layer, "a")  # without the probe's training side: no test
    model.fit(features, labels, batch_size=64, epochs=1, verbose=0)
    assert not any(layer.entry_evidence().values())
    model, layer = float_model(attention_signal="gradient")
    layer.sum_probe_in_training(True)
    start_probe(layer, "a")
    model.fit(features, labels, batch_size=64, epochs=1, verbose=0)  # one step
    # A candidate's gate gradient per row, with its gate at 0: the upstream
    # gradient 2 (fit - y) / 64 (fit = a) times its centred value; the score
    # z is -sum / sqrt(sum of squares).
    upstream = 2 * (features["a"] - labels) / 64
    for name in "bc":
        scores = upstream * (features[name] - features[name].mean())
        expected = -scores.sum() / np.sqrt((scores * scores).sum())
        assert layer.entry_evidence()[name] == pytest.approx(expected, rel=1e-4)
        assert expected != 0


def float_model(**options):
    """Float features ``a``, ``b`` and ``c``, each its own gated column
    (``Reshape``), with the layer ``options``; the prediction is their sum."""
    inputs = {n: tf.keras.Input([], name=n) for n in "abc"}
    layer = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Reshape((1,)) for n in "abc"},
        num_selected=2,
        name="gate",
        **options,
    )
    gated = layer(inputs)
    total = tf.keras.layers.Concatenate()([gated[n] for n in "abc"])
    output = tf.keras.layers.Lambda(lambda x: tf.reduce_sum(x, 1, keepdims=True))(total)
    model = tf.keras.Model(inputs, output)
    model.compile(tf.keras.optimizers.SGD(0.0), "mse")
    return model, layer


def test_heldout_pass_tests_the_sums_on_new_rows():
    model, layer = integer_model()
    start_probe(layer, "c")  # candidates a and b, both integer ids
    sums = np.zeros((3, BUCKETS), np.float32)
    sums[0, :8] = [1.0, -2.0, 0.5, 3.0, -1.0, 2.0, -0.5, 1.5]  # for a and b
    sums[1, :8] = np.arange(8) - 3.5
    layer.selection_state.probe_sums.assign(sums.reshape(-1))
    layer.set_gate_mode(SELECTING)
    held, labels = rows(1, 48)
    dataset = tf.data.Dataset.from_tensor_slices((held, labels)).batch(32)
    scores = heldout_probe.HeldoutProbe(model, layer).scores(dataset)
    assert set(scores) == {"a", "b"}
    # Per held-out row, the summed loss's gradient 2 (fit - y) in every column,
    # projected on the feature's direction, less its mean over the row's
    # batch (rows 0-31, 32-47), times its training-side sum at the row's id
    # over the rows of its batch with that id.
    upstream = 2 * residuals(model, held, labels, "c")
    for index, name in ((0, "a"), (1, "b")):
        direction = probe.probe_directions([3, 2, 1], [index]).sum()
        projected = upstream * direction
        counts = np.zeros(48)
        for batch in (slice(0, 32), slice(32, 48)):
            projected[batch] -= projected[batch].mean()
            ids = held[name][batch]
            counts[batch] = (ids[:, None] == ids[None, :]).sum(1)
        assert counts.max() > 1  # shared ids: the division matters
        a = projected * sums[index][held[name]] / counts
        expected = a.sum() / np.sqrt((a * a).sum())
        assert scores[name] == pytest.approx(expected, rel=1e-4)
        assert abs(expected) > 1e-3
    assert int(layer.gate_mode.numpy()) == SELECTING  # left as it was
    np.testing.assert_array_equal(layer.probe_training_sums(), sums)  # unchanged
    # The pass projects on the training side's directions: every column of
    # this model has the same upstream gradient, so a direction whose entries
    # sum to the opposite sign turns a's z around.
    axes = layer.selection_state.probe_axes.numpy().reshape(3, 3)
    axes[0] = -np.sign(axes[0].sum()) * np.array([1.0, 0.0, 0.0])
    layer.selection_state.probe_axes.assign(axes.reshape(-1))
    turned = heldout_probe.HeldoutProbe(model, layer).scores(dataset)
    assert turned["a"] == pytest.approx(-scores["a"], rel=1e-4)
    assert turned["b"] == pytest.approx(scores["b"], rel=1e-4)
    # A step that moves every row alike is no evidence: the held-out rows'
    # centred gradients sum to 0 against it (a mean shared by every row, which
    # the model's own bias could absorb, no longer counts). In one batch of
    # the 48 rows, sums in proportion to each id's rows give every row the
    # same step.
    sums[0, :8] = np.bincount(held["a"], minlength=8)
    layer.selection_state.probe_sums.assign(sums.reshape(-1))
    whole = tf.data.Dataset.from_tensor_slices((held, labels)).batch(48)
    scores = heldout_probe.HeldoutProbe(model, layer).scores(whole)
    assert abs(scores["a"]) < 1e-4


def test_heldout_pass_traces_once_for_batches_of_two_sizes(monkeypatch):
    """The pass over 48 rows in batches of 32 and 16, twice: one trace (a
    trace per batch size cost 0.2-0.3 s of a fit)."""
    traces = []
    original = heldout_probe.HeldoutProbe._batch_sums

    def counting(self, batch):
        traces.append(batch)  # the Python body runs only while tracing
        return original(self, batch)

    monkeypatch.setattr(heldout_probe.HeldoutProbe, "_batch_sums", counting)
    model, layer = integer_model()
    start_probe(layer, "c")
    held, labels = rows(1, 48)
    dataset = tf.data.Dataset.from_tensor_slices((held, labels)).batch(32)
    probe_pass = heldout_probe.HeldoutProbe(model, layer)
    first, second = probe_pass.scores(dataset), probe_pass.scores(dataset)
    assert first == second and set(first) == {"a", "b"}
    assert len(traces) == 1


def test_heldout_passes_keep_the_metrics_and_list_them_once(monkeypatch):
    """Each pass leaves the compiled metrics as the training steps left them;
    it lists their variables at its first pass only (tf-keras walks every
    tracked attribute of every layer to list them: 20-40 ms a pass)."""
    model, layer = integer_model()
    model.compile(tf.keras.optimizers.SGD(0.0), "mse", metrics=["mae"])
    held, labels = rows(1, 48)
    dataset = tf.data.Dataset.from_tensor_slices((held, labels)).batch(32)
    model.evaluate(dataset, verbose=0)  # builds the compiled metrics
    start_probe(layer, "c")
    state = [v.numpy().copy() for m in model.metrics for v in m.variables]
    assert len(state) >= 4 and any(np.any(v != 0) for v in state)
    listed = []
    metrics = type(model).metrics
    monkeypatch.setattr(
        type(model), "metrics", property(lambda m: listed.append(1) or metrics.fget(m))
    )
    probe_pass = heldout_probe.HeldoutProbe(model, layer)
    first, second = probe_pass.scores(dataset), probe_pass.scores(dataset)
    assert first == second and set(first) == {"a", "b"}
    assert len(listed) == 1
    for old, new in zip(state, [v for m in metrics.fget(model) for v in m.variables]):
        np.testing.assert_array_equal(old, new.numpy())


def test_probe_sums_survive_a_checkpoint(tmp_path):
    model, layer = integer_model()
    start_probe(layer, "a")
    layer.selection_state.probe_sums.assign(tf.range(3 * BUCKETS, dtype=tf.float32))
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    restored, restored_layer = integer_model()
    tf.train.Checkpoint(model=restored).restore(path).assert_existing_objects_matched()
    np.testing.assert_array_equal(
        restored_layer.probe_training_sums(), layer.probe_training_sums()
    )


def test_a_fit_runs_the_probe_in_the_rounds_after_the_first_pick():
    """One signal field (``a``), two integer noise fields and a float one
    (``d``, no values to hash): after ``a`` is picked the next settles sum
    the probe and the later commits rank by its held-out pass combined with
    the gate. The events carry the probe's z of the integer candidates and
    the gate's z of every candidate, ``d``'s too. Also in a model whose
    training steps were traced before without the probe."""
    rng = np.random.default_rng(0)
    count, names = 6000, "abcd"
    features = {n: rng.integers(0, 40, count) for n in "abc"}
    features["d"] = rng.normal(size=count).astype(np.float32)
    effect = rng.normal(scale=1.5, size=40)
    labels = (rng.random(count) < 1 / (1 + np.exp(-effect[features["a"]]))).astype(
        np.float32
    )
    inputs = {n: tf.keras.Input([], dtype=tf.int64, name=n) for n in "abc"}
    inputs["d"] = tf.keras.Input([], dtype=tf.float32, name="d")
    tables = {n: tf.keras.layers.Embedding(40, 4) for n in "abc"}
    layer = SequentialAttentionEmbedding(
        {**tables, "d": tf.keras.layers.Reshape((1,))}, 3, name="gate"
    )
    gated = layer(inputs)
    hidden = tf.keras.layers.Concatenate()([gated[n] for n in names])
    output = tf.keras.layers.Dense(1, activation="sigmoid")(hidden)
    model = tf.keras.Model(inputs, output)
    model.compile(tf.keras.optimizers.Adam(0.01), "binary_crossentropy")
    # A fit without the callback first traces training steps without the
    # probe's sums; the callback's fit must trace them again.
    callback = fit_selecting(model, features, labels, batch_size=256, fit_first=True)
    assert layer.selected_features[0] == "a"
    probed = [e for e in callback.events if "probe_scores" in e]
    assert [e["round"] for e in probed] == [2, 3]
    for event in probed:
        candidates = set(names) - set(layer.selected_features[: event["round"] - 1])
        assert set(event["probe_scores"]) == candidates - {"d"}
        assert all(z != 0 for z in event["probe_scores"].values())  # summed
        gate, probe_z = event["heldout_scores"], event["probe_scores"]
        assert set(gate) == candidates
        assert all(z != 0 for z in gate.values())  # d's too, where a candidate
        # The event's two statistics explain its pick. Those that help (the
        # gate's z, the combined z, in a spent round the probe's alone) come
        # first, by the combined z (the gate's alone for d), the final pick
        # by what each brings alone; once none helps, the largest combined z,
        # as every table is no larger than a's (b's and c's as large, d's
        # Reshape holds no bytes).
        index = {n: i for i, n in enumerate(names)}
        chosen = np.isin(list(names), layer.selected_features[: event["round"] - 1])
        gate_z = np.array([gate.get(n, 0.0) for n in names])
        probe_array = np.array([probe_z.get(n, np.nan) for n in names])
        helps = evidence.helping(chosen, gate_z)
        probe_helps, combined = evidence.probe_evidence(
            chosen, gate_z, probe_array, not helps.any(), probe_rounds=2
        )
        final = event["round"] == 3
        last = evidence.final_pick_scores(
            chosen, gate_z, probe_array, helps | probe_helps
        )
        rank = last if final else combined
        preferred = [n for n in gate if (helps | probe_helps)[index[n]]]
        (pick,) = event["features"]
        if preferred:
            assert pick == max(preferred, key=lambda n: rank[index[n]])
        else:
            assert pick == max(gate, key=lambda n: combined[index[n]])
        # "Exhausted" only where no candidate helps by either statistic.
        assert event["signal_exhausted"] == (not preferred)
    state = layer.selection_state
    for variable in (state.probe_sums, state.probe_axes, state.probe_moments):
        assert variable.numpy().size == 1  # off once complete


@pytest.mark.parametrize("fit_first", [False, True])
def test_the_training_step_is_rebuilt_for_the_probe_only_once_traced(
    monkeypatch, fit_first
):
    """``fit`` makes its training step before the callback's ``on_train_begin``;
    untraced, the step reads the layer's probe flag when it traces, so the
    callback rebuilds it (a walk of every tracked attribute: 0.1 s with 26
    vocabularies of 1,000 strings) only where a fit traced it before. Both
    ways the settles sum the probe."""
    rebuilt = []
    make = tf.keras.Model.make_train_function

    def counting(model, force=False):
        rebuilt.append(force)
        return make(model, force)

    monkeypatch.setattr(tf.keras.Model, "make_train_function", counting)
    rng = np.random.default_rng(1)
    features = {n: rng.integers(0, 20, 6000) for n in "abc"}
    effect = rng.normal(scale=1.5, size=20)
    labels = rng.random(6000) < 1 / (1 + np.exp(-effect[features["a"]]))
    inputs = {n: tf.keras.Input([], dtype=tf.int64, name=n) for n in "abc"}
    layer = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Embedding(20, 2) for n in "abc"}, 2, name="gate"
    )
    gated = layer(inputs)
    hidden = tf.keras.layers.Concatenate()([gated[n] for n in "abc"])
    output = tf.keras.layers.Dense(1, activation="sigmoid")(hidden)
    model = tf.keras.Model(inputs, output)
    model.compile(tf.keras.optimizers.Adam(0.01), "binary_crossentropy")
    callback = fit_selecting(
        model, features, labels.astype(np.float32), 256, fit_first=fit_first
    )
    assert rebuilt.count(True) == int(fit_first)
    (probed,) = [e for e in callback.events if "probe_scores" in e]
    assert probed["round"] == 2 and all(z != 0 for z in probed["probe_scores"].values())


def test_a_fit_does_not_end_on_a_parity_member_whose_partner_cannot_follow():
    """``m`` and ``w`` have main effects (``m`` the larger); ``x`` and ``y``
    matter only by their parity, which the hidden layer can fit. With two
    fields to select, ``m`` goes first; in round 2 the soft gates of both
    parity members rank ``x`` above ``w`` by the gate's z, but the round's
    pick is the last: alone, given ``m``, only ``w`` helps (the probe)."""
    rng = np.random.default_rng(1)
    count, names = 12000, ("m", "w", "x", "y", "n")
    values = {"m": 4, "w": 4, "x": 2, "y": 2, "n": 8}
    features = {n: rng.integers(0, values[n], count) for n in names}
    logit = np.array([-1.5, -0.5, 0.5, 1.5])[features["m"]]
    logit += np.array([-0.6, -0.2, 0.2, 0.6])[features["w"]]
    logit += 0.9 * np.where((features["x"] + features["y"]) % 2 == 0, 1.0, -1.0)
    labels = (rng.random(count) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    tf.keras.utils.set_random_seed(1)
    inputs = {n: tf.keras.Input([], dtype=tf.int64, name=n) for n in names}
    layer = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Embedding(values[n], 4) for n in names}, 2, name="gate"
    )
    gated = layer(inputs)
    hidden = tf.keras.layers.Concatenate()([gated[n] for n in names])
    hidden = tf.keras.layers.Dense(16, activation="relu")(hidden)
    output = tf.keras.layers.Dense(1, activation="sigmoid")(hidden)
    model = tf.keras.Model(inputs, output)
    model.compile(tf.keras.optimizers.Adam(0.01), "binary_crossentropy")
    callback = fit_selecting(
        model, features, labels, batch_size=250, split=8000, held_batch=500
    )
    assert layer.selected_features == ("m", "w")
    gate_z, probe_z = (
        callback.events[1]["heldout_scores"],
        callback.events[1]["probe_scores"],
    )
    assert gate_z["x"] > gate_z["w"]  # the soft gates favour a parity member
    assert probe_z["w"] > evidence.signal_threshold(4) > probe_z["x"]


def test_a_round_is_reported_exhausted_only_when_the_probe_finds_no_help_either():
    """The event's ``signal_exhausted`` (and the verbose line's "no candidate
    helped" note) says the pick followed the least harm: not when the gate's
    z is spent but the probe's finds help, as it picked by that help; yes
    when only a copy of a selected feature clears the threshold, as the
    commit passes over copies."""

    class Layer:  # a stand-in for a gate layer: the gate's z helps nowhere
        name, budget_bytes, selected_features = "gate", None, ("a",)
        functional_dependencies = None
        evidence = {"a": 0.0, "b": 0.5, "c": -1.0}

        def heldout_evidence(self):
            return dict(self.evidence)

        def commit_round(self, require_learning=False):
            self.selected_features += ("b",)
            return ["b"]

    class WithCopy(Layer):  # d copies a and alone clears the threshold
        functional_dependencies = {"a": ("d",), "d": ("a",)}
        evidence = {"a": 0.0, "b": 0.5, "c": -1.0, "d": 9.0}

    def exhausted(probe_scores, layer=Layer):
        event = round_report.commit_and_report(
            layer(),
            round_number=2,
            num_rounds=3,
            epoch=1,
            step=None,
            log_prefix="",
            logs=None,
            verbose=0,
            probed=None if probe_scores is None else (probe_scores, {}),
        )
        return event["signal_exhausted"]

    assert exhausted(None)  # no probe: the gate's z decides
    assert exhausted({"b": 0.4, "c": -0.3})  # 6 tests need 2.39: none helps
    assert not exhausted({"b": 6.0, "c": 0.2})  # b helps by the probe
    assert exhausted(None, WithCopy)  # only the copy's z clears the threshold
    assert exhausted({"b": 0.4, "c": -0.3, "d": 0.0}, WithCopy)
    # With a gate z that helps (the copy's), the probe alone is not enough
    # for the commit (only the combined z counts), nor for the report.
    assert exhausted({"b": 3.0, "c": -0.3, "d": 0.0}, WithCopy)
    assert not exhausted({"b": 5.0, "c": -0.3, "d": 0.0}, WithCopy)


def test_a_fit_ranks_float_features_by_the_settled_score_test():
    """Least squares on float features (no values to hash): after the first
    pick each settle runs the score test on its training rows, which ranks
    the candidates that help, and the probe's pass runs the same test on the
    held-out rows (each candidate's gate at 0), whose z also makes one help.
    The events carry both and the gate's z; the held-out z is checked against
    a numpy computation from the model's weights at the commit."""
    rng = np.random.default_rng(0)
    count, names = 6000, [f"x{i}" for i in range(5)]
    x = rng.normal(size=(count, 5)).astype(np.float32)
    labels = (2.0 * x[:, 0] + 1.2 * x[:, 1] + 0.8 * x[:, 2]).astype(np.float32)
    labels += rng.normal(size=count).astype(np.float32)
    features = {n: x[:, i] for i, n in enumerate(names)}
    inputs = {n: tf.keras.Input([], name=n) for n in names}
    layer = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Reshape((1,)) for n in names}, 3, name="gate"
    )
    gated = layer(inputs)
    hidden = tf.keras.layers.Concatenate()([gated[n] for n in names])
    dense = tf.keras.layers.Dense(1)
    model = tf.keras.Model(inputs, dense(hidden))
    model.compile(tf.keras.optimizers.Adam(0.05), "mse")
    expected = []  # per commit: the held-out score z from the weights, in numpy
    commit = layer.commit_round

    def recording_commit(require_learning=False):
        chosen = [names.index(n) for n in layer.selected_features]
        kernel, bias = (v.numpy().astype(np.float64) for v in dense.weights)
        z = {}
        if chosen:
            total, squares = np.zeros(5), np.zeros(5)
            for start in range(4800, count, 256):  # fit_selecting's batches
                rows = slice(start, min(start + 256, count))
                xb = x[rows].astype(np.float64)
                residual = xb[:, chosen] @ kernel[chosen, 0] + bias[0] - labels[rows]
                # The batch-mean loss's gradient times the rows, per column,
                # times the column less its batch mean: a = 2 r w (x - mean).
                a = 2 * residual[:, None] * kernel[:, 0] * (xb - xb.mean(axis=0))
                total, squares = total - a.sum(axis=0), squares + (a * a).sum(axis=0)
            z = {n: total[i] / np.sqrt(squares[i]) for i, n in enumerate(names)}
        expected.append(z)
        return commit(require_learning)

    layer.commit_round = recording_commit
    callback = fit_selecting(model, features, labels, batch_size=128)
    assert layer.selected_features == ("x0", "x1", "x2")
    settled = [e for e in callback.events if "settled_scores" in e]
    assert [e["round"] for e in settled] == [2, 3]
    for event in settled:
        chosen = set(layer.selected_features[: event["round"] - 1])
        fresh, gate = event["settled_scores"], event["heldout_scores"]
        held = event["probe_scores"]
        assert set(fresh) == set(gate) == set(held) == set(names) - chosen
        computed = expected[event["round"] - 1]
        for name in held:
            assert held[name] == pytest.approx(computed[name], abs=1e-3)
        (pick,) = event["features"]
        assert fresh[pick] > 5 and held[pick] > 5  # the strongest left, by far
        assert abs(held["x3"]) < 3 and abs(held["x4"]) < 3  # no signal
        check_float_pick(names, chosen, pick, fresh, gate, held)
    assert not any(layer.entry_evidence().values())  # reset by the last commit
