"""``export_for_serving``: a pruned model as a TF Serving SavedModel."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf

from seqattn_tfrs.discovery import find_gated_layers, find_width_layers
from seqattn_tfrs.distributed import LocalVariables, check_no_remote_captures
from seqattn_tfrs.export import report, savedmodel, signature, versions
from seqattn_tfrs.export import warmup as warmup_lib
from seqattn_tfrs.export.savedmodel import EXAMPLES_SIGNATURE, SERVING_SIGNATURE
from seqattn_tfrs.gate import SequentialAttentionEmbedding


def export_for_serving(
    model: tf.keras.Model,
    export_base_path: str | os.PathLike,
    *,
    version: int | str | None = None,
    serving_features: Mapping[str, tf.TensorSpec] | None = None,
    output_name: str | Mapping[str | int, str] = "scores",
    warmup_examples: Mapping[str, Sequence[Any]] | None = None,
    padding: Mapping[str, Any] | None = None,
) -> str:
    """Writes ``<export_base_path>/<version>/``, a SavedModel for TF Serving.

    The model must have been through :func:`~seqattn_tfrs.prune`, so the export
    holds only the kept features' lookups and tables. The SavedModel loads with
    plain TensorFlow (no import of this package) and has two signatures:

    * ``serving_default``: one input per kept raw feature, keyed by feature name,
      with its real dtype and a ``None`` batch dimension (``[None]`` for scalar
      features); returns ``{output_name: scores}``.
    * ``serve_examples``: one input ``inputs``, a ``[None]`` ``tf.string`` of
      serialized ``tf.Example`` protos holding the kept features; returns the
      same outputs. With the default ``output_name="scores"`` it is the form TF
      Serving's Classify API takes; its Regress API needs a signature with
      exactly one output, named ``"outputs"``: pass ``output_name="outputs"``.

    A variable-length feature (a ``[None, None]`` input: genres, tags) comes
    padded: ``serve_examples`` pads each row's values to the batch's longest
    with ``padding[name]`` (default -1 for integers, ``""`` for strings, 0.0
    for floats), so pass the value your model's own padding uses (0 for a
    ``mask_zero=True`` table). A feature the model was called with as a
    ``tf.RaggedTensor`` of shape ``[batch, None]`` is served the same way: both
    signatures take it padded and strip the trailing padding values back to
    the ragged rows the model reads.

    Floating-point outputs are float32 whatever the model's compute dtype (a
    mixed-precision model's float16 or bfloat16 scores are cast).

    The label never appears: the serving inputs are the inputs the served
    graph reads. Inputs the model was called with that its outputs do not
    depend on (a label that a TFRS model's ``call`` receives in the feature
    dict, for one) are found by tracing the model and left out.

    The version directory is written under a hidden temporary name
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
        dropped features and the inputs the outputs do not depend on; pass it
        if the model was never called. Given, it must name every input the
        served graph reads and may leave out the unread ones.
      output_name: the signature output key for a model returning one tensor, or
        a mapping from each of the model's output keys (dict outputs) or indices
        (list outputs) to a signature output key. ``"scores"`` suits TF
        Serving's Predict and Classify APIs; ``"outputs"`` its Predict and
        Regress APIs (Regress needs exactly one output, so no one export serves
        both Classify and Regress through ``serve_examples``).
      warmup_examples: optional feature name -> list of per-row values (at most
        1000 rows, exactly the serving features); written as
        ``assets.extra/tf_serving_warmup_requests``, one ``PredictionLog`` with a
        one-row ``serving_default`` ``PredictRequest`` per row. Needs the
        ``tensorflow-serving-api`` package (``pip install seqattn_tfrs[serving]``).
      padding: variable-length feature name -> the value that pads its rows
        (see above); recorded in ``selection.json``.

    Returns:
      The path of the new version directory.

    Raises:
      TypeError: an argument has the wrong type.
      ValueError: the model defines no ``call`` or holds no gated layer, a
        selection is incomplete or not pruned yet, the serving features do not
        match the model, a bad ``version``, ``output_name``, ``padding`` or
        ``warmup_examples``.
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
      >>> _ = gate.commit_round()
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
    if type(model).call is tf.keras.Model.call:
        raise ValueError(
            f"Model {model.name!r} ({type(model).__name__}) defines no `call`, "
            "only its loss (as TFRS's retrieval tutorials write a two-tower "
            "model), so it has nothing to serve. Expected the model that "
            "serves: its query tower (`export_for_serving(model.query_model, "
            "...)`) or a tfrs.layers.factorized_top_k.BruteForce index over it."
        )
    requested = versions.parse_version(version)
    savedmodel.check_output_name(output_name)
    layers = _check_pruned(model)
    local = LocalVariables(model)  # parameter-server tables, gathered on this host
    template, specs = signature.serving_inputs(
        model, _dropped_features(model, layers), serving_features, tracing=local
    )
    base = versions.check_base_path(export_base_path)
    protos = warmup_lib.import_serving_protos() if warmup_examples is not None else None
    serve, serve_examples = signature.serving_functions(
        model, template, specs, output_name, padding
    )
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
        warmup = warmup_lib.warmup_batch(warmup_examples, specs)
        serving_fn(warmup)  # the rows must run through the model

    check_no_remote_captures([serving_fn, examples_fn])
    captured = _captured_objects(model, [serving_fn, examples_fn], local.copies)
    module = tf.Module()
    module.tracked = captured
    module.serving_default = serve
    module.serve_examples = serve_examples

    def write(directory: str, number: int) -> None:
        with local:  # saving may trace the functions again
            tf.saved_model.save(
                module,
                directory,
                signatures={
                    SERVING_SIGNATURE: serving_fn,
                    EXAMPLES_SIGNATURE: examples_fn,
                },
            )
        extra = os.path.join(directory, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        saved_bytes = savedmodel.dir_bytes(directory)
        if warmup is not None:
            warmup_lib.write_warmup(
                os.path.join(extra, warmup_lib.WARMUP_FILE), warmup, protos
            )
        record = report.selection_record(
            model,
            layers,
            specs,
            serving_fn,
            captured,
            number,
            saved_bytes,
            warmup,
            padding,
        )
        savedmodel.write_json(os.path.join(extra, savedmodel.SELECTION_FILE), record)

    return versions.write_version(base, requested, write)


def _dropped_features(
    model: tf.keras.Model, layers: list[SequentialAttentionEmbedding]
) -> dict[str, str]:
    """Features no gated or width layer still reads, mapped to a layer's name."""
    width_layers = find_width_layers(model)
    kept_anywhere = {name for layer in layers for name in layer.embedding_layers}
    kept_anywhere.update(name for w in width_layers for name in w.embedding_layers)
    return {
        name: layer.name
        for layer in [*layers, *width_layers]
        for name in getattr(layer, "pruned_feature_widths", layer.feature_names)
        if name not in kept_anywhere  # another gate may still read it
    }


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
