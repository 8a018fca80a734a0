"""TF Serving warm-up records: ``assets.extra/tf_serving_warmup_requests``."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf

from seqattn_tfrs.export.savedmodel import SERVING_SIGNATURE

MAX_WARMUP_RECORDS = 1000  # TF Serving reads at most this many warm-up records
WARMUP_FILE = "tf_serving_warmup_requests"


def import_serving_protos() -> tuple[Any, Any]:
    """The ``predict_pb2`` and ``prediction_log_pb2`` modules of TF Serving."""
    try:
        return (
            importlib.import_module("tensorflow_serving.apis.predict_pb2"),
            importlib.import_module("tensorflow_serving.apis.prediction_log_pb2"),
        )
    except ImportError as err:
        raise ImportError(
            "`warmup_examples` needs the tensorflow-serving-api package for the "
            "PredictionLog protos; install it with `pip install "
            "seqattn_tfrs[serving]` (or `pip install tensorflow-serving-api`)."
        ) from err


def warmup_batch(
    examples: Mapping[str, Sequence[Any]], specs: Mapping[str, tf.TensorSpec]
) -> dict[str, tf.Tensor]:
    if not isinstance(examples, Mapping):
        raise TypeError(
            "`warmup_examples` must be a mapping from feature name to a list of "
            f"per-row values, got {type(examples).__name__}."
        )
    if set(examples) != set(specs):
        raise ValueError(
            f"`warmup_examples` must hold exactly the serving features "
            f"{sorted(specs)}, got {sorted(examples)} (extra: "
            f"{sorted(set(examples) - set(specs))}, missing: "
            f"{sorted(set(specs) - set(examples))})."
        )
    lengths = {name: len(values) for name, values in examples.items()}
    rows = set(lengths.values())
    if len(rows) != 1 or not 1 <= next(iter(rows)) <= MAX_WARMUP_RECORDS:
        raise ValueError(
            f"`warmup_examples` must give every feature the same number of rows, "
            f"between 1 and {MAX_WARMUP_RECORDS}; got {lengths}."
        )
    batch = {}
    for name, spec in specs.items():
        try:
            value = tf.constant(examples[name], dtype=spec.dtype)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"`warmup_examples[{name!r}]` cannot be converted to "
                f"{spec.dtype.name}: {err}."
            ) from err
        if not spec.shape.is_compatible_with(value.shape):
            raise ValueError(
                f"`warmup_examples[{name!r}]` has shape {value.shape}; expected "
                f"{spec.shape}."
            )
        batch[name] = value
    return batch


def write_warmup(
    path: str, batch: Mapping[str, tf.Tensor], protos: tuple[Any, Any]
) -> int:
    predict_pb2, prediction_log_pb2 = protos
    rows = len(next(iter(batch.values())))
    with tf.io.TFRecordWriter(path) as writer:
        for row in range(rows):
            request = predict_pb2.PredictRequest()
            request.model_spec.signature_name = SERVING_SIGNATURE
            for name, value in batch.items():
                request.inputs[name].CopyFrom(
                    tf.make_tensor_proto(value[row : row + 1].numpy())
                )
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return rows
