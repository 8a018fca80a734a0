"""Sequential Attention embedding-table selection for Keras 3 and Keras Recommenders.

The Keras 3 front-end of ``seqattn_tfrs``: the same algorithm
(``seqattn_tfrs.core``) as the tf-keras front-end, on the JAX, TensorFlow and
PyTorch backends. Wrap per-feature embeddings (``keras.layers.Embedding`` or a
``keras_rs.layers.DistributedEmbedding``) in :class:`SequentialAttentionEmbedding`,
pass :class:`SequentialAttentionCallback` to ``model.fit``, then :func:`prune`
the unselected tables and :func:`export_for_serving` a TF Serving SavedModel.

Set ``KERAS_BACKEND`` before the first ``import keras``. This package never
imports ``tf_keras``; in a process where ``TF_USE_LEGACY_KERAS=1`` made
``tf.keras`` Keras 2, use the tf-keras front-end (``seqattn_tfrs``) instead.
"""

import keras

if not keras.__version__.startswith("3."):
    raise ImportError(
        "seqattn_tfrs.keras3 needs Keras 3 (`pip install 'keras>=3.15'`), got "
        f"keras {keras.__version__}."
    )

from seqattn_tfrs.keras3.callback import SequentialAttentionCallback  # noqa: E402
from seqattn_tfrs.keras3.export import export_for_serving  # noqa: E402
from seqattn_tfrs.keras3.gate import SequentialAttentionEmbedding  # noqa: E402
from seqattn_tfrs.keras3.pruning import prune  # noqa: E402

__all__ = [
    "SequentialAttentionCallback",
    "SequentialAttentionEmbedding",
    "export_for_serving",
    "prune",
]
