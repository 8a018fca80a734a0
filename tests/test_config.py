"""The job config: strict loading, errors naming key and file, defaults."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import pytest

from seqattn_tfrs.movielens import config as config_lib
from seqattn_tfrs.movielens.config import (
    ConfigError,
    FeatureConfig,
    JobConfig,
    load_config,
    override,
    save_config,
)

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_FILE = REPO / "configs" / "movielens_100k.json"


def write(tmp_path: pathlib.Path, payload, name: str = "job.json") -> pathlib.Path:
    path = tmp_path / name
    text = payload if isinstance(payload, str) else json.dumps(payload)
    path.write_text(text, encoding="utf-8")
    return path


def test_default_equals_shipped_config_file():
    assert load_config(DEFAULT_FILE) == JobConfig.default()


def test_default_job_shape():
    config = JobConfig.default()
    names = [f.name for f in config.all_features]
    assert len(names) == len(set(names)) == 16
    assert names[-3:] == ["noise_0", "noise_1", "noise_2"]
    assert config.noise.vocabulary_size == 5000
    assert config.selection.num_selected == 6
    assert {f.kind for f in config.features} == {
        "string",
        "int",
        "multi_int",
        "numeric",
    }


def test_round_trip_through_file(tmp_path):
    config = override(
        JobConfig.default(),
        {"selection.num_selected": 4, "model.hidden_units": [8], "seed": 7},
    )
    config = dataclasses.replace(
        config,
        features=(
            *config.features,
            FeatureConfig("user_occupation_label", "int", vocabulary=(1, 2, 3)),
        ),
    )
    path = tmp_path / "round_trip.json"
    save_config(config, path)
    assert load_config(path) == config
    assert JobConfig.from_dict(json.loads(path.read_text())) == config


def test_partial_file_takes_defaults(tmp_path):
    path = write(tmp_path, {"seed": 3, "selection": {"num_selected": 2}})
    config = load_config(path)
    assert config.seed == 3 and config.selection.num_selected == 2
    assert config.selection.warmup_epochs == JobConfig.default().selection.warmup_epochs
    assert config.features == JobConfig.default().features


@pytest.mark.parametrize(
    ("payload", "key", "fragment"),
    [
        ({"selection": {"num_selecte": 3}}, "selection.num_selecte", "unknown key"),
        ({"bogus": 1}, "bogus", "unknown key"),
        ({"selection": {"num_selected": "6"}}, "selection.num_selected", "an int"),
        ({"selection": {"num_selected": 6.0}}, "selection.num_selected", "an int"),
        (
            {"selection": {"use_selection_data": 1}},
            "selection.use_selection_data",
            "bool",
        ),
        ({"batch_size": True}, "batch_size", "an int"),
        ({"learning_rate": "fast"}, "learning_rate", "a number"),
        ({"optimizer": "rmsprop"}, "optimizer", "'adam' or 'adagrad' or 'sgd'"),
        ({"selection": []}, "selection", "an object"),
        ({"model": {"hidden_units": [64, "32"]}}, "model.hidden_units[1]", "an int"),
        ({"model": {"hidden_units": [64, 0]}}, "model.hidden_units[1]", ">= 1"),
        ({"selection": {"num_selected": 0}}, "selection.num_selected", ">= 1"),
        ({"selection": {"num_selected": 17}}, "selection.num_selected", "at most"),
        (
            {"selection": {"settle_fraction": 1.0}},
            "selection.settle_fraction",
            "[0, 1)",
        ),
        ({"noise": {"vocabulary_size": 1}}, "noise.vocabulary_size", ">= 2"),
        ({"features": [{"kind": "string"}]}, "features[0].name", "missing required"),
        (
            {"features": [{"name": "a", "kind": "float"}]},
            "features[0].kind",
            "'string'",
        ),
        (
            {"features": [{"name": "a", "kind": "string", "size": 3}]},
            "features[0].size",
            "unknown key",
        ),
        (
            {"features": [{"name": "t", "kind": "numeric"}]},
            "features[0].num_buckets",
            "required",
        ),
        (
            {"features": [{"name": "a", "kind": "int", "vocabulary": ["x"]}]},
            "features[0].vocabulary",
            "list of ints",
        ),
        (
            {"features": [{"name": "a", "kind": "int"}, {"name": "a", "kind": "int"}]},
            "features[1].name",
            "repeats features[0].name",
        ),
        (
            {"features": [{"name": "noise_1", "kind": "int"}]},
            "noise.name_prefix",
            "clashes",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_invalid_values_name_key_and_file(tmp_path, payload, key, fragment):
    path = write(tmp_path, payload)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert info.value.key == key
    assert f"{key}:" in message
    assert str(path) in message
    assert fragment in message
    assert isinstance(info.value, ValueError)


def test_missing_file_names_file(tmp_path):
    path = tmp_path / "nowhere.json"
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"seed": 1,,}', "not valid JSON"),
        ('{"seed": 1, "seed": 2}', "appears twice"),
        ('{"learning_rate": NaN}', "NaN is not a valid JSON number"),
        ("[1, 2]", "expected an object"),
    ],
)
def test_malformed_json_names_file(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=fragment) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_override_validates_like_a_file():
    config = override(JobConfig.default(), {"selection.num_selected": 3, "seed": 5})
    assert (config.selection.num_selected, config.seed) == (3, 5)
    with pytest.raises(ConfigError, match="flags: selection.nope: unknown key"):
        override(JobConfig.default(), {"selection.nope": 1}, source="flags")
    with pytest.raises(ConfigError, match="batch_size: must be an int >= 1"):
        override(JobConfig.default(), {"batch_size": 0})


def test_direct_construction_validates():
    with pytest.raises(ConfigError, match="num_buckets"):
        FeatureConfig("t", "numeric")
    with pytest.raises(ConfigError, match="selection.num_selected"):
        JobConfig(
            features=(FeatureConfig("a", "int"),),
            noise=config_lib.NoiseConfig(num_fields=0),
        )


def test_smoke_resolution_shrinks_data_and_schedule():
    config = override(JobConfig.default(), {"smoke": True})
    resolved = config.resolved()
    assert resolved.max_examples == config_lib.SMOKE_MAX_EXAMPLES
    assert resolved.batch_size <= config_lib.SMOKE_BATCH_SIZE
    assert resolved.selection.epochs_per_selection == 1
    assert resolved.selection.num_selected == config.selection.num_selected
    assert resolved.features == config.features
    assert JobConfig.default().resolved() == JobConfig.default()


def test_total_epochs_counts_every_phase():
    selection = config_lib.SelectionConfig(
        num_selected=5,
        selections_per_round=2,
        warmup_epochs=1,
        epochs_per_selection=2,
        finetune_epochs=3,
    )
    assert selection.num_rounds == 3
    assert selection.total_epochs == 1 + 3 * 2 + 3
