"""Checks of the gate layer's constructor arguments (Keras 3 front-end)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from seqattn_tfrs.keras3 import tables


def check(
    embeddings: Any,
    *,
    num_selected: int | None,
    budget_bytes: int | None,
    feature_bytes: Mapping[str, int] | None,
    pruned_feature_widths: Mapping[str, int] | None,
    feature_names: Sequence[str] | None,
) -> tuple[list[str], dict[str, int] | None]:
    """Validates what ``SequentialAttentionEmbedding`` takes besides the
    attention options (which ``AttentionOptions`` checks).

    Returns:
      All feature names in output order, and the pruned features' widths
      (``{}`` for a pruned layer that dropped none, None for one not pruned).

    Raises:
      TypeError: ``embeddings`` is neither a non-empty mapping of feature names
        to Keras 3 layers nor a keras-rs ``DistributedEmbedding``.
      ValueError: an argument is out of range or inconsistent (the message
        names it, its value and what was expected).

    Example:
      >>> check({"a": keras.layers.Embedding(3, 2)}, num_selected=2,
      ...       budget_bytes=None, feature_bytes=None,
      ...       pruned_feature_widths=None, feature_names=None)
      Traceback (most recent call last):
      ...
      ValueError: `num_selected` must be an int in [1, 1] ... got 2.
    """
    if tables.is_distributed(embeddings):
        table_names = list(tables.feature_tables(embeddings))
    elif isinstance(embeddings, Mapping) and embeddings:
        for name, layer in embeddings.items():
            if not isinstance(name, str) or not isinstance(layer, keras.layers.Layer):
                raise TypeError(
                    "`embeddings` must map feature-name strings to Keras 3 "
                    f"layers; got {name!r}: {type(layer).__name__}."
                )
        table_names = list(embeddings)
    else:
        raise TypeError(
            "`embeddings` must be a non-empty mapping from feature name to a "
            "Keras 3 layer, or a keras_rs.layers.DistributedEmbedding; got "
            f"{type(embeddings).__name__}: {embeddings!r}."
        )
    pruned = {str(k): int(v) for k, v in (pruned_feature_widths or {}).items()}
    overlap = sorted(set(pruned) & set(table_names))
    if overlap:
        raise ValueError(
            f"Features {overlap} are in both `embeddings` and "
            "`pruned_feature_widths`; expected each feature in one of them."
        )
    names = list(feature_names or table_names + list(pruned))
    if sorted(names) != sorted(table_names + list(pruned)):
        raise ValueError(
            f"`feature_names` must list each feature once, got {names!r} for "
            f"features {sorted(table_names + list(pruned))!r}."
        )
    if (num_selected is None) == (budget_bytes is None):
        raise ValueError(
            "Pass exactly one of `num_selected` (a feature count) and "
            f"`budget_bytes` (a memory budget); got num_selected={num_selected!r}"
            f" and budget_bytes={budget_bytes!r}."
        )
    if num_selected is not None and not (
        isinstance(num_selected, (int, np.integer))
        and not isinstance(num_selected, bool)
        and 1 <= num_selected <= len(names)
    ):
        raise ValueError(
            f"`num_selected` must be an int in [1, {len(names)}] (the number "
            f"of features), got {num_selected!r}."
        )
    if budget_bytes is not None and not (
        isinstance(budget_bytes, (int, np.integer))
        and not isinstance(budget_bytes, bool)
        and budget_bytes >= 1
    ):
        raise ValueError(
            f"`budget_bytes` must be an int >= 1 (bytes), got {budget_bytes!r}."
        )
    unknown = sorted(set(feature_bytes or {}) - set(names))
    if unknown:
        raise ValueError(
            f"`feature_bytes` names {unknown}, which are not features; expected "
            f"some of {names}."
        )
    return names, None if pruned_feature_widths is None else pruned
