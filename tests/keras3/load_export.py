"""Loads an exported SavedModel with plain TensorFlow (no seqattn_tfrs, no Keras).

``python load_export.py VERSION_DIR PROBE.npz kept,features``: checks that the
``serving_default`` signature takes exactly the kept features and predicts
what the Keras model predicted.
"""

import sys

import numpy as np
import tensorflow as tf

path, probe_file, kept = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
assert "seqattn_tfrs" not in sys.modules
loaded = tf.saved_model.load(path)
serve = loaded.signatures["serving_default"]
keys = sorted(serve.structured_input_signature[1])
assert keys == sorted(kept), (keys, kept)
probe = np.load(probe_file)
outputs = serve(**{k: tf.constant(probe[k]) for k in kept})
(prediction,) = outputs.values()
np.testing.assert_allclose(prediction.numpy(), probe["expected"], rtol=0, atol=1e-5)
print(f"serving_default inputs {keys}, outputs {sorted(outputs)}: match")
