"""Feeds TF Serving API requests to an export, in a process without seqattn_tfrs.

Usage: serve_requests.py EXPORT_DIR ROWS_JSON

ROWS_JSON maps feature names to per-row values. The rows become a
``PredictRequest`` for ``serving_default`` (one ``tf.make_tensor_proto`` per
feature, with the dtype the signature declares) and a ``ClassificationRequest``
for ``serve_examples`` (one ``tf.Example`` per row), both built with the
``tensorflow_serving.apis`` protos, serialized and parsed back as on the wire.
Each request then becomes tensors the way TF Serving makes them: the Predict
request's inputs through ``tf.make_ndarray`` (every signature input must be in
the request, and nothing else), the Classification request's examples
serialized into the one ``inputs`` string tensor. Prints one line of JSON: the
signatures' input and output keys, output dtypes and the scores of each request.
"""

import json
import os
import sys


class BlockSeqattn:
    def find_spec(self, name, path=None, target=None):
        if name == "seqattn_tfrs" or name.startswith("seqattn_tfrs."):
            raise ImportError("seqattn_tfrs is blocked in this process")
        return None


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def example(row):
    import tensorflow as tf

    feature = {}
    for name, value in row.items():
        if isinstance(value, str):
            kind = tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[value.encode()])
            )
        elif isinstance(value, int):
            kind = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            kind = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        feature[name] = kind
    return tf.train.Example(features=tf.train.Features(feature=feature))


def main():
    sys.meta_path.insert(0, BlockSeqattn())
    try:
        import seqattn_tfrs  # noqa: F401

        blocked = False
    except ImportError:
        blocked = True
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import classification_pb2, predict_pb2

    path, rows = sys.argv[1], json.loads(sys.argv[2])
    loaded = tf.saved_model.load(path)
    serving = loaded.signatures["serving_default"]
    examples_fn = loaded.signatures["serve_examples"]
    specs = serving.structured_input_signature[1]

    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = "ranker"
    predict.model_spec.signature_name = "serving_default"
    for name, values in rows.items():
        array = np.asarray(values, dtype=specs[name].dtype.as_numpy_dtype)
        predict.inputs[name].CopyFrom(tf.make_tensor_proto(array))
    predict = predict_pb2.PredictRequest.FromString(predict.SerializeToString())
    missing, extra = set(specs) - set(predict.inputs), set(predict.inputs) - set(specs)
    assert not missing and not extra, f"missing {missing}, extra {extra}"
    tensors = {n: tf.constant(tf.make_ndarray(t)) for n, t in predict.inputs.items()}
    predicted = serving(**tensors)

    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "ranker"
    classify.model_spec.signature_name = "serve_examples"
    count = len(next(iter(rows.values())))
    for i in range(count):
        row = {name: values[i] for name, values in rows.items()}
        classify.input.example_list.examples.add().CopyFrom(example(row))
    wire = classify.SerializeToString()
    classify = classification_pb2.ClassificationRequest.FromString(wire)
    serialized = [e.SerializeToString() for e in classify.input.example_list.examples]
    (input_key,) = examples_fn.structured_input_signature[1]
    classified = examples_fn(**{input_key: tf.constant(serialized)})

    print(
        json.dumps(
            {
                "blocked": blocked,
                "imported": any(m.startswith("seqattn_tfrs") for m in sys.modules),
                "serving_default_inputs": sorted(specs),
                "serve_examples_inputs": [input_key],
                "serving_default_outputs": {
                    k: v.dtype.name for k, v in serving.structured_outputs.items()
                },
                "serve_examples_outputs": {
                    k: v.dtype.name for k, v in examples_fn.structured_outputs.items()
                },
                "predict": predicted["scores"].numpy().tolist(),
                "classify": classified["scores"].numpy().tolist(),
            }
        )
    )


if __name__ == "__main__":
    main()
