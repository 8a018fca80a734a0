"""Selection under tf.distribute strategies matches a single machine's."""

import json
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from helpers.distributed_model import (
    EPOCHS,
    LOOKUP_ROWS,
    TPURanker,
    build_model,
    make_callback,
    make_dataset,
    probe_rows,
    tpu_feature_config,
)
from helpers.processes import free_ports, port_is_free, run_cluster, run_python

import seqattn_tfrs

WORKER = pathlib.Path(__file__).resolve().parent / "helpers" / "mirrored_worker.py"


def select(mode, source):
    out = run_python([WORKER, mode, source], timeout=300)
    return json.loads(out.strip().splitlines()[-1])


def test_mirrored_probe_adds_up_every_replicas_rows():
    """Each replica sums the probe's training side over its own rows; the
    held-out pass and the commit read the total over replicas."""
    mirrored, single = select("mirrored", "probe"), select("single", "probe")
    assert mirrored["selected"] == single["selected"] == ["a", "c", "e"]
    assert mirrored["rounds"][0]["sums_l1"] is None  # the first pick: no probe
    for many, one in zip(mirrored["rounds"][1:], single["rounds"][1:]):
        # Close, not equal: each replica centres its projected gradients on
        # its half of the batch. One replica's sums alone are about half.
        assert many["sums_l1"] == pytest.approx(one["sums_l1"], rel=0.05)
        assert many["read_l1"] == pytest.approx(one["read_l1"], rel=0.05)
        np.testing.assert_allclose(many["z"], one["z"], atol=0.5)


@pytest.mark.parametrize("source", ["train", "heldout"])
def test_mirrored_selection_matches_single_device(source):
    mirrored, single = select("mirrored", source), select("single", source)
    assert mirrored["selected"] == single["selected"] == ["a", "c", "e"]
    first, second = mirrored["replica_masks"]
    assert first == second  # every replica holds the same selection
    np.testing.assert_allclose(
        mirrored["round_gates"], single["round_gates"], atol=0.05
    )
    # Held-out batches are counted once, not once per replica.
    assert mirrored["heldout_batches"] == single["heldout_batches"]
    assert any(single["heldout_batches"]) == (source == "heldout")


MULTIWORKER = WORKER.parent / "multiworker_worker.py"
SERVE = WORKER.parent / "serve_exports.py"


def serve(*paths, rows=None):
    rows = probe_rows() if rows is None else rows
    out = run_python([SERVE, json.dumps(rows), *paths], timeout=120)
    return json.loads(out.strip().splitlines()[-1])


def test_mirrored_entry_z_stop_matches_single_device():
    """The score-test sums add up over replicas; the stop is the same."""
    mirrored, single = select("mirrored", "entry_z"), select("single", "entry_z")
    assert mirrored["selected"] == single["selected"] == ["a", "c", "e"]
    assert mirrored["events"][-1] == [] and len(mirrored["events"]) < 5  # stopped
    first, second = mirrored["replica_masks"]
    assert first == second
    # Close, not equal: each replica centres its embeddings on its half of the
    # batch (the evidence scores embeddings less their batch mean), one device
    # on the whole batch; the statistics are z-units, so about 1 apart at most.
    for many, one in zip(mirrored["evidence"], single["evidence"]):
        for name in one:
            assert abs(many[name] - one[name]) < 0.1 * abs(one[name]) + 1.0, (
                many,
                one,
            )


def test_multiworker_selection_and_chief_export_match_single_machine(tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = [
        (
            [MULTIWORKER, "worker", "heldout", tmp_path],
            {
                "TF_CONFIG": json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": index}}
                )
            },
        )
        for index in range(2)
    ]
    single = ([MULTIWORKER, "single", "heldout", tmp_path], {})
    outputs = run_cluster([*workers, single], timeout=120)  # all killed, always
    assert all(port_is_free(port) for port in ports)
    chief, other, alone = (json.loads(out.strip().splitlines()[-1]) for out in outputs)

    assert chief["chief"] and not other["chief"]
    assert chief["selected"] == other["selected"] == alone["selected"] == list("ace")
    assert chief["replica_masks"] == other["replica_masks"] == [[1, 0, 1, 0, 1]]
    assert chief["gate_history"] == other["gate_history"]  # in sync, not just close
    # The held-out probe ran in rounds 2 and 3 on the sums of both workers'
    # replicas (an all-reduce), the same on both, close to one machine's.
    assert chief["probe_z"] == other["probe_z"]
    for ours, theirs in zip(chief["probe_z"][1:], alone["probe_z"][1:]):
        np.testing.assert_allclose(ours, theirs, atol=0.5)
        assert np.nanmax(ours) > 10
    # Against one machine the gate values are close, not equal: each replica
    # computes its logit step (and the partial signal's regression) on its half
    # of the batch, and the steps are averaged. Each round's leader is the same.
    for ours, theirs in zip(chief["gate_history"], alone["gate_history"]):
        open_ours = {n: g for n, g in ours.items() if g < 1}
        open_theirs = {n: g for n, g in theirs.items() if g < 1}
        assert max(open_ours, key=open_ours.get) == max(
            open_theirs, key=open_theirs.get
        )

    # Only the chief exported, and exactly what one machine exports from the
    # same weights: same signatures, variables, selection record and scores.
    assert other["export"] is None
    assert sorted(os.listdir(tmp_path)) == ["copy", "distributed", "single"]
    served = serve(chief["export"], chief["copy"], alone["export"])
    distributed, copy, single = (
        served[path] for path in (chief["export"], chief["copy"], alone["export"])
    )
    assert distributed["inputs"] == copy["inputs"] == single["inputs"] == list("ace")
    assert distributed["variables"] == copy["variables"] == single["variables"]
    for record in (distributed, copy):
        record["selection"].pop("saved_model_bytes")  # serialisation detail
        record["selection"].pop("model")  # Keras numbers model names per process
    # The schedule is what the fit's callback laid out: the trained model
    # records it, a copy rebuilt from config and weights has had no fit.
    schedules = [
        [layer.pop("schedule") for layer in record["selection"]["gated_layers"]]
        for record in (distributed, copy)
    ]
    assert schedules[0][0]["rounds"] == 3 and schedules[1] == [None]
    assert distributed["selection"] == copy["selection"]
    np.testing.assert_allclose(distributed["scores"], copy["scores"], atol=1e-6)
    # An independent single-machine run trains to nearly the same model.
    np.testing.assert_allclose(distributed["scores"], single["scores"], atol=0.05)


PS_CLUSTER = WORKER.parent / "ps_cluster.py"


@pytest.mark.parametrize(
    ("source", "partitioner"), [("train", "min_size"), ("heldout", "fixed")]
)
def test_parameter_server_selection_and_gathered_export(tmp_path, source, partitioner):
    ports = free_ports(5)
    address = [f"127.0.0.1:{port}" for port in ports]
    cluster = json.dumps(
        {"chief": address[:1], "worker": address[1:3], "ps": address[3:]}
    )
    servers = [
        ([PS_CLUSTER, "server", cluster, job, index], {})
        for job, index in [("worker", 0), ("worker", 1), ("ps", 0), ("ps", 1)]
    ]
    coordinator = (
        [PS_CLUSTER, "coordinator", cluster, source, partitioner, tmp_path / "ps"],
        {},
    )
    (out,) = run_cluster([coordinator], servers=servers, timeout=150)  # all killed
    assert all(port_is_free(port) for port in ports)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["selected"] == list("ace")
    # Its asynchronous workers' sums cannot be added up: no probe, and it says so.
    said = "built under ParameterServerStrategy, whose replicas' sums the held-out"
    assert out.count(said) == (1 if source == "heldout" else 0)
    for table in result["tables"].values():  # each table on both servers
        assert [shape for _, shape in table] == [[16, 4], [16, 4]]
        assert {device.split("/device")[0] for device, _ in table} == {
            "/job:ps/replica:0/task:0",
            "/job:ps/replica:0/task:1",
        }
    # FixedShardsPartitioner splits even the gate's own 5 logits; it still works.
    state_shards = 2 if partitioner == "fixed" else 1
    assert len(result["gate_state"]) == state_shards
    for gates in result["gate_history"]:
        assert max(gates, key=gates.get) in "ace"

    assert "outside `strategy.scope()`" in result["inside_scope"]
    assert "/job:ps/replica:0/task:" in result["remote_read"]
    assert sorted(os.listdir(tmp_path / "ps")) == [".seqattn_tfrs_export.lock", "1"]

    # The export holds each kept table whole and serves without the cluster.
    lookup = result["lookup"]
    served, lookup_served = serve(
        result["export"], lookup["export"], rows={**probe_rows(), "s_a": LOOKUP_ROWS}
    ).values()
    assert served["inputs"] == list("ace")
    tables = [v for v in served["variables"] if v[1] == [32, 4]]
    assert [name for name, _ in tables] == [
        f"gate/table_{name}/embeddings:0" for name in "ace"
    ]
    np.testing.assert_allclose(served["scores"], result["scores"], atol=1e-6)
    with open(os.path.join(result["export"], "saved_model.pb"), "rb") as handle:
        graph = handle.read()
    for job in (b"/job:ps", b"/job:worker", b"/job:chief"):
        assert job not in graph

    # Vocabularies become per-worker tables under this strategy; they export too.
    assert lookup["table"] == "DistributedTable"
    assert lookup_served["inputs"] == ["s_a"]
    np.testing.assert_allclose(lookup_served["scores"], lookup["scores"], atol=1e-6)


def test_steps_per_execution_counts_steps_not_batch_hooks():
    # TPU training runs several steps per call (steps_per_execution); Keras
    # then calls the batch hooks once per call, with the index of its last step.
    tf.keras.utils.set_random_seed(0)
    model = build_model()
    model.compile(tf.keras.optimizers.Adam(0.02), "mse", steps_per_execution=4)
    callback = seqattn_tfrs.SequentialAttentionCallback(
        warmup_epochs=1,
        steps_per_selection=8,
        finetune_epochs=1,
        settle_fraction=0.5,
        verbose=0,
    )
    model.fit(make_dataset(), epochs=4, callbacks=[callback], verbose=0)
    assert [event["step"] for event in callback.events] == [24, 32, 40]
    assert model.get_layer("gate").selected_features == tuple("ace")


def test_a_settle_that_swallows_the_round_is_refused_before_training():
    # 8-step rounds settle for 6 steps, but modes change every 4 steps: the
    # settle would last the whole round and the logits would never learn.
    model = build_model()
    model.compile(tf.keras.optimizers.Adam(0.02), "mse", steps_per_execution=4)
    callback = seqattn_tfrs.SequentialAttentionCallback(
        warmup_epochs=1, steps_per_selection=8, finetune_epochs=1, verbose=0
    )
    with pytest.raises(ValueError, match=r"rounds of 8 steps, settling for 6"):
        model.fit(make_dataset(), epochs=4, callbacks=[callback], verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 0


def test_tpu_embedding_path_selects_on_activations_and_exports_a_cpu_lookup(
    tmp_path,
):
    # What runs on a TPU is checked here on CPU: the same TFRS TPUEmbedding
    # layer (without a TPUStrategy it holds ordinary variables), the gate on its
    # activations, then the handover a TPU job makes: checkpoint, restore into
    # the model built without a TPUStrategy, prune, CPU lookup of kept tables.
    tf.keras.utils.set_random_seed(0)
    trained = TPURanker(tpu_feature_config())
    trained.compile(tf.keras.optimizers.Adam(0.02), "mse")
    callback = seqattn_tfrs.SequentialAttentionCallback(
        warmup_epochs=1, finetune_epochs=1, verbose=0
    )
    trained.fit(make_dataset(), epochs=EPOCHS, callbacks=[callback], verbose=0)
    assert trained.gate.selected_features == tuple("ace")
    checkpoint = tf.train.Checkpoint(model=trained).write(str(tmp_path / "ckpt"))

    serving = TPURanker(tpu_feature_config())
    rows = {n: tf.constant(v, tf.int64) for n, v in probe_rows().items()}
    serving(rows)  # builds the variables the checkpoint restores into
    status = tf.train.Checkpoint(model=serving).read(checkpoint)
    status.expect_partial().assert_existing_objects_matched()
    assert serving.gate.selected_features == tuple("ace")
    assert serving.gate.gate_history() == trained.gate.gate_history()
    serving = seqattn_tfrs.prune(serving)
    kept = serving.gate.selected_features
    serving.serving_config = {n: serving.feature_config[n] for n in kept}
    scores = serving(rows).numpy()
    np.testing.assert_allclose(scores, trained(rows).numpy(), atol=1e-6)

    path = seqattn_tfrs.export_for_serving(serving, tmp_path / "tpu")
    (served,) = serve(path).values()
    assert served["inputs"] == list("ace")
    tables = [name for name, shape in served["variables"] if shape == [32, 4]]
    assert [name.split("/")[-1] for name in tables] == [f"table_{n}:0" for n in "ace"]
    np.testing.assert_allclose(served["scores"], scores, atol=1e-6)


def test_distributed_cost_benchmark_smoke(tmp_path):
    out = tmp_path / "cost.json"
    lines = run_python(
        [
            pathlib.Path(__file__).resolve().parents[1]
            / "benchmarks"
            / "distributed_cost.py",
            "--strategies=single,multiworker",
            "--rows=2048",
            "--batch_size=256",
            "--vocabulary=50",
            "--repeats=1",
            f"--output={out}",
        ],
        timeout=180,
    ).splitlines()
    assert lines[-1].startswith("fit time vs single: multiworker x")
    results = json.loads(out.read_text())
    assert set(results["best"]) == {"single", "multiworker"}
    assert all(run["fit_seconds"] > 0 for run in results["best"].values())


@pytest.mark.parametrize("strategy", [None, "one_device"])
def test_the_probe_runs_under_a_strategy_of_mirrored_replicas(strategy, capsys):
    # Only a parameter server's or a TPU's strategy turns it off (the callback
    # then says so: the parameter-server test).
    tf.keras.utils.set_random_seed(0)
    scope = (
        tf.distribute.OneDeviceStrategy("/cpu:0").scope()
        if strategy
        else tf.distribute.get_strategy().scope()
    )
    with scope:
        model = build_model()
    callback = make_callback(make_dataset(seed=1))
    callback.verbose = 1
    model.fit(make_dataset(), epochs=EPOCHS, callbacks=[callback], verbose=0)
    printed = capsys.readouterr().out
    assert "so it does not run" not in printed
    assert printed.count("held-out probe's largest z") == 2  # rounds 2 and 3
    assert model.get_layer("gate").selected_features == tuple("ace")
