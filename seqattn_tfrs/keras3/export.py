"""Writes a pruned Keras 3 model as a TF Serving SavedModel version."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from typing import Any

import keras

from seqattn_tfrs.keras3.callback import find_gated_layers
from seqattn_tfrs.keras3.gate import SequentialAttentionEmbedding
from seqattn_tfrs.version import __version__


def export_for_serving(
    model: keras.Model,
    export_base_path: str | os.PathLike,
    version: int | str | None = None,
    *,
    output_name: str | Mapping[str | int, str] = "scores",
    padding: Mapping[str, Any] | None = None,
) -> str:
    """Exports ``model`` to ``<export_base_path>/<version>/`` for TF Serving.

    The model must be pruned (see :func:`~seqattn_tfrs.keras3.prune`). Keras'
    ``model.export(..., format="tf_saved_model")`` writes the model; the
    version then holds the same two signatures as the tf-keras front-end's
    export (:func:`seqattn_tfrs.export_for_serving`):

    * ``serving_default``: the kept features, keyed by name, with the model's
      input dtypes and a ``None`` batch dimension; returns
      ``{output_name: scores}``, floats as float32.
    * ``serve_examples``: serialized ``tf.Example`` protos under the key
      ``inputs``, holding the kept features; the same outputs. With the
      default ``output_name="scores"`` this is what TF Serving's Classify API
      takes; its Regress API needs one output named ``"outputs"``.

    ``assets.extra/selection.json`` records, per gated layer, the features in
    the order they were selected, the dropped ones with their widths, the
    bytes of each kept table, the gate values before each round, and the
    signatures and the SavedModel's size. A label is never an input of a
    functional model, so it never reaches a signature. The version is written
    under a hidden temporary name beside it and renamed into place when
    complete (one export per base path at a time), so a server watching the
    base path never sees a half-written version.

    Needs TensorFlow installed, whatever the backend. On PyTorch, whose Keras
    export takes no dict of inputs, the model is saved as a ``.keras`` file
    and exported by Keras on the TensorFlow backend in a child process (with
    no GPU): its layers must then be Keras', keras-rs' or this package's.

    Args:
      model: a pruned functional model.
      export_base_path: the model base path TF Serving watches.
      version: the version directory, an int >= 0 (or a string of digits);
        default: one more than the largest existing version, or 1.
      output_name: the signature output key for a model with one output, or a
        mapping from each output (its key, or its index for a list) to a key.
      padding: a variable-length (``[None, None]``) feature's name -> the value
        ``serve_examples`` pads its shorter rows with: the one the model's own
        padding uses (0 for a ``mask_zero=True`` table). Default -1 for
        integers, ``""`` for strings, 0.0 for floats; recorded in
        ``selection.json``.

    Returns:
      The path of the written version directory.

    Raises:
      ImportError: TensorFlow is not installed.
      ValueError: a gated layer is not pruned, or ``output_name`` or
        ``padding`` does not fit the model's outputs or inputs.
      FileExistsError: the version exists.
      RuntimeError: on PyTorch, the child process could not load or export
        the saved model (a layer of another class; its error is in the
        message).

    Example:
      >>> import tempfile
      >>> import numpy as np
      >>> from seqattn_tfrs.keras3 import SequentialAttentionEmbedding, prune
      >>> gate = SequentialAttentionEmbedding(
      ...     {"a": keras.layers.Embedding(10, 4),
      ...      "b": keras.layers.Embedding(1000, 8)}, num_selected=1)
      >>> inputs = {n: keras.Input((), dtype="int32", name=n) for n in "ab"}
      >>> out = gate(inputs)
      >>> model = keras.Model(inputs, keras.layers.Concatenate()([out["a"], out["b"]]))
      >>> _ = model({"a": np.array([1]), "b": np.array([2])})
      >>> _ = gate.attention_logits.assign([1.0, 0.0])  # (the callback selects)
      >>> gate.commit_round()
      ['a']
      >>> path = export_for_serving(prune(model), tempfile.mkdtemp())
      >>> os.path.basename(path)
      '1'
      >>> import tensorflow as tf
      >>> serving = tf.saved_model.load(path).signatures["serving_default"]
      >>> serving(a=tf.constant([3], tf.int32))["scores"].shape
      TensorShape([1, 12])
    """
    try:
        import tensorflow  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "export_for_serving writes a TensorFlow SavedModel through "
            "`model.export(format='tf_saved_model')`, which needs TensorFlow "
            f"installed (`pip install tensorflow`), whatever the Keras backend "
            f"({keras.backend.backend()!r} here)."
        ) from error
    from seqattn_tfrs.export import savedmodel, versions

    gates = find_gated_layers(model)
    unpruned = [g.name for g in gates if not g.is_pruned]
    if unpruned:
        raise ValueError(
            f"Gated layer(s) {unpruned} are not pruned; expected "
            "`seqattn_tfrs.keras3.prune(model)` first, so the export takes only "
            "the kept features."
        )
    savedmodel.check_output_name(output_name)
    requested = versions.parse_version(version)
    base = versions.check_base_path(export_base_path)
    gated = [_gate_record(gate) for gate in gates]

    def write(directory: str, number: int) -> None:
        with tempfile.TemporaryDirectory() as scratch:
            exported = os.path.join(scratch, "keras_export")
            if keras.backend.backend() == "torch":
                signatures = _export_on_tensorflow(
                    model, exported, directory, output_name, padding
                )
            else:
                model.export(exported, format="tf_saved_model", verbose=False)
                signatures = serving_version(exported, directory, output_name, padding)
        saved_bytes = savedmodel.dir_bytes(directory)
        extra = os.path.join(directory, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        record = {
            "seqattn_tfrs_version": __version__,
            "keras_backend": keras.backend.backend(),
            "model": model.name,
            "version": number,
            "signatures": signatures,
            "gated_layers": gated,
            "saved_model_bytes": saved_bytes,
        }
        savedmodel.write_json(os.path.join(extra, savedmodel.SELECTION_FILE), record)

    return versions.write_version(base, requested, write)


def _gate_record(gate: SequentialAttentionEmbedding) -> dict[str, Any]:
    """``selection.json``'s entry for one pruned gate."""
    costs = gate.feature_costs()
    return {
        "name": gate.name,
        "feature_names": list(gate.feature_names),
        "num_selected": gate.num_selected,
        "budget_bytes": gate.budget_bytes,
        "budget_rule": gate.options.budget_rule,
        "selected_features": list(gate.selected_features),
        "dropped_features": list(gate.pruned_feature_widths),
        "pruned_feature_widths": gate.pruned_feature_widths,
        "kept_table_bytes": {name: costs[name] for name in gate.kept_features},
        "gate_history": gate.gate_history(),
    }


def serving_version(
    exported: str,
    directory: str,
    output_name: str | Mapping[str | int, str],
    padding: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Writes to ``directory`` a SavedModel over Keras' export ``exported``
    with ``serving_default`` and ``serve_examples`` (see
    :func:`export_for_serving`); returns their inputs and outputs."""
    import tensorflow as tf

    from seqattn_tfrs.export import savedmodel

    keras_export = tf.saved_model.load(exported)
    specs = keras_export.signatures["serving_default"].structured_input_signature[1]
    serve, serve_examples = savedmodel.serving_signatures(
        keras_export.serve, specs, output_name, padding
    )
    serving_fn = serve.get_concrete_function()
    module = tf.Module()
    module.keras_export = keras_export  # its variables
    tf.saved_model.save(
        module,
        directory,
        signatures={
            savedmodel.SERVING_SIGNATURE: serving_fn,
            savedmodel.EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
        },
        # JAX's export carries jax2tf gradients that cannot be saved again;
        # serving computes no gradient.
        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False),
    )
    outputs = {
        key: tf.TensorSpec(t.shape, t.dtype)
        for key, t in serving_fn.structured_outputs.items()
    }
    return savedmodel.signatures_record(specs, outputs, padding)


_REFUSED = 3  # the child's exit status for a ValueError, raised again here
_CHILD = (
    "import sys; from seqattn_tfrs.keras3 import export; "
    "export._export_saved_model(*sys.argv[1:])"
)


def _export_on_tensorflow(
    model: keras.Model,
    exported: str,
    directory: str,
    output_name: str | Mapping[str | int, str],
    padding: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Saves ``model`` as a ``.keras`` file; a child process on the TensorFlow
    backend (a process's Keras backend is fixed at import) exports it to
    ``exported`` and writes the serving version to ``directory``. Returns the
    signatures' record."""
    package_root = str(pathlib.Path(__file__).resolve().parents[2])
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["KERAS_BACKEND"] = "tensorflow"
    # The export traces and writes a graph, no device needed; TensorFlow on a
    # GPU the parent's PyTorch holds would first claim what memory is left.
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, env.get("PYTHONPATH")) if p
    )
    # A mapping's integer keys (a list's outputs) survive JSON as pairs.
    names = output_name if isinstance(output_name, str) else list(output_name.items())
    scratch = os.path.dirname(exported)
    saved = os.path.join(scratch, "model.keras")
    record = os.path.join(scratch, "signatures.json")
    model.save(saved)
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD,
            saved,
            exported,
            directory,
            json.dumps(names),
            record,
            json.dumps(padding),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if child.returncode == _REFUSED:  # an `output_name` or `padding` refused
        with open(record, encoding="utf-8") as handle:
            raise ValueError(json.load(handle)["error"])
    if child.returncode != 0:
        raise RuntimeError(
            "export_for_serving on the PyTorch backend saves the model as a "
            "`.keras` file and exports it with Keras on the TensorFlow backend "
            "in a child process, which failed. The child imports Keras, "
            "keras-rs and seqattn_tfrs only: a model holding layers of other "
            "classes does not load there; export it from a process on the "
            "TensorFlow or JAX backend instead. The child's error:\n"
            + child.stderr[-3000:]
        )
    with open(record, encoding="utf-8") as handle:
        return json.load(handle)


def _export_saved_model(
    saved: str, exported: str, directory: str, names: str, record: str, padding: str
) -> None:
    """The child process of :func:`_export_on_tensorflow`."""
    import contextlib

    import seqattn_tfrs.keras3  # noqa: F401  (registers the gate)
    from seqattn_tfrs.export import savedmodel

    with contextlib.suppress(ImportError):  # keras-rs registers its layers
        import keras_rs  # noqa: F401
    keras.saving.load_model(saved).export(
        exported, format="tf_saved_model", verbose=False
    )
    output_name = json.loads(names)
    if not isinstance(output_name, str):
        output_name = {key: name for key, name in output_name}
    try:
        signatures = serving_version(
            exported, directory, output_name, json.loads(padding)
        )
    except ValueError as error:
        savedmodel.write_json(record, {"error": str(error)})
        sys.exit(_REFUSED)
    savedmodel.write_json(record, signatures)
