"""The reference DCN ranking model of the main job, with or without the gate.

The model has the shape TFRS users write (the TFRS DCN tutorial): one
``Sequential([lookup, Embedding])`` per feature, concatenated, then
``tfrs.layers.dcn.Cross`` layers, ReLU layers and a sigmoid output, trained by
``tfrs.tasks.Ranking``. With ``use_gate=True`` the per-feature layers are
wrapped in one :class:`~seqattn_tfrs.SequentialAttentionEmbedding`; without it
the same layers feed the same architecture directly (the no-selection
baseline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf
import tensorflow_recommenders as tfrs

import seqattn_tfrs
from seqattn_tfrs.movielens.config import LABEL, FeatureConfig, JobConfig

__all__ = [
    "LABEL_KEY",
    "DCNRankingModel",
    "MULTI_VALUE_PADDING",
    "RaggedMeanPooling",
    "StripPadding",
    "build_feature_layer",
    "build_model",
    "embedding_table_stats",
    "make_optimizer",
]

#: The raw label feature; ``compute_loss`` pops it and never passes it on.
LABEL_KEY = LABEL
#: Ratings at or above this count as positive ("liked").
POSITIVE_RATING = 4.0
#: Pads dense rows of multi-valent (``"multi_int"``) features; never a real id.
MULTI_VALUE_PADDING = -1


@tf.keras.utils.register_keras_serializable(package="seqattn_tfrs")
class StripPadding(tf.keras.layers.Layer):
    """Turns a padded ``[batch, width]`` tensor into a ragged one; ragged passes.

    Lets a multi-valent feature arrive either ragged (as ``Dataset.batch`` of
    variable-length rows yields it) or dense and padded (as a serving signature
    takes it).

    Args:
      padding: the value that marks padding in dense inputs.
      **kwargs: base ``Layer`` arguments.

    Example:
      >>> StripPadding(-1)(tf.constant([[3, 5], [7, -1]])).to_list()
      [[3, 5], [7]]
    """

    def __init__(self, padding: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.padding = padding

    def call(self, inputs: tf.Tensor | tf.RaggedTensor) -> tf.RaggedTensor:
        if isinstance(inputs, tf.RaggedTensor):
            return inputs
        return tf.RaggedTensor.from_tensor(inputs, padding=self.padding)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": self.padding}


@tf.keras.utils.register_keras_serializable(package="seqattn_tfrs")
class RaggedMeanPooling(tf.keras.layers.Layer):
    """Averages a ``[batch, (values), d]`` ragged (or dense) tensor over values.

    Rows with no values give zeros (not NaN).

    Example:
      >>> x = tf.ragged.constant([[[1.0], [3.0]], []], ragged_rank=1)
      >>> RaggedMeanPooling()(x).numpy().tolist()
      [[2.0], [0.0]]
    """

    def call(self, inputs: tf.Tensor | tf.RaggedTensor) -> tf.Tensor:
        if isinstance(inputs, tf.RaggedTensor):
            total = tf.reduce_sum(inputs, axis=1)
            count = tf.cast(inputs.row_lengths(), total.dtype)[:, tf.newaxis]
            return tf.math.divide_no_nan(total, count)
        return tf.reduce_mean(inputs, axis=1)


def build_feature_layer(
    feature: FeatureConfig, vocabulary: Sequence[Any]
) -> tf.keras.Sequential:
    """The per-feature model mapping a raw feature to a ``[batch, dim]`` embedding.

    Args:
      feature: the feature's config.
      vocabulary: the lookup vocabulary (strings or ints), or for a
        ``"numeric"`` feature the sorted bucket boundaries.

    Returns:
      ``Sequential([StringLookup|IntegerLookup, Embedding])`` (for
      ``"multi_int"``: ragged or ``MULTI_VALUE_PADDING``-padded dense ids, mean
      pooled), or ``Sequential([Discretization, Embedding])`` for
      ``"numeric"``. Lookups have no mask token and one out-of-vocabulary row.

    Raises:
      ValueError: ``vocabulary`` is empty.
    """
    vocabulary = list(vocabulary)
    if not vocabulary:
        raise ValueError(f"Feature {feature.name!r} has an empty vocabulary.")
    dim = feature.embedding_dim
    if feature.kind == "numeric":
        layers = [
            tf.keras.layers.Discretization(
                bin_boundaries=[float(b) for b in vocabulary]
            ),
            tf.keras.layers.Embedding(len(vocabulary) + 1, dim),
        ]
    else:
        if feature.kind == "string":
            lookup = tf.keras.layers.StringLookup(
                vocabulary=vocabulary, mask_token=None
            )
        else:
            lookup = tf.keras.layers.IntegerLookup(
                vocabulary=[int(v) for v in vocabulary], mask_token=None
            )
        layers = [lookup, tf.keras.layers.Embedding(len(vocabulary) + 1, dim)]
        if feature.kind == "multi_int":
            layers = [StripPadding(MULTI_VALUE_PADDING), *layers, RaggedMeanPooling()]
    return tf.keras.Sequential(layers, name=f"{feature.name}_embedding")


class DCNRankingModel(tfrs.models.Model):
    """A DCN ranking model over per-feature embeddings, optionally gated.

    Args:
      feature_layers: feature name to per-feature layer (see
        :func:`build_feature_layer`), in model order.
      use_gate: wrap the feature layers in a
        :class:`~seqattn_tfrs.SequentialAttentionEmbedding` (True) or use them
        directly (False, the no-selection baseline).
      num_selected: fields to select (gate only).
      budget_bytes: select the fields whose tables fit this many bytes instead
        (gate only; exactly one of the two).
      attention: the gate's six attention settings (gate only; None: the
        library's defaults, ``seqattn_tfrs.AttentionOptions()``).
      cross_layers: number of ``tfrs.layers.dcn.Cross`` layers.
      projection_dim: their low-rank projection (None: full rank).
      hidden_units: ReLU layer widths after the cross layers.
      **kwargs: ``tf.keras.Model`` arguments (``name``).

    Raises:
      ValueError: ``feature_layers`` is empty, or a gate option is invalid.
      TypeError: ``attention`` is not an ``AttentionOptions``.
    """

    def __init__(
        self,
        feature_layers: Mapping[str, tf.keras.layers.Layer],
        *,
        use_gate: bool = True,
        num_selected: int | None = 1,
        budget_bytes: int | None = None,
        attention: seqattn_tfrs.AttentionOptions | None = None,
        cross_layers: int = 1,
        projection_dim: int | None = None,
        hidden_units: Sequence[int] = (64, 32),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not feature_layers:
            raise ValueError("`feature_layers` must hold at least one feature.")
        self._feature_names = tuple(feature_layers)
        if attention is None:
            attention = seqattn_tfrs.AttentionOptions()
        if not isinstance(attention, seqattn_tfrs.AttentionOptions):
            raise TypeError(
                "`attention` must be a seqattn_tfrs.AttentionOptions or None, got "
                f"{attention!r} ({type(attention).__name__})."
            )
        if use_gate:
            self.gate: seqattn_tfrs.SequentialAttentionEmbedding | None = (
                seqattn_tfrs.SequentialAttentionEmbedding(
                    dict(feature_layers),
                    None if budget_bytes is not None else num_selected,
                    budget_bytes=budget_bytes,
                    name="sequential_attention",
                    **attention.as_kwargs(),
                )
            )
            self.feature_layers: dict[str, tf.keras.layers.Layer] = {}
        else:
            self.gate = None
            self.feature_layers = dict(feature_layers)
        self.cross = [
            tfrs.layers.dcn.Cross(
                projection_dim=projection_dim, kernel_initializer="glorot_uniform"
            )
            for _ in range(cross_layers)
        ]
        self.hidden = [
            tf.keras.layers.Dense(units, activation="relu") for units in hidden_units
        ]
        self.score = tf.keras.layers.Dense(1, activation="sigmoid")
        self.task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.BinaryCrossentropy(),
            metrics=[
                tf.keras.metrics.AUC(name="auc"),
                tf.keras.metrics.BinaryCrossentropy(name="log_loss"),
            ],
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        """All feature names, in the order their embeddings are concatenated."""
        return self._feature_names

    def embed(self, features: Mapping[str, Any]) -> dict[str, tf.Tensor]:
        """Per-feature (gated, if there is a gate) ``[batch, d]`` embeddings."""
        if self.gate is not None:
            return self.gate(features)
        return {
            name: layer(features[name]) for name, layer in self.feature_layers.items()
        }

    def call(self, features: Mapping[str, Any]) -> tf.Tensor:
        """Predicted probability of a positive rating, ``[batch, 1]``."""
        embeddings = self.embed(features)
        x0 = tf.concat([embeddings[name] for name in self._feature_names], axis=1)
        x = x0
        for cross in self.cross:
            x = cross(x0, x)
        for dense in self.hidden:
            x = dense(x)
        return self.score(x)

    def compute_loss(
        self, features: Mapping[str, Any], training: bool = False
    ) -> tf.Tensor:
        """Binary cross-entropy of ``user_rating >= 4``; the label is popped."""
        features = dict(features)
        if LABEL_KEY not in features:
            raise KeyError(
                f"The training data must hold the label {LABEL_KEY!r}; got keys "
                f"{sorted(features)}."
            )
        rating = features.pop(LABEL_KEY)
        labels = tf.cast(tf.reshape(rating, [-1, 1]) >= POSITIVE_RATING, tf.float32)
        scores = self(features, training=training)
        return self.task(labels=labels, predictions=scores)


def make_optimizer(name: str, learning_rate: float) -> tf.keras.optimizers.Optimizer:
    """The Keras 2 optimizer named ``"adam"``, ``"adagrad"`` or ``"sgd"``.

    Raises:
      ValueError: unknown ``name``.
    """
    optimizers = {
        "adam": tf.keras.optimizers.Adam,
        "adagrad": tf.keras.optimizers.Adagrad,
        "sgd": tf.keras.optimizers.SGD,
    }
    if name not in optimizers:
        raise ValueError(
            f"optimizer must be one of {sorted(optimizers)}, got {name!r}."
        )
    return optimizers[name](learning_rate=learning_rate)


def build_model(
    config: JobConfig,
    vocabularies: Mapping[str, Sequence[Any]],
    *,
    use_gate: bool = True,
) -> DCNRankingModel:
    """Builds and compiles the job's model over ``config.all_features``.

    Args:
      config: the job config (features, model, selection, optimizer).
      vocabularies: feature name to vocabulary (or bucket boundaries), as built
        from the training split.
      use_gate: with the Sequential Attention gate (True) or the plain
        all-features baseline (False).

    Returns:
      A compiled, not yet built, :class:`DCNRankingModel`.

    Raises:
      KeyError: a feature has no vocabulary.
    """
    missing = [f.name for f in config.all_features if f.name not in vocabularies]
    if missing:
        raise KeyError(f"No vocabulary for feature(s) {missing}.")
    layers = {
        f.name: build_feature_layer(f, vocabularies[f.name])
        for f in config.all_features
    }
    selection = config.selection
    model = DCNRankingModel(
        layers,
        use_gate=use_gate,
        num_selected=selection.num_selected,
        budget_bytes=selection.budget_bytes,
        attention=selection.attention,
        cross_layers=config.model.cross_layers,
        projection_dim=config.model.projection_dim,
        hidden_units=config.model.hidden_units,
        name="dcn_ranking" if use_gate else "dcn_ranking_baseline",
    )
    model.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate))
    return model


def embedding_table_stats(model: DCNRankingModel) -> dict[str, dict[str, int]]:
    """The embedding tables the gated model's gate holds, by feature.

    After pruning, only the kept ones. Counted by
    :func:`seqattn_tfrs.size_report`.

    Returns:
      Feature name to ``{"dim", "variables", "parameters", "bytes"}``, where
      parameters and bytes count every weight of that feature's layer.
    """
    if model.gate is None:
        raise ValueError(f"Model {model.name!r} has no gate; expected a gated model.")
    tables = seqattn_tfrs.size_report(model)["gated_layers"][model.gate.name]
    return {
        name: {"dim": tables["fields"][name]["width"], **stats}
        for name, stats in tables["kept"].items()
    }
