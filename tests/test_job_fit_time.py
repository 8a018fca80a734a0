"""The main job's default schedule and its fit-time report, on synthetic files.

The job runs in this process on 1,000 synthetic ratings in the GroupLens
layout (2 of 5 fields to select, 3 epochs of 50 steps), so that the
fit-within path, the baseline of the same epochs and the report's fit times
are checked in seconds; ``tests/test_main_job.py`` (the smoke job, whose
schedule is explicit) and ``tests/test_movielens_selection.py`` (the default
job) run the real data.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from seqattn_tfrs.movielens import report as report_lib
from seqattn_tfrs.movielens.config import (
    ConfigError,
    FeatureConfig,
    JobConfig,
    ModelConfig,
    NoiseConfig,
    SelectionConfig,
)
from seqattn_tfrs.movielens.job import run_job
from seqattn_tfrs.movielens.models import DCNRankingModel

# u.genre's names, in GroupLens' order.
GENRES = (
    *("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy"),
    *("Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror"),
    *("Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"),
)
OCCUPATIONS = ("writer", "administrator", "none", "student")
RATINGS = 1000
BATCH = 16  # 800 training ratings: 50 steps an epoch
EPOCHS = 3  # 150 steps: warm-up 15, 2 rounds of 60, fine-tune 15


def write_grouplens(directory: pathlib.Path, seed: int = 0) -> None:
    """40 users, 30 movies; a rating is high when user and movie parity match."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True)
    (directory / "u.genre").write_text(
        "".join(f"{name}|{i}\n" for i, name in enumerate(GENRES)), "latin-1"
    )
    items = []
    for item in range(1, 31):
        flags = ["0"] * len(GENRES)
        flags[item % len(GENRES)] = "1"
        items.append(
            f"{item}|Movie {item} (1990)|01-Jan-1990||http://example.org/{item}|"
            + "|".join(flags)
        )
    (directory / "u.item").write_text("\n".join(items) + "\n", "latin-1")
    users = [
        f"{u}|{20 + u % 30}|{'MF'[u % 2]}|{OCCUPATIONS[u % 4]}|{10000 + u}"
        for u in range(1, 41)
    ]
    (directory / "u.user").write_text("\n".join(users) + "\n", "latin-1")
    rows = []
    for _ in range(RATINGS):
        user, item = int(rng.integers(1, 41)), int(rng.integers(1, 31))
        high = (user % 2 == item % 2) != (rng.random() < 0.1)
        rating = int(rng.integers(4, 6) if high else rng.integers(1, 3))
        rows.append(f"{user}\t{item}\t{rating}\t{880000000 + int(rng.integers(10**7))}")
    (directory / "u.data").write_text("\n".join(rows) + "\n", "latin-1")


def small_config(tmp_path: pathlib.Path, **selection) -> JobConfig:
    write_grouplens(tmp_path / "data")
    return JobConfig(
        features=(
            FeatureConfig("user_id", "string", embedding_dim=4),
            FeatureConfig("movie_id", "string", embedding_dim=4),
            FeatureConfig("user_gender", "int", embedding_dim=4),
            FeatureConfig("weekday", "int", embedding_dim=4),
        ),
        noise=NoiseConfig(num_fields=1, vocabulary_size=50, embedding_dim=4),
        model=ModelConfig(cross_layers=0, hidden_units=(8,)),
        selection=SelectionConfig(**{"num_selected": 2, "epochs": EPOCHS, **selection}),
        batch_size=BATCH,
        learning_rate=0.01,
        output_dir=str(tmp_path / "out"),
        data_dir=str(tmp_path / "data"),
    )


TRACES: list[int] = []  # per fit of `default_run`, its training step's traces


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The job with the default (fit-within) schedule: its report and text."""
    tmp_path = tmp_path_factory.mktemp("job")
    config = small_config(tmp_path)
    assert config.selection.within_fit
    fit = DCNRankingModel.fit

    def counted(model, *args, **kwargs):
        history = fit(model, *args, **kwargs)
        TRACES.append(model.train_function.experimental_get_tracing_count())
        return history

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DCNRankingModel, "fit", counted)
        report = run_job(config, export=False)
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    return report, written


def test_each_fit_traces_its_training_step_once(default_run):
    # The job builds each model and its optimizer before `fit`; the TFRS model
    # would otherwise build its dense layers, and Adam its moments, in the
    # first trace, and tf.function would trace the step again.
    assert TRACES == [1, 1]


def test_the_default_schedule_is_laid_inside_the_fit(default_run):
    _, report = default_run
    assert report["schedule"] == {
        "unit": "steps",
        "warmup": 15,
        "rounds": 2,
        "per_round": 60,
        "finetune": 15,
        "within_fit": True,
    }
    assert report["data"]["epochs_per_model"] == EPOCHS
    assert report["data"]["steps_per_epoch"] == 50
    assert [event["step"] for event in report["selection_events"]] == [75, 135]
    assert len(report["selected_features"]) == 2


def test_the_baseline_fits_the_same_epochs(default_run):
    _, report = default_run
    epochs = list(range(1, EPOCHS + 1))
    for model in ("selected", "baseline"):
        assert [row["epoch"] for row in report["per_epoch"][model]] == epochs


def test_the_report_shows_both_fit_times_and_their_ratio(default_run):
    returned, report = default_run
    fit_time = report["fit_time"]
    assert set(fit_time) == {
        "epochs",
        "steps_per_epoch",
        "selected_seconds",
        "baseline_seconds",
        "ratio",
    }
    assert (fit_time["epochs"], fit_time["steps_per_epoch"]) == (EPOCHS, 50)
    assert fit_time["selected_seconds"] > 0 and fit_time["baseline_seconds"] > 0
    assert fit_time["ratio"] == pytest.approx(
        fit_time["selected_seconds"] / fit_time["baseline_seconds"], abs=1e-3
    )
    # Each fit is timed inside its phase, without the per-epoch evaluation.
    timings = report["timings_seconds"]
    assert fit_time["selected_seconds"] <= timings["train_selected"]
    assert fit_time["baseline_seconds"] <= timings["train_baseline"]
    assert returned["fit_time"] == fit_time
    text = report_lib.format_report(report)
    assert f"Fit wall time (s), both {EPOCHS} epochs of 50 steps" in text
    assert f"x{fit_time['ratio']:.2f}" in text
    assert "Schedule (fit-within, in steps): warm-up 15, 2 rounds x 60" in text


def test_too_few_epochs_for_the_rounds_are_refused_before_training(tmp_path):
    config = small_config(tmp_path, epochs=1)
    with pytest.raises(ConfigError) as info:
        run_job(config, export=False)
    # 50 steps: warm-up 5, fine-tune 5, two rounds of 20 < 40; 2 epochs fit.
    assert info.value.key == "selection.epochs"
    message = str(info.value)
    assert "got epochs=1 of 50 steps" in message
    assert "each round gets 20 steps, fewer than the 40" in message
    assert "expected epochs >= 2" in message
    assert "warmup_fraction" not in message  # no flag or key of the job's
    assert not (tmp_path / "out" / "report.json").exists()
