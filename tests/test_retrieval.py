"""A TFRS two-tower retrieval model with a gate on each tower.

The planted problem is ``benchmarks/planted.py``'s ``two_tower_problem``: the
query tower needs ``user_id`` (or its exact copy), ``age`` and ``hour`` among
two noise fields;
the candidate tower needs ``item_id`` beside its coarsening and a noise field.
The model's ``call`` is the query tower alone, as in TFRS's retrieval
tutorials, so the candidate gate is reached only through ``compute_loss``;
the gates select 3 and 1 features, so ``within_fit`` gives them rounds of
different lengths.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

import seqattn_tfrs
from seqattn_tfrs import heldout
from seqattn_tfrs.dependence_check import check_functional_dependence

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
from planted import two_tower_correct, two_tower_problem  # noqa: E402
from two_tower import TwoTower, fit, split  # noqa: E402


def test_the_check_reaches_a_tower_that_only_the_loss_runs():
    data = two_tower_problem(0)
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
    """Both towers selected inside one fit of 200 steps."""
    model, callback, _ = fit(seed=1)
    return model, callback


def test_each_tower_selects_its_planted_fields(selected_two_tower):
    model, callback = selected_two_tower
    query = model.query_gate.selected_features
    assert two_tower_correct(query, model.candidate_gate.selected_features), query
    rounds = {e["layer"]: e["round"] for e in callback.events if "round" in e}
    assert rounds == {model.query_gate.name: 3, model.candidate_gate.name: 1}


def test_towers_of_one_pick_each_pick_their_planted_field():
    """One round each, of the same length: while one tower's gates are all 0,
    the in-batch softmax gives the other's no gradient, so the first round's
    score test holds no evidence and the soft gates' held-out lead decides.
    (Before it did, seed 1 picked the 3,000-value ``noise_a`` and the
    2,000-value ``item_noise``; 1 and 4 of seeds 0-9 were right.)"""
    model, _, _ = fit(seed=1, query_picks=1)
    query = model.query_gate.selected_features
    assert two_tower_correct(query, model.candidate_gate.selected_features), query


def test_each_tower_learns_in_rounds_of_its_own_length(selected_two_tower):
    model, _ = selected_two_tower
    assert model.query_gate.schedule_record["per_round"] == 53
    assert model.candidate_gate.schedule_record["per_round"] == 100


def test_the_pruned_query_tower_serves_its_selected_fields(
    selected_two_tower, tmp_path
):
    model, _ = selected_two_tower
    rows = two_tower_problem(2)
    before = model(split(rows, slice(0, 5), 5).get_single_element())
    seqattn_tfrs.prune(model)
    query = model.query_gate.selected_features
    # fit called the model on every feature; the served graph reads the
    # query tower's selected ones alone.
    path = seqattn_tfrs.export_for_serving(model, tmp_path)
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    assert set(serve.structured_input_signature[1]) == set(query)
    served = serve(**{name: tf.constant(rows[name][:5]) for name in query})
    np.testing.assert_allclose(served["scores"], before, atol=1e-5)
    # The candidate tower's tables are in the model, not in the export: the
    # record counts the query tower's kept tables alone.
    record = json.loads(pathlib.Path(path, "assets.extra/selection.json").read_text())
    assert [g["name"] for g in record["gated_layers"]] == [model.query_gate.name]
    assert record["unserved_gated_layers"] == [model.candidate_gate.name]
    kept = seqattn_tfrs.size_report(model)["gated_layers"][model.query_gate.name]
    assert record["embedding_tables"]["after"] == kept["after"]


def test_held_out_passes_leave_out_the_factorized_top_k_metrics():
    """TFRS computes FactorizedTopK (every candidate scored) whenever
    ``compute_loss`` runs with ``training=False``; the held-out passes need
    only the loss (docs/details.md: a held-out selection run took about 3
    times as long with it)."""
    updates = []

    class CountedTopK(tfrs.metrics.FactorizedTopK):
        def update_state(self, *args, **kwargs):
            updates.append(1)
            return super().update_state(*args, **kwargs)

    data = two_tower_problem(0)
    candidates = split(data, slice(0, 256), 32)  # candidate features' rows
    model = TwoTower()
    model.task.factorized_metrics = [
        CountedTopK(candidates=candidates.map(model.candidate), ks=(10,))
    ]
    batch = split(data, slice(0, 64), 64).get_single_element()
    loss = heldout.loss_function(model)(batch)
    assert updates == []
    assert len(model.task.factorized_metrics) == 1  # still there for evaluate
    np.testing.assert_allclose(loss, model.compute_loss(batch), rtol=1e-6)
    assert updates == [1]
