"""Width selection: blocks of embedding columns, slicing, exact predictions."""

import inspect
import json

import numpy as np
import pytest
import tensorflow as tf
from helpers.processes import ROOT, run_python

from seqattn_tfrs import (
    SequentialAttentionCallback,
    SequentialAttentionEmbedding,
    SequentialAttentionWidth,
    export_for_serving,
    prune,
    size_report,
)
from seqattn_tfrs.movielens.config import FeatureConfig
from seqattn_tfrs.movielens.models import build_feature_layer

VOCAB = {"a": 50, "b": 20, "c": 400}
TABLE_ROWS = {"a": 50, "b": 21, "c": 400}  # b's lookup adds an OOV row
SERVE = ROOT / "tests" / "helpers" / "serve_exports.py"


def data(seed=0, n=2000):
    rng = np.random.default_rng(seed)
    x = {
        name: rng.integers(0, rows, n).astype(np.int64) for name, rows in VOCAB.items()
    }
    logit = 2.0 * rng.normal(size=50)[x["a"]] + 1.0 * rng.normal(size=20)[x["b"]]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return x, y


def width_model(**options):
    inputs = {n: tf.keras.Input((), dtype=tf.int64, name=n) for n in VOCAB}
    layer = SequentialAttentionWidth(
        {
            "a": tf.keras.layers.Embedding(50, 8),
            "b": tf.keras.Sequential(
                [
                    tf.keras.layers.IntegerLookup(
                        vocabulary=np.arange(20, dtype=np.int64), mask_token=None
                    ),
                    tf.keras.layers.Embedding(21, 8),
                ]
            ),
            "c": tf.keras.layers.Embedding(400, 8),
        },
        **options,
    )
    out = layer(inputs)
    hidden = tf.keras.layers.Dense(8, "relu")(
        tf.keras.layers.Concatenate()([out[n] for n in VOCAB])
    )
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1, "sigmoid")(hidden))
    model.compile(tf.keras.optimizers.Adam(0.02), "binary_crossentropy")
    return model, layer


def fit(model, rounds, epochs_per_round=1, selection_data=None):
    x, y = data()
    callback = SequentialAttentionCallback(
        warmup_epochs=1,
        epochs_per_selection=epochs_per_round,
        finetune_epochs=1,
        selection_data=selection_data,
        verbose=0,
    )
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(250)
    model.fit(
        train, epochs=2 + rounds * epochs_per_round, callbacks=[callback], verbose=0
    )
    return x


def test_blocks_and_gates_hand_checked():
    model, layer = width_model(block_size=4, target_width=8)
    assert layer.blocks.feature_names == ("a/0", "a/1", "b/0", "b/1", "c/0", "c/1")
    # A block of a 50-row float32 table costs 50 x 4 x 4 bytes.
    assert layer.blocks.feature_costs()["a/0"] == 800
    layer.blocks.attention_logits.assign([0.0, 3.0, 0.0, 0.0, 0.0, 0.0])
    layer.blocks.commit_round()
    layer.blocks.attention_logits.assign([0.0, 0.0, 2.0, 0.0, 0.0, 0.0])
    layer.blocks.commit_round()
    assert layer.selection_complete
    assert layer.kept_columns() == {"a": [4, 5, 6, 7], "b": [0, 1, 2, 3], "c": []}
    x = {n: tf.constant([1, 2], tf.int64) for n in VOCAB}
    out = layer(x)
    np.testing.assert_array_equal(out["a"][:, :4].numpy(), np.zeros([2, 4]))
    np.testing.assert_array_equal(out["c"].numpy(), np.zeros([2, 8]))


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"block_size": 3, "target_width": 6}, ValueError, "8 columns, not a multiple"),
        ({"block_size": 4, "target_width": 6}, ValueError, "multiple of .* got 6"),
        ({"block_size": 4}, ValueError, "exactly one of `target_width`"),
        ({"block_size": 0, "target_width": 4}, ValueError, "got 0"),
    ],
    ids=["block-not-dividing", "width-not-multiple", "neither", "block-zero"],
)
def test_bad_width_arguments_name_the_value(options, error, match):
    with pytest.raises(error, match=match):
        width_model(**options)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (
            {"target_width": 8, "selections_per_round": 3},
            r"more than the 2 column blocks \(`target_width` // `block_size`\)",
        ),
        (
            {"target_width": 8, "entry_z": 3.0},
            r"a count selection always picks `target_width` // `block_size` column",
        ),
        (
            {"budget_bytes": 10},
            # b's table: 21 rows x a block of 4 float32 columns = 336 bytes.
            r"smaller than the cheapest column block, 'b/0' \(336 bytes\); "
            "expected a budget that fits at least one column block",
        ),
    ],
    ids=["round_larger_than_blocks", "entry_z_without_budget", "budget_too_small"],
)
def test_errors_of_the_block_gate_speak_of_column_blocks(options, match):
    with pytest.raises(ValueError, match=match) as info:
        width_model(block_size=4, **options)
    assert "num_selected" not in str(info.value)
    assert "feature" not in str(info.value)


def test_table_must_end_in_an_embedding():
    with pytest.raises(TypeError, match=r"embeddings\['a'\].*Dense"):
        SequentialAttentionWidth(
            {"a": tf.keras.layers.Dense(4)}, block_size=2, target_width=2
        )


def test_width_selection_prunes_exactly_and_export_shrinks(tmp_path):
    tf.keras.utils.set_random_seed(0)
    model, layer = width_model(block_size=4, target_width=8, selections_per_round=1)
    x = fit(model, rounds=2)
    assert layer.selection_complete
    kept = layer.kept_columns()
    assert sum(len(cols) for cols in kept.values()) == 8
    assert not kept["c"], kept  # c carries no signal
    # The fields with a kept block, in the order of their first block's pick.
    firsts = [block.split("/")[0] for block in layer.blocks.selected_features]
    assert layer.selected_features == tuple(dict.fromkeys(firsts))
    assert sorted(layer.selected_features) == ["a", "b"]
    # Tables, not blocks: the width layer's inner gate holds no table.
    assert size_report(model)["embedding_tables"]["before"]["tables"] == 3
    before = model.predict(x, batch_size=1000, verbose=0)
    full_bytes = sum(v.numpy().nbytes for v in model.variables)
    pruned = prune(model)
    assert layer.is_pruned and layer.kept_columns() == kept
    assert sorted(layer.selected_features) == ["a", "b"]
    # c lost its only table, so the pruned functional model no longer takes it.
    assert sorted(pruned.input) == ["a", "b"]
    served_x = {n: x[n] for n in ("a", "b")}
    np.testing.assert_allclose(
        pruned.predict(served_x, batch_size=1000, verbose=0), before, atol=1e-6
    )
    expected_tables = sorted([TABLE_ROWS[n], len(c)] for n, c in kept.items() if c)
    shapes = [v.shape.as_list() for v in pruned.variables if "embeddings" in v.name]
    assert sorted(shapes) == expected_tables
    assert sum(v.numpy().nbytes for v in pruned.variables) < full_bytes
    # HDF5 keys weights by name: the sliced tables' names are distinct.
    pruned.save_weights(str(tmp_path / "pruned.h5"))
    for variable in pruned.variables:
        variable.assign(tf.zeros_like(variable))
    pruned.load_weights(str(tmp_path / "pruned.h5"))
    np.testing.assert_allclose(
        pruned.predict(served_x, batch_size=1000, verbose=0), before, atol=1e-6
    )
    path = export_for_serving(pruned, tmp_path / "serving")
    # Served by a process that cannot import seqattn_tfrs.
    rows = {n: v[:5].tolist() for n, v in x.items()}
    out = run_python([SERVE, json.dumps(rows), path], timeout=120)
    served = json.loads(out.strip().splitlines()[-1])[path]
    assert served["inputs"] == ["a", "b"]
    np.testing.assert_allclose(served["scores"], before[:5], atol=1e-6)
    tables = sorted(s for name, s in served["variables"] if "embeddings" in name)
    assert tables == expected_tables
    record = served["selection"]
    (columns,) = record["width_layers"].values()
    for name, rows in TABLE_ROWS.items():
        field = columns["fields"][name]
        assert field["kept_columns"] == kept[name]
        assert field["bytes"] == rows * len(kept[name]) * 4
        assert field["bytes_before"] == rows * 8 * 4
    assert record["embedding_tables"]["after"]["bytes"] == 4 * sum(
        rows * len(kept[n]) for n, rows in TABLE_ROWS.items()
    )
    assert size_report(pruned)["width_layers"] == record["width_layers"]
    assert record["embedding_tables"]["after"]["tables"] == 2
    assert record["gated_layers"] == []  # its blocks are under width_layers


def test_held_out_data_is_checked_against_the_raw_features():
    # The inner block gate reads column blocks ("a/0", ...); the held-out data
    # must hold the width layer's raw features, which it does.
    tf.keras.utils.set_random_seed(0)
    model, layer = width_model(block_size=4, target_width=8)
    x, y = data(seed=1, n=500)
    held_out = tf.data.Dataset.from_tensor_slices((x, y)).batch(250)
    fit(model, rounds=2, selection_data=held_out)
    assert layer.selection_complete
    with pytest.raises(ValueError, match=r"lacks feature\(s\) \['c'\]"):
        fit(
            width_model(block_size=4, target_width=8)[0],
            rounds=2,
            selection_data=held_out.map(
                lambda f, label: ({"a": f["a"], "b": f["b"]}, label)
            ),
        )


def test_byte_budget_over_blocks_is_never_exceeded():
    tf.keras.utils.set_random_seed(0)
    # Blocks cost a: 800, b: 336, c: 6,400 bytes; 2,000 bytes hold at most 4.
    model, layer = width_model(block_size=4, budget_bytes=2000, selections_per_round=2)
    assert layer.blocks.num_rounds == 2
    fit(model, rounds=2)
    assert layer.selection_complete
    costs = layer.blocks.feature_costs()
    assert sum(costs[b] for b in layer.blocks.selected_features) <= 2000
    assert not layer.kept_columns()["c"]


def test_config_covers_arguments_and_round_trips_pruned(tmp_path):
    fresh = SequentialAttentionWidth(
        {"a": tf.keras.layers.Embedding(5, 4)}, block_size=2, budget_bytes=100
    )
    config = fresh.get_config()
    params = set(inspect.signature(SequentialAttentionWidth.__init__).parameters)
    assert params - {"self", "kwargs"} <= set(config)
    assert SequentialAttentionWidth.from_config(config).get_config() == config
    model, layer = width_model(block_size=4, target_width=4)
    layer.blocks.attention_logits.assign([0.0, 0.0, 0.0, 5.0, 0.0, 0.0])
    layer.blocks.commit_round()
    x = {n: tf.constant([1, 2, 3], tf.int64) for n in VOCAB}
    expected = model(x).numpy()
    pruned = prune(model)
    pruned.save(str(tmp_path / "m"))
    loaded = tf.keras.models.load_model(str(tmp_path / "m"))
    assert list(loaded.input) == ["b"]
    np.testing.assert_allclose(loaded({"b": x["b"]}).numpy(), expected, atol=1e-6)
    clone = SequentialAttentionWidth.from_config(layer.get_config())
    assert clone.kept_columns() == {"a": [], "b": [4, 5, 6, 7], "c": []}


def test_pooled_multi_valent_table_is_sliced_before_its_pooling():
    genres = build_feature_layer(FeatureConfig("genres", "multi_int"), [1, 2, 3])
    layer = SequentialAttentionWidth(
        {"genres": genres, "a": tf.keras.layers.Embedding(5, 4)},
        block_size=2,
        target_width=4,
    )
    model = tf.keras.Sequential([layer])
    x = {"genres": tf.constant([[1, 3], [2, -1]], tf.int64), "a": tf.constant([1, 4])}
    layer(x)
    layer.blocks.attention_logits.assign([0.0] * 8 + [1.0, 1.0])
    layer.blocks.commit_round()
    layer.blocks.attention_logits.assign([0.0] * 10)
    layer.blocks.commit_round()
    expected = {n: v.numpy() for n, v in layer(x).items()}
    prune(model)
    for name, value in layer(x).items():
        np.testing.assert_allclose(value.numpy(), expected[name], atol=1e-6)
    assert [v.shape.as_list() for v in layer.embedding_layers["genres"].weights] == [
        [4, len(layer.kept_columns()["genres"])]
    ]


def test_functional_prune_refuses_a_dropped_field_that_feeds_another_layer():
    inputs = {n: tf.keras.Input((), dtype=tf.int64, name=n) for n in VOCAB}
    layer = SequentialAttentionWidth(
        {n: tf.keras.layers.Embedding(rows, 4) for n, rows in VOCAB.items()},
        block_size=4,
        target_width=4,
    )
    out = layer(inputs)
    c_again = tf.keras.layers.Embedding(400, 2, name="c_again")(inputs["c"])
    model = tf.keras.Model(
        inputs, tf.keras.layers.Concatenate()([*out.values(), c_again])
    )
    x = {n: tf.constant([1, 2], tf.int64) for n in VOCAB}
    model(x)
    layer.blocks.attention_logits.assign([5.0, 0.0, 0.0])  # keeps a only
    layer.blocks.commit_round()
    assert layer.kept_columns() == {"a": [0, 1, 2, 3], "b": [], "c": []}
    with pytest.raises(ValueError, match=r"'c'.*also feeds \['c_again'\]"):
        prune(model)
    assert not layer.is_pruned and sorted(layer.embedding_layers) == ["a", "b", "c"]


def test_width_selection_under_mixed_precision_serves_float32(tmp_path, mixed_policy):
    tf.keras.utils.set_random_seed(0)
    model, layer = width_model(block_size=4, target_width=8, selections_per_round=1)
    x = fit(model, rounds=2)
    kept = layer.kept_columns()
    assert sum(len(cols) for cols in kept.values()) == 8 and not kept["c"], kept
    for variable in layer.blocks.weights:  # the selection state and its hook
        assert variable.dtype in (tf.float32, tf.int32), variable
        assert "AutoCast" not in type(variable).__name__, variable
    gated = layer({n: tf.constant(v[:4]) for n, v in x.items()})
    assert {v.dtype.name for v in gated.values()} == {mixed_policy.compute_dtype}
    before = model.predict(x, batch_size=1000, verbose=0)
    pruned = prune(model)
    path = export_for_serving(pruned, tmp_path)
    serving = tf.saved_model.load(path).signatures["serving_default"]
    scores = serving(**{n: tf.constant(x[n][:50]) for n in ("a", "b")})["scores"]
    assert scores.dtype == tf.float32
    np.testing.assert_allclose(scores.numpy(), before[:50], rtol=2e-2, atol=1e-2)


LOAD_AFTER_IMPORT = """
import sys

import tensorflow as tf

import seqattn_tfrs  # nothing else: the import registers the layers

for path in sys.argv[1:]:
    model = tf.keras.models.load_model(path)
    print(sorted(type(layer).__name__ for layer in model.layers))
"""


def test_import_seqattn_tfrs_is_enough_to_load_saved_models(tmp_path):
    def model_of(layer):
        inputs = {n: tf.keras.Input((), dtype=tf.int64, name=n) for n in VOCAB}
        out = layer(inputs)
        joined = tf.keras.layers.Concatenate()([out[n] for n in VOCAB])
        return tf.keras.Model(inputs, joined)

    def tables():
        return {n: tf.keras.layers.Embedding(rows, 4) for n, rows in VOCAB.items()}

    width = model_of(SequentialAttentionWidth(tables(), block_size=2, target_width=4))
    count = model_of(SequentialAttentionEmbedding(tables(), num_selected=2))
    paths = []
    for name, model in (("width", width), ("count", count)):
        for suffix in (".keras", ".h5", ""):  # "": a SavedModel directory
            paths.append(str(tmp_path / f"{name}{suffix}"))
            model.save(paths[-1])
    # A fresh process (TF_USE_LEGACY_KERAS=1, as a TFRS process has it).
    lines = run_python(["-c", LOAD_AFTER_IMPORT, *paths], timeout=300).splitlines()
    classes = [line for line in lines if line.startswith("[")]
    assert len(classes) == 6, lines
    for path, line in zip(paths, classes):
        expected = "count" in path and "SequentialAttentionEmbedding"
        assert (expected or "SequentialAttentionWidth") in line, (path, line)
