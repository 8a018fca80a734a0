"""Typed, strictly validated configuration of the main job (pydantic v2).

A job is described by one :class:`JobConfig`, a tree of frozen pydantic
dataclasses with strict types (no ``"6"`` for ``6``, no ``6.0`` for an int, no
``1`` for ``true``), no unknown keys and field constraints. It is read from
JSON with :func:`load_config`; every error is a :class:`ConfigError` naming the
dotted key (``selection.num_selected``, ``features[3].kind``) and the file.
Keys left out of a file take their defaults, those of :meth:`JobConfig.default`.
The six attention settings in ``selection`` are validated by
:class:`seqattn_tfrs.AttentionOptions`, which also gives their defaults.

Example:
  >>> config = JobConfig.default()
  >>> config.selection.num_selected, config.optimizer
  (6, 'adam')
  >>> override(config, {"selection.num_selected": 4}).selection.num_selected
  4
  >>> override(config, {"selection.num_selected": 0})
  Traceback (most recent call last):
  ...
  seqattn_tfrs.movielens.config_errors.ConfigError: config overrides: \
selection.num_selected: must be an int >= 1, got 0
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import pydantic

import seqattn_tfrs
from seqattn_tfrs.movielens.config_errors import (
    ConfigError,
    config_class,
    config_error,
    join_key,
    unwrap_annotation,
)

FeatureKind = Literal["string", "int", "multi_int", "numeric"]
OptimizerName = Literal["adam", "adagrad", "sgd"]
FROM_DATA = "from_data"
#: Bytes per embedding value: the tables are float32.
VALUE_BYTES = 4
#: The rating the job's model predicts (a column of the data, not a feature).
LABEL = "user_rating"

__all__ = [
    "LABEL",
    "ConfigError",
    "ConfigKey",
    "FeatureConfig",
    "JobConfig",
    "ModelConfig",
    "NoiseConfig",
    "SelectionConfig",
    "check_budget",
    "load_config",
    "override",
    "save_config",
    "scalar_keys",
]


Vocabulary = Literal["from_data"] | tuple[str, ...] | tuple[int, ...]
PositiveInt = Annotated[int, pydantic.Field(ge=1)]
NonNegativeInt = Annotated[int, pydantic.Field(ge=0)]
_ATTENTION = seqattn_tfrs.AttentionOptions()
#: Epochs of fit by default: the 15 of the job's earlier explicit schedule.
DEFAULT_EPOCHS = 15
#: An explicit schedule's warm-up, epochs per round and fine-tune where a key
#: is left null (the job's earlier defaults).
EXPLICIT_SCHEDULE_DEFAULTS = (1, 2, 2)
#: The keys of ``selection`` that select the explicit schedule.
EXPLICIT_SCHEDULE_KEYS = ("warmup_epochs", "epochs_per_selection", "finetune_epochs")


# --------------------------------------------------------------------------
# The config tree.
# --------------------------------------------------------------------------


@config_class
class FeatureConfig:
    """One input feature and its embedding table."""

    name: Annotated[str, pydantic.Field(min_length=1)]
    """The raw feature's key in the data (and in the serving signature)."""
    kind: FeatureKind
    """``"string"`` (``StringLookup`` + ``Embedding``), ``"int"``
    (``IntegerLookup`` + ``Embedding``; bool and whole-valued float inputs are
    cast), ``"multi_int"`` (a ragged list of ints per example, looked up,
    embedded and mean-pooled) or ``"numeric"`` (bucketized at training
    quantiles, then embedded)."""
    embedding_dim: PositiveInt = 16
    """Width of the embedding table."""
    vocabulary: Vocabulary = FROM_DATA
    """``"from_data"`` to build it from the training split, or an explicit list
    of strings (``"string"``) or ints (``"int"``, ``"multi_int"``).
    ``"numeric"`` features always use ``"from_data"``."""
    num_buckets: Annotated[int, pydantic.Field(ge=2)] | None = None
    """Number of quantile buckets; required for ``"numeric"``, forbidden
    otherwise."""

    def __post_init__(self) -> None:
        if self.kind == "numeric":
            if self.num_buckets is None:
                raise ConfigError(
                    "num_buckets", "is required for kind 'numeric' (an int >= 2)"
                )
            if self.vocabulary != FROM_DATA:
                raise ConfigError(
                    "vocabulary",
                    "must be 'from_data' for kind 'numeric' (bucket boundaries "
                    f"are training quantiles), got {self.vocabulary!r}",
                )
        elif self.num_buckets is not None:
            raise ConfigError(
                "num_buckets",
                f"is only for kind 'numeric', got {self.num_buckets!r} for kind "
                f"{self.kind!r}",
            )
        if self.vocabulary != FROM_DATA:
            wanted = str if self.kind == "string" else int
            if not self.vocabulary:
                raise ConfigError("vocabulary", "must not be an empty list")
            if not all(type(v) is wanted for v in self.vocabulary):
                raise ConfigError(
                    "vocabulary",
                    f"must be a list of {wanted.__name__}s for kind {self.kind!r}, "
                    f"got {list(self.vocabulary)!r}",
                )
            if len(set(self.vocabulary)) != len(self.vocabulary):
                raise ConfigError("vocabulary", "must not repeat a value")

    def table_rows(self, vocabulary_size: int | None = None) -> int | None:
        """Rows of this feature's embedding table, if known.

        Args:
          vocabulary_size: the built vocabulary's length (bucket boundaries for
            ``"numeric"``); without it, only an explicit vocabulary is known.

        Returns:
          The vocabulary plus one out-of-vocabulary row (for ``"numeric"``:
          the boundaries plus one), or None when not known yet.
        """
        if vocabulary_size is None and self.vocabulary != FROM_DATA:
            vocabulary_size = len(self.vocabulary)
        return None if vocabulary_size is None else vocabulary_size + 1


@config_class
class NoiseConfig:
    """Random fields added to the data to show that selection rejects them.

    Each field ``f"{name_prefix}{i}"`` holds, per example, an int drawn
    uniformly from ``[0, vocabulary_size)`` with a generator seeded by the job's
    seed: it is independent of the label, but with a large vocabulary its
    embedding rows can memorise training labels.
    """

    num_fields: NonNegativeInt = 3
    """Number of random fields added (0 for none)."""
    vocabulary_size: Annotated[int, pydantic.Field(ge=2)] = 5000
    """Distinct values per random field."""
    embedding_dim: PositiveInt = 16
    """Width of the random fields' embedding tables."""
    name_prefix: Annotated[str, pydantic.Field(min_length=1)] = "noise_"
    """Prefix of the random fields' names."""

    @property
    def names(self) -> tuple[str, ...]:
        """The added fields' names."""
        return tuple(f"{self.name_prefix}{i}" for i in range(self.num_fields))


@config_class
class ModelConfig:
    """The DCN ranking model on top of the embeddings."""

    cross_layers: NonNegativeInt = 1
    """Number of tfrs.layers.dcn.Cross layers (0 for none)."""
    projection_dim: PositiveInt | None = None
    """Low-rank projection of the cross layers (null: full rank)."""
    hidden_units: tuple[PositiveInt, ...] = (64, 32)
    """Widths of the ReLU layers after the cross layers."""


@config_class
class SelectionConfig:
    """The Sequential Attention schedule and gate options.

    The schedule is fit-within by default: the job fits both models for
    ``epochs`` epochs and the callback (``within_fit=True``) lays warm-up,
    rounds and fine-tune inside them. Setting any of ``warmup_epochs``,
    ``epochs_per_selection`` and ``finetune_epochs`` selects the explicit
    schedule instead; its keys left null take 1, 2 and 2.

    The six attention settings (``selections_per_round``, ``budget_rule``,
    ``entry_z``, ``attention_learning_rate``, ``attention_momentum``,
    ``attention_signal``) take their defaults from and are validated by
    :class:`seqattn_tfrs.AttentionOptions`; :attr:`attention` returns them as
    one.
    """

    num_selected: PositiveInt | None = 6
    """Number of fields to select; null when budget_bytes is given."""
    budget_bytes: PositiveInt | None = None
    """Select the fields whose embedding tables fit this many bytes instead of
    a count (see seqattn_tfrs.SequentialAttentionEmbedding); needs num_selected
    set to null."""
    budget_rule: str = _ATTENTION.budget_rule
    """How a budgeted round ranks the fields that fit: "attention_per_byte",
    "attention" or "gain_per_byte"."""
    entry_z: float | Literal["auto"] | None = _ATTENTION.entry_z
    """With budget_bytes: also stop when no field that fits helps by this many
    standard errors ("auto": 3 with budget_bytes and the "attention_per_byte"
    rule, else null; null: fill the budget)."""
    selections_per_round: int = _ATTENTION.selections_per_round
    """Fields committed per selection round."""
    epochs: PositiveInt | None = DEFAULT_EPOCHS
    """Epochs of ``fit``, the same for the selection run and the all-fields
    baseline. With the fit-within schedule (the default: warmup_epochs,
    epochs_per_selection and finetune_epochs all null) the callback lays a 10%
    warm-up, every round and a 10% fine-tune inside these epochs' steps, each
    round at least 40 steps (fewer is refused before training) and at most
    100 (the rest goes to the fine-tune). The default,
    15, is the training the job's earlier explicit schedule ran (1 warm-up + 6
    rounds x 2 + 2 fine-tune epochs): on MovieLens 100K at batch 2048 (40
    steps an epoch) six rounds get 80 steps each. With an explicit schedule:
    at least its length (the fine-tune takes the rest), or null for exactly
    its length; a file's selection section or the command line that sets an
    explicit schedule key but not epochs gets null, so that it runs as before
    the fit-within default."""
    warmup_epochs: NonNegativeInt | None = None
    """Explicit schedule: dense epochs before the first round (null: the
    fit-within schedule, unless epochs_per_selection or finetune_epochs is
    set; then 1)."""
    epochs_per_selection: PositiveInt | None = None
    """Explicit schedule: epochs per selection round (null: the fit-within
    schedule, unless warmup_epochs or finetune_epochs is set; then 2)."""
    finetune_epochs: NonNegativeInt | None = None
    """Explicit schedule: epochs after the last pick (null: the fit-within
    schedule, unless warmup_epochs or epochs_per_selection is set; then 2)."""
    settle_fraction: Annotated[float, pydantic.Field(ge=0, lt=1)] = 0.8
    """Leading part of each round in which the logits do not learn yet (see
    seqattn_tfrs.SequentialAttentionCallback)."""
    use_selection_data: bool = True
    """Whether the logits learn from the held-out validation split (true) or
    from the training batches (false)."""
    selection_interval: PositiveInt = 1
    """Training steps between held-out logit steps, counted within each epoch
    (only with use_selection_data; at most the steps of an epoch)."""
    attention_learning_rate: float = _ATTENTION.attention_learning_rate
    """Step size of the logits' own update rule."""
    attention_momentum: float = _ATTENTION.attention_momentum
    """Momentum of the logits' own update rule."""
    attention_signal: str = _ATTENTION.attention_signal
    """What the logits learn from: "partial" (the gradient with what the
    selected fields explain regressed out), "gradient" (the paper's plain
    gradient) or "score"; see seqattn_tfrs.SequentialAttentionEmbedding."""

    def __post_init__(self) -> None:
        if (self.num_selected is None) == (self.budget_bytes is None):
            raise ConfigError(
                "num_selected",
                "exactly one of num_selected and budget_bytes must be set (set "
                "num_selected to null to select under budget_bytes); got "
                f"num_selected={self.num_selected!r}, "
                f"budget_bytes={self.budget_bytes!r}",
            )
        for name in seqattn_tfrs.AttentionOptions.names():
            try:  # one setting at a time, so that the error names its key
                seqattn_tfrs.AttentionOptions(**{name: getattr(self, name)})
            except ValueError as e:
                raise ConfigError(name, str(e)) from None
        if self.within_fit and self.epochs is None:
            raise ConfigError(
                "epochs",
                "the fit-within schedule (warmup_epochs, epochs_per_selection and "
                "finetune_epochs all null) lays the rounds inside the epochs of "
                "fit; got epochs=None; expected an int >= 1, or an explicit "
                "schedule",
            )
        if self.num_rounds is not None:
            self.fit_epochs(self.num_rounds)  # an explicit schedule fits in epochs
        try:  # the library's own check: entry_z and budget_rule need a budget
            self.attention.resolved(budgeted=self.budget_bytes is not None)
        except ValueError as e:
            key = "budget_rule" if str(e).startswith("`budget_rule`") else "entry_z"
            raise ConfigError(key, str(e)) from None
        try:  # and a round commits at most the features selected
            resolved = self.attention.resolved(
                budgeted=self.budget_bytes is not None, num_selected=self.num_selected
            )
        except ValueError as e:
            raise ConfigError("selections_per_round", str(e)) from None
        if resolved.tracks_evidence and self.settle_fraction == 0:
            raise ConfigError(
                "settle_fraction",
                "the budget's score test (entry_z "
                f"{resolved.entry_z!r}, budget_rule {self.budget_rule!r}) runs "
                "while a round settles, but settle_fraction=0; expected "
                "settle_fraction > 0, or entry_z null to fill the budget without "
                "the test",
            )

    @property
    def attention(self) -> seqattn_tfrs.AttentionOptions:
        """The six attention settings as one :class:`~seqattn_tfrs.AttentionOptions`."""
        return seqattn_tfrs.AttentionOptions(
            **{name: getattr(self, name) for name in _ATTENTION.names()}
        )

    @property
    def num_rounds(self) -> int | None:
        """Selection rounds: ``ceil(num_selected / selections_per_round)``.

        ``None`` under ``budget_bytes``: the rounds then depend on the tables'
        sizes, and the gate reserves them (``SequentialAttentionEmbedding``'s
        ``num_rounds``).
        """
        if self.num_selected is None:
            return None
        return -(-self.num_selected // self.selections_per_round)

    @property
    def within_fit(self) -> bool:
        """Whether the callback lays the schedule inside ``epochs`` of fit (no
        explicit schedule key is set)."""
        return (
            self.warmup_epochs is None
            and self.epochs_per_selection is None
            and self.finetune_epochs is None
        )

    def schedule_arguments(self) -> dict[str, Any]:
        """The schedule arguments of ``SequentialAttentionCallback``.

        Example:
          >>> SelectionConfig().schedule_arguments()
          {'within_fit': True}
          >>> SelectionConfig(epochs_per_selection=1).schedule_arguments()
          {'warmup_epochs': 1, 'epochs_per_selection': 1, 'finetune_epochs': 2}
        """
        if self.within_fit:
            return {"within_fit": True}
        warmup, per_round, finetune = (
            default if value is None else value
            for value, default in zip(
                (self.warmup_epochs, self.epochs_per_selection, self.finetune_epochs),
                EXPLICIT_SCHEDULE_DEFAULTS,
            )
        )
        return {
            "warmup_epochs": warmup,
            "epochs_per_selection": per_round,
            "finetune_epochs": finetune,
        }

    def fit_epochs(self, num_rounds: int) -> int:
        """Epochs of fit for a selection of ``num_rounds`` rounds.

        ``epochs`` with the fit-within schedule; with an explicit one, ``epochs``
        (checked to hold warm-up, rounds and fine-tune) or, if null, exactly
        the schedule's length.

        Example:
          >>> SelectionConfig().fit_epochs(6)
          15
          >>> SelectionConfig(epochs=None, warmup_epochs=1).fit_epochs(6)
          15

        Raises:
          ConfigError: on ``epochs``, when an explicit schedule needs more.
        """
        if self.within_fit:
            return self.epochs
        arguments = self.schedule_arguments()
        needed = (
            arguments["warmup_epochs"]
            + num_rounds * arguments["epochs_per_selection"]
            + arguments["finetune_epochs"]
        )
        if self.epochs is None:
            return needed
        if self.epochs < needed:
            raise ConfigError(
                "epochs",
                f"the explicit schedule needs {needed} epochs (warm-up "
                f"{arguments['warmup_epochs']} + {num_rounds} rounds x "
                f"{arguments['epochs_per_selection']} + fine-tune "
                f"{arguments['finetune_epochs']}), got epochs={self.epochs}; "
                f"expected at least {needed}, or null for exactly the schedule",
            )
        return self.epochs


DEFAULT_FEATURES: tuple[FeatureConfig, ...] = (
    FeatureConfig("user_id", "string"),
    FeatureConfig("movie_id", "string"),
    FeatureConfig("movie_title", "string"),
    FeatureConfig("user_gender", "int"),
    FeatureConfig("user_zip_code", "string"),
    FeatureConfig("user_zip_prefix", "string"),
    FeatureConfig("user_occupation_text", "string"),
    FeatureConfig("bucketized_user_age", "int"),
    FeatureConfig("movie_release_year", "string"),
    FeatureConfig("hour_of_day", "int"),
    FeatureConfig("weekday", "int"),
    FeatureConfig("movie_genres", "multi_int"),
    FeatureConfig("timestamp", "numeric", num_buckets=20),
)

#: What ``smoke=True`` changes: a small subsample and the shortest schedule.
SMOKE_MAX_EXAMPLES = 4000
SMOKE_BATCH_SIZE = 256
SMOKE_NOISE_VOCABULARY_SIZE = 500


@config_class
class JobConfig:
    """The main job: data, features, model, selection, training and output."""

    features: tuple[FeatureConfig, ...] = DEFAULT_FEATURES
    """The real input features, in model order."""
    noise: NoiseConfig = dataclasses.field(default_factory=NoiseConfig)
    """Random fields appended after the features."""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    """The DCN ranking model."""
    selection: SelectionConfig = dataclasses.field(default_factory=SelectionConfig)
    """The selection schedule and gate options."""
    batch_size: PositiveInt = 2048
    """Training and evaluation batch size."""
    learning_rate: Annotated[float, pydantic.Field(gt=0)] = 0.001
    """Learning rate of the model's optimizer."""
    optimizer: OptimizerName = "adam"
    """The model's optimizer."""
    seed: Annotated[int, pydantic.Field(ge=0, lt=2**32)] = 42
    """Seed of the split, the noise fields, shuffling and initialisation."""
    output_dir: Annotated[str, pydantic.Field(min_length=1)] = "runs/movielens_100k"
    """Where report.json, gates.png and the export go."""
    data_dir: Annotated[str, pydantic.Field(min_length=1)] | None = None
    """MovieLens 100K files (null: fetch into the cache)."""
    max_examples: Annotated[int, pydantic.Field(ge=10)] | None = None
    """Use only the first this many ratings (null: all)."""
    smoke: bool = False
    """A quick run: a small subsample, an explicit schedule of one epoch per
    phase, smaller noise vocabularies (see JobConfig.resolved)."""

    def __post_init__(self) -> None:
        if not self.features and not self.noise.num_fields:
            raise ConfigError("features", "must list at least one feature")
        seen: dict[str, str] = {}
        for i, feature in enumerate(self.features):
            key = f"features[{i}].name"
            if feature.name == LABEL:
                raise ConfigError(
                    key,
                    f"{LABEL!r} is the label the job predicts, not an input "
                    "feature; expected another MovieLens field",
                )
            if feature.name in seen:
                raise ConfigError(key, f"{feature.name!r} repeats {seen[feature.name]}")
            seen[feature.name] = key
        for name in self.noise.names:
            if name in seen:
                raise ConfigError(
                    "noise.name_prefix",
                    f"noise field {name!r} clashes with {seen[name]}",
                )
        total = len(self.features) + self.noise.num_fields
        if self.selection.num_selected is not None and (
            self.selection.num_selected > total
        ):
            raise ConfigError(
                "selection.num_selected",
                f"must be at most the number of fields ({total}: "
                f"{len(self.features)} features + {self.noise.num_fields} noise "
                f"fields), got {self.selection.num_selected}",
            )

    @classmethod
    def default(cls) -> JobConfig:
        """The embedded default job (equal to ``configs/movielens_100k.json``)."""
        return cls()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> JobConfig:
        """Builds a config from a JSON-like dict, validating it strictly.

        Args:
          data: nested dicts/lists as read from JSON; keys left out take their
            defaults, except ``selection.epochs``, which is null when the
            section sets an explicit schedule key (the schedule's length).
          source: named in error messages (e.g. the file path).

        Returns:
          The validated config.

        Raises:
          ConfigError: a key is unknown, or a value has the wrong type or is out
            of range; the message names the key path and ``source``.
        """
        data = _explicit_schedule_epochs(data)
        for key, value in _leaves(data):
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(key, f"must be a finite number, got {value}", source)
        # JSON mode: JSON arrays are the config's tuples, still strictly typed.
        try:
            text = json.dumps(data, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ConfigError("", f"is not JSON data: {e}", source) from None
        try:
            return _ADAPTER.validate_json(text)
        except pydantic.ValidationError as e:
            raise config_error(e, cls, source, data) from None

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready dicts and lists (inverse of from_dict)."""
        return _ADAPTER.dump_python(self, mode="json")

    @property
    def all_features(self) -> tuple[FeatureConfig, ...]:
        """The real features followed by the noise fields (as ``"int"``)."""
        noise = tuple(
            FeatureConfig(name, "int", embedding_dim=self.noise.embedding_dim)
            for name in self.noise.names
        )
        return self.features + noise

    def resolved(self) -> JobConfig:
        """The config actually run: with ``smoke`` applied, else ``self``.

        Smoke mode keeps the features, the number of selected fields and the
        model, and shrinks the data (at most ``SMOKE_MAX_EXAMPLES`` ratings),
        the batch (at most ``SMOKE_BATCH_SIZE``), the schedule and the noise
        vocabularies (at most ``SMOKE_NOISE_VOCABULARY_SIZE``).

        The smoke schedule is explicit, not fit-within: one epoch of warm-up
        (none if ``warmup_epochs`` is 0), one per round, one of fine-tune (none
        if ``finetune_epochs`` is 0), and ``epochs`` exactly that. Its 3,200
        training ratings make 13 steps an epoch at batch 256; six fit-within
        rounds of the 40 steps a round needs would take 300 steps (24 epochs),
        three times the smoke run's 8 epochs.
        """
        if not self.smoke:
            return self
        return dataclasses.replace(
            self,
            max_examples=min(
                self.max_examples or SMOKE_MAX_EXAMPLES, SMOKE_MAX_EXAMPLES
            ),
            batch_size=min(self.batch_size, SMOKE_BATCH_SIZE),
            noise=dataclasses.replace(
                self.noise,
                vocabulary_size=min(
                    self.noise.vocabulary_size, SMOKE_NOISE_VOCABULARY_SIZE
                ),
            ),
            selection=dataclasses.replace(
                self.selection,
                epochs=None,
                warmup_epochs=min(_or(self.selection.warmup_epochs, 1), 1),
                epochs_per_selection=1,
                finetune_epochs=min(_or(self.selection.finetune_epochs, 1), 1),
            ),
        )


_ADAPTER = pydantic.TypeAdapter(JobConfig)


def _explicit_schedule_epochs(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` with ``selection.epochs`` null where the section sets an explicit
    schedule key but not ``epochs``: such a config runs exactly its schedule.

    Example:
      >>> _explicit_schedule_epochs({"selection": {"warmup_epochs": 2}})
      {'selection': {'warmup_epochs': 2, 'epochs': None}}
    """
    selection = data.get("selection") if isinstance(data, Mapping) else None
    if (
        isinstance(selection, Mapping)
        and "epochs" not in selection
        and any(selection.get(key) is not None for key in EXPLICIT_SCHEDULE_KEYS)
    ):
        return {**data, "selection": {**selection, "epochs": None}}
    return data


def _leaves(data: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every value of nested dicts and lists with its key path (``a.b[0]``)."""
    if isinstance(data, Mapping):
        items = [(f"{path}.{k}" if path else str(k), v) for k, v in data.items()]
    elif isinstance(data, (list, tuple)):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(data)]
    else:
        return [(path, data)]
    return [leaf for key, value in items for leaf in _leaves(value, key)]


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


# --------------------------------------------------------------------------
# Files and overrides.
# --------------------------------------------------------------------------


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ConfigError(key, "appears twice in one object")
        result[key] = value
    return result


def _reject_constant(name: str) -> None:
    raise ConfigError("", f"{name} is not a valid JSON number")


def load_config(path: str | os.PathLike) -> JobConfig:
    """Reads and strictly validates a JSON job config.

    Args:
      path: a JSON file holding an object with :class:`JobConfig`'s keys; keys
        left out take their defaults.

    Returns:
      The validated config.

    Raises:
      FileNotFoundError: ``path`` is not a file.
      ConfigError: (a ``ValueError``) the file is not valid JSON, repeats a key,
        or a key is unknown or holds a wrong type or out-of-range value; the
        message names the file and the key path (e.g.
        ``selection.num_selected``).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file {str(path)!r} does not exist.")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(
            text,
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except json.JSONDecodeError as e:
        raise ConfigError(
            "",
            f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
            str(path),
        ) from None
    except ConfigError as e:
        raise ConfigError(e.key, e.reason, str(path)) from None
    return JobConfig.from_dict(data, source=str(path))


def save_config(config: JobConfig, path: str | os.PathLike) -> None:
    """Writes ``config`` as indented JSON that :func:`load_config` reads back."""
    pathlib.Path(path).write_text(_format_json(config.to_dict()), encoding="utf-8")


def _format_json(data: Mapping[str, Any]) -> str:
    """Indented JSON with one line per feature."""
    entries = []
    for key, value in data.items():
        if key == "features" and value:
            text = "[\n" + ",\n".join(f"    {json.dumps(f)}" for f in value) + "\n  ]"
        else:
            text = json.dumps(value, indent=2).replace("\n", "\n  ")
        entries.append(f"  {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(entries) + "\n}\n"


def override(
    config: JobConfig, values: Mapping[str, Any], source: str = "overrides"
) -> JobConfig:
    """Returns ``config`` with dotted keys replaced, validated like a file.

    Args:
      config: the base config.
      values: dotted key path (``"selection.num_selected"``, ``"seed"``) to its
        new JSON-like value.
      source: named in error messages (e.g. ``"command-line flags"``).

    Returns:
      The new validated config.

    Raises:
      ConfigError: a key path does not exist, or a value is invalid.
    """
    data = config.to_dict()
    for dotted, value in values.items():
        node = data
        *parents, leaf = dotted.split(".")
        for i, part in enumerate(parents):
            if not isinstance(node.get(part), dict):
                raise ConfigError(
                    ".".join(parents[: i + 1]), "is not a config section", source
                )
            node = node[part]
        if leaf not in node:
            raise ConfigError(dotted, "unknown key", source)
        node[leaf] = list(value) if isinstance(value, tuple) else value
    return JobConfig.from_dict(data, source=source)


# --------------------------------------------------------------------------
# The scalar keys (what the command line sets) and the budget check.
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ConfigKey:
    """One scalar key of :class:`JobConfig`, as a command-line flag sees it.

    Attributes:
      key: the dotted key (``"selection.num_selected"``).
      type: ``bool``, ``int``, ``float`` or ``str``.
      choices: the allowed strings of a ``Literal`` key (for a ``float`` key,
        the words it takes besides numbers, as ``entry_z``'s ``"auto"``),
        else None.
      help: the first sentence of the key's documentation.
      nullable: whether the key takes null (the command line's ``none``).
    """

    key: str
    type: type
    choices: tuple[str, ...] | None
    help: str
    nullable: bool = False


def scalar_keys() -> tuple[ConfigKey, ...]:
    """Every bool, int, number or string key of the config, sections included.

    Lists (``features``, ``model.hidden_units``) are left to config files.

    Example:
      >>> [k.key for k in scalar_keys()][:3]
      ['noise.num_fields', 'noise.vocabulary_size', 'noise.embedding_dim']
    """
    keys = []

    def visit(cls: type, prefix: str) -> None:
        for name, field in cls.__pydantic_fields__.items():
            annotation, _ = unwrap_annotation(field.annotation)
            key = join_key(prefix, name)
            if dataclasses.is_dataclass(annotation):
                visit(annotation, key)
                continue
            choices = None
            if typing.get_origin(annotation) is Literal:
                choices = typing.get_args(annotation)
                annotation = str
            elif words := _number_words(annotation):
                choices, annotation = words, float  # e.g. entry_z: 3.0 or "auto"
            if annotation not in (bool, int, float, str):
                continue
            help_text = " ".join((field.description or name).split())
            keys.append(
                ConfigKey(
                    key,
                    annotation,
                    choices,
                    help_text.split(". ")[0].rstrip("."),
                    nullable=_allows_none(field.annotation),
                )
            )

    visit(JobConfig, "")
    return tuple(keys)


def _allows_none(annotation: Any) -> bool:
    """Whether a field's annotation (``Annotated`` or not) admits None."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return False
    return any(
        arg is type(None) or _allows_none(arg) for arg in typing.get_args(annotation)
    )


def _number_words(annotation: Any) -> tuple[str, ...]:
    """The words of a union of ``float`` and ``Literal`` strings, perhaps with
    None (``float | Literal["auto"] | None`` gives ``("auto",)``); else ()."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return ()
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    literals = [a for a in args if typing.get_origin(a) is Literal]
    if float not in args or len(literals) + 1 != len(args):
        return ()
    return tuple(word for literal in literals for word in typing.get_args(literal))


def check_budget(
    config: JobConfig,
    vocabulary_sizes: Mapping[str, int] | None = None,
    source: str | None = None,
) -> None:
    """Refuses a byte budget that holds no embedding table.

    Before the data is read, a table built ``"from_data"`` has at least two
    rows (one value and the out-of-vocabulary row); the noise fields' and
    explicit vocabularies' tables are known exactly. After the vocabularies are
    built, pass their sizes for the exact check.

    Args:
      config: the (resolved) job config.
      vocabulary_sizes: feature name to built vocabulary length (bucket
        boundaries for ``"numeric"``), if known.
      source: named in the error.

    Raises:
      ConfigError: on ``selection.budget_bytes`` when even the smallest table
        (float32 values) is larger than the budget.
    """
    budget = config.selection.budget_bytes
    if budget is None:
        return
    sizes = dict(vocabulary_sizes or {})
    for name in config.noise.names:
        sizes.setdefault(name, config.noise.vocabulary_size)
    cheapest = None
    for feature in config.all_features:
        rows = feature.table_rows(sizes.get(feature.name))
        exact = rows is not None
        table = (rows or 2) * feature.embedding_dim * VALUE_BYTES
        if cheapest is None or table < cheapest[1]:
            cheapest = (feature.name, table, exact)
    name, table, exact = cheapest
    if table > budget:
        if exact:
            smallest = f"the smallest, {name!r}, needs {table} bytes (float32)"
        else:  # its vocabulary is not built yet: a lower bound, no name
            smallest = (
                f"no table can need fewer than {table} bytes (float32; a feature "
                "built from the data has at least 2 rows: a value and the "
                "out-of-vocabulary row)"
            )
        raise ConfigError(
            "selection.budget_bytes",
            f"{budget} bytes hold no embedding table: {smallest}; "
            f"expected a budget of at least {table}",
            source,
        )
