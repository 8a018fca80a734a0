"""Exports take only what the served graph reads; ``serve_examples`` is what
TF Serving's Classify (or, with ``output_name="outputs"``, Regress) API reads.

TFRS models written the tutorial way pass the whole feature dict, label
included, to ``call``; the label must still not become a serving input. The
exports are served with TF Serving API request protos in a process that cannot
import seqattn_tfrs (``helpers/serve_requests.py``).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs
from helpers.processes import run_python
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

import seqattn_tfrs

SERVE_REQUESTS = (
    pathlib.Path(__file__).resolve().parent / "helpers" / "serve_requests.py"
)


# The README's model, exactly as written there ("Use it in a TFRS model").
class DCN(tfrs.models.Model):
    def __init__(self, vocabularies):
        super().__init__()
        tables = {
            name: tf.keras.Sequential(
                [
                    tf.keras.layers.StringLookup(vocabulary=vocab, mask_token=None),
                    tf.keras.layers.Embedding(len(vocab) + 1, 8),
                ]
            )
            for name, vocab in vocabularies.items()
        }
        # The one-line change: wrap the per-feature tables in the gate layer.
        self.embeddings = seqattn_tfrs.SequentialAttentionEmbedding(
            tables, num_selected=4
        )
        self.cross = tfrs.layers.dcn.Cross()
        self.mlp = tf.keras.Sequential(
            [tf.keras.layers.Dense(64, "relu"), tf.keras.layers.Dense(1, "sigmoid")]
        )
        self.task = tfrs.tasks.Ranking(loss=tf.keras.losses.BinaryCrossentropy())

    def call(self, features):
        gated = self.embeddings(features)  # dict in, dict of gated embeddings out
        x = tf.concat(list(gated.values()), axis=1)
        return self.mlp(self.cross(x))

    def compute_loss(self, features, training=False):
        return self.task(labels=features["label"], predictions=self(features))


def readme_data(n, seed):
    """Six string fields; the click depends on f0, f1, f2 and f3."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 6, size=(6, n))
    logit = (ids[0] - 2.5) + 0.8 * (ids[1] % 2) - 0.6 * (ids[2] > 2) + 0.4 * ids[3]
    data = {f"f{i}": np.array([f"v{v}" for v in ids[i]]) for i in range(6)}
    data["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return data


def serve_requests(path, rows):
    out = run_python([SERVE_REQUESTS, path, json.dumps(rows)], timeout=180)
    served = json.loads(out.strip().splitlines()[-1])
    assert served["blocked"] and not served["imported"]
    return served


def test_readme_model_serves_requests_without_a_label(tmp_path):
    tf.keras.utils.set_random_seed(0)
    vocabularies = {f"f{i}": [f"v{v}" for v in range(6)] for i in range(6)}
    train_ds = tf.data.Dataset.from_tensor_slices(readme_data(2240, 0)).batch(32)
    validation_ds = tf.data.Dataset.from_tensor_slices(readme_data(256, 1)).batch(64)

    # README, "Use it in a TFRS model", from `model = DCN(vocabularies)` on.
    model = DCN(vocabularies)
    model.compile(tf.keras.optimizers.Adam(0.01))
    callback = seqattn_tfrs.SequentialAttentionCallback(
        within_fit=True,  # warm-up, 4 rounds and fine-tune inside this fit's steps
        selection_data=validation_ds,  # held-out batches: strongly recommended
        verbose=0,
    )
    model.fit(train_ds, epochs=3, callbacks=[callback], verbose=0)
    kept = list(model.embeddings.selected_features)
    assert len(kept) == 4
    model = seqattn_tfrs.prune(model)
    path = seqattn_tfrs.export_for_serving(model, tmp_path / "ranker")

    test = readme_data(10, 2)
    rows = {name: test[name].tolist() for name in kept}
    expected = model({name: tf.constant(test[name]) for name in kept}).numpy()
    served = serve_requests(path, rows)
    assert served["serving_default_inputs"] == sorted(kept)
    assert served["serve_examples_inputs"] == ["inputs"]
    np.testing.assert_allclose(served["predict"], expected, atol=1e-6)
    np.testing.assert_allclose(served["classify"], expected, atol=1e-6)
    signatures = json.loads(
        (pathlib.Path(path) / "assets.extra" / "selection.json").read_text()
    )["signatures"]
    assert sorted(signatures["serving_default"]["inputs"]) == sorted(kept)


LABEL = "rating"
KINDS = {"user_id": tf.string, "zip": tf.int64, "age": tf.float32}


class LabelInCall(tfrs.models.Model):
    """A TFRS tutorial model whose ``call`` gets the label with the features."""

    def __init__(self):
        super().__init__()
        self.gate = seqattn_tfrs.SequentialAttentionEmbedding(
            {
                "user_id": tf.keras.Sequential(
                    [
                        tf.keras.layers.StringLookup(
                            vocabulary=["a", "b", "c"], mask_token=None
                        ),
                        tf.keras.layers.Embedding(4, 3),
                    ]
                ),
                "zip": tf.keras.Sequential(
                    [
                        tf.keras.layers.IntegerLookup(
                            vocabulary=[10, 20], mask_token=None
                        ),
                        tf.keras.layers.Embedding(3, 2),
                    ]
                ),
                "age": tf.keras.layers.Reshape((1,)),
            },
            num_selected=2,
        )
        self.score = tf.keras.layers.Dense(1)
        self.task = tfrs.tasks.Ranking(loss=tf.keras.losses.MeanSquaredError())

    def call(self, features):
        gated = self.gate(features)
        return self.score(tf.concat([gated[n] for n in self.gate.feature_names], 1))

    def compute_loss(self, features, training=False):
        return self.task(labels=features[LABEL], predictions=self(features))


def label_batch():
    return {
        "user_id": tf.constant(["a", "b", "c", "x"]),
        "zip": tf.constant([10, 20, 30, 10], tf.int64),
        "age": tf.constant([0.1, 0.5, 0.9, 0.3]),
        LABEL: tf.constant([1.0, 2.0, 3.0, 4.0]),
    }


@pytest.fixture(scope="module")
def label_model():
    tf.keras.utils.set_random_seed(1)
    model = LabelInCall()
    model.compile(tf.keras.optimizers.Adam(0.01))
    data = tf.data.Dataset.from_tensors(label_batch()).repeat(4)
    model.fit(data, epochs=1, verbose=0)  # records the inputs, label among them
    gate = model.gate
    for name in ["user_id", "age"]:  # two rounds, committed by hand
        gate.attention_logits.assign(
            [5.0 if n == name else 0.0 for n in gate.feature_names]
        )
        gate.commit_round()
    return seqattn_tfrs.prune(model)


def test_label_read_only_by_the_loss_is_not_a_serving_input(tmp_path, label_model):
    batch = label_batch()
    expected = label_model(batch).numpy()
    path = seqattn_tfrs.export_for_serving(label_model, tmp_path)
    loaded = tf.saved_model.load(path)
    serving = loaded.signatures["serving_default"]
    specs = serving.structured_input_signature[1]
    assert {n: s.dtype for n, s in specs.items()} == {
        "user_id": tf.string,
        "age": tf.float32,
    }
    assert all(s.shape.as_list() == [None] for s in specs.values())
    scores = serving(user_id=batch["user_id"], age=batch["age"])["scores"]
    np.testing.assert_allclose(scores.numpy(), expected, atol=1e-6)
    parse = loaded.signatures["serve_examples"]
    example = tf.train.Example()
    example.features.feature["user_id"].bytes_list.value.append(b"b")
    example.features.feature["age"].float_list.value.append(0.5)
    scores = parse(inputs=tf.constant([example.SerializeToString()]))["scores"]
    np.testing.assert_allclose(scores.numpy(), expected[1:2], atol=1e-6)


def test_serving_features_may_leave_out_what_the_graph_does_not_read(
    tmp_path, label_model
):
    spec = {
        "user_id": tf.TensorSpec([None], tf.string),
        "age": tf.TensorSpec([None], tf.float32),
    }
    path = seqattn_tfrs.export_for_serving(label_model, tmp_path, serving_features=spec)
    serving = tf.saved_model.load(path).signatures["serving_default"]
    assert sorted(serving.structured_input_signature[1]) == ["age", "user_id"]
    with pytest.raises(
        ValueError,
        match=r"must name every feature the served model reads, \['age', 'user_id'\]"
        r", and may leave out \['rating'\], which it does not read; got "
        r"\['user_id'\]: missing: \['age'\]\.",
    ):
        seqattn_tfrs.export_for_serving(
            label_model, tmp_path, serving_features={"user_id": spec["user_id"]}
        )
    with pytest.raises(ValueError, match=r"not model inputs: \['zip'\] \(\['zip'\]"):
        seqattn_tfrs.export_for_serving(
            label_model,
            tmp_path,
            serving_features={**spec, "zip": tf.TensorSpec([None], tf.int64)},
        )
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["1"]


@pytest.mark.parametrize(
    "output_name", ["scores", "outputs"], ids=["classify", "regress"]
)
def test_serve_examples_has_the_one_output_its_api_reads(
    tmp_path, label_model, output_name
):
    """What TF Serving checks in the SignatureDef: Classify takes one string
    input ``inputs`` and a float ``scores`` (and/or ``classes``) output; Regress
    takes the same input and exactly one float output, ``outputs``, shaped
    [batch] or [batch, 1]. One signature cannot be both, so the default
    ``scores`` serves Classify and ``output_name="outputs"`` serves Regress."""
    path = seqattn_tfrs.export_for_serving(
        label_model, tmp_path, output_name=output_name
    )
    proto = saved_model_pb2.SavedModel.FromString(
        (pathlib.Path(path) / "saved_model.pb").read_bytes()
    )
    signatures = proto.meta_graphs[0].signature_def
    examples = signatures["serve_examples"]
    assert {k: v.dtype for k, v in examples.inputs.items()} == {
        "inputs": types_pb2.DT_STRING
    }
    assert {k: v.dtype for k, v in examples.outputs.items()} == {
        output_name: types_pb2.DT_FLOAT
    }
    dims = [d.size for d in examples.outputs[output_name].tensor_shape.dim]
    assert dims == [-1, 1]
    assert list(signatures["serving_default"].outputs) == [output_name]
