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
too). A key that takes null takes ``none`` (``--entry_z none``);
``--num_selected`` and ``--budget_bytes`` each clear the other. Invalid flags
or arguments, a budget that holds no table, too few epochs for the schedule,
features the data lacks, a ``--data_dir`` without the MovieLens files and an
``--output_dir`` that is a file end in ``seqattn-tfrs: error: ...`` and exit
code 2, before any training.
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
from seqattn_tfrs.movielens.parsing import data_layout  # noqa: E402

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


#: A flag's value for the config's null (``--entry_z none``); an unset flag
#: is None and keeps the config's value.
NULL = type("Null", (), {"__repr__": lambda self: "null"})()
#: The words a nullable key's flag takes for null.
NULL_WORDS = ("none", "null")


class _Nullable(flags.ArgumentParser):
    """A key's own parser that also takes ``none`` / ``null`` for null."""

    def __init__(self, parser: flags.ArgumentParser) -> None:
        self.parser = parser

    def parse(self, argument: typing.Any) -> typing.Any:
        if isinstance(argument, str) and argument.lower() in NULL_WORDS:
            return NULL
        return self.parser.parse(argument)

    def flag_type(self) -> str:
        return f"{self.parser.flag_type()} or none"


def _define(key: ConfigKey) -> str:
    name = flag_name(key.key)
    help_text = f"{key.help} (config key {key.key}"
    help_text += "; none for null)." if key.nullable else ")."
    if key.type is bool:
        if key.nullable:
            raise TypeError(f"{key.key}: a bool key that takes null has no flag")
        flags.DEFINE_bool(name, None, help_text)
        return name
    if key.choices and key.type is float:
        parser = _NumberOrWord(key.choices)
    elif key.choices:
        parser = flags.EnumParser(list(key.choices))
    elif key.type is int:
        parser = flags.IntegerParser()
    elif key.type is float:
        parser = flags.FloatParser()
    else:
        parser = flags.ArgumentParser()
    if key.nullable:
        parser = _Nullable(parser)
    flags.DEFINE(parser, name, None, help_text)
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
        key: None if FLAGS[flag].value is NULL else FLAGS[flag].value
        for flag, key in FLAG_KEYS.items()
        if FLAGS[flag].value is not None
    }
    # One of a count and a budget: the one given replaces the other.
    if values.get("selection.budget_bytes") and FLAGS.num_selected is None:
        values["selection.num_selected"] = None
    if values.get("selection.num_selected") and FLAGS.budget_bytes is None:
        values["selection.budget_bytes"] = None
    explicit = [f"selection.{key}" for key in EXPLICIT_SCHEDULE_KEYS]
    if FLAGS.epochs is None and any(values.get(key) is not None for key in explicit):
        values["selection.epochs"] = None  # an explicit schedule sets its epochs
    return override(config, values, source=FLAGS_SOURCE) if values else config


def check_runnable(config: JobConfig) -> None:
    """Refuses, before any data is read, what would fail later.

    Args:
      config: the job config from :func:`config_from_flags`.

    Raises:
      ConfigError: ``output_dir`` (or a folder above it) is an existing file,
        ``selection.budget_bytes`` is smaller than any embedding table can
        be (see :func:`~seqattn_tfrs.movielens.config.check_budget`), or
        ``data_dir`` does not hold the MovieLens 100K files.
    """
    source = config_source()
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
    if config.data_dir is not None:
        try:
            data_layout(config.data_dir)
        except FileNotFoundError as e:
            raise ConfigError("data_dir", str(e), source) from None


def config_source() -> str:
    """Where the job's config came from, as its errors name it."""
    return FLAGS_SOURCE if FLAGS.config is None else f"{FLAGS.config} + flags"


def smoke_replaced(config: JobConfig) -> list[str]:
    """The flags given on the command line whose values ``--smoke`` replaces
    (:meth:`JobConfig.resolved`), as ``--name given -> run``."""
    resolved = config.resolved()
    if not resolved.smoke:
        return []
    given, run = config.to_dict(), resolved.to_dict()
    replaced = []
    for flag, key in FLAG_KEYS.items():
        if FLAGS[flag].present:
            before, after = given, run
            for part in key.split("."):
                before, after = before[part], after[part]
            if before != after:
                replaced.append(f"--{flag} {before} -> {after}")
    return replaced


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
        _fail(
            f"unexpected positional arguments {argv[1:]}; every option is a flag "
            "(--name value); see --help"
        )
    try:
        config = config_from_flags()
        check_runnable(config)
    except (ConfigError, FileNotFoundError) as e:
        _fail(e)
    if replaced := smoke_replaced(config):
        print(
            "seqattn-tfrs: note: --smoke runs its own data and schedule: "
            + ", ".join(replaced),
            file=sys.stderr,
        )
    # Imported after the flags are valid: it loads TensorFlow and TFRS.
    from seqattn_tfrs.movielens.job import run_job

    try:
        run_job(config, export=FLAGS.export)
    except ConfigError as e:  # found once the data is read (the exact budget)
        _fail(ConfigError(e.key, e.reason, e.source or config_source()))


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
