"""The benchmarks run end to end in a tiny configuration, so they cannot rot."""

import json
import pathlib

from helpers.processes import run_python

ROOT = pathlib.Path(__file__).resolve().parents[1]


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
        f"--output={out}",
    )
    assert lines[-1].startswith("mean step time vs plain (39 fields, batch 64)")
    results = json.loads(out.read_text())
    assert set(results["mean_ratio_to_plain"]) == {"plain", "gated", "heldout-every-2"}
    assert results["mean_ratio_to_plain"]["plain"] == 1.0


def test_planted_grid_smoke():
    lines = run("planted_grid.py", "--problems=omp", "--optimizers=sgd", "--seeds=0")
    assert lines[-1] == "planted grid (signal=gradient, settle=0.5): 2/2 runs correct"


def test_export_size_benchmark_smoke():
    lines = run("export_size.py", "--rows=1000")
    assert lines[-1].startswith("export size: full ")
