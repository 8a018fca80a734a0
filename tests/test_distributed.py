"""Selection under tf.distribute strategies matches a single machine's."""

import json
import os
import pathlib

import numpy as np
import pytest
from helpers.distributed_model import probe_rows
from helpers.processes import free_ports, port_is_free, run_cluster, run_python

WORKER = pathlib.Path(__file__).resolve().parent / "helpers" / "mirrored_worker.py"


def select(mode, source):
    out = run_python([WORKER, mode, source], timeout=300)
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("source", ["train", "heldout"])
def test_mirrored_selection_matches_single_device(source):
    mirrored, single = select("mirrored", source), select("single", source)
    assert mirrored["selected"] == single["selected"] == ["a", "c", "e"]
    first, second = mirrored["replica_masks"]
    assert first == second  # every replica holds the same selection
    np.testing.assert_allclose(
        mirrored["round_gates"], single["round_gates"], atol=0.05
    )


MULTIWORKER = WORKER.parent / "multiworker_worker.py"
SERVE = WORKER.parent / "serve_exports.py"


def serve(*paths):
    out = run_python([SERVE, json.dumps(probe_rows()), *paths], timeout=120)
    return json.loads(out.strip().splitlines()[-1])


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
    try:
        outputs = run_cluster([*workers, single], timeout=120)
    finally:
        assert all(port_is_free(port) for port in ports)
    chief, other, alone = (json.loads(out.strip().splitlines()[-1]) for out in outputs)

    assert chief["chief"] and not other["chief"]
    assert chief["selected"] == other["selected"] == alone["selected"] == list("ace")
    assert chief["replica_masks"] == other["replica_masks"] == [[1, 0, 1, 0, 1]]
    assert chief["gate_history"] == other["gate_history"]  # in sync, not just close
    for ours, theirs in zip(chief["gate_history"], alone["gate_history"]):
        np.testing.assert_allclose(
            list(ours.values()), list(theirs.values()), atol=0.05
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
    try:
        (out,) = run_cluster([coordinator], servers=servers, timeout=150)
    finally:
        assert all(port_is_free(port) for port in ports)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["selected"] == list("ace")
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

    # The export holds each kept table whole and serves without the cluster.
    (served,) = serve(result["export"]).values()
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
