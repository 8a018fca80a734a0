"""A TFRS two-tower retrieval model with a gate on each tower.

Planted data: a user's item comes from a softmax over items whose logits are
the user's taste plus their age group's plus the hour's, so the query tower
needs ``user_id`` (or its exact copy), ``age`` and ``hour`` and nothing of the
two 3,000-value noise fields; the candidate tower needs ``item_id`` and
neither its coarsening ``item_genre`` nor a noise field. The model's ``call``
is the query tower alone, as in TFRS's retrieval tutorials, so the candidate
gate is reached only through ``compute_loss``; the two gates select different
numbers of features, so ``within_fit`` gives them rounds of different lengths.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

import seqattn_tfrs
from seqattn_tfrs.dependence_check import check_functional_dependence

USERS, ITEMS, ROWS = 400, 120, 16_000
QUERY = {"user_id": USERS, "user_copy": USERS, "age": 7, "hour": 24}
QUERY |= {"noise_a": 3000, "noise_b": 3000}
CANDIDATE = {"item_id": ITEMS, "item_genre": 12, "item_noise": 2000}


def planted(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    taste = rng.normal(size=(USERS, 8))
    age_of_user = rng.integers(0, 7, USERS)
    age_taste, hour_taste = rng.normal(size=(7, 8)), 0.7 * rng.normal(size=(24, 8))
    item_vectors = rng.normal(size=(ITEMS, 8))
    users, hours = rng.integers(0, USERS, ROWS), rng.integers(0, 24, ROWS)
    query = taste[users] + age_taste[age_of_user[users]] + hour_taste[hours]
    logits = query @ item_vectors.T
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    items = (p.cumsum(axis=1) > rng.random((ROWS, 1))).argmax(axis=1)
    return {
        "user_id": users,
        "user_copy": users.copy(),
        "age": age_of_user[users],
        "hour": hours,
        "noise_a": rng.integers(0, 3000, ROWS),
        "noise_b": rng.integers(0, 3000, ROWS),
        "item_id": items,
        "item_genre": items % 12,
        "item_noise": rng.integers(0, 2000, ROWS),
    }


def gate(sizes: dict[str, int], num_selected: int):
    return seqattn_tfrs.SequentialAttentionEmbedding(
        {
            name: tf.keras.Sequential(
                [
                    tf.keras.layers.IntegerLookup(
                        vocabulary=list(range(size)), mask_token=None
                    ),
                    tf.keras.layers.Embedding(size + 1, 16),
                ]
            )
            for name, size in sizes.items()
        },
        num_selected=num_selected,
    )


class TwoTower(tfrs.models.Model):
    def __init__(self) -> None:
        super().__init__()
        self.query_gate = gate(QUERY, num_selected=3)
        self.candidate_gate = gate(CANDIDATE, num_selected=1)
        self.query_dense = tf.keras.layers.Dense(32)
        self.candidate_dense = tf.keras.layers.Dense(32)
        self.task = tfrs.tasks.Retrieval()

    def call(self, features):  # the query tower: what is served
        return self.query_dense(tf.concat(list(self.query_gate(features).values()), 1))

    def candidate(self, features):
        gated = self.candidate_gate(features)
        return self.candidate_dense(tf.concat(list(gated.values()), 1))

    def compute_loss(self, features, training=False):
        return self.task(self(features), self.candidate(features))


def split(data, rows: slice, batch: int) -> tf.data.Dataset:
    columns = {name: values[rows] for name, values in data.items()}
    return tf.data.Dataset.from_tensor_slices(columns).batch(batch)


def test_the_check_reaches_a_tower_that_only_the_loss_runs():
    data = planted(0)
    model = TwoTower()
    model(split(data, slice(0, 8), 8).get_single_element())
    checked = check_functional_dependence(
        model,
        [model.query_gate, model.candidate_gate],
        split(data, slice(0, 2000), 500),
    )
    assert checked == {model.query_gate.name: 2000, model.candidate_gate.name: 2000}
    assert model.candidate_gate.functional_dependencies == {"item_genre": ("item_id",)}
    assert model.query_gate.functional_dependencies == {
        "user_id": ("user_copy",),
        "user_copy": ("user_id",),
        "age": ("user_id", "user_copy"),
    }


@pytest.fixture(scope="module")
def selected_two_tower():
    """Both towers selected inside one fit of 200 steps: the query gate's
    three rounds are 53 steps, the candidate gate's one is 100."""
    data = planted(1)
    tf.keras.utils.set_random_seed(1)
    model = TwoTower()
    model.compile(tf.keras.optimizers.Adagrad(0.1))
    callback = seqattn_tfrs.SequentialAttentionCallback(
        within_fit=True, selection_data=split(data, slice(12_800, None), 640), verbose=0
    )
    train = split(data, slice(0, 12_800), 256)
    model.fit(train, epochs=4, callbacks=[callback], verbose=0)
    return model, callback


def test_each_tower_selects_its_planted_fields(selected_two_tower):
    model, callback = selected_two_tower
    query = model.query_gate.selected_features
    assert set(query) - {"user_id", "user_copy"} == {"age", "hour"}
    assert len({"user_id", "user_copy"} & set(query)) == 1
    assert model.candidate_gate.selected_features == ("item_id",)
    rounds = {e["layer"]: e["round"] for e in callback.events if "round" in e}
    assert rounds == {model.query_gate.name: 3, model.candidate_gate.name: 1}


def test_each_tower_learns_in_rounds_of_its_own_length(selected_two_tower):
    model, _ = selected_two_tower
    schedules = {
        g.name: g.schedule_record for g in (model.query_gate, model.candidate_gate)
    }
    assert schedules[model.query_gate.name]["per_round"] == 53
    assert schedules[model.candidate_gate.name]["per_round"] == 100


def test_the_pruned_query_tower_serves_its_selected_fields(
    selected_two_tower, tmp_path
):
    model, _ = selected_two_tower
    before = model(split(planted(2), slice(0, 5), 5).get_single_element())
    seqattn_tfrs.prune(model)
    query = model.query_gate.selected_features
    # fit called the model on every feature; the served graph reads the
    # query tower's selected ones alone.
    path = seqattn_tfrs.export_for_serving(model, tmp_path)
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    assert set(serve.structured_input_signature[1]) == set(query)
    rows = planted(2)
    served = serve(**{name: tf.constant(rows[name][:5]) for name in query})
    np.testing.assert_allclose(served["scores"], before, atol=1e-5)
