"""Typed, strictly validated configuration of the main job.

A job is described by one :class:`JobConfig`, a tree of frozen dataclasses. It is
read from JSON with :func:`load_config`, which rejects unknown keys, values of
the wrong type and values out of range, naming the key path (for example
``selection.num_selected`` or ``features[3].kind``) and the file. Keys left out
of a file take their defaults, which are those of :meth:`JobConfig.default`.

Example:
  >>> config = JobConfig.default()
  >>> config.selection.num_selected, config.optimizer
  (6, 'adam')
  >>> override(config, {"selection.num_selected": 4}).selection.num_selected
  4
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
from typing import Any, Literal, Union

FeatureKind = Literal["string", "int", "multi_int", "numeric"]
OptimizerName = Literal["adam", "adagrad", "sgd"]
AttentionSignal = Literal["partial", "gradient", "score"]
BudgetRule = Literal["attention", "attention_per_byte"]
FROM_DATA = "from_data"

__all__ = [
    "ConfigError",
    "FeatureConfig",
    "JobConfig",
    "ModelConfig",
    "NoiseConfig",
    "SelectionConfig",
    "load_config",
    "override",
    "save_config",
]


class ConfigError(ValueError):
    """A config value is unknown, missing, of the wrong type or out of range.

    Attributes:
      key: the dotted key path of the offending value (``""`` for the root).
      reason: what is wrong with it.
      source: the file (or other origin) the config came from, if known.
    """

    def __init__(self, key: str, reason: str, source: str | None = None) -> None:
        self.key = key
        self.reason = reason
        self.source = source
        where = f"config {source}: " if source else "config: "
        super().__init__(f"{where}{key or '<root>'}: {reason}")


def _join(path: str, key: str) -> str:
    if not key or not path:
        return path or key
    if key.startswith("["):
        return f"{path}{key}"
    return f"{path}.{key}" if path else key


def _positive_int(key: str, value: int, minimum: int = 1) -> None:
    if value < minimum:
        raise ConfigError(key, f"must be an int >= {minimum}, got {value!r}")


# --------------------------------------------------------------------------
# The config tree.
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """One input feature and its embedding table.

    Attributes:
      name: the raw feature's key in the data (and in the serving signature).
      kind: ``"string"`` (``StringLookup`` + ``Embedding``), ``"int"``
        (``IntegerLookup`` + ``Embedding``; bool and whole-valued float inputs
        are cast), ``"multi_int"`` (a ragged list of ints per example, looked
        up, embedded and mean-pooled) or ``"numeric"`` (bucketized at training
        quantiles, then embedded).
      embedding_dim: width of the embedding table.
      vocabulary: ``"from_data"`` to build it from the training split, or an
        explicit list of strings (``"string"``) or ints (``"int"``,
        ``"multi_int"``). ``"numeric"`` features always use ``"from_data"``.
      num_buckets: number of quantile buckets; required for ``"numeric"``,
        forbidden otherwise.
    """

    name: str
    kind: FeatureKind
    embedding_dim: int = 16
    vocabulary: Literal["from_data"] | tuple[str, ...] | tuple[int, ...] = FROM_DATA
    num_buckets: int | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("name", "must be a non-empty string")
        _positive_int("embedding_dim", self.embedding_dim)
        if self.kind == "numeric":
            if self.num_buckets is None:
                raise ConfigError(
                    "num_buckets", "is required for kind 'numeric' (an int >= 2)"
                )
            _positive_int("num_buckets", self.num_buckets, 2)
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


@dataclasses.dataclass(frozen=True)
class NoiseConfig:
    """Random fields added to the data to show that selection rejects them.

    Each field ``f"{name_prefix}{i}"`` holds, per example, an int drawn
    uniformly from ``[0, vocabulary_size)`` with a generator seeded by the job's
    seed: it is independent of the label, but with a large vocabulary its
    embedding rows can memorise training labels.

    Attributes:
      num_fields: how many fields to add (0 for none).
      vocabulary_size: distinct values per field.
      embedding_dim: width of their embedding tables.
      name_prefix: their names' prefix.
    """

    num_fields: int = 3
    vocabulary_size: int = 5000
    embedding_dim: int = 16
    name_prefix: str = "noise_"

    def __post_init__(self) -> None:
        _positive_int("num_fields", self.num_fields, 0)
        _positive_int("vocabulary_size", self.vocabulary_size, 2)
        _positive_int("embedding_dim", self.embedding_dim)
        if not self.name_prefix:
            raise ConfigError("name_prefix", "must be a non-empty string")

    @property
    def names(self) -> tuple[str, ...]:
        """The added fields' names."""
        return tuple(f"{self.name_prefix}{i}" for i in range(self.num_fields))


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The DCN ranking model on top of the embeddings.

    Attributes:
      cross_layers: number of ``tfrs.layers.dcn.Cross`` layers (0 for none).
      projection_dim: low-rank projection of the cross layers (None: full rank).
      hidden_units: widths of the ReLU layers after the cross layers.
    """

    cross_layers: int = 1
    projection_dim: int | None = None
    hidden_units: tuple[int, ...] = (64, 32)

    def __post_init__(self) -> None:
        _positive_int("cross_layers", self.cross_layers, 0)
        if self.projection_dim is not None:
            _positive_int("projection_dim", self.projection_dim)
        for i, units in enumerate(self.hidden_units):
            _positive_int(f"hidden_units[{i}]", units)


@dataclasses.dataclass(frozen=True)
class SelectionConfig:
    """The Sequential Attention schedule and gate options.

    Attributes:
      num_selected: how many fields to keep; ``null`` when ``budget_bytes`` is
        given.
      budget_bytes: keep the fields whose embedding tables fit this many bytes
        instead of a count (see
        :class:`~seqattn_tfrs.SequentialAttentionEmbedding`); needs
        ``num_selected`` set to ``null``.
      budget_rule: how a budgeted round ranks the fields that fit:
        ``"attention_per_byte"`` (default) or ``"attention"``.
      entry_z: with ``budget_bytes``, also stop when no field that fits helps
        by this many standard errors (``null``: fill the budget; see
        :class:`~seqattn_tfrs.SequentialAttentionEmbedding`).
      selections_per_round: fields committed per selection round.
      warmup_epochs: dense epochs before the first round.
      epochs_per_selection: epochs per selection round.
      finetune_epochs: epochs after the last pick.
      settle_fraction: leading part of each round in which the logits do not
        learn yet (see :class:`~seqattn_tfrs.SequentialAttentionCallback`).
      use_selection_data: whether the logits learn from the held-out
        validation split (True) or from the training batches (False).
      selection_interval: training steps between held-out logit steps.
      attention_learning_rate: step size of the logits' own update rule.
      attention_momentum: momentum of the logits' own update rule.
      attention_signal: what the logits learn from: ``"partial"`` (default,
        the gradient with what the selected fields explain regressed out),
        ``"gradient"`` (the paper's plain gradient) or ``"score"``; see
        :class:`~seqattn_tfrs.SequentialAttentionEmbedding`.
    """

    num_selected: int | None = 6
    budget_bytes: int | None = None
    budget_rule: BudgetRule = "attention_per_byte"
    entry_z: float | None = None
    selections_per_round: int = 1
    warmup_epochs: int = 1
    epochs_per_selection: int = 2
    finetune_epochs: int = 2
    settle_fraction: float = 0.8
    use_selection_data: bool = True
    selection_interval: int = 1
    attention_learning_rate: float = 0.05
    attention_momentum: float = 0.9
    attention_signal: AttentionSignal = "partial"

    def __post_init__(self) -> None:
        if (self.num_selected is None) == (self.budget_bytes is None):
            raise ConfigError(
                "num_selected",
                "exactly one of num_selected and budget_bytes must be set (set "
                "num_selected to null to select under budget_bytes); got "
                f"num_selected={self.num_selected!r}, "
                f"budget_bytes={self.budget_bytes!r}",
            )
        if self.num_selected is not None:
            _positive_int("num_selected", self.num_selected)
        else:
            _positive_int("budget_bytes", self.budget_bytes)
        if self.entry_z is not None and (
            self.budget_bytes is None or not self.entry_z > 0
        ):
            raise ConfigError(
                "entry_z",
                "must be a number > 0 and needs budget_bytes (it stops a budgeted "
                f"selection early); got entry_z={self.entry_z!r}, "
                f"budget_bytes={self.budget_bytes!r}",
            )
        _positive_int("selections_per_round", self.selections_per_round)
        _positive_int("warmup_epochs", self.warmup_epochs, 0)
        _positive_int("epochs_per_selection", self.epochs_per_selection)
        _positive_int("finetune_epochs", self.finetune_epochs, 0)
        _positive_int("selection_interval", self.selection_interval)
        if not 0 <= self.settle_fraction < 1:
            raise ConfigError(
                "settle_fraction", f"must be in [0, 1), got {self.settle_fraction!r}"
            )
        if not (
            math.isfinite(self.attention_learning_rate)
            and self.attention_learning_rate > 0
        ):
            raise ConfigError(
                "attention_learning_rate",
                f"must be a finite number > 0, got {self.attention_learning_rate!r}",
            )
        if not 0 <= self.attention_momentum < 1:
            raise ConfigError(
                "attention_momentum",
                f"must be in [0, 1), got {self.attention_momentum!r}",
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
    def total_epochs(self) -> int | None:
        """Epochs of the whole schedule (``None`` under ``budget_bytes``)."""
        if self.num_rounds is None:
            return None
        return self.epochs_for(self.num_rounds)

    def epochs_for(self, num_rounds: int) -> int:
        """Epochs of a schedule of ``num_rounds`` rounds: warm-up, rounds, fine-tune."""
        return (
            self.warmup_epochs
            + num_rounds * self.epochs_per_selection
            + self.finetune_epochs
        )


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


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """The main job: data, features, model, selection, training and output.

    Attributes:
      features: the real input features, in model order.
      noise: random fields appended after ``features``.
      model: the DCN ranking model.
      selection: the selection schedule and gate options.
      batch_size: training and evaluation batch size.
      learning_rate: learning rate of the model's optimizer.
      optimizer: ``"adam"``, ``"adagrad"`` or ``"sgd"``.
      seed: seeds the split, the noise fields, shuffling and initialisation.
      output_dir: where ``report.json``, ``gates.png`` and the export go.
      data_dir: MovieLens 100K files (None: fetch into the cache).
      max_examples: use only the first this many ratings (None: all).
      smoke: a quick run: at most ``SMOKE_MAX_EXAMPLES`` ratings, batch at most
        ``SMOKE_BATCH_SIZE``, one epoch per phase, smaller noise vocabularies
        (see :meth:`resolved`).
    """

    features: tuple[FeatureConfig, ...] = DEFAULT_FEATURES
    noise: NoiseConfig = dataclasses.field(default_factory=NoiseConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    selection: SelectionConfig = dataclasses.field(default_factory=SelectionConfig)
    batch_size: int = 2048
    learning_rate: float = 0.001
    optimizer: OptimizerName = "adam"
    seed: int = 42
    output_dir: str = "runs/movielens_100k"
    data_dir: str | None = None
    max_examples: int | None = None
    smoke: bool = False

    def __post_init__(self) -> None:
        if not self.features and not self.noise.num_fields:
            raise ConfigError("features", "must list at least one feature")
        seen: dict[str, str] = {}
        for i, feature in enumerate(self.features):
            key = f"features[{i}].name"
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
        _positive_int("batch_size", self.batch_size)
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ConfigError(
                "learning_rate",
                f"must be a finite number > 0, got {self.learning_rate!r}",
            )
        if not self.output_dir:
            raise ConfigError("output_dir", "must be a non-empty path")
        if self.max_examples is not None:
            _positive_int("max_examples", self.max_examples, 10)

    @classmethod
    def default(cls) -> JobConfig:
        """The embedded default job (equal to ``configs/movielens_100k.json``)."""
        return cls()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> JobConfig:
        """Builds a config from a JSON-like dict, validating it strictly.

        Args:
          data: nested dicts/lists as read from JSON; keys left out take their
            defaults.
          source: named in error messages (e.g. the file path).

        Returns:
          The validated config.

        Raises:
          ConfigError: a key is unknown, or a value has the wrong type or is out
            of range; the message names the key path and ``source``.
        """
        try:
            return _from_dict(cls, data, "")
        except ConfigError as e:
            raise ConfigError(e.key, e.reason, source) from None

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready dicts and lists (inverse of from_dict)."""
        return _to_json(self)

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
        the batch (at most ``SMOKE_BATCH_SIZE``), the schedule (one epoch of
        warm-up, one per round, one of fine-tune) and the noise vocabularies
        (at most ``SMOKE_NOISE_VOCABULARY_SIZE``).
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
                warmup_epochs=min(self.selection.warmup_epochs, 1),
                epochs_per_selection=1,
                finetune_epochs=min(self.selection.finetune_epochs, 1),
            ),
        )


# --------------------------------------------------------------------------
# Strict conversion from JSON values.
# --------------------------------------------------------------------------


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(annotation))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(annotation)[0])}s"
    if annotation is type(None):
        return "null"
    if dataclasses.is_dataclass(annotation):
        return "an object"
    return {bool: "a bool", int: "an int", float: "a number", str: "a string"}.get(
        annotation, str(annotation)
    )


def _type_error(path: str, annotation: Any, value: Any) -> ConfigError:
    return ConfigError(
        path,
        f"expected {_describe(annotation)}, got {json.dumps(value, default=repr)} "
        f"({type(value).__name__})",
    )


def _convert(value: Any, annotation: Any, path: str) -> Any:
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return _from_dict(annotation, value, path)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if isinstance(value, str) and value in choices:
            return value
        raise _type_error(path, annotation, value)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(annotation):
            try:
                return _convert(value, option, path)
            except ConfigError:
                continue
        raise _type_error(path, annotation, value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _type_error(path, annotation, value)
        (item_type, _) = typing.get_args(annotation)
        return tuple(
            _convert(item, item_type, f"{path}[{i}]") for i, item in enumerate(value)
        )
    if annotation is type(None):
        if value is None:
            return None
        raise _type_error(path, annotation, value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise _type_error(path, annotation, value)
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _type_error(path, annotation, value)
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(path, f"must be finite, got {value!r}")
            return float(value)
        raise _type_error(path, annotation, value)
    if annotation is str:
        if isinstance(value, str):
            return value
        raise _type_error(path, annotation, value)
    raise TypeError(f"Unsupported config annotation {annotation!r} at {path}.")


def _from_dict(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, Mapping):
        raise _type_error(path, cls, data)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise ConfigError(
                _join(path, str(key)),
                f"unknown key; expected one of {sorted(fields)}",
            )
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], _join(path, name))
        elif (
            field.default is dataclasses.MISSING
            and field.default_factory is dataclasses.MISSING
        ):
            raise ConfigError(_join(path, name), "missing required key")
    try:
        return cls(**kwargs)
    except ConfigError as e:  # keys from __post_init__ are relative to `cls`
        raise ConfigError(_join(path, e.key), e.reason) from None


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {
            f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)
        }
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    return value


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
