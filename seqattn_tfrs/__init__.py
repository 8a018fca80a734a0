"""Sequential Attention selection of embedding tables for TensorFlow Recommenders.

Wrap a model's per-feature embedding layers in :class:`SequentialAttentionEmbedding`,
pass :class:`SequentialAttentionCallback` to ``model.fit``, then :func:`prune` the
unselected tables and :func:`export_for_serving` a trimmed SavedModel.

The public names load on first use, so that an entry point such as the
``seqattn-tfrs`` command can set ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is
imported, and a Keras 3 process (``seqattn_tfrs.keras3``) never imports
tf-keras. Importing them checks that ``tf.keras`` is Keras 2. Where
TensorFlow is already imported with ``TF_USE_LEGACY_KERAS`` set, as in a TFRS
process, ``import seqattn_tfrs`` registers the layers at once, so that
``tf.keras.models.load_model`` finds them in any saved format.
"""

import os
import sys

from seqattn_tfrs.lazy_getattr import lazy_getattr
from seqattn_tfrs.version import __version__

_PUBLIC = {
    "AttentionOptions": "seqattn_tfrs.core.options",
    "SequentialAttentionCallback": "seqattn_tfrs.callback",
    "SequentialAttentionEmbedding": "seqattn_tfrs.gate",
    "SequentialAttentionWidth": "seqattn_tfrs.width",
    "export_for_serving": "seqattn_tfrs.export",
    "prune": "seqattn_tfrs.pruning",
    "size_report": "seqattn_tfrs.export",
}

__all__ = [
    "AttentionOptions",
    "SequentialAttentionCallback",
    "SequentialAttentionEmbedding",
    "SequentialAttentionWidth",
    "__version__",
    "export_for_serving",
    "prune",
    "size_report",
]


__getattr__ = lazy_getattr(__name__, _PUBLIC, globals())

# TensorFlow already imported, with its own test of the variable passed:
# tf.keras is Keras 2. (Not before TensorFlow: the CLI refuses bad flags first.)
_legacy_keras = os.environ.get("TF_USE_LEGACY_KERAS") in ("1", "true", "True")
if _legacy_keras and "tensorflow" in sys.modules:
    from seqattn_tfrs.gate import SequentialAttentionEmbedding  # noqa: E402
    from seqattn_tfrs.width import SequentialAttentionWidth  # noqa: E402


def __dir__() -> list[str]:
    return __all__
