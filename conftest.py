"""Test setup for tests/ and the doctests: Keras 2 for TFRS, before TF loads."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")

# Keras 3 code runs in processes of its own (tests/keras3/test_backends.py):
# KERAS_BACKEND must be set before `import keras`, and this one made tf.keras
# Keras 2. Its modules' doctests run there too.
collect_ignore_glob = [
    "seqattn_tfrs/keras3/*",
    "tests/keras3/scenarios.py",
    "tests/keras3/load_export.py",
]

import pytest  # noqa: E402

MIXED_POLICIES = ["mixed_float16", "mixed_bfloat16"]


@pytest.fixture(params=MIXED_POLICIES)
def mixed_policy(request):
    """Each mixed-precision global policy in turn; float32 again afterwards."""
    tf.keras.mixed_precision.set_global_policy(request.param)
    try:
        yield tf.keras.mixed_precision.global_policy()
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
