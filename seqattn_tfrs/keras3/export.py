"""Writes a pruned Keras 3 model as a TF Serving SavedModel version."""

from __future__ import annotations

import os
import shutil
import uuid

import keras

from seqattn_tfrs.keras3.callback import find_gated_layers


def export_for_serving(
    model: keras.Model, export_base_path: str | os.PathLike, version: int | None = None
) -> str:
    """Exports ``model`` to ``<export_base_path>/<version>/`` for TF Serving.

    Uses ``model.export(..., format="tf_saved_model")``, which works from any
    backend but needs TensorFlow installed. The model must be pruned (see
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
        model.export(temporary, format="tf_saved_model", verbose=False)
        os.rename(temporary, final)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return final
