"""Exports a pruned model as a TF Serving SavedModel that needs only TensorFlow."""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from seqattn_tfrs.callback import find_gated_layers
from seqattn_tfrs.distributed import LocalVariables, check_no_remote_captures
from seqattn_tfrs.gate import SequentialAttentionEmbedding
from seqattn_tfrs.pruning import (
    _embedding_width,
    _is_functional,
    model_variables,
    table_variables,
    variable_stats,
)
from seqattn_tfrs.version import __version__
from seqattn_tfrs.width import (
    SequentialAttentionWidth,
    _final_embedding,
    find_width_layers,
)

SERVING_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "serve_examples"
EXAMPLES_INPUT = "inputs"  # the input key TF Serving's Classify/Regress APIs use
MAX_WARMUP_RECORDS = 1000  # TF Serving reads at most this many warm-up records
SELECTION_FILE = "selection.json"
WARMUP_FILE = "tf_serving_warmup_requests"


def export_for_serving(
    model: tf.keras.Model,
    export_base_path: str | os.PathLike,
    *,
    version: int | str | None = None,
    serving_features: Mapping[str, tf.TensorSpec] | None = None,
    output_name: str | Mapping[str | int, str] = "scores",
    warmup_examples: Mapping[str, Sequence[Any]] | None = None,
) -> str:
    """Writes ``<export_base_path>/<version>/``, a SavedModel for TF Serving.

    The model must have been through :func:`~seqattn_tfrs.prune`, so the export
    holds only the kept features' lookups and tables. The SavedModel loads with
    plain TensorFlow (no import of this package) and has two signatures:

    * ``serving_default``: one input per kept raw feature, keyed by feature name,
      with its real dtype and a ``None`` batch dimension (``[None]`` for scalar
      features); returns ``{output_name: scores}``.
    * ``serve_examples``: one input ``inputs``, a ``[None]`` ``tf.string`` of
      serialized ``tf.Example`` protos holding the kept features (the input key
      TF Serving's Classify/Regress APIs need); returns the same outputs.

    The label never appears: the inputs are the features the model itself is
    called with. The version directory is written under a hidden temporary name
    (``.tmp-<version>-*``) next to it and renamed into place only when complete,
    so TF Serving never loads a half-written version; on any failure the
    temporary directory is removed and the error re-raised. Directories that are
    not version numbers are left alone.

    ``assets.extra/selection.json`` records, per gated layer, the selected
    features in selection order, the gate history, the dropped features, the
    parameters and bytes of the embedding tables before and after pruning, and
    the on-disk size of the SavedModel (excluding ``assets.extra``); per field,
    its width, kept columns and bytes (``fields``), the byte budget if any, and
    for every :class:`~seqattn_tfrs.SequentialAttentionWidth` layer its kept
    columns per field (``width_layers``). A subclassed model's serving inputs
    also leave out the fields whose every column block was dropped.

    Args:
      model: the pruned model (for a functional model, the one ``prune`` returned).
      export_base_path: the model base path TF Serving watches; created if missing.
      version: the version directory, an int >= 0 (or a string of digits);
        default: one more than the largest existing version, or 1.
      serving_features: the kept raw features, name -> ``tf.TensorSpec`` with a
        ``None`` batch dimension. Default: inferred from the inputs Keras recorded
        when the model was first called (``model.save_spec()``), without the
        dropped features; pass it if the model was never called.
      output_name: the signature output key for a model returning one tensor, or
        a mapping from each of the model's output keys (dict outputs) or indices
        (list outputs) to a signature output key. ``"scores"`` suits TF
        Serving's Predict and Classify APIs; its Regress API reads ``"outputs"``.
      warmup_examples: optional feature name -> list of per-row values (at most
        1000 rows, exactly the serving features); written as
        ``assets.extra/tf_serving_warmup_requests``, one ``PredictionLog`` with a
        one-row ``serving_default`` ``PredictRequest`` per row. Needs the
        ``tensorflow-serving-api`` package (``pip install seqattn_tfrs[serving]``).

    Returns:
      The path of the new version directory.

    Raises:
      TypeError: an argument has the wrong type.
      ValueError: the model holds no gated layer, a selection is incomplete or
        not pruned yet, the serving features do not match the model, a bad
        ``version``, ``output_name`` or ``warmup_examples``.
      FileExistsError: the version already exists.
      NotADirectoryError: ``export_base_path`` is a file.
      PermissionError: ``export_base_path`` is not writable.
      ImportError: ``warmup_examples`` given without ``tensorflow-serving-api``.

    Example:
      >>> import tempfile
      >>> from seqattn_tfrs.pruning import prune
      >>> gate = SequentialAttentionEmbedding(
      ...     {"a": tf.keras.layers.Embedding(10, 4),
      ...      "b": tf.keras.layers.Embedding(1000, 8)}, num_selected=1)
      >>> inputs = {n: tf.keras.Input([], dtype=tf.int64, name=n) for n in "ab"}
      >>> out = gate(inputs)
      >>> model = tf.keras.Model(inputs, tf.concat([out["a"], out["b"]], axis=1))
      >>> _ = gate.attention_logits.assign([1.0, 0.0])  # (the callback selects)
      >>> _ = gate._commit_round()
      >>> path = export_for_serving(prune(model), tempfile.mkdtemp())
      >>> os.path.basename(path)
      '1'
      >>> serving = tf.saved_model.load(path).signatures["serving_default"]
      >>> serving(a=tf.constant([3], tf.int64))["scores"].shape
      TensorShape([1, 12])
    """
    if not isinstance(model, tf.keras.Model):
        raise TypeError(
            f"`model` must be a tf.keras.Model, got {type(model).__name__}: {model!r}."
        )
    requested = _parse_version(version)
    _check_output_name(output_name)
    layers = _check_pruned(model)
    width_layers = find_width_layers(model)
    kept_anywhere = {name for layer in layers for name in layer.embedding_layers}
    kept_anywhere.update(name for w in width_layers for name in w.embedding_layers)
    dropped = {
        name: layer.name
        for layer in [*layers, *width_layers]
        for name in getattr(layer, "pruned_feature_widths", layer.feature_names)
        if name not in kept_anywhere  # another gate may still read it
    }
    template, specs = _serving_inputs(model, dropped, serving_features)
    base = _check_base_path(export_base_path)
    protos = _import_serving_protos() if warmup_examples is not None else None

    parse_specs = {name: _parse_spec(name, spec) for name, spec in specs.items()}

    @tf.function(input_signature=[specs], autograph=False)
    def serve(features):
        outputs = model(_pack(template, features), training=False)
        return _name_outputs(outputs, output_name)

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)],
        autograph=False,
    )
    def serve_examples(inputs):
        parsed = tf.io.parse_example(inputs, parse_specs)
        features = {name: tf.cast(parsed[name], s.dtype) for name, s in specs.items()}
        outputs = model(_pack(template, features), training=False)
        return _name_outputs(outputs, output_name)

    local = LocalVariables(model)  # parameter-server tables, gathered on this host
    try:
        with local:
            serving_fn = serve.get_concrete_function()
            examples_fn = serve_examples.get_concrete_function()
    except KeyError as err:
        raise ValueError(
            f"Model {model.name!r} reads a feature that is not among the serving "
            f"features {sorted(specs)}: {err}. Pass `serving_features` with every "
            "feature the pruned model reads."
        ) from err
    warmup = None
    if warmup_examples is not None:
        warmup = _warmup_batch(warmup_examples, specs)
        serving_fn(warmup)  # the rows must run through the model

    check_no_remote_captures([serving_fn, examples_fn])
    captured = _captured_objects(model, [serving_fn, examples_fn], local.copies)
    module = tf.Module()
    module.tracked = captured
    module.serving_default = serve
    module.serve_examples = serve_examples

    try:
        os.makedirs(base, exist_ok=True)
    except PermissionError as err:
        raise PermissionError(
            f"`export_base_path` {base!r} cannot be created: {err}."
        ) from err
    with _export_lock(base):  # one export per base path at a time
        _remove_abandoned_temp_dirs(base)
        number = requested if requested is not None else _next_version(base)
        _check_version_free(base, number)
        tmp = _make_temp_dir(base, number)
        try:
            with local:  # saving may trace the functions again
                tf.saved_model.save(
                    module,
                    tmp,
                    signatures={
                        SERVING_SIGNATURE: serving_fn,
                        EXAMPLES_SIGNATURE: examples_fn,
                    },
                )
            extra = os.path.join(tmp, "assets.extra")
            os.makedirs(extra, exist_ok=True)
            saved_bytes = _dir_bytes(tmp)
            if warmup is not None:
                _write_warmup(os.path.join(extra, WARMUP_FILE), warmup, protos)
            record = _selection_record(
                model, layers, specs, serving_fn, captured, number, saved_bytes, warmup
            )
            _write_json(os.path.join(extra, SELECTION_FILE), record)
            final = os.path.join(base, str(number))
            _check_version_free(base, number)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final


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

    Example:
      >>> from seqattn_tfrs.pruning import prune
      >>> gate = SequentialAttentionEmbedding(
      ...     {"a": tf.keras.layers.Embedding(10, 4),
      ...      "b": tf.keras.layers.Embedding(1000, 8)}, num_selected=1)
      >>> model = tf.keras.Sequential([gate])
      >>> _ = gate({"a": tf.constant([1]), "b": tf.constant([2])})
      >>> _ = gate._commit_round()  # (the callback selects)
      >>> report = size_report(prune(model))["embedding_tables"]
      >>> report["before"]["parameters"], report["after"]["parameters"]
      (8040, 40)
    """
    if not isinstance(model, tf.keras.Model):
        raise TypeError(
            f"`model` must be a tf.keras.Model, got {type(model).__name__}: {model!r}."
        )
    layers = find_gated_layers(model)
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
        report["export_bytes"] = _dir_bytes(path)
    return report


# ----------------------------------------------------------------- checks
def _check_base_path(export_base_path: Any) -> str:
    if not isinstance(export_base_path, (str, os.PathLike)):
        raise TypeError(
            "`export_base_path` must be a path, got "
            f"{type(export_base_path).__name__}: {export_base_path!r}."
        )
    base = os.path.abspath(os.fspath(export_base_path))
    if os.path.exists(base) and not os.path.isdir(base):
        raise NotADirectoryError(
            f"`export_base_path` {base!r} is a file; expected a directory (the "
            "model base path TF Serving watches) or a path to create."
        )
    existing = base
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NotADirectoryError(
            f"`export_base_path` {base!r} cannot be created: {existing!r} is a file."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(
            f"`export_base_path` {base!r} is not writable: no write permission on "
            f"{existing!r}."
        )
    return base


def _parse_version(version: Any) -> int | None:
    if version is None:
        return None
    if isinstance(version, str) and version.isascii() and version.isdigit():
        return int(version)
    if (
        isinstance(version, (int, np.integer))
        and not isinstance(version, bool)
        and version >= 0
    ):
        return int(version)
    raise ValueError(
        f"`version` must be a non-negative int (or a string of digits) naming the "
        f"version directory, got {version!r}."
    )


LOCK_FILE = ".seqattn_tfrs_export.lock"
_TEMP_NAME = re.compile(r"\.tmp-\d+-[0-9a-f]{12}")


@contextlib.contextmanager
def _export_lock(base: str) -> Iterator[None]:
    """Holds an exclusive lock on ``<base>/.seqattn_tfrs_export.lock``.

    Exports to one base path, from any process, run one at a time: each picks
    its version only when the previous one has been renamed into place, so two
    concurrent exports get distinct versions. The operating system drops the
    lock when a process dies, killed or not.
    """
    try:
        fd = os.open(os.path.join(base, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError as err:
        raise PermissionError(
            f"`export_base_path` {base!r} is not writable: {err}."
        ) from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _remove_abandoned_temp_dirs(base: str) -> None:
    """Removes temporary version directories of exports that died midway.

    Called with the lock held, so no live export owns one. Only names this
    module creates (``.tmp-<version>-<12 hex digits>``) are touched.
    """
    for entry in os.scandir(base):
        if entry.is_dir(follow_symlinks=False) and _TEMP_NAME.fullmatch(entry.name):
            shutil.rmtree(entry.path)


def _make_temp_dir(base: str, number: int) -> str:
    """Creates ``<base>/.tmp-<number>-<random>``, hidden from TF Serving.

    Unlike ``tempfile.mkdtemp`` (mode 0o700) it gets the usual permissions
    (0o777 minus the umask), which the renamed version directory keeps, so a
    model server running as another user can read it.
    """
    for _ in range(100):
        path = os.path.join(base, f".tmp-{number}-{secrets.token_hex(6)}")
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        except PermissionError as err:
            raise PermissionError(
                f"`export_base_path` {base!r} is not writable: {err}."
            ) from err
        return path
    raise FileExistsError(f"Could not create a temporary directory in {base!r}.")


def _versions(base: str) -> dict[int, str]:
    if not os.path.isdir(base):
        return {}
    return {
        int(entry.name): entry.name
        for entry in os.scandir(base)
        if entry.name.isascii() and entry.name.isdigit()
    }


def _next_version(base: str) -> int:
    return max(_versions(base), default=0) + 1


def _check_version_free(base: str, number: int) -> None:
    existing = _versions(base).get(number)
    if existing is not None:
        raise FileExistsError(
            f"Version {number} already exists in `export_base_path` {base!r} "
            f"({os.path.join(base, existing)!r}); expected a new version number "
            "(or leave `version` unset for the next one)."
        )


def _check_output_name(output_name: Any) -> None:
    if isinstance(output_name, str):
        if not output_name:
            raise ValueError("`output_name` must be a non-empty string, got ''.")
        return
    if isinstance(output_name, Mapping):
        names = list(output_name.values())
        if (
            not names
            or not all(isinstance(n, str) and n for n in names)
            or len(set(names)) != len(names)
        ):
            raise ValueError(
                "`output_name` as a mapping must map each model output to a "
                f"distinct non-empty string, got {dict(output_name)!r}."
            )
        return
    raise TypeError(
        "`output_name` must be a string or a mapping from model output keys to "
        f"signature output keys, got {type(output_name).__name__}: {output_name!r}."
    )


def _check_pruned(model: tf.keras.Model) -> list[SequentialAttentionEmbedding]:
    layers = find_gated_layers(model)
    if not layers:
        raise ValueError(
            f"`model` {model.name!r} holds no SequentialAttentionEmbedding layer; "
            "export_for_serving exports models pruned by seqattn_tfrs.prune."
        )
    for layer in layers:
        if layer.is_pruned:
            continue
        if not layer.selection_complete:
            raise ValueError(
                f"Layer {layer.name!r} has selected {layer.progress()}; finish the "
                "selection and call "
                "seqattn_tfrs.prune(model) before exporting."
            )
        raise ValueError(
            f"Layer {layer.name!r} has completed its selection but is not pruned; "
            "call `model = seqattn_tfrs.prune(model)` first and export the model it "
            "returns, so the unselected tables are left out of the SavedModel."
        )
    return layers


# ----------------------------------------------------------- the inputs
def _leaves(structure: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    if isinstance(structure, Mapping):
        return [
            leaf
            for key, value in structure.items()
            for leaf in _leaves(value, (*path, key))
        ]
    if isinstance(structure, (list, tuple)):
        return [
            leaf
            for i, value in enumerate(structure)
            for leaf in _leaves(value, (*path, i))
        ]
    return [(path, structure)]


def _leaf_name(path: tuple, spec: Any) -> str:
    if path and isinstance(path[-1], str):
        return path[-1]
    name = getattr(spec, "name", None)
    if not name:
        raise ValueError(
            f"Cannot name the model input at position {list(path)} ({spec}); pass "
            "`serving_features` and call the model with a dict of named features."
        )
    return name


def _recorded_inputs(model: tf.keras.Model) -> Any:
    saved = model.save_spec(dynamic_batch=True)
    if saved is None:
        return None
    args, kwargs = saved
    extra = [a for a in tf.nest.flatten((args[1:], kwargs)) if a is not None]
    if not args or extra:
        raise ValueError(
            f"Model {model.name!r} was called with arguments besides its features "
            f"({saved}); the serving signature passes only the features."
        )
    return args[0]


def _serving_inputs(
    model: tf.keras.Model,
    dropped: dict[str, str],
    serving_features: Mapping[str, tf.TensorSpec] | None,
) -> tuple[Any, dict[str, tf.TensorSpec]]:
    """The nested input template (leaves are feature names) and the flat specs."""
    if serving_features is not None:
        if not isinstance(serving_features, Mapping) or not serving_features:
            raise TypeError(
                "`serving_features` must be a non-empty mapping from feature name to "
                f"tf.TensorSpec, got {serving_features!r}."
            )
        for name, spec in serving_features.items():
            if not isinstance(name, str) or not isinstance(spec, tf.TensorSpec):
                raise TypeError(
                    "`serving_features` must map feature-name strings to dense "
                    f"tf.TensorSpec, got {name!r}: {spec!r}."
                )
    recorded = _recorded_inputs(model)
    if recorded is None:
        if serving_features is None:
            raise ValueError(
                f"Model {model.name!r} has no recorded input spec (it was never "
                "called); pass `serving_features`, a mapping from each kept feature "
                "name to a tf.TensorSpec such as tf.TensorSpec([None], tf.string)."
            )
        template: Any = {name: name for name in serving_features}
        recorded_specs: dict[str, Any] = {}
    else:
        leaves = [
            (_leaf_name(path, spec), path, spec) for path, spec in _leaves(recorded)
        ]
        names = [name for name, _, _ in leaves]
        if len(set(names)) != len(names):
            raise ValueError(
                f"Model {model.name!r} has several inputs with the same feature name "
                f"({names}); serving signatures key inputs by feature name."
            )
        in_graph = [name for name in names if name in dropped]
        if in_graph and _is_functional(model):
            raise ValueError(
                f"Functional model {model.name!r} still takes the dropped feature(s) "
                f"{in_graph} as inputs; export the model returned by "
                "`seqattn_tfrs.prune(model)` instead."
            )
        for name, path, _ in leaves:
            if name in dropped and not isinstance(path[-1] if path else None, str):
                raise ValueError(
                    f"Dropped feature {name!r} is a positional model input; only "
                    "features passed in dicts can be left out of the serving inputs."
                )
        template = _template(recorded, (), set(dropped))
        recorded_specs = {name: spec for name, _, spec in leaves if name not in dropped}
    if serving_features is None:
        chosen = recorded_specs
    else:
        if recorded is not None:
            given, expected = set(serving_features), set(recorded_specs)
            if given != expected:
                problems = []
                if given - expected:
                    extra = sorted(given - expected)
                    gone = [n for n in extra if n in dropped]
                    problems.append(
                        f"not model inputs: {extra}"
                        + (f" ({gone} were dropped by pruning)" if gone else "")
                    )
                if expected - given:
                    problems.append(f"missing: {sorted(expected - given)}")
                raise ValueError(
                    f"`serving_features` must name exactly the kept features "
                    f"{sorted(expected)}, got {sorted(given)}; "
                    + "; ".join(problems)
                    + "."
                )
            for name, spec in serving_features.items():
                want = recorded_specs[name]
                if not isinstance(want, tf.TensorSpec) or spec.dtype != want.dtype:
                    raise ValueError(
                        f"`serving_features[{name!r}]` is {spec}; the model was "
                        f"called with {want}, expected the same dtype."
                    )
        chosen = dict(serving_features)
    specs = {}
    for name, spec in chosen.items():
        if not isinstance(spec, tf.TensorSpec):
            raise ValueError(
                f"Input feature {name!r} has spec {spec}; serving signatures take "
                "dense tensors. Pass `serving_features` with a dense tf.TensorSpec "
                "(e.g. a padded [None, None] tf.string for a multi-valent feature) "
                "that the feature's layer accepts."
            )
        if spec.shape.rank is None or spec.shape.rank < 1 or spec.shape[0] is not None:
            raise ValueError(
                f"Serving feature {name!r} has shape {spec.shape}; expected a None "
                "batch dimension first, e.g. [None] for a scalar feature."
            )
        specs[name] = tf.TensorSpec(spec.shape, spec.dtype, name=name)
    if not specs:
        raise ValueError(f"Model {model.name!r} has no serving features left.")
    return template, specs


def _template(structure: Any, path: tuple, dropped: set[str]) -> Any:
    if isinstance(structure, Mapping):
        return {
            key: _template(value, (*path, key), dropped)
            for key, value in structure.items()
            if not (key in dropped and not isinstance(value, (Mapping, list, tuple)))
        }
    if isinstance(structure, (list, tuple)):
        return type(structure)(
            _template(v, (*path, i), dropped) for i, v in enumerate(structure)
        )
    return _leaf_name(path, structure)


def _pack(template: Any, features: Mapping[str, Any]) -> Any:
    if isinstance(template, Mapping):
        return {key: _pack(value, features) for key, value in template.items()}
    if isinstance(template, (list, tuple)):
        return type(template)(_pack(value, features) for value in template)
    return features[template]


def _parse_spec(name: str, spec: tf.TensorSpec) -> Any:
    dtype = spec.dtype
    if dtype == tf.string:
        parse_dtype, pad = tf.string, ""
    elif dtype.is_integer or dtype == tf.bool:
        # -1, never a real id: variable-length integer features (genres, tags)
        # come padded with -1, as the dense serving_default input expects.
        parse_dtype, pad = tf.int64, -1
    elif dtype.is_floating:
        parse_dtype, pad = tf.float32, 0.0
    else:
        raise ValueError(
            f"Serving feature {name!r} has dtype {dtype.name}; tf.Example holds only "
            "strings, integers and floats."
        )
    inner = spec.shape[1:]
    if inner.is_fully_defined():
        return tf.io.FixedLenFeature(inner.as_list(), parse_dtype)
    if inner.rank == 1:
        return tf.io.FixedLenSequenceFeature(
            [], parse_dtype, allow_missing=True, default_value=pad
        )
    raise ValueError(
        f"Serving feature {name!r} has shape {spec.shape}; tf.Example parsing "
        "needs [None, ...] with fixed inner dimensions or [None, None]."
    )


def _name_outputs(outputs: Any, output_name: str | Mapping[Any, str]) -> dict:
    if isinstance(output_name, str):
        if not tf.is_tensor(outputs):
            raise ValueError(
                f"The model returns {tf.nest.map_structure(lambda t: t.shape, outputs)}"
                f"; pass `output_name` as a mapping from each of its outputs to a "
                f"signature output key instead of {output_name!r}."
            )
        return {output_name: outputs}
    if isinstance(outputs, Mapping):
        keys = list(outputs)
    elif isinstance(outputs, (list, tuple)):
        keys = list(range(len(outputs)))
    else:
        raise ValueError(
            "The model returns one tensor; pass `output_name` as a string, got "
            f"{dict(output_name)!r}."
        )
    if set(keys) != set(output_name):
        raise ValueError(
            f"`output_name` must map exactly the model's outputs {keys}, got "
            f"{sorted(output_name, key=str)}."
        )
    return {output_name[key]: outputs[key] for key in keys}


# ------------------------------------------------------------- warm-up
def _import_serving_protos() -> tuple[Any, Any]:
    """The ``predict_pb2`` and ``prediction_log_pb2`` modules of TF Serving."""
    try:
        return (
            importlib.import_module("tensorflow_serving.apis.predict_pb2"),
            importlib.import_module("tensorflow_serving.apis.prediction_log_pb2"),
        )
    except ImportError as err:
        raise ImportError(
            "`warmup_examples` needs the tensorflow-serving-api package for the "
            "PredictionLog protos; install it with `pip install "
            "seqattn_tfrs[serving]` (or `pip install tensorflow-serving-api`)."
        ) from err


def _warmup_batch(
    examples: Mapping[str, Sequence[Any]], specs: Mapping[str, tf.TensorSpec]
) -> dict[str, tf.Tensor]:
    if not isinstance(examples, Mapping):
        raise TypeError(
            "`warmup_examples` must be a mapping from feature name to a list of "
            f"per-row values, got {type(examples).__name__}."
        )
    if set(examples) != set(specs):
        raise ValueError(
            f"`warmup_examples` must hold exactly the serving features "
            f"{sorted(specs)}, got {sorted(examples)} (extra: "
            f"{sorted(set(examples) - set(specs))}, missing: "
            f"{sorted(set(specs) - set(examples))})."
        )
    lengths = {name: len(values) for name, values in examples.items()}
    rows = set(lengths.values())
    if len(rows) != 1 or not 1 <= next(iter(rows)) <= MAX_WARMUP_RECORDS:
        raise ValueError(
            f"`warmup_examples` must give every feature the same number of rows, "
            f"between 1 and {MAX_WARMUP_RECORDS}; got {lengths}."
        )
    batch = {}
    for name, spec in specs.items():
        try:
            value = tf.constant(examples[name], dtype=spec.dtype)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"`warmup_examples[{name!r}]` cannot be converted to "
                f"{spec.dtype.name}: {err}."
            ) from err
        if not spec.shape.is_compatible_with(value.shape):
            raise ValueError(
                f"`warmup_examples[{name!r}]` has shape {value.shape}; expected "
                f"{spec.shape}."
            )
        batch[name] = value
    return batch


def _write_warmup(
    path: str, batch: Mapping[str, tf.Tensor], protos: tuple[Any, Any]
) -> int:
    predict_pb2, prediction_log_pb2 = protos
    rows = len(next(iter(batch.values())))
    with tf.io.TFRecordWriter(path) as writer:
        for row in range(rows):
            request = predict_pb2.PredictRequest()
            request.model_spec.signature_name = SERVING_SIGNATURE
            for name, value in batch.items():
                request.inputs[name].CopyFrom(
                    tf.make_tensor_proto(value[row : row + 1].numpy())
                )
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return rows


# ------------------------------------------------------------- saving
def _captured_objects(
    model: tf.keras.Model, functions: list[Any], copies: list[tf.Variable]
) -> list[Any]:
    """The model's variables and resources (lookup tables) the functions read.

    ``copies`` are local copies of the model's remote variables
    (:class:`~seqattn_tfrs.distributed.LocalVariables`) the functions may read.

    Tracking only these, not the model, keeps the optimizer and every object the
    serving graph does not use out of the SavedModel.
    """
    captured = {id(t) for fn in functions for t in fn.captured_inputs}
    found: dict[int, Any] = {}
    for obj in tf.train.TrackableView(model).descendants():
        if isinstance(obj, tf.Variable):
            handle = obj.handle
        elif isinstance(obj, tf.saved_model.experimental.TrackableResource):
            handle = obj.resource_handle
        else:
            continue
        if id(handle) in captured:
            found.setdefault(id(handle), obj)
    # A function traced while connected to a cluster captures copies of the
    # handles, so the copies are found by the variables the functions read.
    read = {variable.ref() for fn in functions for variable in fn.variables}
    for copy in copies:
        if copy.ref() in read:
            found.setdefault(id(copy.handle), copy)
    return list(found.values())


def _dir_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


def _write_json(path: str, payload: Mapping[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, sort_keys=False)
        handle.write("\n")


def _spec_json(spec: tf.TensorSpec) -> dict[str, Any]:
    return {"dtype": spec.dtype.name, "shape": spec.shape.as_list()}


def _sum_stats(entries: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    if any(entry is None for entry in entries):
        return None
    keys = ("tables", "variables", "parameters", "bytes")
    return {key: sum(entry[key] for entry in entries) for key in keys}


def _table_report(layer: SequentialAttentionEmbedding) -> dict[str, Any]:
    kept = {
        name: variable_stats(table_variables(table))
        for name, table in layer._tables.items()
    }
    widths = layer.pruned_feature_widths
    recorded = getattr(layer, "_prune_report", None)
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
            [v for table in layer._tables.values() for v in table_variables(table)]
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
        if name in layer._tables:
            width = _embedding_width(layer, name)
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
        name: variable_stats(table_variables(_final_embedding(table)))
        for name, table in layer.embedding_layers.items()
    }
    before = getattr(layer, "_tables_before", None) if layer.is_pruned else after
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


def _selection_record(
    model: tf.keras.Model,
    layers: list[SequentialAttentionEmbedding],
    specs: Mapping[str, tf.TensorSpec],
    serving_fn: Any,
    captured: list[Any],
    version: int,
    saved_bytes: int,
    warmup: Mapping[str, tf.Tensor] | None,
) -> dict[str, Any]:
    outputs = {
        key: _spec_json(tf.TensorSpec(t.shape, t.dtype))
        for key, t in serving_fn.structured_outputs.items()
    }
    sizes = size_report(model)
    gated = []
    for layer in layers:
        tables = sizes["gated_layers"][layer.name]
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
        "signatures": {
            SERVING_SIGNATURE: {
                "inputs": {name: _spec_json(spec) for name, spec in specs.items()},
                "outputs": outputs,
            },
            EXAMPLES_SIGNATURE: {
                "inputs": {EXAMPLES_INPUT: {"dtype": "string", "shape": [None]}},
                "outputs": outputs,
            },
        },
        "gated_layers": gated,
        "width_layers": sizes["width_layers"],
        "embedding_tables": sizes["embedding_tables"],
        "saved_variables": variable_stats(
            [obj for obj in captured if isinstance(obj, tf.Variable)]
        ),
        "saved_model_bytes": saved_bytes,
        "warmup_records": 0 if warmup is None else len(next(iter(warmup.values()))),
    }
