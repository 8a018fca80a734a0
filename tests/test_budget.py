"""Selection under a byte budget: costs, affordability, schedule, planted data."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from helpers.evidence import check_selecting_evidence, check_settle_evidence

from seqattn_tfrs import (
    SequentialAttentionCallback,
    SequentialAttentionEmbedding,
    export_for_serving,
    prune,
)
from seqattn_tfrs.core.budget import (
    knapsack,
    max_affordable,
    pick_within_budget,
    planned_pick,
)
from seqattn_tfrs.core.ops import NUMPY
from seqattn_tfrs.core.signals import efficient_score, residual_scores
from seqattn_tfrs.movielens.config import ConfigError, JobConfig, load_config, override
from seqattn_tfrs.movielens.models import build_model
from seqattn_tfrs.sizes import layer_bytes
from seqattn_tfrs.tf_ops import TF

# (rows, width) per field: "big" is a 2,000-row id whose coarse group "small"
# carries nearly all of its signal in 10 rows; "other" is independent signal.
TABLES = {"big": (2000, 8), "small": (10, 8), "other": (10, 8), "noise": (10, 8)}


def planted(seed=0, n=6000):
    rng = np.random.default_rng(seed)
    big = rng.integers(0, 2000, n)
    small = big // 200
    other = rng.integers(0, 10, n)
    noise = rng.integers(0, 10, n)
    logit = (
        2.0 * rng.normal(size=10)[small]
        + 0.3 * rng.normal(size=2000)[big]
        + 1.5 * rng.normal(size=10)[other]
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    x = {"big": big, "small": small, "other": other, "noise": noise}
    return {k: v.astype(np.int64) for k, v in x.items()}, y


def planted_model(**gate_options):
    inputs = {n: tf.keras.Input((), dtype=tf.int64, name=n) for n in TABLES}
    gate = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Embedding(r, w) for n, (r, w) in TABLES.items()},
        **gate_options,
    )
    gated = gate(inputs)
    hidden = tf.keras.layers.Dense(16, "relu")(
        tf.keras.layers.Concatenate()([gated[n] for n in TABLES])
    )
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1, "sigmoid")(hidden))
    model.compile(tf.keras.optimizers.Adam(0.01), "binary_crossentropy")
    return model, gate


def scalar_gate(**options):
    names = ("a", "b", "c")
    return SequentialAttentionEmbedding(
        {n: tf.keras.layers.Reshape((1,)) for n in names}, **options
    )


def test_layer_bytes_measured_and_estimated():
    lookup = tf.keras.Sequential(
        [
            tf.keras.layers.StringLookup(vocabulary=["x", "y"], mask_token=None),
            tf.keras.layers.Embedding(3, 4),
        ]
    )
    assert layer_bytes(lookup) == 3 * 4 * 4  # estimated before it is built
    lookup(tf.constant(["x"]))
    assert layer_bytes(lookup) == 48  # measured: the same
    assert layer_bytes(tf.keras.layers.Dense(2)) is None
    assert layer_bytes(tf.keras.layers.Reshape((1,))) == 0


def test_greedy_pick_hand_computed():
    logits = np.array([2.0, 1.0, 0.5, 0.0])
    costs = np.array([90, 30, 30, 50])
    none = np.zeros(4, bool)
    # 60 bytes: "a" does not fit; b, then c; 0 left, so d no longer fits.
    assert pick_within_budget(logits, costs, none, 60, 4, "attention") == [1, 2]
    assert pick_within_budget(logits, costs, none, 120, 4, "attention") == [0, 1]
    # Per byte, logit - ln(bytes): a 2 - 4.50 = -2.50, b 1 - 3.40 = -2.40 first.
    assert pick_within_budget(logits, costs, none, 120, 4, "attention_per_byte") == [
        1,
        0,
    ]
    # Gain per byte, z**2 / bytes: a 400 / 90 = 4.4, b 100 / 30 = 3.3, d's
    # z <= 0 ranks last (least harm first), whatever the logits say.
    z = np.array([20.0, 10.0, -1.0, 0.0])
    assert pick_within_budget(logits, costs, none, 200, 4, "gain_per_byte", z) == [
        0,
        1,
        3,
        2,
    ]
    # Without a settled test (round 1), by logit.
    assert pick_within_budget(logits, costs, none, 60, 4, "gain_per_byte") == [1, 2]
    assert max_affordable(costs, 100) == 2  # 30 + 30 + 50 = 110 > 100
    assert max_affordable(costs, 110) == 3


def test_knapsack_hand_computed():
    # 12 bytes: 80 + 5 (0 and 3) beats 40 + 30 (1 and 2) ...
    assert knapsack([80.0, 40.0, 30.0, 5.0], [10, 6, 6, 2], 12) == [0, 3]
    # ... but 40 + 30 beats 60 alone, and never overfills by one byte.
    assert knapsack([60.0, 40.0, 30.0], [10, 6, 6], 12) == [1, 2]
    assert knapsack([60.0, 40.0, 30.0], [10, 6, 7], 12) == [0]
    # Related features (one a function of the other) are never held together.
    related = np.zeros([3, 3], bool)
    related[2, 1] = True
    assert knapsack([60.0, 40.0, 30.0], [10, 6, 6], 12, related) == [0]
    # Costs round up to capacity / KNAPSACK_UNITS: never over the capacity.
    costs = [700_001, 300_000, 400_000]
    chosen = knapsack([3.0, 2.0, 2.0], costs, 1_000_000)
    assert sum(costs[i] for i in chosen) <= 1_000_000 and chosen == [1, 2]


def test_per_byte_rule_follows_a_plan_clearly_worth_more_than_its_fill():
    logits = np.zeros(4)
    costs = np.array([100, 10, 10, 10])
    none = np.zeros(4, bool)
    # Per byte: 1, 2, 3 (30 bytes), then 0 no longer fits 110. The plan, 0
    # and 1 (z**2: 144 + 9), displaces 2 and 3 (18): gain 126 against 3 x
    # sqrt(578 + 2 x 38) = 76.7. Its members in per-byte order: 1, then 0.
    z = np.array([12.0, 3.0, 3.0, 3.0])
    unrelated = np.zeros([4, 4], bool)
    per_byte = ("attention_per_byte", z, unrelated)
    assert pick_within_budget(logits, costs, none, 110, 4, *per_byte) == [1, 0]
    # Without the copy check's matrix (width blocks, no held-out data) the
    # plan cannot tell shared information from new: per byte alone.
    assert pick_within_budget(logits, costs, none, 110, 4, *per_byte[:2]) == [1, 2, 3]
    # At z 6 the gain, 36 - 18, is inside 3 standard errors (44.7): per byte.
    z = np.array([6.0, 3.0, 3.0, 3.0])
    assert pick_within_budget(
        logits, costs, none, 110, 4, "attention_per_byte", z, unrelated
    ) == [1, 2, 3]
    # 1 is a function of 0 (its coarsening) and worth z 11. Unrelated, the
    # plan 0 + 1 (265) displaces 2 and 3 (18) and pays; related, the plan may
    # not hold both, and 0 + 2 (153) against the fill 1 + 2 + 3 (139) does not.
    per_byte_order = logits - np.log(costs)
    z = np.array([12.0, 11.0, 3.0, 3.0])
    assert planned_pick(per_byte_order, costs, z, np.arange(4), unrelated, 110) == 1
    related = unrelated.copy()
    related[1, 0] = True
    assert planned_pick(per_byte_order, costs, z, np.arange(4), related, 110) is None
    # No crowding: 0 (30 bytes, z 20) is left out of the fill 1 + 2 only for
    # its relation to 1, and fits the 80 bytes the fill leaves: per byte
    # decides (0 is still there next round), however much more the plan holds.
    small_costs = np.array([30, 10, 10])
    z = np.array([20.0, 10.0, 3.0])
    related_3 = np.zeros([3, 3], bool)
    related_3[1, 0] = True
    per_byte_3 = -np.log(small_costs)
    assert (
        planned_pick(per_byte_3, small_costs, z, np.arange(3), related_3, 100) is None
    )
    # Functions of a selected feature are no candidates: with 0 selected, 1
    # does not enter the plan, and 2 + 3 is what the fill takes anyway.
    taken = np.array([True, False, False, False])
    z = np.array([12.0, 11.0, 3.0, 3.0])
    assert pick_within_budget(
        np.array([0.0, -9.0, 0.0, 0.0]),
        costs,
        taken,
        20,
        2,
        "attention_per_byte",
        z,
        related,
    ) == [2, 3]
    # Without the score test (no evidence), per byte alone.
    assert pick_within_budget(logits, costs, none, 110, 4, "attention_per_byte") == [
        1,
        2,
        3,
    ]


def test_exactly_one_of_count_and_budget():
    with pytest.raises(ValueError, match="exactly one of `num_selected`.*None"):
        scalar_gate()
    with pytest.raises(ValueError, match="exactly one.*budget_bytes=10"):
        scalar_gate(num_selected=1, budget_bytes=10)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"budget_bytes": 0}, r"`budget_bytes` must be an int >= 1.*got 0"),
        ({"budget_bytes": 1.5}, r"got 1.5"),
        ({"budget_bytes": 10, "budget_rule": "knapsack"}, "'knapsack'"),
        ({"budget_bytes": 10, "feature_bytes": {"z": 1}}, "names 'z'"),
        ({"budget_bytes": 10, "feature_bytes": {"a": -1}}, r"\['a'\].*got -1"),
    ],
    ids=["zero", "float", "rule", "unknown-feature", "negative-cost"],
)
def test_bad_budget_arguments_name_the_value(options, match):
    with pytest.raises(ValueError, match=match):
        scalar_gate(**options)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"num_selected": 1, "entry_z": 3.0}, r"`entry_z`=3.0 .*needs `budget_bytes`"),
        ({"budget_bytes": 10, "entry_z": 0}, r"`entry_z` must be .*> 0.*got 0"),
        ({"budget_bytes": 10, "entry_z": True}, r"`entry_z` must be.*got True"),
        ({"budget_bytes": 10, "entry_z": float("inf")}, r"got inf"),
        ({"budget_bytes": 10, "entry_z": "always"}, r"None or 'auto', got 'always'"),
    ],
    ids=["count", "zero", "bool", "inf", "word"],
)
def test_bad_entry_z_names_the_value(options, match):
    with pytest.raises(ValueError, match=match):
        scalar_gate(**options)


def test_entry_z_auto_is_three_under_a_budget_and_off_by_count():
    budgeted = scalar_gate(budget_bytes=8)  # entry_z left at "auto"
    assert budgeted.entry_z == 3.0 and budgeted.options.tracks_evidence
    counted = scalar_gate(num_selected=1)
    assert counted.entry_z is None and not counted.options.tracks_evidence
    filling = scalar_gate(budget_bytes=8, entry_z=None)
    assert filling.entry_z is None and not filling.options.tracks_evidence
    # The other rules fill by default (stopping missed interaction pairs).
    assert scalar_gate(budget_bytes=8, budget_rule="attention").entry_z is None
    assert scalar_gate(budget_bytes=8, budget_rule="attention", entry_z=2).entry_z == 2
    # The config holds the resolved value, so a clone behaves alike.
    config = budgeted.get_config()
    assert config["entry_z"] == 3.0
    assert SequentialAttentionEmbedding.from_config(config).entry_z == 3.0
    assert scalar_gate(num_selected=1, entry_z="auto").get_config()["entry_z"] is None


@pytest.mark.parametrize("backend", ["numpy", "tensorflow"])
def test_residual_scores_are_least_squares_residuals(backend):
    ops, wrap = (NUMPY, np.asarray) if backend == "numpy" else (TF, tf.constant)
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(64, 3)).astype(np.float32)
    nuisance = rng.normal(size=(64, 5)).astype(np.float32)
    coef, *_ = np.linalg.lstsq(nuisance, scores, rcond=None)
    expected = scores - nuisance @ coef
    residual = np.asarray(residual_scores(ops, wrap(scores), wrap(nuisance)))
    np.testing.assert_allclose(residual, expected, atol=1e-3)
    # Their sums are the efficient score the partial signal learns from.
    np.testing.assert_allclose(
        residual.sum(axis=0),
        np.asarray(efficient_score(ops, wrap(scores), wrap(nuisance))),
        atol=1e-3,
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_entry_z_stops_a_loose_budget_before_the_noise(seed):
    """Everything fits; without a stop the greedy selection takes the noise too."""
    x, y = planted(seed, n=9000)  # 6,000 to train on, 3,000 held out
    train = tf.data.Dataset.from_tensor_slices(
        ({n: v[:6000] for n, v in x.items()}, y[:6000])
    ).batch(500)
    heldout = tf.data.Dataset.from_tensor_slices(
        ({n: v[6000:] for n, v in x.items()}, y[6000:])
    ).batch(500)
    picks = {}
    for entry_z in (None, 3.0):
        tf.keras.utils.set_random_seed(seed)
        model, gate = planted_model(
            budget_bytes=100_000, budget_rule="attention", entry_z=entry_z
        )
        assert gate.num_rounds == 4
        callback = SequentialAttentionCallback(
            warmup_epochs=1, finetune_epochs=1, selection_data=heldout, verbose=0
        )
        model.fit(train, epochs=1 + 4 + 1, callbacks=[callback], verbose=0)
        assert gate.selection_complete
        picks[entry_z] = gate.selected_features
    assert sorted(picks[None]) == sorted(TABLES)  # the budget filled
    stopped = picks[3.0]
    assert "noise" not in stopped and {"small", "other"} <= set(stopped), stopped
    assert len(stopped) < len(TABLES)


def test_budget_too_small_for_any_field_fails_at_construction():
    with pytest.raises(ValueError, match=r"cheapest feature, 'small' \(320 bytes\)"):
        planted_model(budget_bytes=319)


def test_budget_too_small_for_unknown_costs_fails_at_first_pick():
    gate = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Dense(4) for n in "ab"}, budget_bytes=10
    )
    assert gate.num_rounds == 2  # costs unknown: every feature may fit
    gate({n: tf.ones([1, 3]) for n in "ab"})  # 3 x 4 + 4 floats = 64 bytes each
    with pytest.raises(ValueError, match=r"fits no feature; the cheapest, 'a'.*64"):
        gate.commit_round()
    assert gate.selected_features == ()


def test_rounds_reserved_and_early_close():
    # Costs 1,000 / 320 / 320 / 320; 700 bytes hold at most two small tables.
    # entry_z=None: fill the budget (the default stops where nothing helps, and
    # these hand-set rounds collect no evidence).
    model, gate = planted_model(budget_bytes=700, selections_per_round=1, entry_z=None)
    assert gate.num_rounds == 2
    gate.attention_logits.assign([9.0, 1.0, 2.0, 0.0])
    assert gate.commit_round() == ["other"]  # "big" is unaffordable
    assert not gate.selection_complete
    gate.attention_logits.assign([9.0, 1.0, 0.0, 3.0])
    assert gate.commit_round() == ["noise"]
    assert gate.selection_complete  # 60 bytes left: nothing fits
    assert sum(gate.feature_costs()[n] for n in gate.selected_features) <= 700
    with pytest.raises(RuntimeError, match="already complete"):
        gate.commit_round()


def test_the_plan_gets_the_copy_check_only_once_one_ran(monkeypatch):
    """Before a check the layer hands the budget rule no dependence matrix
    (so no knapsack plan: it could not tell shared information from new),
    after one the matrix found."""
    from seqattn_tfrs.core import budget as budget_core

    handed = []
    original = budget_core.pick_within_budget

    def spy(*args):
        handed.append(args[7])
        return original(*args)

    monkeypatch.setattr(budget_core, "pick_within_budget", spy)
    model, gate = planted_model(budget_bytes=700, selections_per_round=1, entry_z=None)
    model.predict({n: np.zeros([2], np.int64) for n in TABLES}, verbose=0)
    gate.attention_logits.assign([9.0, 1.0, 2.0, 0.0])
    assert gate.commit_round() == ["other"]
    assert handed == [None]
    found = np.zeros([4, 4], bool)
    found[1, 0] = True  # "small" is a function of "big"
    gate.set_functional_dependence(found)
    assert gate.commit_round() == ["small"]  # no score test: per byte
    np.testing.assert_array_equal(handed[1], found)


def test_budget_layer_config_round_trips():
    gate = scalar_gate(budget_bytes=8, feature_bytes={"a": 4}, budget_rule="attention")
    config = gate.get_config()
    assert config["budget_bytes"] == 8 and config["num_selected"] is None
    clone = SequentialAttentionEmbedding.from_config(config)
    assert clone.get_config() == config


@pytest.mark.parametrize("rule", ["attention", "attention_per_byte"])
def test_planted_small_table_beats_unaffordable_big_one(rule):
    """The big id table is the most informative field but does not fit."""
    tf.keras.utils.set_random_seed(0)
    x, y = planted()
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(500)
    budget = 64_000 - 1  # big alone is 64,000 bytes; all three small ones fit
    model, gate = planted_model(budget_bytes=budget, budget_rule=rule)
    assert gate.num_rounds == 3
    callback = SequentialAttentionCallback(
        warmup_epochs=1, finetune_epochs=1, verbose=0
    )
    model.fit(train, epochs=1 + 3 + 1, callbacks=[callback], verbose=0)
    assert gate.selection_complete
    assert "big" not in gate.selected_features
    assert gate.selected_features[:2] in (("small", "other"), ("other", "small"))
    costs = gate.feature_costs()
    assert sum(costs[n] for n in gate.selected_features) <= budget
    before = model.predict(x, batch_size=1000, verbose=0)
    after = prune(model).predict(
        {n: v for n, v in x.items() if n in gate.selected_features},
        batch_size=1000,
        verbose=0,
    )
    np.testing.assert_allclose(after, before, atol=1e-6)


def test_budget_closes_early_and_the_callback_stops_picking():
    tf.keras.utils.set_random_seed(0)
    x, y = planted(n=1000)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(500)
    # 64,320 bytes: big + one small, or the three small ones (960 bytes).
    model, gate = planted_model(budget_bytes=64_320, entry_z=None)  # fill
    assert gate.num_rounds == 3
    callback = SequentialAttentionCallback(
        warmup_epochs=0, finetune_epochs=0, settle_fraction=0, verbose=0
    )
    gate.attention_logits.assign([5.0, 0.0, 0.0, 0.0])
    model.fit(train, epochs=3, callbacks=[callback], verbose=0)
    picked = [name for event in callback.events for name in event["features"]]
    assert picked == list(gate.selected_features)
    total = sum(gate.feature_costs()[n] for n in picked)
    assert total <= 64_320
    assert gate.selection_complete
    if "big" in picked:
        assert len(callback.events) == 2  # closed after round 2: nothing fits
    else:
        assert sorted(picked) == ["noise", "other", "small"]  # 960 bytes
    gates = gate.gate_values()
    assert all(gates[n] == 0.0 for n in TABLES if n not in picked)


def test_selection_json_shows_budget_and_per_field_columns_and_bytes(tmp_path):
    model, gate = planted_model(budget_bytes=700)
    model.predict({n: np.zeros([2], np.int64) for n in TABLES}, verbose=0)
    gate.attention_logits.assign([9.0, 1.0, 2.0, 0.0])
    gate.commit_round()
    gate.commit_round()
    x = {n: np.arange(3, dtype=np.int64) for n in TABLES}
    expected = model.predict(x, verbose=0)
    pruned = prune(model)
    pruned.save(str(tmp_path / "keras"))  # a pruned budget layer reloads
    reloaded = tf.keras.models.load_model(str(tmp_path / "keras"))
    kept = {n: x[n] for n in gate.selected_features}
    np.testing.assert_allclose(reloaded.predict(kept, verbose=0), expected, atol=1e-6)
    path = export_for_serving(pruned, tmp_path / "serving")
    with open(os.path.join(path, "assets.extra", "selection.json")) as handle:
        (record,) = json.load(handle)["gated_layers"]
    assert record["budget_bytes"] == 700 and record["num_selected"] is None
    assert record["fields"]["other"] == {
        "width": 8,
        "kept_columns": list(range(8)),
        "bytes": 320,
    }
    assert record["fields"]["big"] == {"width": 8, "kept_columns": [], "bytes": 0}
    assert sum(f["bytes"] for f in record["fields"].values()) <= 700


def test_job_config_asks_for_a_budget_instead_of_a_count(tmp_path):
    path = tmp_path / "job.json"
    path.write_text(
        json.dumps({"selection": {"num_selected": None, "budget_bytes": 150_000}})
    )
    config = load_config(path)
    assert config.selection.budget_bytes == 150_000
    assert config.selection.num_rounds is None
    assert config.selection.within_fit and config.selection.fit_epochs(3) == 15
    assert load_config(path).to_dict()["selection"]["budget_bytes"] == 150_000
    path.write_text(json.dumps({"selection": {"budget_bytes": 150_000}}))
    with pytest.raises(ConfigError, match="selection.num_selected.*set num_selected"):
        load_config(path)
    path.write_text(
        json.dumps({"selection": {"num_selected": None, "budget_bytes": 0}})
    )
    with pytest.raises(ConfigError, match="selection.budget_bytes"):
        load_config(path)
    path.write_text(json.dumps({"selection": {"entry_z": 3.0}}))
    with pytest.raises(ConfigError, match="selection.entry_z.*needs `budget_bytes`"):
        load_config(path)


def test_job_model_gate_gets_the_budget():
    config = override(
        JobConfig.default(),
        {
            "selection.num_selected": None,
            "selection.budget_bytes": 1_000,
            "selection.entry_z": 3,
        },
    )
    vocabularies = {f.name: ["x", "y"] for f in config.all_features}
    vocabularies.update(
        {f.name: [1, 2] for f in config.all_features if f.kind != "string"}
    )
    vocabularies["timestamp"] = [0.5]
    gate = build_model(config, vocabularies).gate
    assert gate.budget_bytes == 1_000 and gate.num_selected is None
    assert gate.entry_z == 3.0
    # 16 float32 columns: 192 bytes per 3-row table (2 values + 1 OOV row),
    # 128 for timestamp's 2 buckets; 1,000 bytes hold 128 + 4 x 192.
    assert gate.num_rounds == 5


def test_entry_z_rounds_pick_what_passes_and_are_counted():
    names = ("a", "b", "c", "d", "e", "f", "g")
    gate = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Reshape((1,)) for n in names},
        budget_bytes=100,
        feature_bytes={n: 1 for n in names},
        budget_rule="attention",
        entry_z=3.0,
        selections_per_round=2,
    )
    gate({n: tf.ones([1]) for n in names})

    assert gate.num_rounds == 4  # all 7 fit: ceil(7 / 2) rounds reserved

    def round_with(evidence):  # z = -sum / sqrt(squares), squares = 1
        gate.attention_logits.assign([7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0])
        gate.selection_state.score_sum.assign([-z for z in evidence])
        gate.selection_state.score_squares.assign([1.0] * 7)
        return gate.commit_round()

    assert round_with([0] * 7) == ["a", "b"]  # round 1 never stops
    assert round_with([0, 0, 2.0, 3.5, 0, 0, 0]) == ["d"]  # only d passes z > 3
    assert round_with([0, 0, 9.0, 0, 0, 0, 0]) == ["c"]
    # Four picked in three rounds: the count is the rounds, not picks / 2.
    assert int(gate.rounds_done.numpy()) == 3 and len(gate.gate_history()) == 3
    assert gate.entry_evidence() == {n: 0.0 for n in names}  # reset per round
    assert not gate.selection_complete
    assert round_with([0, 0, 0, 0, 2.9, 0, 0]) == []  # nothing passes: closed
    assert gate.selection_complete and gate.selected_features == ("a", "b", "d", "c")
    assert int(gate.rounds_done.numpy()) == 4


def test_entry_z_reads_the_score_test_less_the_inflation_of_reread_rows():
    """A settle's held-out score test reads ``selection_data`` again once its
    steps outnumber a pass: a row read ``c`` times adds about the same score
    ``c`` times, which spreads a noise feature's z by ``sqrt(sum c^2 / sum
    c)`` (generated budget problem 8: 13 batches over a pass of 4, x1.82,
    and a 1,130-value noise table's z of 4.0 passed ``entry_z=3``). The z
    that ``entry_z`` reads is divided by that factor; sums from training
    batches (no held-out batch counted) are not."""
    names = ("a", "b", "c", "d")
    gate = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Reshape((1,)) for n in names},
        budget_bytes=100,
        feature_bytes={n: 1 for n in names},
        entry_z=3.0,
    )
    gate({n: tf.ones([1]) for n in names})
    state = gate.selection_state
    gate.set_heldout_pass_batches(2)

    def round_with(evidence, batches):  # z = -sum / sqrt(squares), squares = 1
        state.score_sum.assign([-z for z in evidence])
        state.score_squares.assign([1.0] * 4)
        state.score_batches.assign(batches)
        return gate.commit_round()

    assert round_with([9.0, 0, 0, 0], 8) == ["a"]  # round 1 never stops
    assert float(state.score_batches.numpy()) == 0.0  # reset with the sums
    # 8 batches of a pass of 2: every row read 4 times, z halved: 7 -> 3.5.
    assert round_with([0, 5.0, 7.0, 0], 8) == ["c"]
    assert gate.entry_evidence()["b"] == 0.0  # (the raw z, for reports)
    # From training batches the z stands as it is: 5 passes.
    assert round_with([0, 5.0, 0, 0], 0) == ["b"]
    assert round_with([0, 0, 0, 5.0], 8) == []  # 2.5: nothing passes, closed
    assert gate.selection_complete and gate.selected_features == ("a", "c", "b")


def test_gain_per_byte_rounds_rank_by_the_settled_score_per_byte():
    names = ("a", "b", "c", "d")
    gate = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Reshape((1,)) for n in names},
        budget_bytes=1000,
        feature_bytes={"a": 100, "b": 400, "c": 10, "d": 10},
        budget_rule="gain_per_byte",
        entry_z=None,  # fill the budget: the least harm once nothing helps
    )
    gate({n: tf.ones([1]) for n in names})
    state = gate.selection_state
    assert state.score_sum is not None  # the rule keeps the test's sums

    def round_with(logits, evidence):  # z = -sum / sqrt(squares), squares = 1
        gate.attention_logits.assign(logits)
        state.score_sum.assign([-z for z in evidence])
        state.score_squares.assign([1.0] * 4)
        return gate.commit_round()

    # Without evidence (no held-out data), by logit.
    assert round_with([0.0, 2.0, 1.0, 0.5], [0.0, 0.0, 0.0, 0.0]) == ["b"]
    # Then z**2 / bytes: a 36 / 100 = 0.36 beats c 1 / 10 = 0.1, logits aside.
    assert round_with([0.0, 0.0, 5.0, 4.0], [6.0, 0.0, 1.0, 0.0]) == ["a"]
    # Nothing helps: the least harm (largest z) first.
    assert round_with([0.0, 0.0, 5.0, 0.0], [0.0, 0.0, -2.0, -0.5]) == ["d"]
    assert gate.selected_features == ("b", "a", "d")


def picks_within_2000_bytes(rows, x, y, seed, **gate_options):
    """The fields a 2,000-byte selection keeps: width-8 tables of ``rows``
    rows, a Dense(16) tower, batches of 200, the first 6,000 of 9,000 rows to
    train on, the rest as ``selection_data``."""

    def split(lo, hi):
        return tf.data.Dataset.from_tensor_slices(
            ({k: v[lo:hi] for k, v in x.items()}, y[lo:hi])
        ).batch(200)

    tf.keras.utils.set_random_seed(seed)
    inputs = {n: tf.keras.Input((), dtype=tf.int64, name=n) for n in rows}
    gate = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Embedding(r, 8) for n, r in rows.items()},
        budget_bytes=2000,
        **gate_options,
    )
    gated = gate(inputs)
    hidden = tf.keras.layers.Dense(16, "relu")(
        tf.keras.layers.Concatenate()([gated[n] for n in rows])
    )
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1, "sigmoid")(hidden))
    model.compile(tf.keras.optimizers.Adam(0.01), "binary_crossentropy")
    callback = SequentialAttentionCallback(
        warmup_epochs=1, finetune_epochs=0, selection_data=split(6000, 9000), verbose=0
    )
    model.fit(
        split(0, 6000), epochs=1 + gate.num_rounds, callbacks=[callback], verbose=0
    )
    return set(gate.selected_features)


def test_gain_per_byte_spends_the_budget_on_signal_not_on_small_tables():
    """A 1,600-byte informative table against two 320-byte noise tables:
    filling the budget, per byte takes the noise (small tables first) and the
    gain per byte does not; by default (``entry_z="auto"``, 3 under a budget)
    per byte stops before the noise."""
    rows = {"a": 50, "b": 10, "n1": 10, "n2": 10}
    rng = np.random.default_rng(0)
    x = {k: rng.integers(0, r, 9000) for k, r in rows.items()}
    logit = rng.normal(size=50)[x["a"]] + 1.5 * rng.normal(size=10)[x["b"]]
    y = (rng.random(9000) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    variants = {
        "fill_per_byte": ("attention_per_byte", None),
        "fill_gain_per_byte": ("gain_per_byte", None),
        "default": ("attention_per_byte", "auto"),
    }
    # a + b = 1,920 bytes; b + n1 + n2 = 960 leaves no room for a. Filling
    # (entry_z=None) collects no score test after the first round, so per
    # byte has no plan to follow there and takes the small tables.
    picks = {
        variant: picks_within_2000_bytes(
            rows, x, y, 0, budget_rule=rule, entry_z=entry_z
        )
        for variant, (rule, entry_z) in variants.items()
    }
    assert picks["fill_gain_per_byte"] == {"a", "b"}, picks
    assert picks["fill_per_byte"] == {"b", "n1", "n2"}, picks
    assert picks["default"] == {"a", "b"}, picks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_rule_keeps_room_for_the_table_worth_more_than_small_ones(seed):
    """A 1,600-byte table of strong signal against three 320-byte ones of weak
    signal, 2,000 bytes (a + b = 1,920; b + c + d = 960 leaves 1,040): the
    small ones first (per byte alone) leave no room for the large one; the
    knapsack plan keeps it and the best small one."""
    rows = {"a": 50, "b": 10, "c": 10, "d": 10}
    rng = np.random.default_rng(seed)
    x = {k: rng.integers(0, r, 9000) for k, r in rows.items()}
    logit = 1.5 * rng.normal(size=50)[x["a"]] + 1.0 * rng.normal(size=10)[x["b"]]
    logit += sum(0.3 * rng.normal(size=10)[x[k]] for k in "cd")
    y = (rng.random(9000) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    picks = picks_within_2000_bytes(rows, x, y, seed)
    assert picks == {"a", "b"}, picks


def test_score_test_counts_the_settles_second_half_on_centred_embeddings():
    """The sums behind `entry_z` and "gain_per_byte" skip the first half of
    each settle (the model still adapts to the last pick) and score centred
    embeddings: a feature whose embedding a bias could replace gets none. The
    held-out statistics of the selecting part (does any candidate still
    help?) count only the held-out batches of selecting steps."""
    x, y = planted(0, n=4000)
    x["const"] = np.zeros_like(x["small"])  # a one-row table: one embedding
    names = ("small", "other", "noise", "const")
    rows = {"small": 10, "other": 10, "noise": 10, "const": 1}
    train = tf.data.Dataset.from_tensor_slices(
        ({n: x[n][:3000] for n in names}, y[:3000])
    ).batch(100)
    heldout = tf.data.Dataset.from_tensor_slices(
        ({n: x[n][3000:] for n in names}, y[3000:])
    ).batch(100)
    tf.keras.utils.set_random_seed(0)
    inputs = {n: tf.keras.Input((), dtype=tf.int64, name=n) for n in names}
    gate = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Embedding(rows[n], 4) for n in names},
        budget_bytes=300,
        feature_bytes={n: 100 for n in names},
        budget_rule="gain_per_byte",
    )
    gated = gate(inputs)
    out = tf.keras.layers.Dense(1, "sigmoid")(
        tf.keras.layers.Concatenate()([gated[n] for n in names])
    )
    model = tf.keras.Model(inputs, out)
    model.compile(tf.keras.optimizers.Adam(0.01), "binary_crossentropy")
    records = []
    recorder = tf.keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: records.append(
            (
                int(gate.gate_mode.numpy()),
                gate.selection_state.score_squares.numpy(),
                gate.selection_state.heldout_squares.numpy(),
                gate.selection_state.score_projections.numpy(),
                float(gate.selection_state.score_batches.numpy()),
            )
        )
    )
    callback = SequentialAttentionCallback(
        warmup_epochs=1,
        steps_per_selection=20,
        finetune_epochs=0,
        selection_data=heldout,
        verbose=0,
    )
    assert gate.num_rounds == 3
    model.fit(train, epochs=3, callbacks=[callback, recorder], verbose=0)
    assert gate.selection_complete
    # Settles of 16 steps (0.8 x 20) in rounds 2 and 3.
    settle = [(mode, squares) for mode, squares, _, _, _ in records]
    assert check_settle_evidence(settle, 16, names.index("const")) == 2
    # The first pick's variance factors are kept in the same steps.
    projections = [(mode, sums) for mode, _, _, sums, _ in records]
    assert check_settle_evidence(projections, 16, names.index("const")) == 2
    # Each of those steps' held-out batches is counted (for the revisits'
    # discount of `entry_z`'s z: 8 batches of a pass of 10, none re-read).
    counts, settles = [], []
    for mode, _, _, _, batches in records:
        if mode == 2:
            counts.append(batches)
        elif counts:
            settles.append(counts)
            counts = []
        if mode == 1:  # kept while the round selects, until its commit
            assert batches == 8.0, batches
    assert settles == [[0.0] * 8 + [float(i) for i in range(1, 9)]] * 2, settles
    assert gate.selection_state.heldout_pass_batches == 10
    selecting = [(mode, squares) for mode, _, squares, _, _ in records]
    assert check_selecting_evidence(selecting, names.index("const")) == 3


def test_cli_flags_ask_for_a_budget_and_entry_z():
    from absl import flags
    from absl.testing import flagsaver

    from seqattn_tfrs.movielens import cli

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver(budget_bytes=50_000, entry_z=3.0):
        selection = cli.config_from_flags().selection
    assert (selection.num_selected, selection.budget_bytes) == (None, 50_000)
    assert selection.entry_z == 3.0
    # The flag is a string: a number of standard errors, or "auto" (3 under a
    # budget, the default).
    flags.FLAGS["entry_z"].parse("2.5")
    with flagsaver.flagsaver(budget_bytes=50_000):
        assert cli.config_from_flags().selection.entry_z == 2.5
    flags.FLAGS["entry_z"].parse("auto")
    with flagsaver.flagsaver(budget_bytes=50_000):
        assert cli.config_from_flags().selection.entry_z == "auto"
    with pytest.raises(flags.IllegalFlagValueError, match=r"\['auto'\], got 'x'"):
        flags.FLAGS["entry_z"].parse("x")
    flags.FLAGS["entry_z"].unparse()
    assert cli.config_from_flags().selection.entry_z == "auto"
    with flagsaver.flagsaver(entry_z=3.0), pytest.raises(ConfigError, match="entry_z"):
        cli.config_from_flags()
