"""The main job's report: the gates plot's legend and one way to count epochs."""

from __future__ import annotations

import json

import pytest

from seqattn_tfrs.movielens import report as report_lib
from seqattn_tfrs.movielens.config import JobConfig

NAMES = ("a", "b", "noise_0", "noise_1", "noise_2")
HISTORY = [
    {"epoch": e, "layer": "g", "gates": {n: 1.0 / (i + 1) for i, n in enumerate(NAMES)}}
    for e in range(3)
]


def legend(figure) -> list[str]:
    return [text.get_text() for text in figure.axes[0].get_legend().get_texts()]


@pytest.mark.parametrize(
    "selected",
    [["a", "noise_1", "noise_0"], ["noise_2", "noise_0"], ["a", "b"]],
    ids=["two_noise_picked", "only_noise_picked", "no_noise_picked"],
)
def test_gates_legend_marks_every_noise_field(selected):
    noise = ["noise_0", "noise_1", "noise_2"]
    figure = report_lib.gates_figure(
        HISTORY,
        selected,
        noise_features=noise,
        round_gates=[dict.fromkeys(NAMES, 0.2)] * 2,
    )
    labels = legend(figure)
    by_name = {}
    for label in labels:
        words = label.split()
        by_name[words[1] if words[0].startswith("#") else words[0]] = label
    assert sorted(by_name) == sorted(NAMES)
    for name, label in by_name.items():
        assert ("(noise)" in label) == (name in noise), labels
    # Picks first, in pick order.
    assert labels[: len(selected)] == [
        f"#{i} {n}" + (" (noise)" if n in noise else "")
        for i, n in enumerate(selected, 1)
    ]


def test_report_json_and_text_count_epochs_from_one(tmp_path):
    report = report_lib.build_report(
        config=JobConfig.default(),
        selected_features=["a"],
        noise_features=[],
        # As Keras' hooks and the callback give them: epochs from 0.
        selection_events=[{"epoch": 0, "step": None, "round": 1, "features": ["a"]}],
        metrics={
            "baseline": {"auc": 0.7, "log_loss": 0.6},
            "baseline_best_val_epoch": {"epoch": 2, "auc": 0.71, "log_loss": 0.59},
            "selected": {"auc": 0.72, "log_loss": 0.58},
        },
        per_epoch={"baseline": [{"epoch": e, "val_auc": 0.5} for e in range(3)]},
        tables_before={"tables": 1, "parameters": 4, "bytes": 16},
        tables_after={"tables": 1, "parameters": 4, "bytes": 16},
        export=None,
        timings={"total": 1.0},
        data={},
    )
    paths = report_lib.write_report(report, HISTORY, tmp_path)
    written = json.loads(paths["report"].read_text())
    assert [row["epoch"] for row in written["gate_history"]] == [1, 2, 3]
    assert [row["epoch"] for row in written["per_epoch"]["baseline"]] == [1, 2, 3]
    assert written["selection_events"][0]["epoch"] == 1
    assert written["metrics"]["baseline_best_val_epoch"]["epoch"] == 3
    text = report_lib.format_report(written)
    assert "baseline, epoch 3 *" in text


def summary(events: list[dict], rounds: int) -> str:
    """The text report of a budget selection with ``events`` in ``rounds``."""
    return report_lib.format_report(
        {
            "selected_features": ["a"],
            "selection_events": events,
            "metrics": {
                "baseline": {"auc": 0.7, "log_loss": 0.6},
                "selected": {"auc": 0.7, "log_loss": 0.6},
            },
            "embedding_tables": {
                key: {"tables": 1, "parameters": 4, "bytes": 16}
                for key in ("before", "after")
            },
            "schedule": {
                "unit": "steps",
                "warmup": 4,
                "rounds": rounds,
                "per_round": 40,
                "finetune": 4,
                "within_fit": True,
            },
            "export": None,
            "timings_seconds": {"total": 1.0},
        }
    )


def test_report_says_when_a_budget_closed_before_its_last_round():
    closing = {
        "round": 2,
        "features": ["a"],
        "fit_but_not_picked": {"c": 1.2, "b": 0.3},
    }
    text = summary([{"round": 1, "features": ["x"]}, closing], rounds=5)
    assert (
        "the budget closed after round 2: ['b', 'c'] still fit, but none passed "
        "the score test"
    ) in text
    # A budget that ran every round it reserved closed on time: no line.
    assert "closed" not in summary([closing], rounds=2)
    assert "closed" not in summary([{"round": 1, "features": ["x"]}], rounds=5)
