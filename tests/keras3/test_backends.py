"""The Keras 3 front-end on the JAX, TensorFlow and PyTorch backends.

Each backend runs ``scenarios.py`` in a subprocess of its own (Keras 3 reads
``KERAS_BACKEND`` at import, and this suite's conftest makes ``tf.keras``
Keras 2), all at once. ``KERAS_BACKEND=torch python tests/keras3/scenarios.py
two_tower`` runs one scenario by hand.
"""

from __future__ import annotations

import ast
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
SCENARIOS = [
    "omp",
    "first_pick",
    "settled",
    "ctr",
    "prune_export",
    "distributed",
    "config",
    "saved_layouts",
    "budget",
    "dependence",
    "evidence",
    "stopped",
    "warm_start",
    "selection_data_checks",
    "two_tower",
    "heldout_ahead",
    "heldout_device",
    "heldout_revisits",
    "probe",
    "doctests",
]
BACKENDS = ["jax", "tensorflow", "torch"]
# Strings reach a model only on the TensorFlow backend.
ONLY = {"probe_strings": ["tensorflow"]}
RUNS = {
    backend: SCENARIOS + [s for s, on in ONLY.items() if backend in on]
    for backend in BACKENDS
}


def _environment(backend: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    return env


def _start(backend: str, scenarios: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(HERE / "scenarios.py"), *scenarios],
        env=_environment(backend),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _results(process: subprocess.Popen) -> dict[str, dict]:
    out, err = process.communicate(timeout=600)
    results = {}
    for line in out.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            results[record["scenario"]] = record
    results["_failure"] = err[-4000:] if process.returncode else ""
    return results


@pytest.fixture(scope="module")
def runs() -> dict[str, dict[str, dict]]:
    processes = {backend: _start(backend, RUNS[backend]) for backend in BACKENDS}
    return {backend: _results(process) for backend, process in processes.items()}


@pytest.mark.parametrize(
    "backend, scenario", [(b, s) for b in BACKENDS for s in RUNS[b]]
)
def test_scenario_passes(runs, backend, scenario):
    result = runs[backend]
    assert scenario in result, f"{backend} {scenario} failed:\n{result['_failure']}"


def test_backends_select_the_same_omp_order(runs):
    orders = {backend: runs[backend]["omp"]["order"] for backend in BACKENDS}
    assert len({tuple(order) for order in orders.values()}) == 1, orders


def test_export_signature_takes_only_the_kept_features(runs):
    for backend in BACKENDS:
        record = runs[backend]["prune_export"]
        assert "match" in record["loader"], record
        assert not record["dropped_weights_left"], record


def test_both_backends_find_the_recoding(runs):
    for backend in BACKENDS:
        record = runs[backend]["dependence"]
        assert record["dependencies"] == {
            "strong": ["recoded"],
            "recoded": ["strong"],
        }, record
    # JAX: the check's table lookups compile as one program (scenario asserts).
    assert runs["jax"]["dependence"]["check_compiles"]["compiled"] <= 1


def test_keras_rs_example_selects_prunes_and_exports(tmp_path):
    """``examples/keras_rs_dcn.py --smoke`` as its docstring runs it (JAX):
    it picks 4 features, the pruned model predicts what the gated one did,
    and the SavedModel's signature takes exactly the kept features."""
    example = HERE.parents[1] / "examples" / "keras_rs_dcn.py"
    done = subprocess.run(
        [sys.executable, str(example), "--smoke", "--export_dir", str(tmp_path)],
        env=_environment("jax"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = {
        line.split(":", 1)[0]: line.split(":", 1)[1]
        for line in done.stdout.splitlines()
        if ":" in line
    }
    kept = sorted(ast.literal_eval(lines["selected, in order"].strip()))
    assert len(kept) == 4, done.stdout
    change = float(lines["pruned model"].rsplit(" ", 1)[1])
    assert change < 1e-5, done.stdout
    exported = next(v for k, v in lines.items() if k.startswith("exported "))
    assert f"serving_default takes {kept}" in exported, done.stdout
    assert list(tmp_path.glob("*/saved_model.pb")), list(tmp_path.iterdir())


def test_readme_keras3_example_runs_as_written(tmp_path):
    """The README's Keras 3 block (its second Python block) on JAX, with its
    export directory moved under ``tmp_path``: it picks ``a`` and ``b``, the
    pruned model takes only them, and the export is a SavedModel."""
    readme = (HERE.parents[1] / "README.md").read_text()
    block = re.findall(r"```python\n(.*?)```", readme, re.S)[1]
    demo = '"/tmp/seqattn_keras3_demo"'
    assert demo in block, "the README's Keras 3 block changed its export path"
    script = tmp_path / "readme_keras3.py"
    script.write_text(block.replace(demo, repr(str(tmp_path / "demo"))))
    done = subprocess.run(
        [sys.executable, str(script)],
        env={**_environment("jax"), "PYTHONPATH": str(HERE.parents[1])},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    selected, inputs, path = done.stdout.strip().splitlines()[-3:]
    assert sorted(ast.literal_eval(selected)) == ["a", "b"], done.stdout
    assert ast.literal_eval(inputs) == ["a", "b"], done.stdout
    assert (pathlib.Path(path) / "saved_model.pb").exists(), done.stdout
