"""Tests for seqattn_tfrs.pruning and seqattn_tfrs.export."""

from __future__ import annotations

import gc
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import weakref

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs
from helpers.processes import ENV, kill_when_ready, run_python
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

import seqattn_tfrs
from seqattn_tfrs import SequentialAttentionEmbedding
from seqattn_tfrs.export import LOCK_FILE, export_for_serving, size_report
from seqattn_tfrs.export import savedmodel as export_savedmodel
from seqattn_tfrs.pruning import prune
from seqattn_tfrs.sizes import variable_stats

LABEL = "user_rating"
USERS = [f"usr-{i:04d}" for i in range(6)]
MOVIES = [f"mov-{i:04d}" for i in range(8)]
ZIPS = [10001, 10002, 10003, 94105]
WIDTHS = {"user_id": 4, "movie_id": 6, "user_zip": 3, "user_age": 1}
KINDS = {
    "user_id": tf.string,
    "movie_id": tf.string,
    "user_zip": tf.int64,
    "user_age": tf.float32,
}


# --------------------------------------------------------------- helpers
def string_table(vocabulary, dim):
    return tf.keras.Sequential(
        [
            tf.keras.layers.StringLookup(vocabulary=vocabulary, mask_token=None),
            tf.keras.layers.Embedding(len(vocabulary) + 1, dim),
        ]
    )


def make_tables():
    return {
        "user_id": string_table(USERS, WIDTHS["user_id"]),
        "movie_id": string_table(MOVIES, WIDTHS["movie_id"]),
        "user_zip": tf.keras.Sequential(
            [
                tf.keras.layers.IntegerLookup(vocabulary=ZIPS, mask_token=None),
                tf.keras.layers.Embedding(len(ZIPS) + 1, WIDTHS["user_zip"]),
            ]
        ),
        "user_age": tf.keras.layers.Reshape((1,)),
    }


def make_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    movie = rng.integers(0, len(MOVIES), n)
    age = rng.uniform(0, 1, n).astype(np.float32)
    return {
        "user_id": np.array(USERS + ["usr-unknown"])[rng.integers(0, 7, n)],
        "movie_id": np.array(MOVIES)[movie],
        "user_zip": np.array(ZIPS, np.int64)[rng.integers(0, 4, n)],
        "user_age": age,
        LABEL: (movie % 3 + 2 * age).astype(np.float32),
    }


def features_only(data, names=None):
    names = [n for n in data if n != LABEL] if names is None else names
    return {name: tf.constant(data[name]) for name in names}


class DCNModel(tfrs.models.Model):
    """The DCN tutorial's shape, with the gate over the per-feature layers."""

    def __init__(self, tables, num_selected, hold_tables=False):
        super().__init__()
        self.gate = SequentialAttentionEmbedding(tables, num_selected)
        if hold_tables:
            self.tables = tables  # the mistake prune must refuse
        self.cross = tfrs.layers.dcn.Cross()
        self.hidden = tf.keras.layers.Dense(8, activation="relu")
        self.score = tf.keras.layers.Dense(1)
        self.task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(),
            metrics=[tf.keras.metrics.RootMeanSquaredError()],
        )

    def call(self, features):
        gated = self.gate(features)
        x = tf.concat([gated[name] for name in self.gate.feature_names], axis=1)
        return self.score(self.hidden(self.cross(x)))

    def compute_loss(self, features, training=False):
        labels = features.pop(LABEL)
        return self.task(labels=labels, predictions=self(features))


def force_selection(gate, names):
    """Commits ``names`` in order, one per round, without training."""
    gate.build(None)
    for name in names:
        logits = np.zeros(len(gate.feature_names), np.float32)
        logits[gate.feature_names.index(name)] = 5.0
        gate.attention_logits.assign(logits)
        gate.commit_round()
    assert gate.selection_complete


def variable_refs(variables):
    return {v.ref() for v in variables}


def functional_model(extra_age_use=False):
    inputs = {
        name: tf.keras.Input(shape=(), dtype=dtype, name=name)
        for name, dtype in KINDS.items()
    }
    gate = SequentialAttentionEmbedding(make_tables(), num_selected=2)
    gated = gate(inputs)
    x = tf.concat([gated[name] for name in gate.feature_names], axis=1)
    if extra_age_use:
        age = tf.keras.layers.Reshape((1,), name="age_again")(inputs["user_age"])
        x = tf.keras.layers.Concatenate()([x, age])
    outputs = tf.keras.layers.Dense(1, name="score")(x)
    return tf.keras.Model(inputs, outputs, name="functional_ranker"), gate


def pruned_functional(selection=("movie_id", "user_age")):
    model, gate = functional_model()
    model(features_only(make_data(4)))
    force_selection(gate, selection)
    return prune(model), gate


def example_bytes(row):
    feature = {}
    for name, value in row.items():
        if isinstance(value, bytes | str):
            raw = value.encode() if isinstance(value, str) else value
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[raw]))
        elif isinstance(value, int | np.integer):
            feature[name] = tf.train.Feature(
                int64_list=tf.train.Int64List(value=[int(value)])
            )
        else:
            values = np.atleast_1d(value).astype(np.float32).tolist()
            feature[name] = tf.train.Feature(
                float_list=tf.train.FloatList(value=values)
            )
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString()


def rows(data, names, n):
    return [
        {
            name: data[name][i].item() if data[name].ndim == 1 else data[name][i]
            for name in names
        }
        for i in range(n)
    ]


def listing(path):
    """The base path's entries, less the lock file every export leaves."""
    return sorted(p.name for p in pathlib.Path(path).iterdir() if p.name != LOCK_FILE)


def serving_devices(export_dir):
    """Devices of the graph functions, except TF's own checkpoint save/restore
    (which TensorFlow always pins to the host CPU)."""
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as handle:
        proto.ParseFromString(handle.read())
    functions = [
        f
        for f in proto.meta_graphs[0].graph_def.library.function
        if not re.search(r"_traced_(save|restore)_", f.signature.name)
    ]
    assert len(functions) > 2
    return {node.device for f in functions for node in f.node_def}


# ----------------------------------------------------------------- prune
def test_public_functions_are_importable():
    assert callable(prune) and callable(export_for_serving) and callable(size_report)


def test_prune_subclassed_model_in_place_keeps_predictions():
    tables = make_tables()
    model = DCNModel(tables, num_selected=2)
    data = make_data(16)
    model(features_only(data))
    force_selection(model.gate, ["user_age", "movie_id"])
    before = model(features_only(data)).numpy()
    model.compile(optimizer="adam")
    model.predict(features_only(data), verbose=0)  # caches a predict function
    dropped = variable_refs(tables["user_id"].variables + tables["user_zip"].variables)
    assert dropped <= variable_refs(model.variables)

    assert prune(model) is model

    gate = model.gate
    assert list(gate.embedding_layers) == ["user_age", "movie_id"]  # pick order
    assert gate.pruned_feature_widths == {"user_id": 4, "user_zip": 3}
    assert not dropped & variable_refs(model.variables)
    assert model.predict_function is None
    np.testing.assert_allclose(model(features_only(data)).numpy(), before, atol=1e-6)
    kept_only = features_only(data, ["movie_id", "user_age"])
    np.testing.assert_allclose(model(kept_only).numpy(), before, atol=1e-6)
    np.testing.assert_allclose(model.predict(kept_only, verbose=0), before, atol=1e-6)
    assert prune(model) is model  # pruning again is a no-op
    assert gate.pruned_feature_widths == {"user_id": 4, "user_zip": 3}


def test_prune_incomplete_selection_raises_and_changes_nothing():
    model = DCNModel(make_tables(), num_selected=3)
    model(features_only(make_data(4)))
    model.gate.attention_logits.assign([0.0, 3.0, 0.0, 0.0])
    model.gate.commit_round()
    tables = dict(model.gate._tables)
    refs = [v.ref() for v in model.variables]
    with pytest.raises(ValueError, match=r"1 of 3 features selected: \['movie_id'\]"):
        prune(model)
    assert dict(model.gate._tables) == tables
    assert not model.gate.is_pruned
    assert [v.ref() for v in model.variables] == refs


def test_prune_refuses_when_model_also_holds_the_tables_and_restores():
    model = DCNModel(make_tables(), num_selected=2, hold_tables=True)
    data = features_only(make_data(8))
    model(data)
    force_selection(model.gate, ["movie_id", "user_age"])
    before = model(data).numpy()
    gate = model.gate
    tables = list(gate._tables.items())
    tracked = list(gate._self_tracked_trackables)
    refs = [v.ref() for v in model.variables]
    gate_refs = [v.ref() for v in gate.variables]
    with pytest.raises(ValueError, match="'user_id'.*still references its table"):
        prune(model)
    assert list(gate._tables.items()) == tables
    assert all(a is b for a, b in zip(gate._self_tracked_trackables, tracked))
    assert not gate.is_pruned and gate.pruned_feature_widths == {}
    assert [v.ref() for v in model.variables] == refs
    assert [v.ref() for v in gate.variables] == gate_refs
    np.testing.assert_array_equal(model(data).numpy(), before)


def test_prune_rejects_models_without_gates_and_non_models():
    with pytest.raises(ValueError, match="holds no SequentialAttentionEmbedding"):
        prune(tf.keras.Sequential([tf.keras.layers.Dense(1)]))
    with pytest.raises(TypeError, match="must be a tf.keras.Model, got dict"):
        prune({})


def test_embedding_width_of_never_called_layers():
    gate = SequentialAttentionEmbedding(
        {
            "kept": tf.keras.layers.Embedding(10, 2),
            "table": tf.keras.layers.Embedding(10, 5),
            "lookup": tf.keras.Sequential(
                [
                    tf.keras.layers.IntegerLookup(vocabulary=[1, 2], mask_token=None),
                    tf.keras.layers.Embedding(3, 7),
                ]
            ),
        },
        num_selected=1,
    )
    holder = tf.keras.Sequential([gate])  # a model that was never called
    force_selection(gate, ["kept"])
    prune(holder)
    assert gate.pruned_feature_widths == {"table": 5, "lookup": 7}

    numeric = SequentialAttentionEmbedding(
        {"a": tf.keras.layers.Reshape((1,)), "b": tf.keras.layers.Reshape((1,))},
        num_selected=1,
    )
    holder = tf.keras.Sequential([numeric])
    force_selection(numeric, ["a"])
    with pytest.raises(ValueError, match="'b'.*was never called.*Call the model"):
        prune(holder)
    assert not numeric.is_pruned


def test_prune_functional_model_returns_model_without_dropped_inputs(tmp_path):
    model, gate = functional_model()
    data = make_data(16)
    model(features_only(data))
    force_selection(gate, ["movie_id", "user_age"])
    before = model(features_only(data)).numpy()
    dropped = variable_refs(
        gate._tables["user_id"].variables + gate._tables["user_zip"].variables
    )

    pruned = prune(model)

    assert pruned is not model
    assert sorted(pruned.input) == ["movie_id", "user_age"]
    assert not dropped & variable_refs(pruned.variables)
    kept_only = features_only(data, ["movie_id", "user_age"])
    np.testing.assert_allclose(pruned(kept_only).numpy(), before, atol=1e-6)
    np.testing.assert_allclose(pruned.predict(kept_only, verbose=0), before, atol=1e-6)
    # The original graph still runs (its gate ignores the dropped inputs).
    np.testing.assert_allclose(model(features_only(data)).numpy(), before, atol=1e-6)
    with pytest.raises(ValueError, match="export the model returned by"):
        export_for_serving(model, tmp_path / "models")
    assert listing(tmp_path) == []


def test_prune_functional_refuses_dropped_input_used_elsewhere():
    model, gate = functional_model(extra_age_use=True)
    model(features_only(make_data(4)))
    force_selection(gate, ["movie_id", "user_id"])
    with pytest.raises(ValueError, match=r"'user_age'.*also feeds \['age_again'\]"):
        prune(model)
    assert not gate.is_pruned and len(gate.embedding_layers) == 4


class Wrapper(tf.keras.layers.Layer):
    def __init__(self, gate, **kwargs):
        super().__init__(**kwargs)
        self.gate = gate

    def call(self, features):
        gated = self.gate(features)
        return tf.concat([gated[name] for name in self.gate.feature_names], axis=1)


def test_prune_functional_refuses_gate_nested_in_another_layer():
    inputs = {
        name: tf.keras.Input(shape=(), dtype=dtype, name=name)
        for name, dtype in KINDS.items()
    }
    gate = SequentialAttentionEmbedding(make_tables(), num_selected=2)
    outputs = tf.keras.layers.Dense(1)(Wrapper(gate, name="wrapper")(inputs))
    model = tf.keras.Model(inputs, outputs)
    force_selection(gate, ["movie_id", "user_age"])
    with pytest.raises(ValueError, match=r"input 'user_id'.*feeds \['wrapper'\]"):
        prune(model)
    assert not gate.is_pruned


def test_prune_and_export_experimental_ranking(tmp_path):
    tables = {
        name: string_table(vocab, 4)
        for name, vocab in [("user_id", USERS), ("movie_id", MOVIES)]
    }
    tables["user_zip"] = tf.keras.Sequential(
        [
            tf.keras.layers.IntegerLookup(vocabulary=ZIPS, mask_token=None),
            tf.keras.layers.Embedding(len(ZIPS) + 1, 4),
        ]
    )
    gate = SequentialAttentionEmbedding(tables, num_selected=2)
    model = tfrs.experimental.models.Ranking(
        embedding_layer=gate,
        bottom_stack=tf.keras.layers.Dense(4),
        top_stack=tf.keras.layers.Dense(1),
    )
    data = make_data(16)
    dense = np.random.default_rng(1).normal(size=(16, 2)).astype(np.float32)
    features = {
        "dense_features": tf.constant(dense),
        "sparse_features": features_only(data, ["user_id", "movie_id", "user_zip"]),
    }
    model(features)
    force_selection(gate, ["user_zip", "movie_id"])
    before = model(features).numpy()
    assert prune(model) is model
    features["sparse_features"].pop("user_id")
    np.testing.assert_allclose(model(features).numpy(), before, atol=1e-6)

    path = export_for_serving(model, tmp_path / "ranking", output_name="ctr")
    loaded = tf.saved_model.load(path)
    serving = loaded.signatures["serving_default"]
    assert sorted(serving.structured_input_signature[1]) == [
        "dense_features",
        "movie_id",
        "user_zip",
    ]
    raw = {"dense_features": features["dense_features"], **features["sparse_features"]}
    np.testing.assert_allclose(serving(**raw)["ctr"].numpy(), before, atol=1e-6)
    serialized = [
        example_bytes(
            {
                "dense_features": dense[i],
                "movie_id": data["movie_id"][i],
                "user_zip": data["user_zip"][i],
            }
        )
        for i in range(16)
    ]
    via_examples = loaded.signatures["serve_examples"](inputs=tf.constant(serialized))
    np.testing.assert_allclose(via_examples["ctr"].numpy(), before, atol=1e-6)


# ------------------------------------------------ fit, export, serve alone
CHILD = r"""
import json, sys

class BlockSeqattn:
    def find_spec(self, name, path=None, target=None):
        if name == "seqattn_tfrs" or name.startswith("seqattn_tfrs."):
            raise ImportError("seqattn_tfrs is blocked in this process")
        return None

sys.meta_path.insert(0, BlockSeqattn())
try:
    import seqattn_tfrs  # noqa: F401
    blocked = False
except ImportError:
    blocked = True

import tensorflow as tf

path, payload = sys.argv[1], json.loads(sys.argv[2])
loaded = tf.saved_model.load(path)
serving = loaded.signatures["serving_default"]
specs = serving.structured_input_signature[1]
raw = {name: tf.constant(payload["raw"][name], specs[name].dtype) for name in specs}
examples = [bytes.fromhex(e) for e in payload["examples"]]
by_examples = loaded.signatures["serve_examples"](inputs=tf.constant(examples))
print(json.dumps({
    "blocked": blocked,
    "imported": any(m.startswith("seqattn_tfrs") for m in sys.modules),
    "inputs": sorted(specs),
    "serving_default": serving(**raw)["scores"].numpy().tolist(),
    "serve_examples": by_examples["scores"].numpy().tolist(),
}))
"""


def saved_model_cli():
    found = shutil.which("saved_model_cli")
    return found or os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


def test_fit_prune_export_serves_without_the_package(tmp_path):
    tf.keras.utils.set_random_seed(0)
    tables = make_tables()
    model = DCNModel(tables, num_selected=2)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    train = tf.data.Dataset.from_tensor_slices(make_data(128)).batch(32)
    callback = seqattn_tfrs.SequentialAttentionCallback(
        warmup_epochs=1, finetune_epochs=1, settle_fraction=0, verbose=0
    )
    model.fit(train, epochs=4, callbacks=[callback], verbose=0)
    gate = model.gate
    assert gate.selection_complete
    kept = list(gate.selected_features)
    dropped = [name for name in gate.feature_names if name not in kept]
    data = make_data(12, seed=3)
    before = model(features_only(data)).numpy()
    history = gate.gate_history()

    prune(model)
    np.testing.assert_allclose(
        model(features_only(data, kept)).numpy(), before, atol=1e-6
    )
    warmup = {name: data[name][:5].tolist() for name in kept}
    path = export_for_serving(model, tmp_path / "ranker", warmup_examples=warmup)
    assert path == str(tmp_path / "ranker" / "1")
    assert listing(tmp_path / "ranker") == ["1"]

    # A separate Python that cannot import seqattn_tfrs serves both signatures.
    payload = {
        "raw": {name: data[name].tolist() for name in kept},
        "examples": [example_bytes(row).hex() for row in rows(data, kept, 12)],
    }
    # Both subprocesses import TensorFlow (seconds each): run them side by side.
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, path, json.dumps(payload)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    cli = subprocess.Popen(
        [saved_model_cli(), "show", "--dir", path, "--all"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    child_out, child_err = child.communicate(timeout=120)
    shown, cli_err = cli.communicate(timeout=120)
    assert child.returncode == 0, child_err[-3000:]
    served = json.loads(child_out.strip().splitlines()[-1])
    assert served["blocked"] and not served["imported"]
    assert served["inputs"] == sorted(kept)
    np.testing.assert_allclose(served["serving_default"], before, atol=1e-6)
    np.testing.assert_allclose(served["serve_examples"], before, atol=1e-6)

    assert cli.returncode == 0, cli_err[-3000:]
    block = shown.split("signature_def['serving_default']:")[1]
    inputs_part, outputs_part = block.split("contains the following output(s)")
    assert sorted(re.findall(r"inputs\['([^']+)'\]", inputs_part)) == sorted(kept)
    assert "outputs['scores']" in outputs_part.split("signature_def")[0]
    examples = shown.split("signature_def['serve_examples']:")[1].split("output(s)")[0]
    assert re.findall(r"inputs\['([^']+)'\]", examples) == ["inputs"]
    for name in [LABEL, *dropped]:
        assert name not in shown
    assert serving_devices(path) == {""}
    with open(os.path.join(path, "saved_model.pb"), "rb") as handle:
        graph_bytes = handle.read()
    for name, vocabulary in [("user_id", USERS), ("movie_id", MOVIES)]:
        assert (vocabulary[1].encode() in graph_bytes) == (name in kept)

    # selection.json
    with open(os.path.join(path, "assets.extra", "selection.json")) as handle:
        record = json.load(handle)
    assert record["version"] == 1
    (layer,) = record["gated_layers"]
    assert layer["selected_features"] == kept
    assert layer["dropped_features"] == dropped
    assert layer["feature_names"] == list(gate.feature_names)
    assert layer["gate_history"] == history and len(history) == 2
    assert layer["pruned_feature_widths"] == {name: WIDTHS[name] for name in dropped}
    assert sorted(record["signatures"]["serving_default"]["inputs"]) == sorted(kept)
    assert LABEL not in json.dumps(record["signatures"])
    tables_before = {name: variable_stats(tables[name].variables) for name in tables}
    after = sum(tables_before[name]["parameters"] for name in kept)
    total = sum(entry["parameters"] for entry in tables_before.values())
    assert layer["embedding_tables"]["after"]["parameters"] == after
    assert layer["embedding_tables"]["before"]["parameters"] == total
    assert record["embedding_tables"]["before"]["bytes"] == 4 * total
    saved_model_bytes = sum(
        os.path.getsize(os.path.join(root, f))
        for root, _, files in os.walk(path)
        for f in files
        if "assets.extra" not in root
    )
    assert record["saved_model_bytes"] == saved_model_bytes
    assert record["warmup_records"] == 5

    # The warm-up file: 5 one-row PredictionLog records for serving_default.
    warm = os.path.join(path, "assets.extra", "tf_serving_warmup_requests")
    records = [
        prediction_log_pb2.PredictionLog.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(warm)
    ]
    assert len(records) == 5
    for i, log in enumerate(records):
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        assert sorted(request.inputs) == sorted(kept)
        for name in kept:
            value = tf.make_ndarray(request.inputs[name])
            expected = np.asarray(data[name][i : i + 1])
            if expected.dtype.kind == "U":
                expected = expected.astype(object).astype(bytes)
            np.testing.assert_array_equal(value, expected)

    report = size_report(model, path)
    assert report["embedding_tables"]["after"]["parameters"] == after
    assert report["export_bytes"] > saved_model_bytes  # plus assets.extra


def test_dropped_million_row_table_is_not_exported(tmp_path):
    gate = SequentialAttentionEmbedding(
        {
            "movie_id": string_table(MOVIES, 8),
            "user_age": tf.keras.layers.Reshape((1,)),
            "item_id": tf.keras.layers.Embedding(1_000_000, 32),
        },
        num_selected=2,
    )
    inputs = {
        "movie_id": tf.keras.Input([], dtype=tf.string, name="movie_id"),
        "user_age": tf.keras.Input([], dtype=tf.float32, name="user_age"),
        "item_id": tf.keras.Input([], dtype=tf.int64, name="item_id"),
    }
    gated = gate(inputs)
    model = tf.keras.Model(
        inputs, tf.keras.layers.Dense(1)(tf.concat(list(gated.values()), axis=1))
    )
    force_selection(gate, ["movie_id", "user_age"])
    assert gate._tables["item_id"].variables[0].shape == (1_000_000, 32)
    big = weakref.ref(gate._tables["item_id"].variables[0])
    before = size_report(model)["embedding_tables"]["after"]["bytes"]

    pruned = prune(model)
    gc.collect()
    assert big() is None  # nothing holds the 128 MB table any more
    report = size_report(pruned)
    assert report["embedding_tables"]["before"]["bytes"] == before
    assert report["embedding_tables"]["after"]["bytes"] == before - 128_000_000
    path = export_for_serving(pruned, tmp_path)
    size = size_report(pruned, path)["export_bytes"]
    assert size < 10_000_000, size
    shapes = [
        shape for _, shape in tf.train.list_variables(path + "/variables/variables")
    ]
    assert [1_000_000, 32] not in shapes


# ------------------------------------------------------- export contract
@pytest.fixture(scope="module")
def small_model():
    model, _ = pruned_functional()
    return model


def test_versions_default_explicit_and_collisions(tmp_path, small_model):
    base = tmp_path / "models"
    (tmp_path / "models" / "notes").mkdir(parents=True)
    (base / ".tmp-old").mkdir()
    first = export_for_serving(small_model, base)
    assert first == str(base / "1")
    # The version directory gets the permissions of a plain mkdir (readable by
    # a model server running as another user), not mkdtemp's 0o700.
    (tmp_path / "plain").mkdir()
    assert os.stat(first).st_mode == os.stat(tmp_path / "plain").st_mode
    assert export_for_serving(small_model, str(base), version=7).endswith("7")
    assert export_for_serving(small_model, base, version="12").endswith("12")
    assert export_for_serving(small_model, base).endswith("13")
    assert listing(base) == [".tmp-old", "1", "12", "13", "7", "notes"]
    with pytest.raises(FileExistsError, match="Version 7 already exists"):
        export_for_serving(small_model, base, version=7)
    with pytest.raises(FileExistsError, match="Version 12 already exists"):
        export_for_serving(small_model, base, version="012")
    for bad in [-1, "v3", "1.5", 2.0, True]:
        with pytest.raises(ValueError, match="`version` must be a non-negative int"):
            export_for_serving(small_model, base, version=bad)
    assert listing(base) == [".tmp-old", "1", "12", "13", "7", "notes"]


def test_base_path_that_is_a_file_or_unwritable(tmp_path, small_model, monkeypatch):
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        export_for_serving(small_model, afile)
    with pytest.raises(NotADirectoryError, match="cannot be created"):
        export_for_serving(small_model, afile / "sub")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    real_access = os.access
    # Root ignores permission bits; answer as the OS would for another user.
    monkeypatch.setattr(
        os,
        "access",
        lambda p, mode: False if str(p) == str(locked) else real_access(p, mode),
    )
    with pytest.raises(PermissionError, match="is not writable"):
        export_for_serving(small_model, locked)
    assert listing(locked) == []


def boom(*args, **kwargs):
    raise RuntimeError("injected failure")


@pytest.mark.parametrize(
    "target",
    [
        (tf.saved_model, "save"),
        (export_savedmodel, "write_json"),
        (os, "rename"),
    ],
    ids=["saved_model.save", "json", "rename"],
)
def test_failures_leave_no_version_and_no_temp_dir(
    tmp_path, small_model, monkeypatch, target
):
    (tmp_path / "3").mkdir()
    monkeypatch.setattr(*target, boom)
    with pytest.raises(RuntimeError, match="injected failure"):
        export_for_serving(small_model, tmp_path)
    assert listing(tmp_path) == ["3"]


def test_export_requires_a_pruned_model(tmp_path):
    model, gate = functional_model()
    model(features_only(make_data(4)))
    gate.commit_round()
    with pytest.raises(ValueError, match="selected 1 of 2 features"):
        export_for_serving(model, tmp_path)
    gate.commit_round()
    with pytest.raises(ValueError, match="call `model = seqattn_tfrs.prune"):
        export_for_serving(model, tmp_path)
    with pytest.raises(ValueError, match="holds no SequentialAttentionEmbedding"):
        export_for_serving(tf.keras.Sequential([tf.keras.layers.Dense(1)]), tmp_path)
    assert listing(tmp_path) == []


def test_serving_features_and_outputs_are_checked(tmp_path, small_model):
    with pytest.raises(
        ValueError,
        match=r"not model inputs: \['user_id'\] \(\['user_id'\] were dropped",
    ):
        export_for_serving(
            small_model,
            tmp_path,
            serving_features={
                "movie_id": tf.TensorSpec([None], tf.string),
                "user_age": tf.TensorSpec([None], tf.float32),
                "user_id": tf.TensorSpec([None], tf.string),
            },
        )
    with pytest.raises(ValueError, match="expected the same dtype"):
        export_for_serving(
            small_model,
            tmp_path,
            serving_features={
                "movie_id": tf.TensorSpec([None], tf.string),
                "user_age": tf.TensorSpec([None], tf.int64),
            },
        )
    with pytest.raises(ValueError, match="pass `output_name` as a string"):
        export_for_serving(small_model, tmp_path, output_name={"a": "b"})
    assert listing(tmp_path) == []
    # A model that was never called needs serving_features.
    gate = SequentialAttentionEmbedding(
        {"a": tf.keras.layers.Embedding(5, 2), "b": tf.keras.layers.Embedding(5, 3)},
        num_selected=1,
    )
    holder = tf.keras.Sequential([gate])
    force_selection(gate, ["a"])
    prune(holder)
    with pytest.raises(ValueError, match="pass `serving_features`"):
        export_for_serving(holder, tmp_path)
    path = export_for_serving(
        holder,
        tmp_path,
        serving_features={"a": tf.TensorSpec([None], tf.int64)},
        output_name={"a": "a_vector", "b": "b_zeros"},
    )
    outputs = tf.saved_model.load(path).signatures["serving_default"](
        a=tf.constant([1, 2], tf.int64)
    )
    assert outputs["a_vector"].shape == (2, 2)
    np.testing.assert_array_equal(outputs["b_zeros"].numpy(), np.zeros([2, 3]))


def test_warmup_examples_are_checked(tmp_path, small_model, monkeypatch):
    good = {"movie_id": ["mov-0001", "x"], "user_age": [0.5, 1.0]}
    with pytest.raises(ValueError, match=r"extra: \['user_rating'\]"):
        export_for_serving(
            small_model, tmp_path, warmup_examples={**good, LABEL: [1.0, 2.0]}
        )
    with pytest.raises(ValueError, match="between 1 and 1000"):
        export_for_serving(
            small_model,
            tmp_path,
            warmup_examples={"movie_id": ["a"] * 1001, "user_age": [0.0] * 1001},
        )
    with pytest.raises(ValueError, match="cannot be converted to float32"):
        export_for_serving(
            small_model, tmp_path, warmup_examples={**good, "user_age": ["a", "b"]}
        )
    monkeypatch.setitem(sys.modules, "tensorflow_serving", None)
    monkeypatch.delitem(sys.modules, "tensorflow_serving.apis", raising=False)
    monkeypatch.delitem(
        sys.modules, "tensorflow_serving.apis.prediction_log_pb2", raising=False
    )
    with pytest.raises(ImportError, match=r"seqattn_tfrs\[serving\]"):
        export_for_serving(small_model, tmp_path, warmup_examples=good)
    assert listing(tmp_path) == []


def test_a_selection_that_keeps_every_feature_exports_as_it_is(tmp_path):
    inputs = {name: tf.keras.Input((), dtype=KINDS[name], name=name) for name in KINDS}
    gate = SequentialAttentionEmbedding(make_tables(), num_selected=len(KINDS))
    gated = gate(inputs)
    x = tf.concat([gated[name] for name in gate.feature_names], axis=1)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(x))
    features = features_only(make_data(8))
    force_selection(gate, ["movie_id", "user_age", "user_id", "user_zip"])
    before = model(features).numpy()
    pruned = prune(model)  # nothing to drop, but pruned (and so in its config)
    assert gate.is_pruned and gate.pruned_feature_widths == {}
    assert gate.get_config()["pruned_feature_widths"] == {}
    path = export_for_serving(pruned, tmp_path / "all")
    serving = tf.saved_model.load(path).signatures["serving_default"]
    assert sorted(serving.structured_input_signature[1]) == sorted(KINDS)
    np.testing.assert_allclose(serving(**features)["scores"].numpy(), before, atol=1e-6)
    record = json.loads(pathlib.Path(path, "assets.extra/selection.json").read_text())
    assert record["gated_layers"][0]["selected_features"] == [
        "movie_id",
        "user_age",
        "user_id",
        "user_zip",
    ]


def list_example(row: dict) -> str:
    """A serialized tf.Example (hex) of ``row``'s lists of strings or ints."""
    feature = {}
    for name, values in row.items():
        if values and isinstance(values[0], str):
            raw = [v.encode() for v in values]
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=raw))
        else:
            feature[name] = tf.train.Feature(
                int64_list=tf.train.Int64List(value=values)
            )
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString().hex()


def serve_in_child(path: str, raw: dict, rows: list[dict]) -> dict:
    """Both signatures' scores, from a process that has only TensorFlow."""
    payload = {"raw": raw, "examples": [list_example(row) for row in rows]}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, path, json.dumps(payload)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_ragged_and_zero_masked_inputs_serve_as_the_model_reads_them(tmp_path):
    genres = ["comedy", "drama", "noir", "sci-fi"]
    inputs = {
        "genres": tf.keras.Input((None,), dtype=tf.string, ragged=True, name="genres"),
        "tags": tf.keras.Input((None,), dtype=tf.int64, name="tags"),  # 0-padded
        "noise": tf.keras.Input((), dtype=tf.int64, name="noise"),
    }
    mean = tf.keras.layers.Lambda(lambda x: tf.reduce_mean(x, axis=1))
    gate = SequentialAttentionEmbedding(
        {
            "genres": tf.keras.Sequential(
                [
                    tf.keras.layers.StringLookup(vocabulary=genres, mask_token=None),
                    tf.keras.layers.Embedding(len(genres) + 1, 3),
                    mean,
                ]
            ),
            "tags": tf.keras.Sequential(
                [
                    tf.keras.layers.Embedding(20, 3, mask_zero=True),
                    tf.keras.layers.GlobalAveragePooling1D(),
                ]
            ),
            "noise": tf.keras.layers.Embedding(9, 3),
        },
        num_selected=2,
    )
    gated = gate(inputs)
    x = tf.concat([gated[name] for name in gate.feature_names], axis=1)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(x))
    rows = [
        {"genres": ["drama"], "tags": [4]},
        {"genres": ["comedy", "noir", "sci-fi"], "tags": [1, 7, 3]},
        {"genres": ["noir", "drama"], "tags": [5, 2]},
    ]
    width = max(len(row["tags"]) for row in rows)
    features = {
        "genres": tf.ragged.constant([row["genres"] for row in rows]),
        "tags": tf.constant(
            [row["tags"] + [0] * (width - len(row["tags"])) for row in rows]
        ),
        "noise": tf.constant([1, 2, 3], tf.int64),
    }
    force_selection(gate, ["tags", "genres"])
    before = model(features).numpy().ravel()
    pruned = prune(model)
    with pytest.raises(ValueError, match=r"`padding` names \['noise'\]"):
        export_for_serving(pruned, tmp_path / "bad", padding={"noise": 0})
    with pytest.raises(ValueError, match=r"`padding\['tags'\]` is 'x'"):
        export_for_serving(pruned, tmp_path / "bad", padding={"tags": "x"})
    path = export_for_serving(pruned, tmp_path / "served", padding={"tags": 0})
    record = json.loads(pathlib.Path(path, "assets.extra/selection.json").read_text())
    assert record["signatures"]["serve_examples"]["padding"] == {
        "genres": "",
        "tags": 0,
    }
    # The client pads genres with "" (stripped back to the ragged rows the
    # model reads) and tags with 0 (which the model masks), as served.
    raw = {
        "genres": [row["genres"] + [""] * (3 - len(row["genres"])) for row in rows],
        "tags": features["tags"].numpy().tolist(),
    }
    served = serve_in_child(path, raw, rows)
    assert served["inputs"] == ["genres", "tags"]
    np.testing.assert_allclose(np.ravel(served["serving_default"]), before, atol=1e-6)
    np.testing.assert_allclose(np.ravel(served["serve_examples"]), before, atol=1e-6)
    # Served at a fixed width of 3 genres instead: the padding "" still strips.
    fixed = {
        "genres": tf.TensorSpec([None, 3], tf.string),
        "tags": tf.TensorSpec([None, None], tf.int64),
    }
    path = export_for_serving(
        pruned, tmp_path / "fixed", serving_features=fixed, padding={"tags": 0}
    )
    serving = tf.saved_model.load(path).signatures["serving_default"]
    tags = tf.constant(raw["tags"], tf.int64)
    scores = serving(genres=tf.constant(raw["genres"]), tags=tags)
    np.testing.assert_allclose(scores["scores"].numpy().ravel(), before, atol=1e-6)


def test_size_report_refuses_a_model_without_a_gate_as_prune_does():
    inputs = tf.keras.Input((), dtype=tf.int64)
    plain = tf.keras.Model(inputs, tf.keras.layers.Embedding(10, 4)(inputs))
    with pytest.raises(ValueError, match="holds no SequentialAttentionEmbedding"):
        size_report(plain)  # it counted no table: zeros, as if nothing were there
    with pytest.raises(ValueError, match="holds no SequentialAttentionEmbedding"):
        prune(plain)


def test_size_report_before_and_after_pruning():
    model, gate = functional_model()
    model(features_only(make_data(4)))
    stats = {n: variable_stats(t.variables) for n, t in gate.embedding_layers.items()}
    report = size_report(model)
    everything = sum(s["parameters"] for s in stats.values())
    assert report["embedding_tables"]["before"]["parameters"] == everything
    assert report["embedding_tables"]["after"]["parameters"] == everything
    force_selection(gate, ["user_zip", "user_age"])
    pruned = prune(model)
    report = size_report(pruned)
    layer = report["gated_layers"][gate.name]
    assert layer["dropped"]["movie_id"] == {**stats["movie_id"], "width": 6}
    assert report["embedding_tables"]["before"] == {
        "tables": 4,
        "variables": 3,
        "parameters": everything,
        "bytes": 4 * everything,
    }
    assert (
        report["embedding_tables"]["after"]["parameters"]
        == (stats["user_zip"]["parameters"])
    )
    assert report["model_variables"] == variable_stats(pruned.variables)


def test_export_of_a_model_without_call_names_what_serves(tmp_path):
    class LossOnly(tfrs.models.Model):  # as TFRS's retrieval tutorials write it
        def __init__(self):
            super().__init__()
            self.query_model = SequentialAttentionEmbedding(make_tables(), 2)

        def compute_loss(self, features, training=False):
            return tf.constant(0.0)

    with pytest.raises(ValueError, match=r"defines no `call`.*query_model"):
        export_for_serving(LossOnly(), tmp_path)
    assert not list(tmp_path.iterdir())


def test_export_refuses_a_call_that_still_reads_a_dropped_feature(tmp_path):
    class ReadsAge(DCNModel):
        def call(self, features):  # uses the raw age beside the gate: a mistake
            return super().call(features) + features["user_age"][:, None]

    model = ReadsAge(make_tables(), num_selected=2)
    model(features_only(make_data(8)))
    force_selection(model.gate, ["movie_id", "user_id"])
    prune(model)
    with pytest.raises(ValueError, match="reads a feature that is not among"):
        export_for_serving(model, tmp_path / "models")
    assert not (tmp_path / "models").exists() or listing(tmp_path / "models") == []


# ------------------------------------------------- processes and faults
WORKER = pathlib.Path(__file__).resolve().parent / "helpers" / "export_worker.py"


def test_killed_exporter_leaves_no_version_and_the_next_export_cleans_up(tmp_path):
    base, ready = tmp_path / "models", tmp_path / "ready"
    (base / "notes").mkdir(parents=True)  # someone else's: must stay
    kill_when_ready([WORKER, base, "hang", ready], ready, timeout=120)
    stray = [n for n in listing(base) if n.startswith(".tmp-")]
    assert len(stray) == 1 and "1" not in listing(base)  # no half-written version
    run_python([WORKER, base], timeout=120)
    assert listing(base) == ["1", "notes"]  # the stray directory is gone


def test_concurrent_exports_get_distinct_versions(tmp_path):
    base = tmp_path / "models"
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(base)],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    paths = []
    for worker in workers:
        out, err = worker.communicate(timeout=180)
        assert worker.returncode == 0, err[-3000:]
        paths.append(out.strip().splitlines()[-1])
    assert sorted(os.path.basename(p) for p in paths) == ["1", "2", "3"]
    assert listing(base) == ["1", "2", "3"]
    for path in paths:
        served = tf.saved_model.load(path).signatures["serving_default"]
        assert served(a=tf.constant([1], tf.int64))["scores"].shape == (1, 12)


# ------------------------------------------------------- mixed precision
# Pruning drops only a multiply by 1, but a 16-bit model's other kernels may
# round differently from one call to the next.
MIXED_TOLERANCE = {"rtol": 2e-2, "atol": 1e-2}


class MixedDCN(DCNModel):
    """The DCN model as Keras' mixed-precision guide has it: the last layer in
    float32, so that the loss TFRS adds its regularization to is float32."""

    def __init__(self, tables, num_selected):
        super().__init__(tables, num_selected)
        self.score = tf.keras.layers.Dense(1, dtype="float32")


def test_mixed_precision_fit_prune_export_serves_float32(tmp_path, mixed_policy):
    tf.keras.utils.set_random_seed(0)
    model = MixedDCN(make_tables(), num_selected=2)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    train = tf.data.Dataset.from_tensor_slices(make_data(128)).batch(32)
    callback = seqattn_tfrs.SequentialAttentionCallback(
        warmup_epochs=1, finetune_epochs=1, settle_fraction=0, verbose=0
    )
    model.fit(train, epochs=4, callbacks=[callback], verbose=0)
    gate = model.gate
    kept = list(gate.selected_features)
    data = make_data(12, seed=3)
    gated = gate(features_only(data))
    assert {v.dtype.name for v in gated.values()} == {mixed_policy.compute_dtype}
    assert gate.attention_logits.dtype == tf.float32
    before = model(features_only(data)).numpy()

    prune(model)
    gated = gate(features_only(data, kept))
    assert {v.dtype.name for v in gated.values()} == {mixed_policy.compute_dtype}
    path = export_for_serving(model, tmp_path)
    loaded = tf.saved_model.load(path)
    serving = loaded.signatures["serving_default"]
    specs = serving.structured_input_signature[1]
    assert {n: s.dtype for n, s in specs.items()} == {n: KINDS[n] for n in kept}
    scores = serving(**features_only(data, kept))["scores"]
    assert scores.dtype == tf.float32
    np.testing.assert_allclose(scores.numpy(), before, **MIXED_TOLERANCE)
    examples = [example_bytes(row) for row in rows(data, kept, 12)]
    by_examples = loaded.signatures["serve_examples"](inputs=tf.constant(examples))
    assert by_examples["scores"].dtype == tf.float32
    np.testing.assert_allclose(by_examples["scores"].numpy(), before, **MIXED_TOLERANCE)


def test_mixed_precision_scores_are_served_as_float32(tmp_path, mixed_policy):
    """A model ending in the compute dtype still serves float32 (the dtype TF
    Serving's Classify and Regress read); the signature outputs are exactly
    the one named output."""
    model, gate = functional_model()
    data = features_only(make_data(6))
    assert model(data).dtype.name == mixed_policy.compute_dtype
    force_selection(gate, ["movie_id", "user_zip"])
    pruned = prune(model)
    before = pruned(features_only(make_data(6), ["movie_id", "user_zip"])).numpy()
    loaded = tf.saved_model.load(export_for_serving(pruned, tmp_path))
    for key in ["serving_default", "serve_examples"]:
        outputs = loaded.signatures[key].structured_outputs
        assert {k: v.dtype for k, v in outputs.items()} == {"scores": tf.float32}
    served = loaded.signatures["serving_default"](
        **features_only(make_data(6), ["movie_id", "user_zip"])
    )["scores"]
    np.testing.assert_allclose(served.numpy(), before, **MIXED_TOLERANCE)


def test_pruned_zeros_take_the_kept_embeddings_dtype(mixed_policy):
    """A gate kept in float32 over tables in the compute dtype: the dropped
    features' zeros match the kept embeddings, as their gated outputs did."""
    gate = SequentialAttentionEmbedding(
        {"a": tf.keras.layers.Embedding(10, 4), "b": tf.keras.layers.Embedding(10, 2)},
        num_selected=1,
        dtype="float32",
    )
    ids = {"a": tf.constant([1, 2]), "b": tf.constant([3, 4])}
    before = gate(ids)
    assert {v.dtype.name for v in before.values()} == {mixed_policy.compute_dtype}
    force_selection(gate, ["a"])
    prune(tf.keras.Sequential([gate]))
    after = gate({"a": ids["a"]})
    assert {n: v.dtype for n, v in after.items()} == {
        n: v.dtype for n, v in before.items()
    }
    tf.concat(list(after.values()), axis=1)  # as the model's own call does
