"""Real data: the default MovieLens 100K job under Adam, with held-out logit steps.

Three random fields of 5,000 values each are added to the 13 real ones; they
can only memorise the training labels. Runs the whole default job (about two
minutes on 2 cores: 15 epochs per model, selection inside the first fit) in a
subprocess, without the export.
"""

import json
import pathlib

from helpers.processes import run_python

from seqattn_tfrs.movielens import data
from seqattn_tfrs.movielens.config import JobConfig

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_default_job_rejects_random_fields_and_keeps_auc(tmp_path):
    data.fetch_movielens_100k()  # fails loudly if the real files cannot be had
    config = JobConfig.default()
    assert config.optimizer == "adam" and config.selection.use_selection_data
    run_python(
        ["-m", "seqattn_tfrs.movielens.cli", "--noexport", "--output_dir", tmp_path],
        cwd=REPO,
        timeout=900,
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["selected_features"]) == config.selection.num_selected
    assert report["noise_features_selected"] == [], report["selected_features"]
    metrics = report["metrics"]
    best_all_fields = max(
        metrics["baseline"]["auc"], metrics["baseline_best_val_epoch"]["auc"]
    )
    assert metrics["selected"]["auc"] >= best_all_fields - 0.002, metrics
    # The default schedule: 15 epochs of 40 steps, six rounds of 80 inside them.
    assert report["schedule"] == {
        "unit": "steps",
        "warmup": 60,
        "rounds": 6,
        "per_round": 80,
        "finetune": 60,
        "within_fit": True,
    }
    fit_time = report["fit_time"]
    assert (fit_time["epochs"], fit_time["steps_per_epoch"]) == (15, 40)
    assert fit_time["selected_seconds"] > 0 and fit_time["baseline_seconds"] > 0


def test_a_feature_that_is_not_in_the_data_is_named():
    import dataclasses

    import pytest

    from seqattn_tfrs.movielens.config import FeatureConfig
    from seqattn_tfrs.movielens.job import prepare_data

    config = dataclasses.replace(
        JobConfig.default(),
        features=(
            *JobConfig.default().features,
            FeatureConfig("favourite_colour", "string", embedding_dim=4),
        ),
        max_examples=1000,
    )
    from seqattn_tfrs.movielens.config import ConfigError

    with pytest.raises(ConfigError) as info:
        prepare_data(config)
    assert info.value.key == "features[13].name"
    assert "'favourite_colour' is not a MovieLens field" in str(info.value)
    assert "'user_rating'" not in str(info.value)  # the label is no feature
