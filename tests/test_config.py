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
        ({"seed": -1}, "seed", "in [0, 4294967296), got -1"),
        ({"seed": 2**32}, "seed", "in [0, 4294967296), got 4294967296"),
        (
            {"selection": {"budget_rule": "gain_per_byte"}},
            "selection.budget_rule",
            "it needs `budget_bytes`",
        ),
        (
            {
                "selection": {
                    "num_selected": None,
                    "budget_bytes": 30000,
                    "settle_fraction": 0.0,
                }
            },
            "selection.settle_fraction",
            "expected settle_fraction > 0, or entry_z null",
        ),
        (
            {"features": [{"name": "user_rating", "kind": "int"}]},
            "features[0].name",
            "'user_rating' is the label the job predicts",
        ),
        ({"data_dir": ""}, "data_dir", "non-empty"),
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
    # Flags can carry what JSON cannot: the message names the key.
    with pytest.raises(ConfigError, match="learning_rate: must be a finite number"):
        override(JobConfig.default(), {"learning_rate": float("nan")})
    with pytest.raises(ConfigError, match="selection.entry_z: .* got inf"):
        override(JobConfig.default(), {"selection.entry_z": float("inf")})


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
    # Too few steps for fit-within rounds: an explicit schedule, 1 epoch a phase.
    assert not resolved.selection.within_fit
    assert resolved.selection.schedule_arguments() == {
        "warmup_epochs": 1,
        "epochs_per_selection": 1,
        "finetune_epochs": 1,
    }
    assert resolved.selection.fit_epochs(6) == 1 + 6 + 1
    assert resolved.selection.num_selected == config.selection.num_selected
    assert resolved.features == config.features
    assert JobConfig.default().resolved() == JobConfig.default()


def test_default_schedule_is_fit_within_the_earlier_15_epochs():
    selection = JobConfig.default().selection
    assert selection.within_fit
    assert selection.schedule_arguments() == {"within_fit": True}
    assert selection.epochs == 15 == selection.fit_epochs(selection.num_rounds)
    # The same training the explicit schedule it replaces ran: 1 + 6 x 2 + 2.
    explicit = override(
        JobConfig.default(),
        {
            "selection.warmup_epochs": 1,
            "selection.epochs_per_selection": 2,
            "selection.finetune_epochs": 2,
        },
    ).selection
    assert explicit.fit_epochs(explicit.num_rounds) == selection.epochs


@pytest.mark.parametrize(
    ("keys", "arguments", "epochs"),
    [
        ({"warmup_epochs": 0}, (0, 2, 2), 15),  # the fine-tune takes the rest
        ({"epochs_per_selection": 1}, (1, 1, 2), 15),
        ({"epochs_per_selection": 1, "epochs": None}, (1, 1, 2), 9),
        ({"warmup_epochs": 0, "finetune_epochs": 0, "epochs": 12}, (0, 2, 0), 12),
    ],
    ids=["warmup_only", "per_round_only", "null_epochs", "all_zero_phases"],
)
def test_an_explicit_schedule_key_selects_the_explicit_schedule(
    keys, arguments, epochs
):
    selection = config_lib.SelectionConfig(**keys)
    assert not selection.within_fit
    assert selection.schedule_arguments() == dict(
        zip(("warmup_epochs", "epochs_per_selection", "finetune_epochs"), arguments)
    )
    assert selection.fit_epochs(6) == epochs


def test_the_earlier_config_file_runs_its_explicit_schedule(tmp_path):
    path = write(
        tmp_path,
        {
            "selection": {
                "warmup_epochs": 1,
                "epochs_per_selection": 2,
                "finetune_epochs": 2,
            }
        },
    )
    selection = load_config(path).selection
    assert selection.schedule_arguments() == {
        "warmup_epochs": 1,
        "epochs_per_selection": 2,
        "finetune_epochs": 2,
    }
    assert selection.epochs is None  # set no epochs: exactly the schedule
    assert selection.fit_epochs(selection.num_rounds) == 15


@pytest.mark.parametrize(
    ("selection", "epochs"),
    [
        ({"epochs_per_selection": 1}, 1 + 6 + 2),
        ({"warmup_epochs": 0, "epochs_per_selection": 3}, 6 * 3 + 2),
        ({"epochs_per_selection": 1, "epochs": 12}, 12),
        ({"epochs": 20}, 20),
    ],
    ids=["one_key", "longer_than_15", "with_epochs", "fit_within"],
)
def test_a_file_with_explicit_keys_but_no_epochs_runs_its_schedule(
    tmp_path, selection, epochs
):
    config = load_config(write(tmp_path, {"selection": selection}))
    assert config.selection.fit_epochs(config.selection.num_rounds) == epochs
    assert config.selection.within_fit == (selection == {"epochs": 20})
    assert load_config(write(tmp_path, config.to_dict(), "again.json")) == config


@pytest.mark.parametrize(
    ("flags", "epochs", "within_fit"),
    [
        ([], 15, True),
        (["--epochs", "20"], 20, True),
        (["--epochs_per_selection", "3"], 1 + 6 * 3 + 2, False),
        (["--finetune_epochs", "0", "--epochs", "16"], 16, False),
    ],
    ids=["default", "epochs", "explicit_flag", "explicit_and_epochs"],
)
def test_flags_of_an_explicit_schedule_run_it_as_before(flags, epochs, within_fit):
    from absl.testing import flagsaver

    from seqattn_tfrs.movielens import cli

    with flagsaver.flagsaver():
        cli.FLAGS(["seqattn-tfrs", *flags])
        selection = cli.config_from_flags().selection
    assert selection.within_fit == within_fit
    assert selection.fit_epochs(selection.num_rounds) == epochs


def test_a_budget_without_the_score_test_may_fill_without_settling():
    selection = override(
        JobConfig.default(),
        {
            "selection.num_selected": None,
            "selection.budget_bytes": 30000,
            "selection.settle_fraction": 0.0,
            "selection.entry_z": None,
        },
    ).selection
    assert selection.settle_fraction == 0 and selection.entry_z is None


def parse(*flags: str) -> JobConfig:
    """The job config of the command line ``flags``."""
    from absl.testing import flagsaver

    from seqattn_tfrs.movielens import cli

    with flagsaver.flagsaver():
        cli.FLAGS(["seqattn-tfrs", *flags])
        return cli.config_from_flags()


def test_none_on_the_command_line_sets_a_key_to_null(tmp_path):
    config = parse("--budget_bytes", "30000", "--entry_z", "none")
    assert config.selection.entry_z is None
    assert config.selection.num_selected is None  # the budget replaced the count
    assert parse("--projection_dim", "NULL").model.projection_dim is None
    # Back from a file's explicit schedule and budget to fit-within and a count.
    path = write(
        tmp_path,
        {
            "selection": {
                "num_selected": None,
                "budget_bytes": 60000,
                "warmup_epochs": 2,
                "epochs_per_selection": 1,
            },
            "max_examples": 5000,
        },
    )
    config = parse(
        "--config",
        str(path),
        "--num_selected",
        "4",
        "--warmup_epochs",
        "none",
        "--epochs_per_selection",
        "none",
        "--epochs",
        "12",
        "--max_examples",
        "none",
    )
    selection = config.selection
    assert (selection.num_selected, selection.budget_bytes) == (4, None)
    assert selection.within_fit and selection.epochs == 12
    assert config.max_examples is None


def test_none_is_refused_where_a_key_takes_no_null():
    from absl import flags

    with pytest.raises(flags.IllegalFlagValueError, match="--settle_fraction"):
        parse("--settle_fraction", "none")
    with pytest.raises(ConfigError, match="num_selected and budget_bytes"):
        parse("--num_selected", "none")  # a count or a budget, not neither
    nullable = {k.key for k in config_lib.scalar_keys() if k.nullable}
    assert nullable == {
        "model.projection_dim",
        "selection.num_selected",
        "selection.budget_bytes",
        "selection.entry_z",
        "selection.epochs",
        "selection.warmup_epochs",
        "selection.epochs_per_selection",
        "selection.finetune_epochs",
        "data_dir",
        "max_examples",
    }


@pytest.mark.parametrize(
    ("selection", "fragments"),
    [
        (
            {"epochs": None},
            ["got epochs=None", "expected an int >= 1, or an explicit schedule"],
        ),
        (
            {"epochs_per_selection": 3, "epochs": 15},
            [
                "the explicit schedule needs 21 epochs",
                "got epochs=15",
                "expected at least 21, or null",
            ],
        ),
        ({"epochs": 0}, ["must be an int >= 1, got 0"]),
        ({"warmup_epochs": -1}, ["selection.warmup_epochs", "must be an int >= 0"]),
    ],
    ids=["fit_within_without_epochs", "explicit_longer_than_epochs", "zero", "neg"],
)
def test_schedule_errors_name_key_value_and_expected(tmp_path, selection, fragments):
    path = write(tmp_path, {"selection": selection})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    key = "warmup_epochs" if "warmup_epochs" in selection else "epochs"
    assert info.value.key == f"selection.{key}"
    assert str(path) in str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_fit_epochs_count_every_phase_of_an_explicit_schedule():
    selection = config_lib.SelectionConfig(
        num_selected=5,
        selections_per_round=2,
        epochs=None,
        warmup_epochs=1,
        epochs_per_selection=2,
        finetune_epochs=3,
    )
    assert selection.num_rounds == 3
    assert selection.fit_epochs(3) == 1 + 3 * 2 + 3


def test_config_is_a_strict_pydantic_model():
    import pydantic

    for cls in (
        JobConfig,
        FeatureConfig,
        config_lib.NoiseConfig,
        config_lib.ModelConfig,
        config_lib.SelectionConfig,
    ):
        assert pydantic.dataclasses.is_pydantic_dataclass(cls), cls
        settings = cls.__pydantic_config__
        assert settings["extra"] == "forbid" and settings["strict"] is True, cls
    # Field constraints are pydantic's, visible in the JSON schema.
    schema = pydantic.TypeAdapter(JobConfig).json_schema()
    assert schema["properties"]["batch_size"]["minimum"] == 1


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("attention_signal", "bogus", "`attention_signal` must be one of"),
        ("budget_rule", "cheapest", "`budget_rule` must be one of"),
        ("attention_momentum", 1.0, "`attention_momentum` must be a number in [0, 1)"),
        ("attention_learning_rate", 0.0, "`attention_learning_rate` must be a finite"),
        ("selections_per_round", 0, "`selections_per_round` must be an int >= 1"),
        ("selections_per_round", 7, "`selections_per_round`=7 is more than the 6"),
        ("attention_signal", 3, "expected a string, got 3"),
    ],
)
def test_attention_keys_are_validated_by_attention_options(
    tmp_path, key, value, fragment
):
    path = write(tmp_path, {"selection": {key: value}})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == f"selection.{key}"
    assert fragment in str(info.value) and str(path) in str(info.value)


def test_attention_options_are_one_object_with_the_library_defaults():
    import seqattn_tfrs

    selection = JobConfig.default().selection
    assert selection.attention == seqattn_tfrs.AttentionOptions()
    changed = override(
        JobConfig.default(),
        {"selection.attention_signal": "score", "selection.selections_per_round": 2},
    ).selection.attention
    assert isinstance(changed, seqattn_tfrs.AttentionOptions)
    assert (changed.attention_signal, changed.selections_per_round) == ("score", 2)


def test_flags_are_derived_from_the_config_fields():
    from seqattn_tfrs.movielens import cli

    keys = {k.key for k in config_lib.scalar_keys()}
    assert set(cli.FLAG_KEYS.values()) == keys
    assert "selection.attention_momentum" in keys and "model.cross_layers" in keys
    # Every flag name the hand-written table had still works.
    old = {
        "output_dir": "output_dir",
        "data_dir": "data_dir",
        "seed": "seed",
        "batch_size": "batch_size",
        "learning_rate": "learning_rate",
        "optimizer": "optimizer",
        "max_examples": "max_examples",
        "smoke": "smoke",
        "num_selected": "selection.num_selected",
        "budget_bytes": "selection.budget_bytes",
        "entry_z": "selection.entry_z",
        "selections_per_round": "selection.selections_per_round",
        "warmup_epochs": "selection.warmup_epochs",
        "epochs_per_selection": "selection.epochs_per_selection",
        "finetune_epochs": "selection.finetune_epochs",
        "settle_fraction": "selection.settle_fraction",
        "use_selection_data": "selection.use_selection_data",
        "attention_learning_rate": "selection.attention_learning_rate",
        "attention_signal": "selection.attention_signal",
        "noise_vocabulary_size": "noise.vocabulary_size",
    }
    for flag, key in old.items():
        assert cli.FLAG_KEYS[flag] == key
    assert cli.FLAGS["noise_fields"].help.startswith("Alias for --noise_num_fields")


def test_a_budget_that_holds_no_table_is_refused_before_the_data():
    config = override(
        JobConfig.default(),
        {"selection.num_selected": None, "selection.budget_bytes": 10},
    )
    with pytest.raises(ConfigError, match="fewer than 128 bytes") as info:
        config_lib.check_budget(config)  # from_data tables: 2 rows x 16 x 4 bytes
    assert info.value.key == "selection.budget_bytes"
    # No vocabulary is built yet: the bound names no table as the smallest.
    assert "smallest" not in str(info.value)
    fits = override(config, {"selection.budget_bytes": 130})
    config_lib.check_budget(fits)  # a 2-row table may fit until the data is read
    sizes = {f.name: 2 for f in fits.all_features}  # 3 rows: 192 bytes each
    with pytest.raises(ConfigError, match="needs 192 bytes"):
        config_lib.check_budget(fits, sizes)


def test_smoke_names_the_flags_it_replaces():
    from absl.testing import flagsaver

    from seqattn_tfrs.movielens import cli

    with flagsaver.flagsaver():
        cli.FLAGS(
            ["seqattn-tfrs", "--smoke", "--batch_size", "1024", "--seed", "3"]
            + ["--epochs_per_selection", "3", "--num_selected", "2"]
        )
        replaced = cli.smoke_replaced(cli.config_from_flags())
    # Smoke keeps the seed and the count; its schedule is one epoch a round.
    assert replaced == ["--epochs_per_selection 3 -> 1", "--batch_size 1024 -> 256"]
    with flagsaver.flagsaver():
        cli.FLAGS(["seqattn-tfrs", "--batch_size", "1024"])
        assert cli.smoke_replaced(cli.config_from_flags()) == []
