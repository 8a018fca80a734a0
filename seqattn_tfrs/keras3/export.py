"""Writes a pruned Keras 3 model as a TF Serving SavedModel version."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import uuid

import keras

from seqattn_tfrs.keras3.callback import find_gated_layers


def export_for_serving(
    model: keras.Model, export_base_path: str | os.PathLike, version: int | None = None
) -> str:
    """Exports ``model`` to ``<export_base_path>/<version>/`` for TF Serving.

    Uses ``model.export(..., format="tf_saved_model")``, which needs
    TensorFlow installed. On PyTorch, whose Keras export takes no dict of
    inputs, the model is saved as a ``.keras`` file and exported by Keras on
    the TensorFlow backend in a child process: its layers must then be Keras',
    keras-rs' or this package's. The model must be pruned (see
    :func:`~seqattn_tfrs.keras3.prune`), so the ``serving_default`` signature
    takes only the kept features, keyed by name; a label is never an input of
    a functional model, so it never reaches the signature. The version is
    written to a temporary sibling directory and renamed into place, so a
    server watching the base path never sees a half-written version.

    Args:
      model: a pruned functional model.
      export_base_path: the model base path TF Serving watches.
      version: the numeric version directory; default: one above the highest.

    Returns:
      The path of the written version directory.

    Raises:
      ImportError: TensorFlow is not installed.
      ValueError: a gated layer is not pruned; ``version`` exists or is not an
        int >= 1.
      RuntimeError: on PyTorch, the child process could not load or export
        the saved model (a layer of another class; its error is in the
        message).
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
    unpruned = [g.name for g in find_gated_layers(model) if not g.is_pruned]
    if unpruned:
        raise ValueError(
            f"Gated layer(s) {unpruned} are not pruned; expected "
            "`seqattn_tfrs.keras3.prune(model)` first, so the export takes only "
            "the kept features."
        )
    base = os.fspath(export_base_path)
    os.makedirs(base, exist_ok=True)
    existing = [int(d) for d in os.listdir(base) if d.isdigit()]
    if version is None:
        version = max(existing, default=0) + 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"`version` must be an int >= 1, got {version!r}.")
    final = os.path.join(base, str(version))
    if os.path.exists(final):
        raise ValueError(
            f"Version {version} already exists at {final!r}; expected a new version."
        )
    temporary = os.path.join(base, f".tmp-{version}-{uuid.uuid4().hex}")
    try:
        if keras.backend.backend() == "torch":
            _export_on_tensorflow(model, temporary)
        else:
            model.export(temporary, format="tf_saved_model", verbose=False)
        os.rename(temporary, final)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return final


_CHILD = (
    "import sys; from seqattn_tfrs.keras3 import export; "
    "export._export_saved_model(sys.argv[1], sys.argv[2])"
)


def _export_on_tensorflow(model: keras.Model, path: str) -> None:
    """Saves ``model`` as a ``.keras`` file and exports it to ``path`` with
    Keras on the TensorFlow backend, in a child process (a process's Keras
    backend is fixed at import)."""
    package_root = str(pathlib.Path(__file__).resolve().parents[2])
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["KERAS_BACKEND"] = "tensorflow"
    # The export traces and writes a graph, no device needed; TensorFlow on a
    # GPU the parent's PyTorch holds would first claim what memory is left.
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, env.get("PYTHONPATH")) if p
    )
    with tempfile.TemporaryDirectory() as scratch:
        saved = os.path.join(scratch, "model.keras")
        model.save(saved)
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, saved, path],
            env=env,
            capture_output=True,
            text=True,
        )
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


def _export_saved_model(saved: str, path: str) -> None:
    """The child process of :func:`_export_on_tensorflow`."""
    import seqattn_tfrs.keras3  # noqa: F401  (registers the gate)

    with contextlib.suppress(ImportError):  # keras-rs registers its layers
        import keras_rs  # noqa: F401
    keras.saving.load_model(saved).export(path, format="tf_saved_model", verbose=False)
