"""Sequential Attention selection of embedding tables for TensorFlow Recommenders.

Wrap a model's per-feature embedding layers in :class:`SequentialAttentionEmbedding`,
pass :class:`SequentialAttentionCallback` to ``model.fit``, then :func:`prune` the
unselected tables and :func:`export_for_serving` a trimmed SavedModel.
"""


def _check_keras_version() -> None:
    import tensorflow as tf

    version = getattr(tf.keras, "version", None)
    if version is not None and version().startswith("3."):
        raise ImportError(
            "seqattn_tfrs needs tf.keras to be Keras 2 (as TensorFlow Recommenders "
            f"does) but got Keras {version()}. Install tf-keras and set the "
            "environment variable TF_USE_LEGACY_KERAS=1 before the first "
            "`import tensorflow` in your process."
        )


_check_keras_version()

from seqattn_tfrs.callback import SequentialAttentionCallback  # noqa: E402
from seqattn_tfrs.export import export_for_serving, size_report  # noqa: E402
from seqattn_tfrs.gate import SequentialAttentionEmbedding  # noqa: E402
from seqattn_tfrs.prune import prune  # noqa: E402
from seqattn_tfrs.version import __version__  # noqa: E402

__all__ = [
    "SequentialAttentionCallback",
    "SequentialAttentionEmbedding",
    "__version__",
    "export_for_serving",
    "prune",
    "size_report",
]
