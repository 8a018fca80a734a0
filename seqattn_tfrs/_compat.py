"""Checks, on import, that tf.keras is Keras 2 (as TensorFlow Recommenders needs).

Every module that uses ``tf.keras`` imports this first, so the check fails early
with the fix in the message instead of obscurely later.
"""

import tensorflow as tf


def check_keras_version() -> None:
    """Raises ImportError unless ``tf.keras`` is Keras 2."""
    version = getattr(tf.keras, "version", None)
    if version is not None and version().startswith("3."):
        raise ImportError(
            "seqattn_tfrs needs tf.keras to be Keras 2 (as TensorFlow Recommenders "
            f"does) but got Keras {version()}. Install tf-keras and set the "
            "environment variable TF_USE_LEGACY_KERAS=1 before the first "
            "`import tensorflow` in your process."
        )


check_keras_version()
