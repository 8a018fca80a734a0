"""The benchmarks run end to end in a tiny configuration, so they cannot rot."""

import json
import pathlib
import sys

import numpy as np
import pytest
import tensorflow as tf
from helpers.processes import run_python

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from baselines import permutation_importance  # noqa: E402


def run(script, *args):
    return (
        run_python([ROOT / "benchmarks" / script, *args], timeout=600)
        .strip()
        .splitlines()
    )


def test_overhead_benchmark_smoke(tmp_path):
    out = tmp_path / "overhead.json"
    lines = run(
        "overhead.py",
        "--batch_size=64",
        "--chunks=2",
        "--steps=4",
        "--vocabulary=50",
        "--intervals=2",
        "--num_selected=2",
        "--run_steps=2",
        "--run_repeats=1",
        f"--output={out}",
    )
    assert lines[-1].startswith("mean step time vs plain (39 fields, batch 64)")
    assert "greedy retraining est." in lines[-1]
    results = json.loads(out.read_text())
    assert set(results["mean_ratio_to_plain"]) == {"plain", "gated", "heldout-every-2"}
    assert results["mean_ratio_to_plain"]["plain"] == 1.0
    runs = results["whole_runs"]
    assert runs["epochs"] == 4 and runs["greedy_fits"] == 39 + 38
    assert runs["greedy_high_s"] == 77 * runs["plain_fit_s"] > 0


def test_planted_grid_smoke():
    lines = run("planted_grid.py", "--problems=omp", "--optimizers=sgd", "--seeds=0")
    assert lines[-1] == "planted grid (signal=partial, settle=0.8): 2/2 runs correct"


def test_export_size_benchmark_smoke():
    lines = run("export_size.py", "--rows=1000")
    assert lines[-1].startswith("export size: full ")


def test_selection_quality_smoke(tmp_path):
    out = tmp_path / "quality.json"
    methods = [
        "sa_heldout",
        "sa_train",
        "all",
        "random",
        "one_shot",
        "permutation",
        "sfs",
        "lpfs",
    ]
    lines = run(
        "selection_quality.py",
        "--problem=ctr",
        "--rows=1200",
        "--ks=1,2",
        "--seeds=0",
        "--epochs=1",
        "--one_shot_epochs=1",
        "--lpfs_epochs=1",
        f"--output={out}",
    )
    assert lines[-1].startswith(
        "selection quality (ctr, k=[1, 2], 1 seeds, mean test AUC over k): best "
    )
    results = json.loads(out.read_text())["results"]
    assert list(results) == methods
    for method, result in results.items():
        assert len(result["auc_per_k"]) == 2
        (run_,) = result["runs"]
        assert 0.0 <= run_["auc"][0] <= 1.0 and run_["log_loss"][0] > 0
        assert len(run_["order"]) == (10 if method == "all" else 2)
        assert len(set(run_["order"])) == len(run_["order"])
        assert run_["select_seconds"] >= 0
    # "all" is one point repeated over the sweep.
    assert results["all"]["runs"][0]["auc"][0] == results["all"]["runs"][0]["auc"][1]


def test_selection_quality_criteo_shape_smoke(tmp_path):
    out = tmp_path / "criteo.json"
    lines = run(
        "selection_quality.py",
        "--problem=criteo",
        "--rows=2000",
        "--vocabulary=100",
        "--ks=2",
        "--seeds=0,1",
        "--epochs=1",
        "--methods=random",
        f"--output={out}",
    )
    assert lines[-1].startswith("selection quality (criteo, k=[2], 2 seeds")
    payload = json.loads(out.read_text())
    assert len(payload["fields"]) == 39
    runs = payload["results"]["random"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1]
    assert runs[0]["order"] != runs[1]["order"]
    assert len(payload["results"]["random"]["mean_auc"]) == 2  # mean, spread


def test_serving_benchmark_smoke(tmp_path):
    out = tmp_path / "serving.json"
    lines = run(
        "serving.py", "--rows=20000", "--calls=20", "--examples=1000", f"--output={out}"
    )
    assert lines[-1].startswith("serving: trimmed ")
    results = json.loads(out.read_text())
    full, trimmed = results["full"], results["trimmed"]
    assert len(results["selected"]) == 2
    assert trimmed["variables"] < full["variables"]
    assert results["floor_bytes"] * 0.99 <= trimmed["disk_bytes"] < full["disk_bytes"]
    for kind in (full, trimmed):
        assert kind["latency_batch1_ms"] > 0 and kind["rows_per_s_batch1024"] > 0


def test_scaling_benchmark_smoke(tmp_path):
    out = tmp_path / "scaling.json"
    lines = run(
        "scaling.py",
        "--fields=5,10",
        "--vocabularies=100",
        "--steps=2",
        "--batch_size=32",
        f"--output={out}",
    )
    assert lines[-1].startswith("scaling: selection step time ~ fields^")
    assert "~ vocabulary^? (one point);" in lines[-1], lines[-1]
    results = json.loads(out.read_text())
    assert list(results["fields"]) == ["5", "10"]
    assert list(results["vocabulary"]) == ["100"]
    assert set(results["log_log_slope"]) == {"fields"}  # a slope needs 2 points
    for point in [*results["fields"].values(), *results["vocabulary"].values()]:
        assert point["selection_step_ms"] > 0 and point["plain_step_ms"] > 0


def test_served_quality_smoke(tmp_path):
    # 2 epochs of 50 steps: 3 rounds of one pick would get 26 steps, so the
    # schedule refuses them and the benchmark runs 2 rounds of 2 picks.
    out = tmp_path / "served.jsonl"
    args = [
        "--problem=ctr",
        "--rows=4000",
        "--batch_size=64",
        "--ks=3",
        "--seeds=0",
        "--epochs=2",
        "--methods=sa_heldout,random",
        f"--jsonl={out}",
    ]
    lines = run("served_quality.py", *args)
    assert any(line.startswith("SA served minus SA's own picks") for line in lines)
    rows = {r["method"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"plain", "sa_heldout", "sa_heldout_retrained", "random"}
    served = rows["sa_heldout"]
    assert "do not fit in 100 training steps" in served["refused_one_per_round"]
    assert served["selections_per_round"] == 2 and served["schedule"]["rounds"] == 2
    assert served["max_abs_prune_change"] == 0.0 and served["kept_tables"] == 3
    assert served["epochs"] == rows["plain"]["epochs"] == 2
    retrained = rows["sa_heldout_retrained"]
    assert retrained["fields"] == served["fields"]
    assert retrained["train_seconds"] > served["train_seconds"]
    # A second run finds every row written and fits nothing more.
    run("served_quality.py", *args)
    assert len(out.read_text().splitlines()) == 4


def test_heldout_repeats_benchmark_smoke(tmp_path):
    out = tmp_path / "repeats.jsonl"
    run(
        "heldout_repeats.py",
        "--heldout_rows=512",
        "--seeds=0",
        f"--output={out}",
    )
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(row["order"]) == 3 and row["heldout_rows"] == 512
    # One z per candidate before each commit: 10, 9 and 8 candidates.
    assert [len(scores) for scores in row["gate_z"]] == [10, 9, 8]
    table = run("heldout_repeats.py", f"--summary={out}")
    assert table[-1].startswith("| 512 | 1 | ")


def test_generated_quality_resumes_only_runs_of_the_same_settings(tmp_path):
    out = tmp_path / "ls.jsonl"
    args = ["--kind=least_squares", "--problems=0:1", "--seeds=0", f"--output={out}"]
    run("generated_quality.py", *args)
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["problem"] == 0 and len(row["order"]) == 4
    assert row["settings"]["batch_size"] == 128
    written = out.read_text()
    # The same run again is found in the file, and says so.
    lines = run("generated_quality.py", *args)
    assert lines[-1].startswith("1 runs skipped: "), lines[-1]
    assert out.read_text() == written
    # A run of other settings (but the same tag) is another run.
    run("generated_quality.py", *args, "--batch_size=256")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["settings"]["batch_size"] for r in rows] == [128, 256]
    summary = run("generated_quality.py", f"--summary={out}")
    assert summary[0].startswith("least_squares adam heldout [default]: 2 runs")


def test_permutation_importance_averages_its_own_shuffles_per_field():
    label = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    columns = {"a": tf.constant(label), "b": tf.constant(label[::-1].copy())}

    class Model:  # log loss: the mean distance of a from the label; b unused
        def evaluate(self, cols, return_dict, verbose):
            return {"log_loss": float(np.mean(np.abs(cols["a"].numpy() - label)))}

    def rise(order):
        return float(np.mean(np.abs(label[order] - label)))

    def scores(repeats):
        return permutation_importance(
            Model(), columns, lambda cols: cols, ["a", "b"], seed=3, repeats=repeats
        )

    rng = np.random.default_rng(3)
    assert scores(1) == {"a": rise(rng.permutation(6)), "b": 0.0}
    rng = np.random.default_rng(3)
    draws = [rng.permutation(6) for _ in range(3)]  # a's three, drawn first
    got = scores(3)
    assert got["a"] == pytest.approx(np.mean([rise(d) for d in draws]))
    assert got["b"] == 0.0 and got["a"] > 0
    with pytest.raises(ValueError, match="`repeats` must be at least 1, got 0"):
        scores(0)
