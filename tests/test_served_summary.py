"""The served-model benchmark's tables: the arithmetic on hand-made rows."""

import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))

import served_summary  # noqa: E402


def row(seed, method, k, auc, seconds, epochs):
    return {
        "problem": "p",
        "seed": seed,
        "method": method,
        "k": k,
        "auc": auc,
        "train_seconds": seconds,
        "epochs": epochs,
    }


ROWS = [
    row(0, "plain", 5, 0.70, 10.0, 8),
    row(1, "plain", 5, 0.72, 12.0, 8),
    # SA served: one fit of 8 epochs per k.
    row(0, "sa_heldout", 2, 0.80, 11.0, 8),
    row(0, "sa_heldout", 4, 0.90, 13.0, 8),
    row(1, "sa_heldout", 2, 0.82, 12.0, 8),
    row(1, "sa_heldout", 4, 0.88, 14.0, 8),
    row(0, "sa_heldout_retrained", 2, 0.81, 15.0, 11),
    row(0, "sa_heldout_retrained", 4, 0.91, 17.0, 11),
    row(1, "sa_heldout_retrained", 2, 0.83, 16.0, 11),
    row(1, "sa_heldout_retrained", 4, 0.89, 18.0, 11),
    row(0, "permutation", 2, 0.84, 20.0, 7),
    row(0, "permutation", 4, 0.86, 22.0, 7),
    row(1, "permutation", 2, 0.84, 20.0, 7),
    row(1, "permutation", 4, 0.86, 22.0, 7),
    # Better than SA, but not "another method".
    row(0, "all", 2, 0.99, 5.0, 3),
    row(0, "all", 4, 0.99, 5.0, 3),
    # Seed 1 lacks k=4: only seed 0 counts over the sweep.
    row(0, "random", 2, 0.60, 8.0, 3),
    row(0, "random", 4, 0.70, 8.0, 3),
    row(1, "random", 2, 0.50, 8.0, 3),
    {"problem": "other", "seed": 0, "method": "sa_heldout", "k": 2, "auc": 0.1},
]


def test_summary_arithmetic(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    summary = served_summary.summarise(served_summary.read_rows([path]), "p")
    assert summary["ks"] == [2, 4] and summary["seeds"] == [0, 1]
    assert summary["plain"]["auc"] == pytest.approx((0.71, 0.0141421356))
    assert summary["plain"]["train_seconds"][0] == pytest.approx(11.0)
    sa = summary["methods"]["sa_heldout"]
    assert sa["per_k"][4]["auc"] == pytest.approx((0.89, 0.0141421356))
    # Per seed over the sweep 0.85 and 0.85: mean 0.85, spread 0.
    assert sa["sweep"]["auc"] == pytest.approx((0.85, 0.0))
    assert sa["sweep"]["train_seconds"][0] == pytest.approx(12.5)
    random = summary["methods"]["random"]
    assert random["sweep"]["seeds"] == 1
    assert random["sweep"]["auc"] == pytest.approx((0.65, 0.0))
    assert random["per_k"][2]["seeds"] == 2

    result = served_summary.verdict(summary)
    assert result["best_other"] == "permutation"  # not "all", not SA's own
    assert result["auc_gap"] == pytest.approx(0.85 - 0.85)
    assert result["seconds_gap"] == pytest.approx(12.5 - 21.0)
    assert result["seconds_ratio"] == pytest.approx(12.5 / 21.0)
    assert result["epochs_gap"] == pytest.approx(8 - 7)
    gaps = result["served_minus_retrained"]
    assert gaps[2] == pytest.approx(-0.01) and gaps[4] == pytest.approx(-0.01)
    assert gaps["sweep"] == pytest.approx(-0.01)

    text = served_summary.tables(summary)
    sa_row = "| sa_heldout | 0.8100 ± 0.0141 | 0.8900 ± 0.0141 | 0.8500 ± 0.0000 | 2 |"
    assert sa_row in text
    random_row = "| random | 0.5500 ± 0.0707 | 0.7000 ± 0.0000 | 0.6500 ± 0.0000 | 1 |"
    assert random_row in text
    assert "x1.14" in text  # 12.5 s against the plain fit's 11.0 s
