"""Loads an exported SavedModel with plain TensorFlow (no seqattn_tfrs, no Keras).

``python load_export.py VERSION_DIR PROBE.npz kept,features``: checks that the
``serving_default`` signature takes exactly the kept features and predicts
what the Keras model predicted under the output key ``scores``, that
``serve_examples`` predicts the same from serialized ``tf.Example`` protos,
and that ``assets.extra/selection.json`` names the kept features.
"""

import json
import os
import sys

import numpy as np
import tensorflow as tf

path, probe_file, kept = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
assert "seqattn_tfrs" not in sys.modules
loaded = tf.saved_model.load(path)
assert sorted(loaded.signatures) == ["serve_examples", "serving_default"], list(
    loaded.signatures
)
serve = loaded.signatures["serving_default"]
keys = sorted(serve.structured_input_signature[1])
assert keys == sorted(kept), (keys, kept)
probe = np.load(probe_file)
outputs = serve(**{k: tf.constant(probe[k]) for k in kept})
assert sorted(outputs) == ["scores"], sorted(outputs)
assert outputs["scores"].dtype == tf.float32, outputs["scores"].dtype
np.testing.assert_allclose(outputs["scores"].numpy(), probe["expected"], atol=1e-5)

rows = [
    tf.train.Example(
        features=tf.train.Features(
            feature={
                k: tf.train.Feature(int64_list=tf.train.Int64List(value=[probe[k][i]]))
                for k in kept
            }
        )
    ).SerializeToString()
    for i in range(len(probe["expected"]))
]
parsed = loaded.signatures["serve_examples"](inputs=tf.constant(rows))
np.testing.assert_allclose(parsed["scores"].numpy(), probe["expected"], atol=1e-5)

with open(os.path.join(path, "assets.extra", "selection.json")) as handle:
    record = json.load(handle)
(gate,) = record["gated_layers"]
assert gate["selected_features"] == kept, (gate["selected_features"], kept)
assert sorted(gate["kept_table_bytes"]) == sorted(kept), gate
assert (
    record["signatures"]["serving_default"]["outputs"]["scores"]["dtype"] == "float32"
)
print(
    f"serving_default inputs {keys}, outputs {sorted(outputs)}, serve_examples, "
    f"selection.json rounds {len(gate['gate_history'])}: match"
)
