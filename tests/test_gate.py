"""The gate layer: hand-computed gates, the call contract, config and saving."""

import contextlib
import inspect
import math

import numpy as np
import pytest
import tensorflow as tf

from seqattn_tfrs import SequentialAttentionEmbedding
from seqattn_tfrs.gate import DENSE, SELECTING, SETTLING


def scalar_layer(names=("a", "b", "c"), num_selected=2, **kwargs):
    layer = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Reshape((1,)) for n in names}, num_selected, **kwargs
    )
    layer({n: tf.zeros([1]) for n in names})
    return layer


def test_public_api_names_exist():
    import seqattn_tfrs.export  # noqa: F401  (imports every submodule it needs)

    for name in seqattn_tfrs.__all__:
        assert hasattr(seqattn_tfrs, name), name
    for name in (
        "SequentialAttentionCallback",
        "SequentialAttentionEmbedding",
        "export_for_serving",
        "prune",
        "size_report",
    ):
        # No submodule import may shadow a public function or class.
        assert callable(getattr(seqattn_tfrs, name)), name
    assert seqattn_tfrs.__version__ == "0.1.0"


def test_dense_mode_gates_are_one_and_call_returns_inputs():
    layer = scalar_layer()
    out = layer(
        {"a": tf.constant([2.0]), "b": tf.constant([3.0]), "c": tf.constant([4.0])}
    )
    assert list(out) == ["a", "b", "c"]
    assert [float(out[n][0, 0]) for n in out] == [2.0, 3.0, 4.0]
    assert layer.gate_values() == {"a": 1.0, "b": 1.0, "c": 1.0}


def test_selecting_gates_hand_computed():
    layer = scalar_layer()
    layer.gate_mode.assign(SELECTING)
    layer.selected_mask.assign([1.0, 0.0, 0.0])
    layer.num_picked.assign(1)
    layer.attention_logits.assign([5.0, math.log(2.0), 0.0])
    gates = layer.gate_values()
    # a is selected: 1. b and c share exp(ln 2) : exp(0) = 2 : 1; a's logit ignored.
    assert gates["a"] == 1.0
    np.testing.assert_allclose([gates["b"], gates["c"]], [2 / 3, 1 / 3], rtol=1e-6)
    out = layer(
        {"a": tf.constant([3.0]), "b": tf.constant([3.0]), "c": tf.constant([3.0])}
    )
    np.testing.assert_allclose([float(out[n][0, 0]) for n in "abc"], [3.0, 2.0, 1.0])


def test_softmax_is_stable_for_huge_logits():
    layer = scalar_layer()
    layer.gate_mode.assign(SELECTING)
    layer.attention_logits.assign([1000.0, 999.0, -1000.0])
    gates = layer.gate_values()
    assert all(math.isfinite(g) for g in gates.values())
    np.testing.assert_allclose(
        [gates["a"], gates["b"]], [1 / (1 + math.exp(-1)), 1 / (1 + math.e)], rtol=1e-6
    )


def test_all_selected_gives_ones_not_nan():
    layer = scalar_layer(num_selected=3)
    layer.gate_mode.assign(SELECTING)
    layer.selected_mask.assign([1.0, 1.0, 1.0])
    layer.num_picked.assign(2)  # not complete: the empty softmax must give 0, not NaN
    assert layer.gate_values() == {"a": 1.0, "b": 1.0, "c": 1.0}


def test_complete_selection_zeroes_unselected_in_every_mode():
    layer = scalar_layer(num_selected=1)
    layer.attention_logits.assign([0.0, 3.0, 0.0])
    assert layer.commit_round() == ["b"]
    for mode in (DENSE, SELECTING):
        layer.gate_mode.assign(mode)
        assert layer.gate_values() == {"a": 0.0, "b": 1.0, "c": 0.0}
    assert layer.selection_complete
    assert layer.selected_features == ("b",)


def test_commit_round_order_reset_and_history():
    layer = scalar_layer(
        names=("a", "b", "c", "d", "e"), num_selected=5, selections_per_round=2
    )
    layer.gate_mode.assign(SELECTING)
    layer.attention_logits.assign([0.0, 2.0, 1.0, 3.0, 0.0])
    assert layer.commit_round() == ["d", "b"]
    np.testing.assert_array_equal(layer.attention_logits.numpy(), np.zeros(5))
    layer.attention_logits.assign([0.0, 0.0, 0.0, 0.0, 1.0])
    assert layer.commit_round() == ["e", "a"]  # tie a/c goes to the earlier one
    assert not layer.selection_complete
    assert layer.commit_round() == ["c"]  # the last round picks the remainder
    assert layer.selected_features == ("d", "b", "e", "a", "c")
    history = layer.gate_history()
    assert len(history) == 3
    assert history[0]["d"] > history[0]["c"] > history[0]["a"]
    with pytest.raises(RuntimeError, match="already complete"):
        layer.commit_round()


def commit_with(layer, logits, z, statistic):
    """Commits a round after setting the logits and ``statistic`` ("score", the
    settle's score test, or "heldout", the selecting part's) to z-values."""
    state = layer.selection_state
    total, squares = {
        "score": (state.score_sum, state.score_squares),
        "heldout": (state.heldout_sum, state.heldout_squares),
    }[statistic]
    layer.attention_logits.assign(logits)
    total.assign([-v for v in z])  # z = -sum / sqrt(squares), squares = 1
    squares.assign([1.0] * len(z))
    return layer.commit_round()


def test_first_round_follows_the_score_test_later_rounds_the_logits():
    layer = scalar_layer(names=("a", "b", "c", "d"), num_selected=3)

    def round_with(logits, z):
        return commit_with(layer, logits, z, "score")

    # Round 1 with held-out evidence: the largest z, whatever the logits say.
    assert round_with([3.0, 0.0, 0.0, 0.0], [1.0, 2.0, 5.0, -1.0]) == ["c"]
    assert layer.entry_evidence() == {n: 0.0 for n in "abcd"}  # reset per round
    # Later rounds ignore the settle's score test (no held-out statistics of
    # the selecting part here: the logits rank).
    assert round_with([0.0, 0.0, 0.0, 2.0], [9.0, 0.0, 0.0, 0.0]) == ["d"]
    # A first round without evidence (no held-out data) ranks by the logits.
    other = scalar_layer(names=("a", "b"), num_selected=1)
    other.attention_logits.assign([0.0, 1.0])
    assert other.commit_round() == ["b"]


def test_first_pick_ranks_by_the_null_model_variance_where_collected():
    layer = scalar_layer(names=("a", "b", "c"), num_selected=2)
    state = layer.selection_state
    # Sum-of-squares z: a 6 / 2 = 3, b 5 / 1 = 5, c 1.
    state.score_sum.assign([-6.0, -5.0, -1.0])
    state.score_squares.assign([4.0, 1.0, 1.0])
    # Rao: -sum / sqrt(norms * projections): a 6 / 1 = 6, b 5 / 2 = 2.5, c 1.
    state.score_norms.assign([1.0, 2.0, 1.0])
    state.score_projections.assign([1.0, 2.0, 1.0])
    layer.attention_logits.assign([0.0, 0.0, 9.0])
    assert layer.commit_round() == ["a"]
    assert float(np.sum(state.score_norms.numpy())) == 0.0  # reset per round
    assert float(np.sum(state.score_projections.numpy())) == 0.0
    # Without the variance factors (none collected), the sum-of-squares z.
    other = scalar_layer(names=("a", "b", "c"), num_selected=1)
    other.selection_state.score_sum.assign([-6.0, -5.0, -1.0])
    other.selection_state.score_squares.assign([4.0, 1.0, 1.0])
    assert other.commit_round() == ["b"]


def test_first_pick_is_a_joint_only_feature_the_soft_gates_rank_first():
    """An XOR member has no marginal evidence, so the score test cannot take
    it first; the soft gates' held-out statistic can. Four candidates:
    helping means z >= 2.24 (one-sided 0.05 / 4)."""

    def first_pick(heldout_z, num_selected=2):
        layer = scalar_layer(names=("a", "b", "c", "d"), num_selected=num_selected)
        state = layer.selection_state
        state.score_sum.assign([-9.0, -1.0, -0.5, 0.0])  # marginal z: a 9, b 1
        state.score_squares.assign([1.0] * 4)
        state.heldout_sum.assign([-v for v in heldout_z])
        state.heldout_squares.assign([1.0] * 4)
        layer.attention_logits.assign([0.0, 0.0, 0.0, 5.0])
        return layer.commit_round()

    # b leads the soft gates (12 against a's 8) with no marginal evidence.
    assert first_pick([8.0, 12.0, 11.0, 0.0]) == ["b"]
    # a leads them: the score test's pick stands.
    assert first_pick([12.0, 8.0, 11.0, 0.0]) == ["a"]
    # b leads but does not help (2.0 < 2.24): the score test's pick.
    assert first_pick([1.0, 2.0, 1.5, 0.0]) == ["a"]
    # One pick only: a feature that helps only with others is worth nothing
    # alone, so the marginal pick stands.
    assert first_pick([8.0, 12.0, 11.0, 0.0], num_selected=1) == ["a"]


def test_a_single_first_pick_follows_the_soft_gates_where_nothing_helps_alone():
    """A tower of a two-tower model gets no gradient at gate 0 while the other
    tower's gates are 0 too, so its score test is noise: no feature helps
    alone (every marginal z below 2.24, the threshold of four candidates).
    Then even a single pick follows the soft gates' held-out lead, and gives
    way to a source of it that helps there too."""

    def first_pick(marginal_z, heldout_z, source_of_b=None):
        layer = scalar_layer(names=("a", "b", "c", "d"), num_selected=1)
        state = layer.selection_state
        state.score_sum.assign([-v for v in marginal_z])
        state.score_squares.assign([1.0] * 4)
        state.heldout_sum.assign([-v for v in heldout_z])
        state.heldout_squares.assign([1.0] * 4)
        dependence = np.zeros([4, 4], bool)
        if source_of_b is not None:  # b is a function of it, not the reverse
            dependence[1, "abcd".index(source_of_b)] = True
        layer.set_functional_dependence(dependence)
        return layer.commit_round()

    noise = [0.4, -0.2, 0.9, 0.1]  # the score test's largest: c
    assert first_pick(noise, [3.0, 11.0, 1.0, 0.0]) == ["b"]
    # b coarsens d, which helps by the soft gates too: d covers b's group.
    assert first_pick(noise, [3.0, 11.0, 1.0, 9.0], source_of_b="d") == ["d"]
    # ... but not a source that does not help (2.0 < 2.24).
    assert first_pick(noise, [3.0, 11.0, 1.0, 2.0], source_of_b="d") == ["b"]
    # Where a feature helps alone (c: 2.5), the score test's pick stands.
    assert first_pick([0.4, -0.2, 2.5, 0.1], [3.0, 11.0, 1.0, 0.0]) == ["c"]
    # And where no feature helps by the soft gates either, it is all there is.
    assert first_pick(noise, [1.0, 2.0, 1.5, 0.0]) == ["c"]


def test_first_round_asks_whether_a_feature_helps_alone_less_the_revisits():
    """The first round's score test, like every held-out statistic, reads
    rows again when it is longer than a pass of ``selection_data``. b's raw
    marginal z (3.0 >= 2.24) says it helps alone, so the soft gates' lead
    leaves the score test's pick (a); its rows each read four times (four
    batches of a pass of one), its z is 1.5: b helps only with others and,
    leading the soft gates, is the first pick."""

    def first_pick(score_batches, pass_batches):
        layer = scalar_layer(names=("a", "b", "c", "d"), num_selected=2)
        layer.set_heldout_pass_batches(pass_batches)
        state = layer.selection_state
        state.score_sum.assign([-9.0, -3.0, -0.5, 0.0])
        state.score_squares.assign([1.0] * 4)
        state.score_batches.assign(score_batches)
        state.heldout_sum.assign([-8.0, -12.0, -11.0, 0.0])
        state.heldout_squares.assign([1.0] * 4)
        layer.attention_logits.assign([0.0, 0.0, 0.0, 5.0])
        return layer.commit_round()

    assert first_pick(4.0, 4) == ["a"]  # every row once: the raw z
    assert first_pick(4.0, 1) == ["b"]


def test_later_rounds_pick_among_features_that_help_on_held_out_data():
    layer = scalar_layer(names=("a", "b", "c", "d"), num_selected=3)

    def round_with(logits, z):
        return commit_with(layer, logits, z, "heldout")

    # Round 1 is not decided by the selecting part's statistics.
    assert round_with([3.0, 0.0, 0.0, 0.0], [0.0, 0.0, 9.0, 0.0]) == ["a"]
    # Three candidates: helping means z >= 2.128 (one-sided 0.05 / 3). c and d
    # help; the logits choose between them (d), not b, which they rank first.
    assert round_with([0.0, 2.0, 0.5, 1.0], [0.0, 0.5, 4.0, 2.5]) == ["d"]
    assert layer.heldout_evidence() == {n: 0.0 for n in "abcd"}  # reset per round
    # Two candidates (threshold 1.96), neither helps: the signal is exhausted,
    # and the least harmful on held-out data (b) beats the logits' c.
    assert round_with([0.0, 0.0, 3.0, 0.0], [0.0, 1.9, -2.0, 0.0]) == ["b"]


def test_heldout_z_discounts_rows_the_round_read_more_than_once():
    """Four held-out batches from a pass of one: every row counted four
    times, so the z is halved (``revisit_factor`` sqrt(4)), and a candidate
    whose raw z helped no longer does."""
    layer = scalar_layer(names=("a", "b", "c", "d"), num_selected=3)
    state = layer.selection_state
    assert commit_with(layer, [3.0, 0.0, 0.0, 0.0], [0.0] * 4, "heldout") == ["a"]

    def second_round(read, pass_batches):
        layer.set_heldout_pass_batches(pass_batches)
        state.heldout_sum.assign([0.0, -4.0, -3.0, 0.0])  # raw z: b 4, c 3
        state.heldout_squares.assign([1.0] * 4)
        state.heldout_batches.assign(read)
        return layer.heldout_evidence()

    # Each row once (4 of a pass of 4), or the pass unknown: the raw z.
    assert second_round(4.0, 4) == {"a": 0.0, "b": 4.0, "c": 3.0, "d": 0.0}
    assert second_round(4.0, None)["b"] == 4.0
    # Six batches of a pass of four: two read twice, sqrt((2*4 + 2*1) / 6).
    assert second_round(6.0, 4)["b"] == pytest.approx(4.0 / np.sqrt(10 / 6))
    # Four of a pass of one: halved. Three candidates need z >= 2.128: b and c
    # helped (the logits' c would be picked); halved, neither does and the
    # least harm on held-out data, b, is picked.
    assert second_round(4.0, 1) == {"a": 0.0, "b": 2.0, "c": 1.5, "d": 0.0}
    layer.attention_logits.assign([0.0, 0.5, 2.0, 3.0])
    assert layer.commit_round() == ["b"]
    assert float(state.heldout_batches.numpy()) == 0.0  # reset per round
    second_round(4.0, 4)
    layer.attention_logits.assign([0.0, 0.5, 2.0, 3.0])
    assert layer.commit_round() == ["c"]
    with pytest.raises(ValueError, match=r"`batches`.*got 0"):
        layer.set_heldout_pass_batches(0)
    with pytest.raises(ValueError, match=r"`batches`.*got 2.5"):
        layer.set_heldout_pass_batches(2.5)


def test_once_nothing_helps_the_layer_picks_its_smallest_table():
    """The layer passes its tables' bytes to the commit: past the signal the
    pick is the smallest table, not the largest held-out z."""
    tables = {
        "a": tf.keras.layers.Embedding(4, 2),
        "big": tf.keras.layers.Embedding(500, 2),
        "small": tf.keras.layers.Embedding(8, 2),
    }
    layer = SequentialAttentionEmbedding(tables, 2)
    layer({n: tf.zeros([1], tf.int32) for n in tables})
    assert commit_with(layer, [3.0, 0.0, 0.0], [0.0] * 3, "heldout") == ["a"]
    # Two candidates (threshold 1.96): neither helps; big's z is the larger.
    assert commit_with(layer, [0.0, 0.0, 0.0], [0.0, 1.5, -1.0], "heldout") == ["small"]
    assert layer.feature_costs() == {"a": 32, "big": 4000, "small": 64}


def test_each_built_table_is_measured_once(monkeypatch):
    """tf-keras lists a layer's variables by visiting every attribute it
    tracks (a lookup's vocabulary among them), so the layer keeps each built
    table's bytes instead of walking every table again at every commit."""
    from seqattn_tfrs import sizes

    measured = []
    real = sizes.layer_bytes
    monkeypatch.setattr(
        sizes, "layer_bytes", lambda table: measured.append(table.name) or real(table)
    )
    words = [f"w{i}" for i in range(50)]
    tables = {
        "ids": tf.keras.layers.Embedding(4, 2, name="ids"),
        "words": tf.keras.Sequential(
            [
                tf.keras.layers.StringLookup(vocabulary=words),
                tf.keras.layers.Embedding(51, 2),
            ],
            name="words",
        ),
    }
    layer = SequentialAttentionEmbedding(tables, 2)
    # Not built yet: estimated from the Embeddings' shapes at every call.
    assert layer.feature_costs() == {"ids": 32, "words": 408}
    assert measured == ["ids", "words", "ids", "words"]
    layer({"ids": tf.zeros([1], tf.int32), "words": tf.constant(["w3"])})
    measured.clear()
    for _ in range(3):
        assert layer.feature_costs() == {"ids": 32, "words": 408}
    assert commit_with(layer, [3.0, 0.0], [0.0, 0.0], "heldout") == ["ids"]
    assert measured == ["ids", "words"]


def test_a_round_of_several_picks_takes_the_least_harm_after_those_that_help():
    layer = scalar_layer(names=tuple("abcdef"), num_selected=4, selections_per_round=2)
    assert commit_with(layer, [3, 2, 0, 0, 0, 0], [0.0] * 6, "heldout") == ["a", "b"]
    # Four candidates (threshold 2.24): only c helps; the second pick is the
    # least harmful of the rest (d), not the logits' favourite (e).
    z = [0.0, 0.0, 4.0, 1.0, -1.0, 0.5]
    assert commit_with(layer, [0, 0, 1.0, 0, 5.0, 2.0], z, "heldout") == ["c", "d"]


def test_a_first_round_of_several_picks_tests_only_its_first():
    layer = scalar_layer(names=tuple("abcd"), num_selected=2, selections_per_round=2)
    state = layer.selection_state
    state.score_sum.assign([-5.0, -4.9, -1.0, 0.0])  # b is nearly as good as a
    state.score_squares.assign([1.0] * 4)
    # The logits, having seen a and b together, rank c second: b is a near copy.
    assert commit_with(layer, [1.0, 0.0, 0.5, 0.0], [0.0] * 4, "heldout") == [
        "a",
        "c",
    ]


def test_nan_logits_are_reported_not_picked():
    layer = scalar_layer()
    layer.attention_logits.assign([0.0, float("nan"), 1.0])
    with pytest.raises(FloatingPointError, match=r"\['b'\]"):
        layer.commit_round()
    assert layer.selected_features == ()


def test_extra_keys_ignored_missing_key_named():
    layer = scalar_layer()
    out = layer(
        {
            "a": tf.ones([2]),
            "b": tf.ones([2]),
            "c": tf.ones([2]),
            "user_rating": tf.ones([2]),
        }
    )
    assert list(out) == ["a", "b", "c"]
    with pytest.raises(KeyError, match="'c'"):
        layer({"a": tf.ones([2]), "b": tf.ones([2])})


def test_per_feature_layer_must_return_rank_2():
    layer = SequentialAttentionEmbedding(
        {"a": tf.keras.layers.Reshape((1, 1)), "b": tf.keras.layers.Reshape((1,))}, 1
    )
    with pytest.raises(ValueError, match=r"'a' returned a tensor of rank 3"):
        layer({"a": tf.ones([2]), "b": tf.ones([2])})


def test_a_batch_by_1_id_input_names_rank_3_and_the_fix():
    # A [batch, 1] id tensor, as a sparse-looking input often arrives, gives
    # [batch, 1, d] after an Embedding: the message says rank and fix.
    layer = SequentialAttentionEmbedding(
        {"a": tf.keras.layers.Embedding(5, 4), "b": tf.keras.layers.Embedding(5, 4)},
        1,
    )
    with pytest.raises(ValueError) as raised:
        layer({"a": tf.constant([[1], [2]]), "b": tf.constant([1, 2])})
    message = str(raised.value)
    assert "rank 3 (shape (2, 1, 4)); expected rank 2" in message
    assert "Reshape((4,))" in message


def test_a_listwise_feature_is_refused_for_the_model_with_its_fix():
    # [batch, 5] items per example (a listwise model): [batch, 5, 4] tables.
    # The fix keeps the list (Reshape to 5 * 4), and the error is the
    # model's, not the held-out data's, when the callback first runs it.
    from seqattn_tfrs import SequentialAttentionCallback

    inputs = {n: tf.keras.Input((5,), dtype=tf.int64, name=n) for n in "ab"}
    layer = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Embedding(9, 4) for n in "ab"}, 1
    )
    with pytest.raises(ValueError) as raised:
        layer(inputs)
    assert "Reshape((5 * 4,)) keeps them in order" in str(raised.value)

    # A subclassed model first calls the gate in the callback's check.
    class Listwise(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.gate = SequentialAttentionEmbedding(
                {n: tf.keras.layers.Embedding(9, 4) for n in "ab"}, 1
            )

        def call(self, x):
            out = self.gate(x)
            return tf.reduce_sum(out["a"] + out["b"], axis=[1, 2])

    x = {n: np.ones([8, 5], np.int64) for n in "ab"}
    data = tf.data.Dataset.from_tensor_slices((x, np.ones(8, np.float32))).batch(4)
    model = Listwise()
    model.compile("sgd", "mse")
    callback = SequentialAttentionCallback(warmup_epochs=1, selection_data=data)
    with pytest.raises(ValueError, match="returned a tensor of rank 3") as raised:
        model.fit(data, epochs=3, callbacks=[callback], verbose=0)
    assert "`selection_data`" not in str(raised.value)


def test_ragged_output_is_refused_with_the_fix():
    layer = SequentialAttentionEmbedding(
        {"a": tf.keras.layers.Embedding(5, 4), "b": tf.keras.layers.Embedding(5, 4)},
        1,
    )
    with pytest.raises(ValueError, match="RaggedTensor.*Pool a multi-valent"):
        layer({"a": tf.ragged.constant([[1], [2, 3]]), "b": tf.constant([1, 2])})


def test_features_of_different_batch_sizes_are_refused():
    layer = SequentialAttentionEmbedding(
        {"a": tf.keras.layers.Embedding(5, 4), "b": tf.keras.layers.Embedding(5, 4)},
        1,
    )
    with pytest.raises(ValueError, match=r"different batch sizes \{'a': 2, 'b': 3\}"):
        layer({"a": tf.constant([1, 2]), "b": tf.constant([1, 2, 3])})


def test_one_table_under_two_feature_names_is_refused_at_construction():
    shared = tf.keras.layers.Embedding(5, 4, name="shared")
    with pytest.raises(ValueError, match=r"'b'\].*same layer object.*'a'"):
        SequentialAttentionEmbedding({"a": shared, "b": shared}, num_selected=1)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"embeddings": [], "num_selected": 1}, TypeError, "mapping"),
        ({"embeddings": {}, "num_selected": 1}, ValueError, "empty"),
        ({"num_selected": 0}, ValueError, r"\[1, 2\].*got 0"),
        ({"num_selected": 3}, ValueError, r"\[1, 2\].*got 3"),
        ({"num_selected": 1.5}, ValueError, "got 1.5"),
        ({"selections_per_round": 0}, ValueError, "got 0"),
        (
            {"num_selected": 1, "selections_per_round": 2},
            ValueError,
            r"`selections_per_round`=2 is more than the 1 features \(`num_selected`\)",
        ),
        ({"attention_learning_rate": -1.0}, ValueError, "got -1.0"),
        ({"attention_momentum": 1.0}, ValueError, "got 1.0"),
        (
            {"embeddings": {1: tf.keras.layers.Reshape((1,))}, "num_selected": 1},
            TypeError,
            "got 1",
        ),
        ({"embeddings": {"a": "not a layer"}, "num_selected": 1}, TypeError, "str"),
    ],
    ids=[
        "not-mapping",
        "empty",
        "k-zero",
        "k-too-big",
        "k-float",
        "per-round-zero",
        "per-round-above-k",
        "lr-negative",
        "momentum-one",
        "non-string-name",
        "non-layer",
    ],
)
def test_bad_arguments_name_the_value(kwargs, error, match):
    args = {
        "embeddings": {
            "a": tf.keras.layers.Reshape((1,)),
            "b": tf.keras.layers.Reshape((1,)),
        },
        "num_selected": 1,
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        SequentialAttentionEmbedding(**args)


def test_config_covers_every_constructor_argument_and_round_trips():
    layer = SequentialAttentionEmbedding(
        {
            "a": tf.keras.Sequential(
                [
                    tf.keras.layers.StringLookup(
                        vocabulary=["x", "y"], mask_token=None
                    ),
                    tf.keras.layers.Embedding(3, 4),
                ]
            ),
            "b": tf.keras.layers.Reshape((1,)),
        },
        num_selected=1,
        selections_per_round=1,
        attention_learning_rate=0.1,
        attention_momentum=0.5,
        name="gates",
    )
    config = layer.get_config()
    params = set(inspect.signature(SequentialAttentionEmbedding.__init__).parameters)
    assert params - {"self", "kwargs"} <= set(config)
    clone = SequentialAttentionEmbedding.from_config(config)
    assert clone.get_config() == config
    serialized = tf.keras.layers.serialize(layer)
    assert serialized["registered_name"] == "seqattn_tfrs>SequentialAttentionEmbedding"
    again = tf.keras.layers.deserialize(serialized)
    assert isinstance(again, SequentialAttentionEmbedding)
    assert again.feature_names == ("a", "b")


def test_selection_state_is_saved_in_checkpoints(tmp_path):
    layer = scalar_layer(num_selected=2)
    layer.attention_logits.assign([0.0, 0.0, 4.0])
    layer.commit_round()
    path = tf.train.Checkpoint(layer=layer).save(str(tmp_path / "ckpt"))
    fresh = scalar_layer(num_selected=2)
    tf.train.Checkpoint(layer=fresh).restore(path).assert_existing_objects_matched()
    assert fresh.selected_features == ("c",)
    np.testing.assert_array_equal(fresh.round_gates.numpy(), layer.round_gates.numpy())


def test_functional_model_saves_and_reloads_with_selection(tmp_path):
    names = ("a", "b", "c")
    inputs = {n: tf.keras.Input((), name=n) for n in names}
    layer = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Reshape((1,)) for n in names}, 1
    )
    gated = layer(inputs)
    outputs = tf.keras.layers.Dense(1)(
        tf.keras.layers.Concatenate()([gated[n] for n in names])
    )
    model = tf.keras.Model(inputs, outputs)
    layer.attention_logits.assign([0.0, 1.0, 0.0])
    layer.commit_round()
    x = {n: tf.constant([1.0, 2.0]) * (i + 1) for i, n in enumerate(names)}
    expected = model(x).numpy()
    model.save(str(tmp_path / "m"))
    loaded = tf.keras.models.load_model(str(tmp_path / "m"))
    np.testing.assert_allclose(loaded(x).numpy(), expected, atol=1e-6)
    reloaded_layer = [
        m for m in loaded.submodules if isinstance(m, SequentialAttentionEmbedding)
    ][0]
    assert reloaded_layer.selected_features == ("b",)


def test_feature_dtype_change_is_named():
    layer = scalar_layer()
    layer({"a": tf.ones([2]), "b": tf.ones([2]), "c": tf.ones([2])})
    with pytest.raises(TypeError, match="feature 'b' arrived as int64.*float32"):
        layer({"a": tf.ones([2]), "b": tf.ones([2], tf.int64), "c": tf.ones([2])})


@pytest.mark.parametrize("signal, winner", [("partial", "c"), ("gradient", "b")])
def test_partial_signal_ignores_a_copy_of_a_selected_feature(signal, winner):
    """`a` is selected and underfit; `b` is a copy of it, `c` is new information.

    With gates (1, 1/2, 1/2) the prediction is 1.5a + 0.5c against 3a + c, so
    the residual is 1.5a + 0.5c. The plain gradient rewards the copy, which
    would speed up fitting `a`; the partial signal regresses out what rescaling
    `a` explains, leaving only `c`'s new information.
    """
    rng = np.random.default_rng(0)
    a, c = rng.normal(size=(2, 256)).astype(np.float32)
    layer = scalar_layer(num_selected=2, attention_signal=signal)
    layer.selected_mask.assign([1.0, 0.0, 0.0])
    layer.num_picked.assign(1)
    layer.gate_mode.assign(SELECTING)
    with tf.GradientTape() as tape:
        gated = layer({"a": a, "b": a.copy(), "c": c})
        prediction = tf.add_n([gated[n][:, 0] for n in "abc"])
        loss = tf.reduce_mean(tf.square(3.0 * a + c - prediction))
    tape.gradient(loss, layer.trainable_variables)  # runs the logit update
    logits = dict(zip("abc", layer.attention_logits.numpy()))
    loser = "b" if winner == "c" else "c"
    assert logits[winner] > 0.01 > -0.01 > logits[loser], logits


def three_scalar_layer(b_dtype, **options):
    """Features ``a`` (2 columns), ``b`` (1, in ``b_dtype``) and ``c`` (1)."""
    return SequentialAttentionEmbedding(
        {
            "a": tf.keras.layers.Reshape((2,)),
            "b": tf.keras.layers.Reshape((1,), dtype=b_dtype),
            "c": tf.keras.layers.Reshape((1,)),
        },
        **options,
    )


def squared_error_step(layer, rows, target, heldout):
    """One backward pass of ``a[0] + b - c`` against ``target`` through
    :func:`three_scalar_layer`'s gates (in the held-out step's trace if
    ``heldout``), where the logits and score-test sums learn; its outputs."""
    inputs = {"a": rows[:, :2], "b": rows[:, 2], "c": rows[:, 3]}
    with contextlib.ExitStack() as stack:
        if heldout:
            stack.enter_context(layer.heldout_step())
        with tf.GradientTape() as tape:
            out = layer(inputs)
            fit = out["a"][:, 0] + tf.cast(out["b"][:, 0], tf.float32) - out["c"][:, 0]
            loss = tf.reduce_sum(tf.square(fit - target))
        tape.gradient(loss, layer.gradient_hook)  # the gates' backward learns
    return out


def test_every_gating_path_gives_the_same_outputs_and_logit_step():
    """Training steps gate one dtype's embeddings one by one (columns joined
    only to learn), the held-out step gates them as one joined tensor, and
    embeddings of several dtypes are gated one by one: the same outputs and
    the same logit step on all three paths."""

    def selecting_step(b_dtype, heldout=False):
        layer = three_scalar_layer(b_dtype, num_selected=2)
        layer.gate_mode.assign(SELECTING)
        layer.selected_mask.assign([1.0, 0.0, 0.0])
        layer.num_picked.assign(1)
        rows = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
        out = squared_error_step(layer, rows, rows[:, 0] * rows[:, 2], heldout)
        return out, layer.attention_logits.numpy()

    training, training_logits = selecting_step("float32")
    joined, joined_logits = selecting_step("float32", heldout=True)
    each, each_logits = selecting_step("float64")
    assert each["b"].dtype == tf.float64 and joined["b"].dtype == tf.float32
    assert np.all(training_logits[1:] != 0.0)
    for name in "abc":
        np.testing.assert_array_equal(training[name], joined[name])
        np.testing.assert_allclose(each[name], joined[name], rtol=1e-6)
    np.testing.assert_array_equal(training_logits, joined_logits)
    np.testing.assert_allclose(each_logits, joined_logits, rtol=1e-5, atol=1e-7)


def test_score_test_sums_of_several_dtypes_equal_those_of_one():
    """The settle's score-test sums, with the first pick's variance factors,
    are the same on every gating path (training, held-out, several dtypes)
    and match the sums computed by hand."""
    rows = np.random.default_rng(1).normal(size=(16, 4)).astype(np.float32)
    target = rows[:, 0] * rows[:, 2] + rows[:, 3]

    def settling_sums(b_dtype, heldout=False):
        layer = three_scalar_layer(
            b_dtype,
            budget_bytes=100,
            feature_bytes={"a": 10, "b": 10, "c": 10},
            budget_rule="gain_per_byte",
        )
        layer.gate_mode.assign(SETTLING)
        squared_error_step(layer, rows, target, heldout)
        state = layer.selection_state
        return [
            v.numpy()
            for v in (
                state.score_sum,
                state.score_squares,
                state.score_norms,
                state.score_projections,
            )
        ]

    training = settling_sums("float32")
    joined = settling_sums("float32", heldout=True)
    each = settling_sums("float64")
    for got, want in zip(training, joined):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(each, joined):
        np.testing.assert_allclose(got, want, rtol=1e-5)
    # By hand: every gate is 0, so the fit is 0 and d loss / d output = -2 t
    # times d fit / d output (+1 on a's first column and b, -1 on c).
    upstream = -2.0 * target[:, None] * np.array([[1.0, 0.0, 1.0, -1.0]])
    centred = rows - rows.mean(0)
    columns = upstream * centred
    per_feature = np.stack([columns[:, :2].sum(1), columns[:, 2], columns[:, 3]], 1)
    norms = np.stack(
        [np.square(upstream[:, :2]).sum(1), upstream[:, 2] ** 2, upstream[:, 3] ** 2],
        1,
    )
    np.testing.assert_allclose(joined[0], per_feature.sum(0), rtol=1e-5)
    np.testing.assert_allclose(joined[2], norms.sum(0), rtol=1e-5)
    np.testing.assert_allclose(
        joined[3], (np.square(per_feature) / norms).sum(0), rtol=1e-5
    )
