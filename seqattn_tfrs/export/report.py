"""What an export holds: sizes of the tables and ``assets.extra/selection.json``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from seqattn_tfrs import pruning, width
from seqattn_tfrs.discovery import (
    find_feature_gates,
    find_gated_layers,
    find_width_layers,
)
from seqattn_tfrs.export.savedmodel import dir_bytes, signatures_record
from seqattn_tfrs.gate import SequentialAttentionEmbedding
from seqattn_tfrs.sizes import model_variables, table_variables, variable_stats
from seqattn_tfrs.version import __version__
from seqattn_tfrs.width import SequentialAttentionWidth


def size_report(
    model: tf.keras.Model, export_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Variables, parameters and bytes of a model and its embedding tables.

    Args:
      model: a model with ``SequentialAttentionEmbedding`` layers, pruned or not.
      export_dir: optional export directory (e.g. what
        :func:`export_for_serving` returned) whose on-disk size to add.

    Returns:
      ``{"model_variables": {"variables", "parameters", "bytes"},
      "embedding_tables": {"before": ..., "after": ...}, "gated_layers":
      {layer name: per-layer report}}``, plus ``"export_bytes"`` when
      ``export_dir`` is given, and ``"width_layers"``: per
      :class:`~seqattn_tfrs.SequentialAttentionWidth` layer, each field's kept
      columns and bytes. "before" counts the kept and the dropped tables,
      "after" the kept ones; for a layer that is not pruned they are equal. The
      dropped tables' sizes come from :func:`~seqattn_tfrs.prune`; for a layer
      pruned elsewhere (restored from a config) they are ``None``.

    Raises:
      TypeError: ``model`` is not a Keras model.
      ValueError: ``model`` holds no gated layer, or ``export_dir`` is not a
        directory.

    Example:
      >>> from seqattn_tfrs.pruning import prune
      >>> gate = SequentialAttentionEmbedding(
      ...     {"a": tf.keras.layers.Embedding(10, 4),
      ...      "b": tf.keras.layers.Embedding(1000, 8)}, num_selected=1)
      >>> model = tf.keras.Sequential([gate])
      >>> _ = gate({"a": tf.constant([1]), "b": tf.constant([2])})
      >>> _ = gate.commit_round()  # (the callback selects)
      >>> report = size_report(prune(model))["embedding_tables"]
      >>> report["before"]["parameters"], report["after"]["parameters"]
      (8040, 40)
    """
    if not isinstance(model, tf.keras.Model):
        raise TypeError(
            f"`model` must be a tf.keras.Model, got {type(model).__name__}: {model!r}."
        )
    if not find_gated_layers(model):
        raise ValueError(
            f"`model` {model.name!r} holds no SequentialAttentionEmbedding (or "
            "SequentialAttentionWidth) layer, whose tables size_report counts; "
            "expected a gated model, pruned or not."
        )
    # A width layer's inner gate selects column blocks of the width layer's
    # tables, which its own entry counts.
    layers = find_feature_gates(model)
    per_layer = {layer.name: _table_report(layer) for layer in layers}
    widths = {layer.name: _column_report(layer) for layer in find_width_layers(model)}
    entries = [*per_layer.values(), *widths.values()]
    report: dict[str, Any] = {
        "model_variables": variable_stats(model_variables(model)),
        "embedding_tables": {
            when: _sum_stats([entry[when] for entry in entries])
            for when in ("before", "after")
        },
        "gated_layers": per_layer,
        "width_layers": widths,
    }
    if export_dir is not None:
        path = os.fspath(export_dir)
        if not os.path.isdir(path):
            raise ValueError(
                f"`export_dir` must be an existing directory, got {path!r}."
            )
        report["export_bytes"] = dir_bytes(path)
    return report


def _sum_stats(entries: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    if any(entry is None for entry in entries):
        return None
    keys = ("tables", "variables", "parameters", "bytes")
    return {key: sum(entry[key] for entry in entries) for key in keys}


def _table_report(layer: SequentialAttentionEmbedding) -> dict[str, Any]:
    kept = {
        name: variable_stats(table_variables(table))
        for name, table in layer.embedding_layers.items()
    }
    widths = layer.pruned_feature_widths
    recorded = layer.prune_report
    dropped: dict[str, Any] = {}
    for name in widths:
        if recorded is not None and name in recorded["dropped"]:
            dropped[name] = dict(recorded["dropped"][name])
        else:
            dropped[name] = {
                "variables": None,
                "parameters": None,
                "bytes": None,
                "width": widths[name],
            }
    after = {
        "tables": len(kept),
        **variable_stats(
            [
                v
                for table in layer.embedding_layers.values()
                for v in table_variables(table)
            ]
        ),
    }
    if any(entry["parameters"] is None for entry in dropped.values()):
        before = None
    else:
        before = {
            key: after[key] + sum(entry[key] for entry in dropped.values())
            for key in ("variables", "parameters", "bytes")
        }
        before = {"tables": len(kept) + len(dropped), **before}
    fields = {}
    for name in layer.feature_names:
        if name in layer.embedding_layers:
            width = pruning.embedding_width(layer, name)
            fields[name] = {
                "width": width,
                "kept_columns": list(range(width)),
                "bytes": kept[name]["bytes"],
            }
        else:
            fields[name] = {"width": widths[name], "kept_columns": [], "bytes": 0}
    return {
        "selected_features": list(layer.selected_features),
        "dropped_features": list(widths),
        "budget_bytes": layer.budget_bytes,
        "fields": fields,
        "kept": kept,
        "dropped": dropped,
        "before": before,
        "after": after,
    }


def _column_report(layer: SequentialAttentionWidth) -> dict[str, Any]:
    """Per field of a width layer: its kept columns and the bytes of its table."""
    empty = {"variables": 0, "parameters": 0, "bytes": 0}
    after = {
        name: variable_stats(table_variables(width.final_embedding(table)))
        for name, table in layer.embedding_layers.items()
    }
    before = layer.tables_before_pruning if layer.is_pruned else after
    kept = layer.kept_columns()
    fields = {
        name: {
            "width": width,
            "kept_columns": kept[name],
            "bytes": after.get(name, empty)["bytes"],
            "bytes_before": None if before is None else before[name]["bytes"],
        }
        for name, width in layer.embedding_widths.items()
    }

    def total(stats: Mapping[str, Mapping[str, int]] | None) -> dict[str, Any] | None:
        if stats is None:
            return None
        return {
            "tables": sum(1 for entry in stats.values() if entry["bytes"]),
            **{
                key: sum(entry[key] for entry in stats.values())
                for key in ("variables", "parameters", "bytes")
            },
        }

    return {
        "block_size": layer.block_size,
        "target_width": layer.target_width,
        "budget_bytes": layer.budget_bytes,
        "selected_blocks": list(layer.blocks.selected_features),
        "fields": fields,
        "before": total(before),
        "after": total(after),
    }


def selection_record(
    model: tf.keras.Model,
    layers: list[SequentialAttentionEmbedding],
    specs: Mapping[str, tf.TensorSpec],
    serving_fn: Any,
    captured: list[Any],
    version: int,
    saved_bytes: int,
    warmup: Mapping[str, tf.Tensor] | None,
    padding: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    outputs = {
        key: tf.TensorSpec(t.shape, t.dtype)
        for key, t in serving_fn.structured_outputs.items()
    }
    report = size_report(model)
    saved = {id(obj) for obj in captured if isinstance(obj, tf.Variable)}
    served, unserved = [], []
    for layer in find_feature_gates(model, layers):  # width layers: their own
        variables = [
            v for t in layer.embedding_layers.values() for v in table_variables(t)
        ]
        # A gate the model tracks whose tables the serving graph does not read
        # (a retrieval index's candidate tower) is not in the export.
        if variables and not any(id(v) in saved for v in variables):
            unserved.append(layer.name)
        else:
            served.append(layer)
    gated = []
    for layer in served:
        tables = report["gated_layers"][layer.name]
        gated.append(
            {
                "name": layer.name,
                "feature_names": list(layer.feature_names),
                "num_selected": layer.num_selected,
                "budget_bytes": layer.budget_bytes,
                "budget_rule": layer.budget_rule,
                "fields": tables["fields"],
                "selected_features": tables["selected_features"],
                "dropped_features": tables["dropped_features"],
                "pruned_feature_widths": layer.pruned_feature_widths,
                "gate_history": layer.gate_history(),
                "schedule": layer.schedule_record,
                "embedding_tables": {
                    "before": tables["before"],
                    "after": tables["after"],
                    "kept": tables["kept"],
                    "dropped": tables["dropped"],
                },
            }
        )
    return {
        "seqattn_tfrs_version": __version__,
        "model": model.name,
        "version": version,
        "signatures": signatures_record(specs, outputs, padding),
        "gated_layers": gated,
        "unserved_gated_layers": unserved,
        "width_layers": report["width_layers"],
        "embedding_tables": {
            when: _sum_stats(
                [entry["embedding_tables"][when] for entry in gated]
                + [entry[when] for entry in report["width_layers"].values()]
            )
            for when in ("before", "after")
        },
        "saved_variables": variable_stats(
            [obj for obj in captured if isinstance(obj, tf.Variable)]
        ),
        "saved_model_bytes": saved_bytes,
        "warmup_records": 0 if warmup is None else len(next(iter(warmup.values()))),
    }
