"""What TF Serving reads from a version directory, for both front-ends.

TensorFlow only (no Keras): the signature names, ``serve_examples``' parsing
of serialized ``tf.Example`` protos, outputs named and cast to float32, and the
files beside the SavedModel (``assets.extra/selection.json``). The tf-keras
export (:mod:`~seqattn_tfrs.export.serving`) and the Keras 3 one
(:mod:`seqattn_tfrs.keras3.export`) build their signatures with
:func:`serving_signatures`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf

SERVING_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "serve_examples"
EXAMPLES_INPUT = "inputs"  # the input key TF Serving's Classify/Regress APIs use
SELECTION_FILE = "selection.json"  # under assets.extra/, which TF Serving ignores


def check_output_name(output_name: Any) -> None:
    if isinstance(output_name, str):
        if not output_name:
            raise ValueError("`output_name` must be a non-empty string, got ''.")
        return
    if isinstance(output_name, Mapping):
        names = list(output_name.values())
        if (
            not names
            or not all(isinstance(n, str) and n for n in names)
            or len(set(names)) != len(names)
        ):
            raise ValueError(
                "`output_name` as a mapping must map each model output to a "
                f"distinct non-empty string, got {dict(output_name)!r}."
            )
        return
    raise TypeError(
        "`output_name` must be a string or a mapping from model output keys to "
        f"signature output keys, got {type(output_name).__name__}: {output_name!r}."
    )


def variable_length(spec: tf.TensorSpec) -> bool:
    """Whether a serving feature has a variable number of values per row
    (``[None, None]``: a padded multi-valent feature)."""
    return spec.shape.rank == 2 and spec.shape[1] is None


def default_padding(dtype: tf.DType) -> Any:
    """What pads a variable-length feature's shorter rows where ``padding``
    names it not: ``""`` for strings, -1 for integers (never a real id),
    0.0 for floats.

    Example:
      >>> default_padding(tf.int64), default_padding(tf.string)
      (-1, '')
    """
    if dtype == tf.string:
        return ""
    if dtype.is_integer or dtype == tf.bool:
        return -1
    return 0.0


def paddings(
    specs: Mapping[str, tf.TensorSpec], padding: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Each variable-length feature's padding value: ``padding``'s, else
    :func:`default_padding`'s.

    Raises:
      ValueError: ``padding`` names a feature that is not a variable-length
        serving feature, or gives a value of the wrong type for its dtype.

    Example:
      >>> specs = {"tags": tf.TensorSpec([None, None], tf.int64),
      ...          "user": tf.TensorSpec([None], tf.string)}
      >>> paddings(specs), paddings(specs, {"tags": 0})
      ({'tags': -1}, {'tags': 0})
    """
    padding = dict(padding or {})
    ragged = {name: s for name, s in specs.items() if variable_length(s)}
    unknown = sorted(set(padding) - set(ragged))
    if unknown:
        raise ValueError(
            f"`padding` names {unknown}, which are not variable-length serving "
            f"features; expected some of {sorted(ragged)} (shape [None, None])."
        )
    for name, value in padding.items():
        dtype = ragged[name].dtype
        if dtype == tf.string:
            fits = isinstance(value, (str, bytes))
        elif dtype.is_integer or dtype == tf.bool:
            fits = isinstance(value, int) and not isinstance(value, bool)
        else:
            fits = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not fits:
            raise ValueError(
                f"`padding[{name!r}]` is {value!r}; feature {name!r} is "
                f"{dtype.name}, expected a value of that kind."
            )
    return {
        name: padding.get(name, default_padding(s.dtype)) for name, s in ragged.items()
    }


def parse_spec(name: str, spec: tf.TensorSpec, pad: Any = None) -> Any:
    """How ``serve_examples`` parses feature ``name`` of ``spec`` from a
    ``tf.Example`` (which holds only int64, float32 and bytes lists); a
    variable-length feature's shorter rows are padded with ``pad`` (default:
    :func:`default_padding`)."""
    dtype = spec.dtype
    if dtype == tf.string:
        parse_dtype = tf.string
    elif dtype.is_integer or dtype == tf.bool:
        parse_dtype = tf.int64
    elif dtype.is_floating:
        parse_dtype = tf.float32
    else:
        raise ValueError(
            f"Serving feature {name!r} has dtype {dtype.name}; tf.Example holds only "
            "strings, integers and floats."
        )
    inner = spec.shape[1:]
    if inner.is_fully_defined():
        return tf.io.FixedLenFeature(inner.as_list(), parse_dtype)
    if inner.rank == 1:
        return tf.io.FixedLenSequenceFeature(
            [],
            parse_dtype,
            allow_missing=True,
            default_value=default_padding(dtype) if pad is None else pad,
        )
    raise ValueError(
        f"Serving feature {name!r} has shape {spec.shape}; tf.Example parsing "
        "needs [None, ...] with fixed inner dimensions or [None, None]."
    )


def name_outputs(outputs: Any, output_name: str | Mapping[Any, str]) -> dict:
    """The model's ``outputs`` keyed by the signature's output names."""
    if isinstance(output_name, str):
        if not tf.is_tensor(outputs):
            raise ValueError(
                f"The model returns {tf.nest.map_structure(lambda t: t.shape, outputs)}"
                f"; pass `output_name` as a mapping from each of its outputs to a "
                f"signature output key instead of {output_name!r}."
            )
        return {output_name: _float32(outputs)}
    if isinstance(outputs, Mapping):
        keys = list(outputs)
    elif isinstance(outputs, (list, tuple)):
        keys = list(range(len(outputs)))
    else:
        raise ValueError(
            "The model returns one tensor; pass `output_name` as a string, got "
            f"{dict(output_name)!r}."
        )
    if set(keys) != set(output_name):
        raise ValueError(
            f"`output_name` must map exactly the model's outputs {keys}, got "
            f"{sorted(output_name, key=str)}."
        )
    return {output_name[key]: _float32(outputs[key]) for key in keys}


def _float32(value: Any) -> Any:
    """A float16 or bfloat16 output (a mixed-precision model's) as float32, the
    dtype TF Serving's Classify and Regress APIs read and clients expect."""
    dtype = getattr(value, "dtype", None)
    if dtype is not None and dtype.is_floating and dtype.size < 4:
        return tf.cast(value, tf.float32)
    return value


def serving_signatures(
    call: Callable[[dict[str, tf.Tensor]], Any],
    specs: Mapping[str, tf.TensorSpec],
    output_name: str | Mapping[str | int, str],
    padding: Mapping[str, Any] | None = None,
) -> tuple[Any, Any]:
    """The two signatures' ``tf.function``\\ s over ``call`` (features by name
    to the model's outputs): ``serving_default`` takes the raw features
    ``specs``; ``serve_examples`` takes serialized ``tf.Example``\\ s under the
    key ``inputs`` holding the same features, a variable-length feature's
    shorter rows padded as :func:`paddings` says. Both return the outputs
    keyed by ``output_name``, floats as float32.

    Example:
      >>> specs = {"a": tf.TensorSpec([None], tf.int32, name="a")}
      >>> serve, examples = serving_signatures(
      ...     lambda f: tf.cast(f["a"], tf.float16)[:, None], specs, "scores")
      >>> serve({"a": tf.constant([2, 3])})["scores"].numpy().ravel().tolist()
      [2.0, 3.0]
      >>> row = tf.train.Example(features=tf.train.Features(feature={
      ...     "a": tf.train.Feature(int64_list=tf.train.Int64List(value=[7]))}))
      >>> examples(tf.constant([row.SerializeToString()]))["scores"].dtype
      tf.float32
    """
    pads = paddings(specs, padding)
    parse_specs = {
        name: parse_spec(name, spec, pads.get(name)) for name, spec in specs.items()
    }

    @tf.function(input_signature=[dict(specs)], autograph=False)
    def serve(features):
        return name_outputs(call(features), output_name)

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)],
        autograph=False,
    )
    def serve_examples(inputs):
        parsed = tf.io.parse_example(inputs, parse_specs)
        features = {name: tf.cast(parsed[name], s.dtype) for name, s in specs.items()}
        return name_outputs(call(features), output_name)

    return serve, serve_examples


def signatures_record(
    specs: Mapping[str, tf.TensorSpec],
    outputs: Mapping[str, tf.TensorSpec],
    padding: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``selection.json``'s ``signatures``: each one's inputs and outputs, and
    ``serve_examples``' padding of each variable-length feature."""
    outputs_json = {key: spec_json(spec) for key, spec in outputs.items()}
    pads = paddings(specs, padding)
    return {
        SERVING_SIGNATURE: {
            "inputs": {name: spec_json(spec) for name, spec in specs.items()},
            "outputs": outputs_json,
        },
        EXAMPLES_SIGNATURE: {
            "inputs": {EXAMPLES_INPUT: {"dtype": "string", "shape": [None]}},
            "outputs": outputs_json,
            "padding": {
                name: value.decode() if isinstance(value, bytes) else value
                for name, value in pads.items()
            },
        },
    }


def spec_json(spec: tf.TensorSpec) -> dict[str, Any]:
    return {"dtype": spec.dtype.name, "shape": spec.shape.as_list()}


def dir_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


def write_json(path: str, payload: Mapping[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, sort_keys=False)
        handle.write("\n")
