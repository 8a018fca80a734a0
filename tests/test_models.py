"""The reference DCN model, its per-feature layers, vocabularies and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from seqattn_tfrs.movielens import report as report_lib
from seqattn_tfrs.movielens.config import (
    FeatureConfig,
    JobConfig,
    NoiseConfig,
    SelectionConfig,
)
from seqattn_tfrs.movielens.job import build_vocabulary
from seqattn_tfrs.movielens.models import (
    LABEL_KEY,
    RaggedMeanPooling,
    StripPadding,
    build_feature_layer,
    build_model,
    embedding_table_stats,
)

FEATURES = (
    FeatureConfig("user", "string", embedding_dim=4),
    FeatureConfig("age", "int", embedding_dim=3),
    FeatureConfig("genres", "multi_int", embedding_dim=2),
    FeatureConfig("time", "numeric", embedding_dim=5, num_buckets=3),
)
VOCABULARIES = {
    "user": ["a", "b"],
    "age": [18, 25],
    "genres": [0, 1, 2],
    "time": [10.0, 20.0],
}


def small_config(**selection) -> JobConfig:
    return JobConfig(
        features=FEATURES,
        noise=NoiseConfig(num_fields=0),
        selection=SelectionConfig(num_selected=2, **selection),
        batch_size=4,
    )


def batch() -> dict[str, tf.Tensor]:
    return {
        "user": tf.constant(["a", "b", "zz"]),
        "age": tf.constant([18.0, 25.0, 99.0]),  # floats are cast by the lookup
        "genres": tf.constant([[0, 2], [1, -1], [-1, -1]], tf.int64),
        "time": tf.constant([5, 15, 25], tf.int64),
        LABEL_KEY: tf.constant([5.0, 2.0, 4.0]),
    }


@pytest.mark.parametrize(
    ("feature", "inputs", "rows"),
    [
        (FEATURES[0], tf.constant(["a", "zz"]), 3),
        (FEATURES[1], tf.constant([True, False]), 3),
        (FEATURES[2], tf.ragged.constant([[0, 2], [1]], tf.int64), 4),
        (FEATURES[3], tf.constant([1.0, 30.0]), 3),
    ],
    ids=["string", "int_from_bool", "multi_int_ragged", "numeric"],
)
def test_feature_layer_gives_batch_by_dim(feature, inputs, rows):
    vocab = {"user": ["a", "b"], "age": [0, 1], "genres": [0, 1, 2], "time": [1.0, 2.0]}
    layer = build_feature_layer(feature, vocab[feature.name])
    out = layer(inputs)
    assert out.shape == (2, feature.embedding_dim)
    assert layer.layers[-1 if feature.kind != "multi_int" else -2].input_dim == rows


def test_multi_int_padding_and_ragged_agree():
    layer = build_feature_layer(FEATURES[2], [0, 1, 2])
    ragged = layer(tf.ragged.constant([[0, 2], [1]], tf.int64))
    padded = layer(tf.constant([[0, 2], [1, -1]], tf.int64))
    np.testing.assert_allclose(ragged.numpy(), padded.numpy())


def test_pooling_and_padding_helpers():
    pooled = RaggedMeanPooling()(
        tf.ragged.constant([[[1.0], [3.0]], []], ragged_rank=1)
    )
    assert pooled.numpy().tolist() == [[2.0], [0.0]]
    assert StripPadding(-1)(tf.constant([[3, -1]])).to_list() == [[3]]
    assert StripPadding.from_config(StripPadding(7).get_config()).padding == 7


def test_build_vocabulary_kinds():
    strings = np.array([b"b", b"a", b"b"], dtype=object)
    assert build_vocabulary(FeatureConfig("s", "string"), strings) == ["a", "b"]
    assert build_vocabulary(FeatureConfig("i", "int"), np.array([25.0, 18.0])) == [
        18,
        25,
    ]
    assert build_vocabulary(FeatureConfig("b", "int"), np.array([True, False])) == [
        0,
        1,
    ]
    numeric = build_vocabulary(
        FeatureConfig("t", "numeric", num_buckets=4), np.arange(101, dtype=np.int64)
    )
    assert numeric == [25.0, 50.0, 75.0]
    explicit = FeatureConfig("e", "int", vocabulary=(3, 1))
    assert build_vocabulary(explicit, np.array([9])) == [3, 1]
    with pytest.raises(ValueError, match="non-integer"):
        build_vocabulary(FeatureConfig("i", "int"), np.array([1.5]))


@pytest.mark.parametrize("use_gate", [True, False], ids=["gated", "baseline"])
def test_model_scores_and_loss_without_touching_the_label(use_gate):
    tf.keras.utils.set_random_seed(0)
    model = build_model(small_config(), VOCABULARIES, use_gate=use_gate)
    features = batch()
    scores = model({k: v for k, v in features.items() if k != LABEL_KEY})
    assert scores.shape == (3, 1)
    assert np.all((scores.numpy() > 0) & (scores.numpy() < 1))
    loss = model.compute_loss(features, training=False)
    assert np.isfinite(float(loss))
    assert LABEL_KEY in features  # compute_loss popped from a copy
    assert (model.gate is not None) == use_gate
    if not use_gate:
        with pytest.raises(ValueError, match="has no gate"):
            embedding_table_stats(model)
        return
    stats = embedding_table_stats(model)
    assert stats["user"] == {"dim": 4, "variables": 1, "parameters": 12, "bytes": 48}
    assert stats["time"]["parameters"] == 3 * stats["time"]["dim"]
    assert sum(s["parameters"] for s in stats.values()) == 12 + 9 + 8 + 15


def test_model_takes_one_attention_options_object():
    import seqattn_tfrs
    from seqattn_tfrs.movielens.models import DCNRankingModel

    layers = {n: tf.keras.layers.Embedding(3, 2) for n in ("a", "b", "c")}
    options = seqattn_tfrs.AttentionOptions(
        attention_signal="score", selections_per_round=2, attention_momentum=0.5
    )
    model = DCNRankingModel(layers, num_selected=2, attention=options)
    # The gate holds them resolved for a count selection (entry_z "auto": off).
    assert model.gate.options == options.resolved(budgeted=False)
    assert model.gate.entry_z is None
    # Without one, the gate's own defaults (the app's model no longer differs).
    default = DCNRankingModel(dict(layers), num_selected=1).gate
    assert default.options == seqattn_tfrs.AttentionOptions().resolved(budgeted=False)
    with pytest.raises(TypeError, match="`attention` must be a seqattn_tfrs"):
        DCNRankingModel(dict(layers), num_selected=1, attention={"entry_z": 2.0})
    config = small_config(attention_signal="gradient", attention_learning_rate=0.1)
    gate = build_model(config, VOCABULARIES).gate
    assert gate.options == config.selection.attention.resolved(budgeted=False)
    assert (gate.attention_signal, gate.attention_learning_rate) == ("gradient", 0.1)


def test_model_compiles_with_the_configured_optimizer():
    config = JobConfig(
        features=FEATURES,
        noise=NoiseConfig(num_fields=0),
        selection=SelectionConfig(num_selected=2),
        optimizer="sgd",
        learning_rate=0.25,
    )
    model = build_model(config, VOCABULARIES)
    assert isinstance(model.optimizer, tf.keras.optimizers.SGD)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.25)
    with pytest.raises(KeyError, match="No vocabulary"):
        build_model(config, {"user": ["a"]})


def test_report_table_json_and_plot(tmp_path):
    history = [
        {"epoch": e, "layer": "g", "gates": {"a": ga, "b": gb, "noise_0": gn}}
        for e, (ga, gb, gn) in enumerate([(1, 1, 1), (1, 0.3, 0.2), (1, 1, 0)])
    ]
    tables = {"tables": 3, "parameters": 30, "bytes": 120, "per_feature": {}}
    report = report_lib.build_report(
        config=small_config(),
        selected_features=["a", "b"],
        noise_features=["noise_0"],
        selection_events=[{"epoch": 1, "round": 1, "features": ["a"]}],
        metrics={
            "baseline": {"auc": 0.7, "log_loss": 0.6},
            "selected": {"auc": 0.72, "log_loss": 0.58},
        },
        tables_before=tables,
        tables_after={**tables, "tables": 2, "parameters": 20, "bytes": 80},
        export=None,
        timings={"train_selected": 1.0, "total": 2.0},
        data={"train_examples": 10},
    )
    paths = report_lib.write_report(
        report,
        history,
        tmp_path,
        round_gates=[
            {"a": 0.5, "b": 0.3, "noise_0": 0.2},
            {"a": 1, "b": 0.6, "noise_0": 0.4},
        ],
    )
    written = json.loads(paths["report"].read_text())
    assert written["noise_features_selected"] == []
    assert written["metrics"]["auc_selected_minus_baseline"] == pytest.approx(0.02)
    assert written["embedding_tables"]["parameter_fraction_kept"] == pytest.approx(
        2 / 3
    )
    assert len(written["gate_history"]) == 3 and len(written["round_gates"]) == 2
    assert paths["gates_plot"].read_bytes().startswith(b"\x89PNG")
    table = report_lib.format_report(written)
    assert "1. a" in table and "baseline (all)" in table and "Export: skipped" in table
    with pytest.raises(ValueError, match="empty"):
        report_lib.plot_gates([], ["a"], tmp_path / "x.png")


def test_gated_model_prunes_and_exports_with_a_multi_valent_feature(tmp_path):
    """The job's model, with dense padded genres, survives prune and export."""
    from seqattn_tfrs.export import export_for_serving
    from seqattn_tfrs.pruning import prune

    tf.keras.utils.set_random_seed(0)
    model = build_model(small_config(), VOCABULARIES)
    features = {k: v for k, v in batch().items() if k != LABEL_KEY}
    model.compute_loss(batch())  # records the input spec, as fit does
    gate = model.gate
    gate.attention_logits.assign([0.0, 0.0, 2.0, 0.0])  # "genres" wins round 1
    gate.commit_round()
    gate.attention_logits.assign([3.0, 0.0, 0.0, 0.0])  # then "user"
    gate.commit_round()
    assert gate.selected_features == ("genres", "user")
    before = model(features).numpy()
    pruned = prune(model)
    kept = {name: features[name] for name in ("genres", "user")}
    np.testing.assert_allclose(pruned(kept).numpy(), before, atol=1e-6)
    path = export_for_serving(pruned, tmp_path / "serving")
    served = tf.saved_model.load(path).signatures["serving_default"](**kept)
    np.testing.assert_allclose(served["scores"].numpy(), before, atol=1e-6)
    # The tf.Example signature gives the same scores; genres come padded with -1
    # to the width the model was called with ([None, 2] here).
    examples = []
    for row in range(len(before)):
        genres = kept["genres"][row].numpy().tolist()
        user = kept["user"][row].numpy()
        examples.append(
            tf.train.Example(
                features=tf.train.Features(
                    feature={
                        "genres": tf.train.Feature(
                            int64_list=tf.train.Int64List(value=genres)
                        ),
                        "user": tf.train.Feature(
                            bytes_list=tf.train.BytesList(value=[user])
                        ),
                    }
                )
            ).SerializeToString()
        )
    from_examples = tf.saved_model.load(path).signatures["serve_examples"](
        inputs=tf.constant(examples)
    )
    np.testing.assert_allclose(from_examples["scores"].numpy(), before, atol=1e-6)


def test_variable_length_integer_examples_are_padded_with_minus_one():
    from seqattn_tfrs.export.savedmodel import parse_spec

    spec = parse_spec("genres", tf.TensorSpec([None, None], tf.int64))
    rows = [
        tf.train.Example(
            features=tf.train.Features(
                feature={
                    "genres": tf.train.Feature(
                        int64_list=tf.train.Int64List(value=values)
                    )
                }
            )
        ).SerializeToString()
        for values in ([0, 2], [1], [])
    ]
    parsed = tf.io.parse_example(tf.constant(rows), {"genres": spec})["genres"]
    assert parsed.numpy().tolist() == [[0, 2], [1, -1], [-1, -1]]
