"""Command line of the main job.

Usage::

    seqattn-tfrs [--config PATH] [--output_dir DIR] [--smoke] [overrides...]
    python -m seqattn_tfrs.movielens.cli --smoke --output_dir /tmp/smoke

Without ``--config`` the embedded default job (``JobConfig.default()``, the
same as ``configs/movielens_100k.json``) runs. Every scalar key of the config
is a flag (:data:`FLAG_KEYS`, derived from the config's fields): a key of
``selection`` or ``model`` and a top-level key under its own name, a key of
``noise`` as ``noise_<key>``. Flags given on the command line override the
config's values and are validated like the file. ``--epochs`` sets the
training; the rounds are laid inside it unless ``--warmup_epochs``,
``--epochs_per_selection`` or ``--finetune_epochs`` asks for an explicit
schedule, which then runs exactly its length (unless ``--epochs`` is given
too). Invalid flags, a budget that holds no table, too few epochs for the
schedule and an ``--output_dir`` that is a file end in
``seqattn-tfrs: error: ...`` and exit code 2.
"""

from __future__ import annotations

import os
import pathlib
import sys
import typing

# TFRS needs Keras 2 as tf.keras; this entry point owns its process. (The
# setting only takes effect if TensorFlow was not imported before this line.)
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from seqattn_tfrs.movielens.config import (  # noqa: E402
    EXPLICIT_SCHEDULE_KEYS,
    ConfigError,
    ConfigKey,
    JobConfig,
    check_budget,
    load_config,
    override,
    scalar_keys,
)

FLAGS = flags.FLAGS
FLAGS_SOURCE = "command-line flags"

flags.DEFINE_string("config", None, "JSON job config; default: the embedded default.")
flags.DEFINE_bool(
    "export", True, "Prune and export the selected model (--noexport skips)."
)

#: Sections whose keys become flags under a prefix; other keys keep their name.
_FLAG_PREFIXES = {"noise": "noise_"}
#: Older flag names kept working: alias -> flag.
_ALIASES = {"noise_fields": "noise_num_fields"}


def flag_name(key: str) -> str:
    """The flag of a dotted config key.

    Example:
      >>> flag_name("selection.num_selected"), flag_name("noise.vocabulary_size")
      ('num_selected', 'noise_vocabulary_size')
    """
    section, _, leaf = key.rpartition(".")
    return _FLAG_PREFIXES.get(section, "") + leaf


class _NumberOrWord(flags.ArgumentParser):
    """A flag that takes a number or one of a few words (``--entry_z=auto``)."""

    def __init__(self, words: tuple[str, ...]) -> None:
        self.words = words

    def parse(self, argument: typing.Any) -> float | str:
        if argument in self.words:
            return argument
        try:
            return float(argument)
        except (TypeError, ValueError):
            raise ValueError(
                f"expected a number or one of {list(self.words)}, got {argument!r}"
            ) from None

    def flag_type(self) -> str:
        return f"number or {' / '.join(self.words)}"


def _define(key: ConfigKey) -> str:
    name = flag_name(key.key)
    help_text = f"{key.help} (config key {key.key})."
    if key.choices and key.type is float:
        flags.DEFINE(_NumberOrWord(key.choices), name, None, help_text)
    elif key.choices:
        flags.DEFINE_enum(name, None, list(key.choices), help_text)
    elif key.type is bool:
        flags.DEFINE_bool(name, None, help_text)
    elif key.type is int:
        flags.DEFINE_integer(name, None, help_text)
    elif key.type is float:
        flags.DEFINE_float(name, None, help_text)
    else:
        flags.DEFINE_string(name, None, help_text)
    return name


#: Flag name -> dotted config key, one flag per scalar key of the config. A
#: flag left unset keeps the config's value.
FLAG_KEYS: dict[str, str] = {_define(key): key.key for key in scalar_keys()}
for _alias, _flag in _ALIASES.items():
    flags.DEFINE_alias(_alias, _flag)


def config_from_flags() -> JobConfig:
    """The job config: the ``--config`` file (or the default) plus flag overrides.

    Raises:
      FileNotFoundError: the ``--config`` file does not exist.
      ConfigError: the file or a flag value is invalid.
    """
    config = load_config(FLAGS.config) if FLAGS.config else JobConfig.default()
    values = {
        key: FLAGS[flag].value
        for flag, key in FLAG_KEYS.items()
        if FLAGS[flag].value is not None
    }
    if FLAGS.budget_bytes is not None and FLAGS.num_selected is None:
        values["selection.num_selected"] = None  # a budget replaces the count
    explicit = [f"selection.{key}" for key in EXPLICIT_SCHEDULE_KEYS]
    if FLAGS.epochs is None and any(key in values for key in explicit):
        values["selection.epochs"] = None  # an explicit schedule sets its epochs
    return override(config, values, source=FLAGS_SOURCE) if values else config


def check_runnable(config: JobConfig) -> None:
    """Refuses, before any data is read, what would fail later.

    Args:
      config: the job config from :func:`config_from_flags`.

    Raises:
      ConfigError: ``output_dir`` (or a folder above it) is an existing file,
        or ``selection.budget_bytes`` is smaller than any embedding table can
        be (see :func:`~seqattn_tfrs.movielens.config.check_budget`).
    """
    source = FLAGS_SOURCE if FLAGS.config is None else f"{FLAGS.config} + flags"
    output_dir = pathlib.Path(config.output_dir)
    for path in (output_dir, *output_dir.parents):
        if path.exists():
            if not path.is_dir():
                raise ConfigError(
                    "output_dir",
                    f"{config.output_dir!r} cannot be created: {str(path)!r} is an "
                    "existing file; expected a directory or a path to create one",
                    source,
                )
            break
    check_budget(config.resolved(), source=source)


def _fail(error: Exception | str) -> typing.NoReturn:
    print(f"seqattn-tfrs: error: {error}", file=sys.stderr)
    sys.exit(2)


def parse_flags(argv: list[str]) -> list[str]:
    """Parses the flags; a malformed one (``--seed x``) is a usage error (exit 2)."""
    try:
        return FLAGS(argv)
    except flags.Error as e:
        _fail(f"{e}; see --help")


def main(argv: list[str]) -> None:
    """Runs the job configured by the flags (the absl ``main``)."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected positional arguments: {argv[1:]}")
    try:
        config = config_from_flags()
        check_runnable(config)
    except (ConfigError, FileNotFoundError) as e:
        _fail(e)
    # Imported after the flags are valid: it loads TensorFlow and TFRS.
    from seqattn_tfrs.movielens.job import run_job

    try:
        run_job(config, export=FLAGS.export)
    except ConfigError as e:  # found once the data is read (the exact budget)
        _fail(e)


def run() -> None:
    """Console-script entry point ``seqattn-tfrs``.

    The job's flags are declared key flags of the running program, so that
    ``--help`` lists them (absl lists only the main module's key flags, and
    the console script is a module of its own).
    """
    for flag in FLAGS.get_key_flags_for_module(__name__):
        FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
