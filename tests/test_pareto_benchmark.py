"""The Pareto benchmark runs end to end in a tiny configuration, so it cannot rot."""

import json
import os
import pathlib
import subprocess
import sys

from seqattn_tfrs.movielens import data

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_pareto_benchmark_smoke(tmp_path):
    data.fetch_movielens_100k()  # the real files, cached once
    env = {
        **os.environ,
        "TF_USE_LEGACY_KERAS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "pareto.py"),
            "--datasets=criteo,movielens",
            # One variant per code path: plain tables, the field gate, the
            # width layer, fields then widths (count and width differ by one argument).
            "--variants=uniform,budget,combined,after",
            "--uniform_dims=4",
            "--byte_fractions=0.3",
            "--rules=attention",
            "--fields_per_round=64",
            "--blocks_per_round=1000",
            "--warmup_epochs=0",
            "--plain_epochs=1",
            "--finetune_epochs=0",
            "--criteo_rows=400",
            "--criteo_max_vocab=100",
            "--movielens_examples=400",
            "--batch_size=200",
            f"--output_dir={tmp_path}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1].startswith("pareto: 8 runs written")
    rows = json.loads((tmp_path / "pareto.json").read_text())
    variants = {row["variant"] for row in rows}
    assert variants == {
        "uniform-4",
        "budget-0.3-attention",
        "combined-0.3-attention",
        "after-0.3",
    }
    for row in rows:
        assert 0.0 <= row["test_auc"] <= 1.0
        if row["variant"].startswith(("budget", "combined", "after")):
            assert row["table_bytes"] <= 0.3 * row["all_bytes"]
        if row["variant"].startswith("after"):
            assert set(row["kept"]) <= set(row["fields_first"]), row
        if "max_abs_change_after_prune" in row:
            assert row["max_abs_change_after_prune"] < 1e-5
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
