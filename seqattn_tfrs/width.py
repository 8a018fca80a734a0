"""Sequential Attention over blocks of embedding columns: width selection."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from seqattn_tfrs import (
    _compat,  # noqa: F401  (Keras 2 check)
    sizes,
)
from seqattn_tfrs.gate import (
    SequentialAttentionEmbedding,
    with_deserialized_embeddings,
)


def _table_index(layer: tf.keras.layers.Layer) -> int | None:
    """Where a ``Sequential``'s last ``Embedding`` is, if only weightless layers
    (pooling, reshapes) follow it; ``None`` if there is no such table."""
    if not isinstance(layer, tf.keras.Sequential):
        return None
    for i in range(len(layer.layers) - 1, -1, -1):
        if isinstance(layer.layers[i], tf.keras.layers.Embedding):
            return i
        if not sizes.is_weightless(layer.layers[i]):
            return None
    return None


def final_embedding(layer: tf.keras.layers.Layer) -> tf.keras.layers.Embedding | None:
    """The table a per-feature layer ends with: the layer itself, or the last
    ``Embedding`` of a ``Sequential`` followed only by weightless layers."""
    if isinstance(layer, tf.keras.layers.Embedding):
        return layer
    index = _table_index(layer)
    return None if index is None else layer.layers[index]


def block_name(feature: str, block: int) -> str:
    """The name of a column block, e.g. ``"user_id/2"`` for columns 8-11 at 4."""
    return f"{feature}/{block}"


#: The block gate's words for what it selects, and this layer's.
_BLOCK_WORDS = (
    ("`num_selected`", "`target_width` // `block_size`"),
    ("features", "column blocks"),
    ("feature's table", "column block"),
    ("feature", "column block"),
)


def _in_blocks(message: str) -> str:
    """A block gate's error message in a width layer's terms: it selects
    column blocks, ``target_width // block_size`` of them.

    Example:
      >>> _in_blocks("picks `num_selected` features; the cheapest feature")
      'picks `target_width` // `block_size` column blocks; the cheapest column block'
    """
    for gate_words, width_words in _BLOCK_WORDS:
        message = message.replace(gate_words, width_words)
    return message


@tf.keras.utils.register_keras_serializable(package="seqattn_tfrs")
class SequentialAttentionWidth(tf.keras.layers.Layer):
    """Selects blocks of embedding columns with Sequential Attention.

    Each feature's table is cut into blocks of ``block_size`` consecutive
    columns; every block gets a Sequential Attention gate, and the blocks of all
    tables compete in one greedy forward selection (an inner
    :class:`~seqattn_tfrs.SequentialAttentionEmbedding` over the blocks, which
    :class:`~seqattn_tfrs.SequentialAttentionCallback` drives during ``fit``
    like any gate). The selection keeps ``target_width`` columns in all, or
    the blocks whose bytes fit ``budget_bytes`` (a block of a table of ``r``
    rows costs ``r * block_size * dtype size`` bytes). A table with no kept
    block is dropped altogether, so fields and widths are selected jointly.
    (Jointly beat fields first and widths after, in a second fit, on 6 of 6
    Criteo-shaped runs and tied on MovieLens; ``docs/pareto.md``.)

    The layer returns, per feature, the ``[batch, d]`` embedding with the
    unselected blocks' columns gated (exactly 0 once the selection is done).
    :func:`~seqattn_tfrs.prune` then slices every table to its kept columns and
    drops the tables with none; the output keeps its width ``d`` (the dropped
    columns are zeros), so predictions do not change.

    Args:
      embeddings: feature name -> a ``tf.keras.layers.Embedding``, or a
        ``tf.keras.Sequential`` whose last ``Embedding`` is followed only by
        layers without weights that treat each column alike (e.g. a lookup,
        the table, then mean pooling over a multi-valent feature's values).
        Each table's width must be a multiple of ``block_size``.
      block_size: columns per block, >= 1.
      target_width: total columns to keep over all tables, a multiple of
        ``block_size``. Pass exactly one of ``target_width`` and
        ``budget_bytes``.
      budget_bytes: keep the blocks whose bytes fit this budget instead.
      selections_per_round: blocks each selection round commits.
      entry_z: with ``budget_bytes``, also stop when no affordable block helps
        (see :class:`~seqattn_tfrs.SequentialAttentionEmbedding`). ``None``
        (default): fill the budget; stopping was mixed for blocks
        (``docs/pareto.md``), unlike for whole fields, where it is the
        default.
      budget_rule: ranking among the affordable blocks (see
        :class:`~seqattn_tfrs.SequentialAttentionEmbedding`).
      attention_learning_rate: step size of the logit update rule.
      attention_momentum: momentum of the logit update rule.
      attention_signal: ``"partial"``, ``"gradient"`` or ``"score"`` (see
        :class:`~seqattn_tfrs.SequentialAttentionEmbedding`).
      kept_columns: set by :func:`~seqattn_tfrs.prune`: feature -> the column
        indices its sliced table holds (an empty list: the table is gone).
      embedding_widths: set by :func:`~seqattn_tfrs.prune` with
        ``kept_columns``: every feature's output width, in output order.
      **kwargs: base ``Layer`` arguments.

    Example:
      >>> layer = SequentialAttentionWidth(
      ...     {"a": tf.keras.layers.Embedding(10, 4),
      ...      "b": tf.keras.layers.Embedding(5, 4)}, block_size=2, target_width=4)
      >>> layer.blocks.feature_names
      ('a/0', 'a/1', 'b/0', 'b/1')
      >>> {n: v.shape.as_list() for n, v in layer(
      ...     {"a": tf.constant([1]), "b": tf.constant([2])}).items()}
      {'a': [1, 4], 'b': [1, 4]}
    """

    def __init__(
        self,
        embeddings: Mapping[str, tf.keras.layers.Layer],
        *,
        block_size: int,
        target_width: int | None = None,
        budget_bytes: int | None = None,
        selections_per_round: int = 1,
        budget_rule: str = "attention_per_byte",
        entry_z: float | None = None,
        attention_learning_rate: float = 0.05,
        attention_momentum: float = 0.9,
        attention_signal: str = "partial",
        kept_columns: Mapping[str, list[int]] | None = None,
        embedding_widths: Mapping[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(embeddings, Mapping) or not embeddings:
            raise TypeError(
                "`embeddings` must be a non-empty mapping from feature name to an "
                f"Embedding (or a Sequential ending in one), got {embeddings!r}."
            )
        if (
            isinstance(block_size, bool)
            or not isinstance(block_size, (int, np.integer))
            or block_size < 1
        ):
            raise ValueError(f"`block_size` must be an int >= 1, got {block_size!r}.")
        if (target_width is None) == (budget_bytes is None):
            raise ValueError(
                "Pass exactly one of `target_width` (columns) and `budget_bytes`; "
                f"got target_width={target_width!r} and budget_bytes={budget_bytes!r}."
            )
        for name, layer in embeddings.items():
            if not isinstance(name, str) or final_embedding(layer) is None:
                raise TypeError(
                    f"`embeddings[{name!r}]` must be a tf.keras.layers.Embedding or a "
                    "Sequential ending in one (width selection slices its table), "
                    f"got {type(layer).__name__}: {layer!r}."
                )
        tables = {name: final_embedding(layer) for name, layer in embeddings.items()}
        kept = None
        if kept_columns is None:
            self._widths = {name: int(t.output_dim) for name, t in tables.items()}
        else:
            kept = {name: [int(c) for c in cols] for name, cols in kept_columns.items()}
            self._widths = {n: int(w) for n, w in (embedding_widths or {}).items()}
            with_table = {name for name, cols in kept.items() if cols}
            if set(kept) != set(self._widths) or with_table != set(embeddings):
                raise ValueError(
                    "A pruned layer needs `embedding_widths` and `kept_columns` for "
                    "the same features, and a table in `embeddings` exactly for those "
                    f"with kept columns; got widths {embedding_widths!r}, kept columns "
                    f"{kept_columns!r} and tables {sorted(embeddings)}."
                )
        for name, full in self._widths.items():
            if full % block_size:
                raise ValueError(
                    f"The table of feature {name!r} has {full} columns, not a "
                    f"multiple of `block_size`={block_size}; expected a block size "
                    "that divides every table's width."
                )
        costs = {
            name: int(t.input_dim)
            * block_size
            * tf.as_dtype(t.dtype or tf.float32).size
            for name, t in tables.items()
        }
        total = sum(self._widths.values())
        if target_width is not None and (
            isinstance(target_width, bool)
            or not isinstance(target_width, (int, np.integer))
            or not 1 <= target_width <= total
            or target_width % block_size
        ):
            raise ValueError(
                f"`target_width` must be a multiple of `block_size`={block_size} in "
                f"[{block_size}, {total}] (all tables' columns), got {target_width!r}."
            )
        self._tables = dict(embeddings)
        self.block_size = int(block_size)
        self.target_width = None if target_width is None else int(target_width)
        self.budget_bytes = None if budget_bytes is None else int(budget_bytes)
        self._kept = kept
        self._tables_before: dict[str, dict[str, int]] | None = None
        names = [
            block_name(name, j)
            for name, width in self._widths.items()
            for j in range(width // block_size)
        ]
        owner = {block: block.rsplit("/", 1)[0] for block in names}
        identity = {b: tf.keras.layers.Activation("linear") for b in names}
        # The block gate validates the attention settings (AttentionOptions).
        options = {
            "selections_per_round": selections_per_round,
            "budget_rule": budget_rule,
            "entry_z": entry_z,
            "attention_learning_rate": attention_learning_rate,
            "attention_momentum": attention_momentum,
            "attention_signal": attention_signal,
            "name": f"{self.name}_blocks",
        }
        count = None if target_width is None else target_width // block_size
        if kept is None:
            try:
                self.blocks = SequentialAttentionEmbedding(
                    identity,
                    count,
                    budget_bytes=budget_bytes,
                    feature_bytes={b: costs[owner[b]] for b in names},
                    **options,
                )
            except ValueError as e:  # the block gate's words, in this layer's
                raise ValueError(_in_blocks(str(e))) from e
        else:
            kept_blocks = [
                block_name(name, c // block_size)
                for name, cols in kept.items()
                for c in cols[::block_size]
            ]
            self.blocks = SequentialAttentionEmbedding(
                {b: identity[b] for b in kept_blocks},
                len(kept_blocks) if count is not None else None,
                budget_bytes=budget_bytes,
                pruned_feature_widths={
                    b: block_size for b in names if b not in kept_blocks
                },
                feature_names=names,
                **options,
            )

    # ------------------------------------------------------------ public view
    @property
    def feature_names(self) -> tuple[str, ...]:
        """The features, in output order."""
        return tuple(self._widths)

    @property
    def embedding_widths(self) -> dict[str, int]:
        """Each feature's output width (its table's width before pruning)."""
        return dict(self._widths)

    @property
    def embedding_layers(self) -> dict[str, tf.keras.layers.Layer]:
        """The per-feature layers held (after pruning: the sliced, kept ones)."""
        return dict(self._tables)

    @property
    def is_pruned(self) -> bool:
        """Whether :func:`~seqattn_tfrs.prune` sliced the tables."""
        return self._kept is not None

    @property
    def selected_features(self) -> tuple[str, ...]:
        """The features with a selected block, in the order of their first
        (:meth:`kept_columns` gives each one's columns)."""
        owner = {
            block_name(name, block): name
            for name, width in self._widths.items()
            for block in range(width // self.block_size)
        }
        firsts = dict.fromkeys(owner[b] for b in self.blocks.selected_features)
        return tuple(firsts)

    @property
    def selection_complete(self) -> bool:
        """Whether the block selection is done."""
        return self.blocks.is_pruned or self.blocks.selection_complete

    def kept_columns(self) -> dict[str, list[int]]:
        """Feature -> the column indices of its selected blocks, sorted."""
        if self._kept is not None:
            return {name: list(cols) for name, cols in self._kept.items()}
        chosen = set(self.blocks.selected_features)
        return {
            name: [
                c
                for c in range(width)
                if block_name(name, c // self.block_size) in chosen
            ]
            for name, width in self._widths.items()
        }

    # ------------------------------------------------------------------- call
    def call(self, features: Mapping[str, Any], training: bool | None = None):
        if not isinstance(features, Mapping):
            raise TypeError(
                f"{self.name} expects a dict of feature tensors, got "
                f"{type(features).__name__}."
            )
        if self._kept is not None:
            return self._call_pruned(features)
        blocks = {}
        for name, layer in self._tables.items():
            value = layer(features[name])
            for j in range(self._widths[name] // self.block_size):
                start = j * self.block_size
                blocks[block_name(name, j)] = value[:, start : start + self.block_size]
        gated = self.blocks(blocks)
        return {
            name: tf.concat(
                [
                    gated[block_name(name, j)]
                    for j in range(self._widths[name] // self.block_size)
                ],
                axis=1,
            )
            for name in self._widths
        }

    def _call_pruned(self, features: Mapping[str, Any]) -> dict[str, tf.Tensor]:
        kept_values = {
            name: self._tables[name](features[name])
            for name, cols in self._kept.items()
            if cols
        }
        batch = tf.shape(next(iter(kept_values.values())))[0]
        dtype = next(iter(kept_values.values())).dtype
        outputs = {}
        for name, width in self._widths.items():
            cols = self._kept[name]
            if not cols:
                outputs[name] = tf.zeros([batch, width], dtype)
                continue
            position = {c: i for i, c in enumerate(cols)}
            pieces = []
            for j in range(width // self.block_size):
                start = j * self.block_size
                if start in position:
                    at = position[start]
                    pieces.append(kept_values[name][:, at : at + self.block_size])
                else:
                    pieces.append(tf.zeros([batch, self.block_size], dtype))
            outputs[name] = tf.concat(pieces, axis=1)
        return outputs

    # ---------------------------------------------------------------- pruning
    def slice_tables(self) -> Callable[[], None]:
        """Replaces each table by one holding only its kept columns.

        Used by :func:`~seqattn_tfrs.prune`; records the full tables' sizes in
        :attr:`tables_before_pruning`.

        Returns:
          A function that undoes the change (for a failed prune).
        """
        saved = (self._tables, self._kept, self._tables_before)
        self._tables_before = {
            name: sizes.variable_stats(sizes.table_variables(final_embedding(table)))
            for name, table in self._tables.items()
        }
        kept = self.kept_columns()
        tables = {}
        for name, layer in self._tables.items():
            if not kept[name]:
                continue
            tables[name] = _sliced(layer, kept[name])
        self._tables = tables
        self._kept = kept

        def undo() -> None:
            self._tables, self._kept, self._tables_before = saved

        return undo

    @property
    def tables_before_pruning(self) -> dict[str, dict[str, int]] | None:
        """Sizes of the full-width tables that pruning sliced, or None."""
        return self._tables_before

    # ---------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        blocks = self.blocks
        config.update(
            {
                "embeddings": {
                    name: tf.keras.layers.serialize(layer)
                    for name, layer in self._tables.items()
                },
                "block_size": self.block_size,
                "target_width": self.target_width,
                "budget_bytes": self.budget_bytes,
                **blocks.options.as_kwargs(),
                "kept_columns": self._kept,
                "embedding_widths": None if self._kept is None else dict(self._widths),
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SequentialAttentionWidth:
        return cls(**with_deserialized_embeddings(config))


def _sliced(layer: tf.keras.layers.Layer, columns: list[int]) -> tf.keras.layers.Layer:
    """A copy of a per-feature layer whose final table holds only ``columns``."""
    table = final_embedding(layer)
    if not table.built:
        raise ValueError(
            f"The table {table.name!r} was never built; call the model on a batch "
            "(and train it) before pruning."
        )
    config = dict(table.get_config(), output_dim=len(columns))
    narrow = tf.keras.layers.Embedding.from_config(config)
    with tf.name_scope(narrow.name):  # as a call builds it: unique names for h5
        narrow.build(tf.TensorShape([None]))
    narrow.embeddings.assign(tf.gather(table.embeddings, columns, axis=1))
    if layer is table:
        return narrow
    index = _table_index(layer)
    return tf.keras.Sequential(
        [*layer.layers[:index], narrow, *layer.layers[index + 1 :]], name=layer.name
    )
