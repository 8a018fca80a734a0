"""The per-feature embeddings a gate wraps: a dict of layers, or keras-rs's
``DistributedEmbedding``, behind one small interface.

The gate needs, for either kind: the feature names, a call that maps a dict
of raw inputs to a dict of ``[batch, d]`` embeddings, each feature's bytes
(for budgets) and a copy holding only some features (for pruning). Several
features of a ``DistributedEmbedding`` may share one table: the copy keeps a
table while any kept feature uses it, and a shared table's bytes count once
for each feature that uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from seqattn_tfrs.core.sizes import count_variables


def distributed_embedding_class() -> type | None:
    """``keras_rs.layers.DistributedEmbedding``, or None without keras-rs."""
    try:
        import keras_rs
    except ImportError:
        return None
    return keras_rs.layers.DistributedEmbedding


def is_distributed(embeddings: Any) -> bool:
    """Whether ``embeddings`` is a keras-rs ``DistributedEmbedding``."""
    cls = distributed_embedding_class()
    return cls is not None and isinstance(embeddings, cls)


def variable_bytes(variables: Sequence[Any]) -> int:
    """Bytes of distinct variables: elements x dtype size."""
    return count_variables(
        (
            id(v),
            tuple(v.shape),
            np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize,
        )
        for v in variables
    )["bytes"]


def layer_bytes(layer: keras.layers.Layer) -> int | None:
    """Bytes of a per-feature layer's weights; ``None`` before it is built
    (an unbuilt ``Embedding`` is read off its shape).

    Example:
      >>> layer_bytes(keras.layers.Embedding(1000, 8))
      32000
    """
    if layer.built:
        return variable_bytes(layer.weights)
    if isinstance(layer, keras.layers.Embedding):
        itemsize = np.dtype(keras.backend.standardize_dtype(layer.dtype)).itemsize
        return int(layer.input_dim) * int(layer.output_dim) * itemsize
    return None


def feature_tables(embeddings: Any) -> dict[str, str]:
    """Feature name to table name of a ``DistributedEmbedding`` (flat dict)."""
    return {
        name: config.table.name for name, config in _feature_configs(embeddings).items()
    }


def distributed_costs(embeddings: Any) -> dict[str, int]:
    """Bytes of each feature's table in a ``DistributedEmbedding`` (float32)."""
    return {
        name: int(config.table.vocabulary_size)
        * int(config.table.embedding_dim)
        * np.dtype(keras.backend.standardize_dtype(embeddings.dtype)).itemsize
        for name, config in _feature_configs(embeddings).items()
    }


def distributed_widths(embeddings: Any) -> dict[str, int]:
    """Output width of each feature of a ``DistributedEmbedding``."""
    return {
        name: int(config.output_shape[-1])
        for name, config in _feature_configs(embeddings).items()
    }


def _feature_configs(embeddings: Any) -> dict[str, Any]:
    configs = embeddings._feature_configs  # the constructor's argument, as given
    if not isinstance(configs, Mapping) or not all(
        isinstance(name, str) and hasattr(config, "table")  # a FeatureConfig's
        for name, config in configs.items()
    ):
        raise ValueError(
            "A gated `DistributedEmbedding` must be built from a flat dict of "
            "`FeatureConfig`s keyed by feature name, got "
            f"{type(configs).__name__}: {configs!r}."
        )
    return dict(configs)


def kept_distributed(embeddings: Any, kept: Sequence[str]) -> Any:
    """A new ``DistributedEmbedding`` with only the ``kept`` features and the
    tables they use (fresh weights: see :func:`copy_distributed_tables`)."""
    cls = distributed_embedding_class()
    configs = _feature_configs(embeddings)
    return cls({name: configs[name] for name in kept}, name=embeddings.name)


def copy_distributed_tables(source: Any, target: Any) -> None:
    """Copies every table of ``target`` from the same-named table of ``source``.

    A table's weight is the ``embeddings`` variable of a layer named after the
    table (keras-rs's default-device path).

    Raises:
      ValueError: a table of ``target`` has no counterpart in ``source``, or
        ``target`` holds tables on another placement (SparseCore).
    """
    old = source.get_embedding_tables()
    wanted = set(target.get_embedding_tables())
    copied = set()
    for variable in target.weights:
        parts = variable.path.split("/")
        if len(parts) >= 2 and parts[-2] in wanted and parts[-1] == "embeddings":
            variable.assign(keras.ops.convert_to_numpy(old[parts[-2]]))
            copied.add(parts[-2])
    if copied != wanted:
        raise ValueError(
            f"Could not copy the tables {sorted(wanted - copied)} into the pruned "
            "DistributedEmbedding; expected each on the default device as a "
            "variable `<table>/embeddings`."
        )


def serialize(embeddings: Any) -> Any:
    """``embeddings`` (a dict of layers or a ``DistributedEmbedding``) as config."""
    if is_distributed(embeddings):
        return keras.saving.serialize_keras_object(embeddings)
    return {
        name: keras.saving.serialize_keras_object(layer)
        for name, layer in embeddings.items()
    }


def deserialize(config: Any) -> Any:
    """The embeddings :func:`serialize` wrote."""
    if "class_name" in config and "config" in config:
        return keras.saving.deserialize_keras_object(config)
    return {
        name: keras.saving.deserialize_keras_object(layer)
        for name, layer in config.items()
    }


def compiled_lookups(
    embeddings: Mapping[str, keras.layers.Layer],
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A function from raw inputs to every table's output, compiled by JAX
    as one program (each table's ``stateless_call`` on its variables' current
    values). Called eagerly, JAX compiles each table's lookup on its own, once
    per table shape (about 0.05 s a table on a CPU); this compiles once per
    batch shape. The tables must be built and traceable by JAX (as in a
    jit-compiled ``fit``).

    Raises:
      ValueError: the backend is not JAX.
    """
    if keras.backend.backend() != "jax":
        raise ValueError(
            "Compiled table lookups are for the JAX backend; got "
            f"{keras.backend.backend()!r}."
        )
    import jax

    layers = dict(embeddings)

    @jax.jit
    def lookups(states: dict, inputs: dict) -> dict:
        return {
            name: layer.stateless_call(*states[name], inputs[name])[0]
            for name, layer in layers.items()
        }

    def call(features: Mapping[str, Any]) -> dict[str, Any]:
        states = {
            name: (
                [v.value for v in layer.trainable_variables],
                [v.value for v in layer.non_trainable_variables],
            )
            for name, layer in layers.items()
        }
        return lookups(states, {name: features[name] for name in layers})

    return call
