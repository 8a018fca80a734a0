"""The serving signatures: which raw features a pruned model takes, and how.

The inputs of ``serving_default`` are inferred from what Keras recorded when
the model was first called, less the dropped features; ``serve_examples``
parses the same features from serialized ``tf.Example`` protos.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from seqattn_tfrs import functional_pruning

SERVING_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "serve_examples"
EXAMPLES_INPUT = "inputs"  # the input key TF Serving's Classify/Regress APIs use


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


def _leaves(structure: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    if isinstance(structure, Mapping):
        return [
            leaf
            for key, value in structure.items()
            for leaf in _leaves(value, (*path, key))
        ]
    if isinstance(structure, (list, tuple)):
        return [
            leaf
            for i, value in enumerate(structure)
            for leaf in _leaves(value, (*path, i))
        ]
    return [(path, structure)]


def _leaf_name(path: tuple, spec: Any) -> str:
    if path and isinstance(path[-1], str):
        return path[-1]
    name = getattr(spec, "name", None)
    if not name:
        raise ValueError(
            f"Cannot name the model input at position {list(path)} ({spec}); pass "
            "`serving_features` and call the model with a dict of named features."
        )
    return name


def _recorded_inputs(model: tf.keras.Model) -> Any:
    saved = model.save_spec(dynamic_batch=True)
    if saved is None:
        return None
    args, kwargs = saved
    extra = [a for a in tf.nest.flatten((args[1:], kwargs)) if a is not None]
    if not args or extra:
        raise ValueError(
            f"Model {model.name!r} was called with arguments besides its features "
            f"({saved}); the serving signature passes only the features."
        )
    return args[0]


def serving_inputs(
    model: tf.keras.Model,
    dropped: dict[str, str],
    serving_features: Mapping[str, tf.TensorSpec] | None,
) -> tuple[Any, dict[str, tf.TensorSpec]]:
    """The nested input template (leaves are feature names) and the flat specs."""
    if serving_features is not None:
        if not isinstance(serving_features, Mapping) or not serving_features:
            raise TypeError(
                "`serving_features` must be a non-empty mapping from feature name to "
                f"tf.TensorSpec, got {serving_features!r}."
            )
        for name, spec in serving_features.items():
            if not isinstance(name, str) or not isinstance(spec, tf.TensorSpec):
                raise TypeError(
                    "`serving_features` must map feature-name strings to dense "
                    f"tf.TensorSpec, got {name!r}: {spec!r}."
                )
    recorded = _recorded_inputs(model)
    if recorded is None:
        if serving_features is None:
            raise ValueError(
                f"Model {model.name!r} has no recorded input spec (it was never "
                "called); pass `serving_features`, a mapping from each kept feature "
                "name to a tf.TensorSpec such as tf.TensorSpec([None], tf.string)."
            )
        template: Any = {name: name for name in serving_features}
        recorded_specs: dict[str, Any] = {}
    else:
        leaves = [
            (_leaf_name(path, spec), path, spec) for path, spec in _leaves(recorded)
        ]
        names = [name for name, _, _ in leaves]
        if len(set(names)) != len(names):
            raise ValueError(
                f"Model {model.name!r} has several inputs with the same feature name "
                f"({names}); serving signatures key inputs by feature name."
            )
        in_graph = [name for name in names if name in dropped]
        if in_graph and functional_pruning.is_functional(model):
            raise ValueError(
                f"Functional model {model.name!r} still takes the dropped feature(s) "
                f"{in_graph} as inputs; export the model returned by "
                "`seqattn_tfrs.prune(model)` instead."
            )
        for name, path, _ in leaves:
            if name in dropped and not isinstance(path[-1] if path else None, str):
                raise ValueError(
                    f"Dropped feature {name!r} is a positional model input; only "
                    "features passed in dicts can be left out of the serving inputs."
                )
        template = _template(recorded, (), set(dropped))
        recorded_specs = {name: spec for name, _, spec in leaves if name not in dropped}
    if serving_features is None:
        chosen = recorded_specs
    else:
        if recorded is not None:
            given, expected = set(serving_features), set(recorded_specs)
            if given != expected:
                problems = []
                if given - expected:
                    extra = sorted(given - expected)
                    gone = [n for n in extra if n in dropped]
                    problems.append(
                        f"not model inputs: {extra}"
                        + (f" ({gone} were dropped by pruning)" if gone else "")
                    )
                if expected - given:
                    problems.append(f"missing: {sorted(expected - given)}")
                raise ValueError(
                    f"`serving_features` must name exactly the kept features "
                    f"{sorted(expected)}, got {sorted(given)}; "
                    + "; ".join(problems)
                    + "."
                )
            for name, spec in serving_features.items():
                want = recorded_specs[name]
                if not isinstance(want, tf.TensorSpec) or spec.dtype != want.dtype:
                    raise ValueError(
                        f"`serving_features[{name!r}]` is {spec}; the model was "
                        f"called with {want}, expected the same dtype."
                    )
        chosen = dict(serving_features)
    specs = {}
    for name, spec in chosen.items():
        if not isinstance(spec, tf.TensorSpec):
            raise ValueError(
                f"Input feature {name!r} has spec {spec}; serving signatures take "
                "dense tensors. Pass `serving_features` with a dense tf.TensorSpec "
                "(e.g. a padded [None, None] tf.string for a multi-valent feature) "
                "that the feature's layer accepts."
            )
        if spec.shape.rank is None or spec.shape.rank < 1 or spec.shape[0] is not None:
            raise ValueError(
                f"Serving feature {name!r} has shape {spec.shape}; expected a None "
                "batch dimension first, e.g. [None] for a scalar feature."
            )
        specs[name] = tf.TensorSpec(spec.shape, spec.dtype, name=name)
    if not specs:
        raise ValueError(f"Model {model.name!r} has no serving features left.")
    return template, specs


def _template(structure: Any, path: tuple, dropped: set[str]) -> Any:
    if isinstance(structure, Mapping):
        return {
            key: _template(value, (*path, key), dropped)
            for key, value in structure.items()
            if not (key in dropped and not isinstance(value, (Mapping, list, tuple)))
        }
    if isinstance(structure, (list, tuple)):
        return type(structure)(
            _template(v, (*path, i), dropped) for i, v in enumerate(structure)
        )
    return _leaf_name(path, structure)


def pack(template: Any, features: Mapping[str, Any]) -> Any:
    if isinstance(template, Mapping):
        return {key: pack(value, features) for key, value in template.items()}
    if isinstance(template, (list, tuple)):
        return type(template)(pack(value, features) for value in template)
    return features[template]


def parse_spec(name: str, spec: tf.TensorSpec) -> Any:
    dtype = spec.dtype
    if dtype == tf.string:
        parse_dtype, pad = tf.string, ""
    elif dtype.is_integer or dtype == tf.bool:
        # -1, never a real id: variable-length integer features (genres, tags)
        # come padded with -1, as the dense serving_default input expects.
        parse_dtype, pad = tf.int64, -1
    elif dtype.is_floating:
        parse_dtype, pad = tf.float32, 0.0
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
            [], parse_dtype, allow_missing=True, default_value=pad
        )
    raise ValueError(
        f"Serving feature {name!r} has shape {spec.shape}; tf.Example parsing "
        "needs [None, ...] with fixed inner dimensions or [None, None]."
    )


def name_outputs(outputs: Any, output_name: str | Mapping[Any, str]) -> dict:
    if isinstance(output_name, str):
        if not tf.is_tensor(outputs):
            raise ValueError(
                f"The model returns {tf.nest.map_structure(lambda t: t.shape, outputs)}"
                f"; pass `output_name` as a mapping from each of its outputs to a "
                f"signature output key instead of {output_name!r}."
            )
        return {output_name: outputs}
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
    return {output_name[key]: outputs[key] for key in keys}
