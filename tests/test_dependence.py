"""Functions of other features found on data; copies passed over by the selection."""

import numpy as np
import pytest
import tensorflow as tf

from seqattn_tfrs import SequentialAttentionCallback, SequentialAttentionEmbedding
from seqattn_tfrs.core.dependence import (
    factorize,
    functional_dependence,
    redundant_candidates,
)
from seqattn_tfrs.core.selection import SelectionRecord, SelectionSpec, commit_round


def pairs(matrix):
    return sorted(map(tuple, np.argwhere(matrix).tolist()))


def test_copies_recodings_and_coarsenings_are_functions_partial_copies_are_not():
    rng = np.random.default_rng(0)
    source = rng.integers(0, 50, 4000)
    recode = rng.permutation(50)[source]
    coarse = source // 5
    partial = np.where(rng.random(4000) < 0.9, source, rng.integers(0, 50, 4000))
    noise = rng.integers(0, 50, 4000)
    found = functional_dependence([source, recode, coarse, partial, noise])
    # [c, s]: c is a function of s. The source and its re-coding are functions
    # of each other; the coarsening of both; nothing of the coarsening.
    assert pairs(found) == [(0, 1), (1, 0), (2, 0), (2, 1)]


def test_an_id_like_feature_never_makes_others_its_functions():
    rng = np.random.default_rng(1)
    ids = np.arange(3000)  # every value once: any feature "is" its function
    few = np.repeat(np.arange(1500), 2)  # two rows a value
    binary = rng.integers(0, 2, 3000)
    skewed = (rng.random(3000) < 0.001).astype(int)  # one value almost always
    found = functional_dependence([ids, few, binary, skewed])
    # Every field "is" a function of ``ids`` on these rows, but with no value
    # seen twice the data could not have shown otherwise: nothing is declared.
    # ``binary`` against ``few`` (1,500 pairs) varies within pairs. ``skewed``
    # would be constant within almost every pair by chance: no evidence.
    assert pairs(found) == []
    # With every id seen twice, a coin flipped per row shows it is not their
    # function, and ``few`` is found to be one.
    twice = functional_dependence([np.tile(ids, 2), rng.integers(0, 2, 6000)])
    assert pairs(twice) == []
    assert pairs(functional_dependence([np.tile(ids, 2), np.tile(few, 2)])) == [(1, 0)]


def evidence_against_independence(c, s):
    """-log P(every s-value's rows show one c-value), were c independent of s,
    one group size at a time: the definition the fast table must match."""
    group_sizes = np.bincount(s)
    count = np.bincount(c)
    log_p = np.log(count[count > 0] / len(c))
    return -sum(np.logaddexp.reduce(m * log_p) for m in group_sizes[group_sizes >= 2])


def test_the_evidence_is_the_per_group_size_sum_on_many_sizes_and_values():
    # Skewed fields over 40,000 rows: hundreds of distinct group sizes and
    # thousands of values, more products than the table holds at once (2**20).
    rng = np.random.default_rng(3)
    weights = 1 / np.arange(1, 10001) ** 0.9
    source = rng.choice(10000, 40000, p=weights / weights.sum())
    fields = [
        source,
        rng.permutation(10000)[source],  # a re-coding: evidence on both sides
        source // 3,  # a coarsening
        np.where(rng.random(40000) < 0.999, source, 0),  # a near copy
        rng.choice(10000, 40000, p=weights / weights.sum()),  # independent
    ]
    sizes = np.unique(np.concatenate([np.bincount(f) for f in fields]))
    assert len(sizes) * len(np.unique(source)) > 1 << 20
    for c, s in [(1, 0), (0, 1), (2, 0), (2, 1)]:  # functions of s
        evidence = evidence_against_independence(fields[c], fields[s])
        # Declared exactly when the evidence reaches the threshold.
        assert functional_dependence(fields, evidence * (1 - 1e-9))[c, s]
        assert not functional_dependence(fields, evidence * (1 + 1e-9))[c, s]
    assert not functional_dependence(fields)[3, 0]  # varies within a group
    assert not functional_dependence(fields)[4, 0]


def test_factorize_strings_and_rows():
    assert factorize(np.array([b"x", b"y", b"x", b"z"])).tolist() == [0, 1, 0, 2]
    assert factorize(np.array([[1, 0], [1, 0], [0, 1]])).tolist() == [1, 1, 0]
    with pytest.raises(ValueError, match="leading rows dimension"):
        factorize(np.array(3))


def test_rows_must_agree():
    with pytest.raises(ValueError, match=r"same number of rows, got lengths \[3, 2\]"):
        functional_dependence([np.zeros(3, int), np.zeros(2, int)])


def test_only_copies_are_redundant_not_coarsenings():
    dependence = np.zeros([3, 3], bool)
    dependence[1, 0] = dependence[0, 1] = True  # 0 and 1 group rows alike
    dependence[2, 0] = dependence[2, 1] = True  # 2 coarsens both
    redundant = redundant_candidates(dependence, np.array([1, 0, 0], bool))
    assert redundant.tolist() == [False, True, False]
    assert not redundant_candidates(dependence, np.array([0, 0, 1], bool)).any()


def record(n):
    return SelectionRecord(np.zeros(n, bool), np.full(n, -1), 0, np.zeros((n, n)))


def test_a_round_passes_over_a_function_of_a_selected_feature():
    spec = SelectionSpec("gate", ("a", "copy", "b", "c"), 3, None, 1)
    dependence = np.zeros([4, 4], bool)
    dependence[1, 0] = dependence[0, 1] = True
    dependence[3, 0] = True  # a coarsening of "a" still competes
    logits = np.array([3.0, 2.0, 1.0, 0.5])
    after, picks = commit_round(
        spec, record(4), logits, np.ones(4), num_rounds=3, dependence=dependence
    )
    assert picks == [0]
    after, picks = commit_round(
        spec, after, logits, np.ones(4), num_rounds=3, dependence=dependence
    )
    assert picks == [2]  # not the copy, whose logit is larger
    after, picks = commit_round(
        spec,
        after,
        np.array([3.0, 2.0, 1.0, 2.5]),
        np.ones(4),
        num_rounds=3,
        dependence=dependence,
    )
    assert picks == [3]
    # Without the check, the copy is taken.
    _, picks = commit_round(
        spec,
        commit_round(spec, record(4), logits, np.ones(4), num_rounds=3)[0],
        logits,
        np.ones(4),
        num_rounds=3,
    )
    assert picks == [1]


def test_past_the_signal_a_copy_of_a_selected_feature_can_be_the_least_harm():
    spec = SelectionSpec("gate", ("a", "copy", "b", "c", "d"), 3, None, 1)
    dependence = np.zeros([5, 5], bool)
    dependence[1, 0] = dependence[0, 1] = True
    after, _ = commit_round(
        spec,
        record(5),
        np.array([3.0, 0, 0, 0, 0]),
        np.ones(5),
        num_rounds=3,
        dependence=dependence,
    )

    def pick(logits, z):
        return commit_round(
            spec,
            after,
            np.array(logits),
            np.ones(5),
            num_rounds=3,
            dependence=dependence,
            heldout_scores=np.array(z),
        )[1]

    # b helps (z 4 >= 2.24): the copy, though ahead on logits, is passed over.
    assert pick([0, 5.0, 1.0, 2.0, 0], [0.0, 1.0, 4.0, -1.0, 0]) == [2]
    # Nothing helps, and every other candidate's z is negative (an estimated
    # harm) and below the copy's: the copy of the selected a, which adds no
    # group of rows to memorise, not the logits' d.
    assert pick([0, 0, 0, 0, 3.0], [0.0, -0.5, -3.0, -0.6, -1.0]) == [1]
    # c's z is positive (a weak effect no test confirmed): the least harm, c,
    # though the copy's z is larger.
    assert pick([0, 0, 0, 0, 3.0], [0.0, 0.6, -3.0, 0.5, -1.0]) == [3]
    # Every z negative, the copy's lowest: the least harm among the others.
    assert pick([0, 0, 0, 0, 3.0], [0.0, -3.5, -3.0, -0.6, -1.0]) == [3]
    # Only a copy is left helping: the evidence is spent as well.
    assert pick([0, 0, 0, 0, 3.0], [0.0, 3.0, -3.0, -0.5, -1.0]) == [1]
    # Without held-out statistics the logits decide, copies last, as before.
    _, picks = commit_round(
        spec,
        after,
        np.array([0, 5.0, 1.0, 2.0, 0]),
        np.ones(5),
        num_rounds=3,
        dependence=dependence,
    )
    assert picks == [3]


def test_past_the_signal_a_copy_goes_ahead_of_every_larger_table():
    # a (20 values) selected; "copy" groups rows as a does; "noise" is a
    # 3,000-value table, "small" a 4-value one. Bytes as an Embedding of
    # width 4 in float32 holds them.
    spec = SelectionSpec("gate", ("a", "copy", "noise", "small"), 3, None, 1)
    dependence = np.zeros([4, 4], bool)
    dependence[1, 0] = dependence[0, 1] = True
    costs = [20 * 16, 20 * 16, 3000 * 16, 4 * 16]

    def commit(before, logits, z=None, costs=costs):
        return commit_round(
            spec,
            before,
            np.array(logits),
            np.ones(4),
            num_rounds=3,
            dependence=dependence,
            heldout_scores=None if z is None else np.array(z),
            costs=costs,
        )

    after, _ = commit(record(4), [3.0, 0, 0, 0])
    # Nothing helps and the noise table's z is positive (0.3, no test
    # confirms it): the smaller table first, then the copy ahead of the
    # 3,000-value table it is cheaper than.
    after, picks = commit(after, np.zeros(4), [0.0, -0.4, 0.3, 0.5])
    assert picks == [3]
    assert commit(after, np.zeros(4), [0.0, -0.4, 0.3, 0.0])[1] == [1]
    # A copy as large as the other table keeps its place behind it.
    same_size = [16, 3000 * 16, 3000 * 16, 16]
    assert commit(after, np.zeros(4), [0.0, -0.4, 0.3, 0.0], same_size)[1] == [2]
    # Without costs, copies stay last unless every other candidate hurts.
    assert commit(after, np.zeros(4), [0.0, -0.4, 0.3, 0.0], None)[1] == [2]


def test_past_the_signal_a_coarsening_goes_behind_the_other_small_tables():
    # a (1,000 values) selected; "prefix" (100 values) is a function of a;
    # "b" (50 values) is not; "noise" holds 5,000 values. Width 4, float32.
    spec = SelectionSpec("gate", ("a", "prefix", "b", "noise"), 3, None, 1)
    dependence = np.zeros([4, 4], bool)
    dependence[1, 0] = True
    costs = [1000 * 16, 100 * 16, 50 * 16, 5000 * 16]

    def commit(before, z, costs=costs, check=True):
        return commit_round(
            spec,
            before,
            np.zeros(4) if before.num_picked else np.array([3.0, 0, 0, 0]),
            np.ones(4),
            num_rounds=3,
            dependence=dependence if check else None,
            heldout_scores=None if z is None else np.array(z),
            costs=costs,
        )

    after, _ = commit(record(4), None)
    z = [0.0, 1.5, 0.4, 2.0]  # none clears the threshold (2.13 for 3)
    # The prefix brings nothing a lacks: b, though its z is lower.
    assert commit(after, z)[1] == [2]
    # Without the dependence check the prefix's z ranks first, as before.
    assert commit(after, z, check=False)[1] == [1]
    # Ahead of a table larger than a's (b with 2,000 values).
    assert commit(after, z, [1000 * 16, 100 * 16, 2000 * 16, 5000 * 16])[1] == [1]


def test_past_the_signal_a_copy_is_compared_by_the_gate_z_a_coarsening_is_not():
    # a selected; "copy" groups rows as a does, "prefix" coarsens it; b, c.
    spec = SelectionSpec("gate", ("a", "copy", "prefix", "b", "c"), 3, None, 1)
    dependence = np.zeros([5, 5], bool)
    dependence[1, 0] = dependence[0, 1] = True
    dependence[2, 0] = dependence[2, 1] = True
    after, _ = commit_round(
        spec, record(5), np.array([3.0, 0, 0, 0, 0]), np.ones(5), num_rounds=3
    )

    def pick(gate_z, probe_z, check=True):
        return commit_round(
            spec,
            after,
            np.array([0, 0, 0, 2.0, 1.0]),
            np.ones(5),
            num_rounds=3,
            dependence=dependence if check else None,
            heldout_scores=np.array(gate_z),
            probe_scores=np.array(probe_z),
        )[1]

    probe_z = [0.0, 0.1, 0.1, 2.0, 0.3]
    # The probe finds c (z 6 clears the 12 tests' 2.64): it is picked.
    assert pick([0.0, -0.2, -0.3, -0.5, -0.8], [0.0, 0.1, 0.1, 0.3, 6.0]) == [4]
    # Nothing helps by either. Every other gate z (the harm at the soft gates)
    # is negative and below the copy's: the copy, though b's combined z (1.06)
    # beats its -0.07 (its probe z says nothing: it cannot help).
    assert pick([0.0, -0.2, -0.3, -0.5, -0.8], probe_z) == [1]
    # The coarsening is not promoted so: with the copy's gate z lowest, the
    # others go by the combined z, b first.
    assert pick([0.0, -3.0, -0.2, -0.5, -0.8], probe_z) == [3]
    # Without the dependence check, the largest combined z (b) as well.
    assert pick([0.0, -0.2, -0.3, -0.5, -0.8], probe_z, check=False) == [3]


def test_a_pick_that_helps_gives_way_to_its_source_unless_clearly_weaker():
    # "prefix" is a function of "zip" (its coarsening); b is unrelated.
    spec = SelectionSpec("gate", ("prefix", "zip", "b", "c"), 3, None, 1)
    dependence = np.zeros([4, 4], bool)
    dependence[0, 1] = True

    def first(marginal_z, check=True):
        # Round 1: the score test's statistics rank prefix first; its z says
        # which features help on their own (4 tests: 2.24).
        return commit_round(
            spec,
            record(4),
            np.zeros(4),
            np.ones(4),
            num_rounds=3,
            dependence=dependence if check else None,
            entry_scores=np.array(marginal_z),
            first_scores=np.array([0.5, 0.4, 0.3, 0.0]),
        )[1]

    assert first([9.0, 8.0, 6.0, 0.0]) == [1]  # zip holds all that prefix does
    assert first([9.0, 8.0, 6.0, 0.0], check=False) == [0]
    assert first([9.0, 1.0, 6.0, 0.0]) == [0]  # zip does not help on its own
    # The first round's score test fits nothing, so it says nothing of what
    # the training rows can teach zip: zip is taken however far short.
    assert first([19.0, 6.0, 5.0, 0.0]) == [1]
    b_in, _ = commit_round(
        spec, record(4), np.array([0, 0, 3.0, 0]), np.ones(4), num_rounds=3
    )

    def later(z, matrix=dependence):
        return commit_round(
            spec,
            b_in,
            np.array([3.0, 1.0, 0.0, 2.0]),  # the logits rank prefix first
            np.ones(4),
            num_rounds=3,
            dependence=matrix,
            heldout_scores=np.array(z),
        )[1]

    # prefix and zip help (3 tests: 2.13): zip, though prefix leads.
    assert later([5.0, 4.0, 0.0, 3.0]) == [1]
    assert later([5.0, 4.0, 0.0, 3.0], matrix=None) == [0]
    assert later([5.0, 1.0, 0.0, 3.0]) == [0]  # zip does not help
    # Later, held-out evidence learned on the training rows: where zip's z
    # falls short of prefix's by more than 1.645 * sqrt(2) = 2.33 (too few
    # rows per value to teach it what prefix pools), prefix stays the pick.
    assert later([7.0, 4.7, 0.0, 3.0]) == [1]  # 2.3 short
    assert later([7.0, 4.6, 0.0, 3.0]) == [0]  # 2.4 short
    # With b in, a copy of b that prefix is a function of is no source to
    # take: it covers nothing new.
    copy_of_b = dependence.copy()
    copy_of_b[3, 2] = copy_of_b[2, 3] = copy_of_b[0, 3] = True
    assert later([5.0, 1.0, 0.0, 3.0], matrix=copy_of_b) == [0]


def test_a_candidate_related_to_a_selected_one_comes_after_the_other_help():
    # "prefix" is a function of "zip"; b and c are unrelated.
    spec = SelectionSpec("gate", ("prefix", "zip", "b", "c"), 3, None, 1)
    dependence = np.zeros([4, 4], bool)
    dependence[0, 1] = True

    def pick(selected, z, probe_z=None, check=True):
        after, _ = commit_round(
            spec, record(4), np.eye(4)[selected] * 3, np.ones(4), num_rounds=3
        )
        return commit_round(
            spec,
            after,
            np.array([3.0, 3.0, 1.0, 0.0]),  # prefix and zip lead the logits
            np.ones(4),
            num_rounds=3,
            dependence=dependence if check else None,
            heldout_scores=np.array(z),
            probe_scores=None if probe_z is None else np.array(probe_z),
        )[1]

    # With prefix in, zip (a source of it) and b help: b, a new group.
    assert pick(0, [0.0, 8.0, 5.0, -1.0]) == [2]
    assert pick(0, [0.0, 8.0, 5.0, -1.0], check=False) == [1]
    # Ranked by the gate's and the probe's z combined, the same.
    assert pick(0, [0.0, 8.0, 5.0, -1.0], [0.0, 9.0, 4.0, 0.5]) == [2]
    # With zip in, prefix (a function of it) and b help: b.
    assert pick(1, [8.0, 0.0, 5.0, -1.0]) == [2]
    # Where only the related one helps, it still comes before the others.
    assert pick(0, [0.0, 8.0, 1.0, 2.0]) == [1]
    assert pick(1, [8.0, 0.0, 1.0, 2.0]) == [0]


def test_several_picks_in_one_round_pass_over_each_others_functions():
    spec = SelectionSpec("gate", ("a", "copy", "b"), 2, None, 2)
    dependence = np.zeros([3, 3], bool)
    dependence[1, 0] = dependence[0, 1] = True
    _, picks = commit_round(
        spec,
        record(3),
        np.array([3.0, 2.0, 1.0]),
        np.ones(3),
        num_rounds=1,
        dependence=dependence,
    )
    assert picks == [0, 2]


def test_only_functions_left_are_still_picked_by_count():
    spec = SelectionSpec("gate", ("a", "copy"), 2, None, 1)
    dependence = np.array([[0, 1], [1, 0]], bool)
    after, _ = commit_round(
        spec,
        record(2),
        np.array([1.0, 0.0]),
        np.ones(2),
        num_rounds=2,
        dependence=dependence,
    )
    _, picks = commit_round(
        spec, after, np.zeros(2), np.ones(2), num_rounds=2, dependence=dependence
    )
    assert picks == [1]


def test_under_a_budget_a_function_does_not_compete_and_the_selection_closes():
    spec = SelectionSpec("gate", ("a", "copy"), None, 1000, 1)
    dependence = np.array([[0, 1], [1, 0]], bool)
    after, picks = commit_round(
        spec,
        record(2),
        np.array([1.0, 0.0]),
        np.ones(2),
        num_rounds=2,
        costs=[10, 10],
        dependence=dependence,
    )
    assert picks == [0] and not after.closed
    after, picks = commit_round(
        spec,
        after,
        np.zeros(2),
        np.ones(2),
        num_rounds=2,
        costs=[10, 10],
        dependence=dependence,
    )
    assert picks == [] and after.closed


def planted(rows=6000, seed=0):
    """A strong field and its re-coding, two weaker fields, a noise field."""
    rng = np.random.default_rng(seed)
    strong = rng.integers(0, 8, rows)
    recoded = rng.permutation(8)[strong]
    medium = rng.integers(0, 5, rows)
    weak = rng.integers(0, 4, rows)
    noise = rng.integers(0, 50, rows)
    logit = (
        rng.normal(0, 1.5, 8)[strong]
        + rng.normal(0, 1.0, 5)[medium]
        + rng.normal(0, 0.6, 4)[weak]
    )
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    columns = {
        "strong": strong,
        "recoded": recoded,
        "medium": medium,
        "weak": weak,
        "noise": noise,
    }
    return columns, y


def fit_planted(selection_data):
    columns, y = planted()
    tf.keras.utils.set_random_seed(0)
    inputs = {n: tf.keras.Input(shape=(), dtype=tf.int64, name=n) for n in columns}
    tables = {
        n: tf.keras.layers.Embedding(int(v.max()) + 1, 4) for n, v in columns.items()
    }
    gate = SequentialAttentionEmbedding(tables, num_selected=3)
    gated = gate(inputs)
    hidden = tf.keras.layers.Dense(16, activation="relu")(
        tf.keras.layers.Concatenate()([gated[n] for n in columns])
    )
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1, "sigmoid")(hidden))
    model.compile(tf.keras.optimizers.Adam(0.01), "binary_crossentropy")

    def data(rows):
        return tf.data.Dataset.from_tensor_slices(
            ({n: v[rows] for n, v in columns.items()}, y[rows])
        ).batch(128)

    callback = SequentialAttentionCallback(
        warmup_epochs=1,
        epochs_per_selection=1,
        finetune_epochs=0,
        selection_data=data(slice(4800, None)) if selection_data else None,
        verbose=0,
    )
    model.fit(data(slice(0, 4800)), epochs=4, callbacks=[callback], verbose=0)
    return gate


def test_the_callback_finds_the_copy_on_selection_data():
    gate = fit_planted(selection_data=True)
    assert gate.functional_dependencies == {
        "strong": ("recoded",),
        "recoded": ("strong",),
    }


def test_without_selection_data_nothing_is_checked():
    gate = fit_planted(selection_data=False)
    assert gate.functional_dependencies is None


def test_the_check_stops_each_forward_pass_once_every_gate_recorded():
    from seqattn_tfrs.dependence_check import check_functional_dependence

    columns, y = planted(rows=600)
    names = list(columns)
    after_gates = []  # eager calls of the layer after the gates

    class Counting(tf.keras.layers.Layer):
        def call(self, x):
            if tf.executing_eagerly():
                after_gates.append(1)
            return x

    inputs = {n: tf.keras.Input(shape=(), dtype=tf.int64, name=n) for n in names}
    first = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Embedding(60, 4) for n in names[:2]}, num_selected=1
    )
    second = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Embedding(60, 4) for n in names[2:]}, num_selected=1
    )
    gated = {**first(inputs), **second(inputs)}
    joined = Counting()(tf.keras.layers.Concatenate()([gated[n] for n in names]))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(joined))
    data = tf.data.Dataset.from_tensor_slices((columns, y)).batch(100)
    checked = check_functional_dependence(model, [first, second], data)
    assert checked == {first.name: 600, second.name: 600}  # all 6 batches
    assert first.functional_dependencies == {
        "strong": ("recoded",),
        "recoded": ("strong",),
    }
    assert after_gates == []  # no pass ran past the second gate
    model(next(iter(data))[0])  # an ordinary call still runs the whole model
    assert after_gates == [1]
    # No batch is read past the one that reaches `max_rows` rows.
    capped = check_functional_dependence(model, [first, second], data, max_rows=250)
    assert capped == {first.name: 300, second.name: 300}


def check_time_and_user(time_table, user_table):
    """The copy check on 2,000 rows where every raw ``time`` value (two or three
    rows each) belongs to one ``user``: ``user`` is a function of the raw
    values, and ``copy`` is ``user`` re-coded."""
    from seqattn_tfrs.dependence_check import check_functional_dependence

    rng = np.random.default_rng(0)
    time = np.repeat(np.arange(800) * 10.0, rng.integers(2, 4, 800))[:2000]
    user = rng.integers(0, 40, 800)[(time / 10).astype(int)]
    columns = {"time": time, "user": user, "copy": rng.permutation(40)[user]}
    inputs = {
        "time": tf.keras.Input(shape=(), dtype=tf.float64, name="time"),
        "user": tf.keras.Input(shape=(), dtype=tf.int64, name="user"),
        "copy": tf.keras.Input(shape=(), dtype=tf.int64, name="copy"),
    }
    gate = SequentialAttentionEmbedding(
        {
            "time": time_table,
            "user": user_table,
            "copy": tf.keras.layers.Embedding(40, 4),
        },
        num_selected=1,
    )
    gated = gate(inputs)
    joined = tf.keras.layers.Concatenate()([gated[n] for n in columns])
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(joined))
    y = rng.integers(0, 2, 2000).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((columns, y)).batch(500)
    check_functional_dependence(model, [gate], data)
    return gate.functional_dependencies


def bucketised_time():
    """A table of the times in 4 buckets (2,000 apart)."""
    return tf.keras.Sequential(
        [
            tf.keras.layers.Discretization(bin_boundaries=[2000.0, 4000.0, 6000.0]),
            tf.keras.layers.Embedding(4, 4),
        ]
    )


def test_rows_are_grouped_as_each_table_groups_them():
    # The raw times determine the user; the table's four buckets do not.
    assert check_time_and_user(bucketised_time(), tf.keras.layers.Embedding(40, 4)) == {
        "user": ("copy",),
        "copy": ("user",),
    }
    one_row_per_time = tf.keras.Sequential(
        [
            tf.keras.layers.IntegerLookup(
                vocabulary=np.arange(800) * 10, mask_token=None
            ),
            tf.keras.layers.Embedding(801, 4),
        ]
    )
    # Cast to int64 first, as IntegerLookup takes integers.
    cast = tf.keras.Sequential(
        [tf.keras.layers.Lambda(lambda t: tf.cast(t, tf.int64)), one_row_per_time]
    )
    assert check_time_and_user(cast, tf.keras.layers.Embedding(40, 4)) == {
        "user": ("time", "copy"),
        "copy": ("time", "user"),
    }


def test_a_few_values_merged_out_of_vocabulary_do_not_break_a_copy():
    # Users 0 and 1 share the out-of-vocabulary row, about 5% of the rows;
    # grouped by that table, `copy` (which tells them apart) would be no
    # function of `user`.
    missing_two = tf.keras.Sequential(
        [
            tf.keras.layers.IntegerLookup(vocabulary=np.arange(2, 40), mask_token=None),
            tf.keras.layers.Embedding(39, 4),
        ]
    )
    assert check_time_and_user(bucketised_time(), missing_two) == {
        "user": ("copy",),
        "copy": ("user",),
    }


def test_a_small_hash_is_grouped_by_its_buckets():
    hashed = tf.keras.Sequential(
        [tf.keras.layers.Hashing(num_bins=8), tf.keras.layers.Embedding(8, 4)]
    )
    # 40 users in 8 buckets: the hashed table is a coarsening of `copy`, and
    # `copy` no function of it.
    assert check_time_and_user(bucketised_time(), hashed) == {"user": ("copy",)}


def test_a_table_that_gives_every_row_one_vector_is_grouped_by_raw_values():
    zeros = tf.keras.layers.Embedding(40, 4, embeddings_initializer="zeros")
    assert check_time_and_user(bucketised_time(), zeros) == {
        "user": ("copy",),
        "copy": ("user",),
    }
