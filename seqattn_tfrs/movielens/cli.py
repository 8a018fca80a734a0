"""Command line of the main job.

Usage::

    seqattn-tfrs [--config PATH] [--output_dir DIR] [--smoke] [overrides...]
    python -m seqattn_tfrs.movielens.cli --smoke --output_dir /tmp/smoke

Without ``--config`` the embedded default job (``JobConfig.default()``, the
same as ``configs/movielens_100k.json``) runs. Flags given on the command line
override the config's values and are validated like the file.
"""

from __future__ import annotations

import os
import sys
import typing

# TFRS needs Keras 2 as tf.keras; this entry point owns its process. (The
# setting only takes effect if TensorFlow was not imported before this line.)
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from seqattn_tfrs.movielens.config import (  # noqa: E402
    AttentionSignal,
    ConfigError,
    JobConfig,
    load_config,
    override,
)

FLAGS = flags.FLAGS

flags.DEFINE_string("config", None, "JSON job config; default: the embedded default.")
flags.DEFINE_bool(
    "smoke", False, "Quick run: a small subsample, one epoch per phase (< 1 min)."
)
flags.DEFINE_bool(
    "export", True, "Prune and export the selected model (--noexport skips)."
)

# Flag name -> dotted config key. A flag left unset keeps the config's value.
_OVERRIDES = {
    "output_dir": "output_dir",
    "data_dir": "data_dir",
    "seed": "seed",
    "batch_size": "batch_size",
    "learning_rate": "learning_rate",
    "optimizer": "optimizer",
    "max_examples": "max_examples",
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
    "noise_fields": "noise.num_fields",
    "noise_vocabulary_size": "noise.vocabulary_size",
}
flags.DEFINE_string(
    "output_dir", None, "Where report.json, gates.png and the export go."
)
flags.DEFINE_string(
    "data_dir", None, "MovieLens 100K files; default: fetch into the cache."
)
flags.DEFINE_integer("seed", None, "Seed of the split, noise fields and training.")
flags.DEFINE_integer("batch_size", None, "Training and evaluation batch size.")
flags.DEFINE_float("learning_rate", None, "Learning rate of the model's optimizer.")
flags.DEFINE_enum("optimizer", None, ["adam", "adagrad", "sgd"], "Model optimizer.")
flags.DEFINE_integer("max_examples", None, "Use only the first N ratings.")
flags.DEFINE_integer("num_selected", None, "Number of fields to select.")
flags.DEFINE_integer(
    "budget_bytes", None, "Select the fields whose tables fit this many bytes instead."
)
flags.DEFINE_float(
    "entry_z", None, "With --budget_bytes: stop when no field that fits helps by this."
)
flags.DEFINE_integer("selections_per_round", None, "Fields committed per round.")
flags.DEFINE_integer("warmup_epochs", None, "Dense epochs before the first round.")
flags.DEFINE_integer("epochs_per_selection", None, "Epochs per selection round.")
flags.DEFINE_integer("finetune_epochs", None, "Epochs after the last pick.")
flags.DEFINE_float("settle_fraction", None, "Part of each round before logits learn.")
flags.DEFINE_bool(
    "use_selection_data", None, "Logits learn on the validation split (else on train)."
)
flags.DEFINE_float("attention_learning_rate", None, "Step size of the logit rule.")
flags.DEFINE_enum(
    "attention_signal",
    None,
    list(typing.get_args(AttentionSignal)),
    "What the logits learn from.",
)
flags.DEFINE_integer("noise_fields", None, "Number of random fields added.")
flags.DEFINE_integer("noise_vocabulary_size", None, "Distinct values per random field.")


def config_from_flags() -> JobConfig:
    """The job config: the ``--config`` file (or the default) plus flag overrides.

    Raises:
      FileNotFoundError: the ``--config`` file does not exist.
      ConfigError: the file or a flag value is invalid.
    """
    config = load_config(FLAGS.config) if FLAGS.config else JobConfig.default()
    values = {
        key: FLAGS[flag].value
        for flag, key in _OVERRIDES.items()
        if FLAGS[flag].value is not None
    }
    if FLAGS.budget_bytes is not None and FLAGS.num_selected is None:
        values["selection.num_selected"] = None  # a budget replaces the count
    if FLAGS.smoke:
        values["smoke"] = True
    return override(config, values, source="command-line flags") if values else config


def main(argv: list[str]) -> None:
    """Runs the job configured by the flags (the absl ``main``)."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected positional arguments: {argv[1:]}")
    try:
        config = config_from_flags()
    except (ConfigError, FileNotFoundError) as e:
        print(f"seqattn-tfrs: error: {e}", file=sys.stderr)
        sys.exit(2)
    # Imported after the flags are valid: it loads TensorFlow and TFRS.
    from seqattn_tfrs.movielens.job import run_job

    run_job(config, export=FLAGS.export)


def run() -> None:
    """Console-script entry point ``seqattn-tfrs``."""
    app.run(main)


if __name__ == "__main__":
    run()
