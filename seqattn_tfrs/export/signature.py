"""The serving signatures: which raw features a pruned model takes, and how.

The inputs of ``serving_default`` are inferred from what Keras recorded when
the model was first called, less the dropped features and less every input the
outputs do not depend on in the traced graph (a label that a TFRS model's
``call`` receives with the features, for one); ``serve_examples`` parses the
same features from serialized ``tf.Example`` protos.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

import tensorflow as tf

from seqattn_tfrs import functional_pruning
from seqattn_tfrs.export import savedmodel


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
    tracing: contextlib.AbstractContextManager | None = None,
) -> tuple[Any, dict[str, tf.TensorSpec]]:
    """The nested input template (leaves are feature names) and the flat specs.

    The specs are the inputs the served graph reads: the recorded inputs less
    the ``dropped`` features and less those the outputs do not depend on (found
    by tracing the model once with every recorded input, inside ``tracing``).
    ``serving_features``, if given, must name every input the graph reads and
    only recorded inputs; it may leave out the unread ones.
    """
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
        return _checked_specs(
            {name: name for name in serving_features}, dict(serving_features), model
        )
    leaves = [(_leaf_name(path, spec), path, spec) for path, spec in _leaves(recorded)]
    names = [name for name, _, _ in leaves]
    if len(set(names)) != len(names):
        raise ValueError(
            f"Model {model.name!r} has several inputs with the same feature name "
            f"({names}); serving signatures key inputs by feature name."
        )
    functional = functional_pruning.is_functional(model)
    in_graph = [name for name in names if name in dropped]
    if in_graph and functional:
        raise ValueError(
            f"Functional model {model.name!r} still takes the dropped feature(s) "
            f"{in_graph} as inputs; export the model returned by "
            "`seqattn_tfrs.prune(model)` instead."
        )
    keyed = {name for name, path, _ in leaves if path and isinstance(path[-1], str)}
    for name in dropped:
        if name in names and name not in keyed:
            raise ValueError(
                f"Dropped feature {name!r} is a positional model input; only "
                "features passed in dicts can be left out of the serving inputs."
            )
    template = _template(recorded, (), set(dropped))
    recorded_specs = {
        name: _client_spec(spec) for name, _, spec in leaves if name not in dropped
    }
    read = inputs_read(model, template, recorded_specs, tracing)
    # A functional model needs every one of its Inputs; a positional input
    # cannot be left out of the call.
    optional = set() if functional else (set(recorded_specs) - read) & keyed
    if serving_features is None:
        chosen = {n: s for n, s in recorded_specs.items() if n not in optional}
    else:
        given = set(serving_features)
        needed = set(recorded_specs) - optional
        if not needed <= given <= set(recorded_specs):
            problems = []
            if given - set(recorded_specs):
                extra = sorted(given - set(recorded_specs))
                gone = [n for n in extra if n in dropped]
                problems.append(
                    f"not model inputs: {extra}"
                    + (f" ({gone} were dropped by pruning)" if gone else "")
                )
            if needed - given:
                problems.append(f"missing: {sorted(needed - given)}")
            unread = (
                f", and may leave out {sorted(optional)}, which it does not read"
                if optional
                else ""
            )
            raise ValueError(
                f"`serving_features` must name every feature the served model "
                f"reads, {sorted(needed)}{unread}; got {sorted(given)}: "
                + "; ".join(problems)
                + "."
            )
        for name, spec in serving_features.items():
            want = recorded_specs[name]
            padded = isinstance(want, tf.RaggedTensorSpec) and (
                spec.shape.rank == want.shape.rank
            )
            if (
                not (isinstance(want, tf.TensorSpec) or padded)
                or spec.dtype != want.dtype
            ):
                raise ValueError(
                    f"`serving_features[{name!r}]` is {spec}; the model was "
                    f"called with {want}, expected the same dtype"
                    + (" and rank." if isinstance(want, tf.RaggedTensorSpec) else ".")
                )
        chosen = dict(serving_features)
    unused = set(recorded_specs) - set(chosen)
    return _checked_specs(_template(recorded, (), set(dropped) | unused), chosen, model)


class RaggedInput(str):
    """A template leaf: the feature named so goes into the model as the
    ``tf.RaggedTensor`` it was called with, from the padded dense tensor the
    signature takes (its padding stripped: :func:`pack`)."""


def _client_spec(spec: Any) -> Any:
    """The spec a client sends for a recorded input: float32 for a float16 or
    bfloat16 one, since Keras records a mixed-precision model's floating inputs
    after casting them to its compute dtype (the model casts float32 again)."""
    if isinstance(spec, tf.TensorSpec) and spec.dtype in (tf.float16, tf.bfloat16):
        return tf.TensorSpec(spec.shape, tf.float32, name=spec.name)
    return spec


def inputs_read(
    model: tf.keras.Model,
    template: Any,
    specs: Mapping[str, Any],
    tracing: contextlib.AbstractContextManager | None = None,
) -> set[str]:
    """The inputs that the model's outputs depend on, when called with ``specs``.

    Traces ``model(features, training=False)`` once and walks its graph back from
    the outputs (and the ops that run with them), through data and control
    inputs; an input whose placeholder is not reached is not read. Control flow
    passes its operands explicitly, so an input read by any branch counts.
    """

    @tf.function(input_signature=[dict(specs)], autograph=False)
    def outputs(features):
        return model(pack(template, features), training=False)

    try:
        with tracing or contextlib.nullcontext():
            concrete = outputs.get_concrete_function()
    except KeyError as err:
        raise ValueError(
            f"Model {model.name!r} reads a feature that is not among the serving "
            f"features {sorted(specs)}: {err}. Pass `serving_features` with every "
            "feature the pruned model reads."
        ) from err
    owners = [
        name
        for name in sorted(specs)
        for _ in tf.nest.flatten(specs[name], expand_composites=True)
    ]
    placeholders = concrete.inputs[: len(owners)]
    reached = _ops_reaching([*concrete.outputs, *concrete.graph.control_outputs])
    return {name for name, t in zip(owners, placeholders) if t.op in reached}


def _ops_reaching(roots: Iterable[Any]) -> set[Any]:
    """Every op that the ``roots`` (tensors or ops) depend on, themselves included."""
    stack = [getattr(root, "op", root) for root in roots]
    seen: set[Any] = set()
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return seen


def _checked_specs(
    template: Any, chosen: Mapping[str, Any], model: tf.keras.Model
) -> tuple[Any, dict[str, tf.TensorSpec]]:
    specs = {}
    ragged = set()
    for name, spec in chosen.items():
        if (
            isinstance(spec, tf.RaggedTensorSpec)
            and spec.ragged_rank == 1
            and spec.shape.rank == 2
        ):  # served padded, stripped back to ragged in `pack`
            ragged.add(name)
            spec = tf.TensorSpec([None, None], spec.dtype)
        if not isinstance(spec, tf.TensorSpec):
            raise ValueError(
                f"Input feature {name!r} has spec {spec}; serving signatures take "
                "dense tensors, and a ragged input is served padded only where it "
                "is [batch, None] (one ragged dimension). Expected a model that "
                "takes this feature so, or dense."
            )
        if isinstance(chosen[name], tf.TensorSpec) and _called_ragged(model, name):
            ragged.add(name)
        if spec.shape.rank is None or spec.shape.rank < 1 or spec.shape[0] is not None:
            raise ValueError(
                f"Serving feature {name!r} has shape {spec.shape}; expected a None "
                "batch dimension first, e.g. [None] for a scalar feature."
            )
        specs[name] = tf.TensorSpec(spec.shape, spec.dtype, name=name)
    if not specs:
        raise ValueError(f"Model {model.name!r} has no serving features left.")
    return _mark_ragged(template, ragged), specs


def _called_ragged(model: tf.keras.Model, name: str) -> bool:
    """Whether ``model`` was called with feature ``name`` as a RaggedTensor."""
    recorded = _recorded_inputs(model)
    if recorded is None:
        return False
    return any(
        isinstance(spec, tf.RaggedTensorSpec) and _leaf_name(path, spec) == name
        for path, spec in _leaves(recorded)
    )


def _mark_ragged(template: Any, ragged: set[str]) -> Any:
    if isinstance(template, Mapping):
        return {key: _mark_ragged(value, ragged) for key, value in template.items()}
    if isinstance(template, (list, tuple)):
        return type(template)(_mark_ragged(value, ragged) for value in template)
    return RaggedInput(template) if template in ragged else template


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


def pack(
    template: Any, features: Mapping[str, Any], pads: Mapping[str, Any] | None = None
) -> Any:
    """The model's input structure from the signature's flat ``features``; a
    :class:`RaggedInput` leaf's padded tensor loses its rows' trailing
    ``pads[name]`` values."""
    if isinstance(template, Mapping):
        return {key: pack(value, features, pads) for key, value in template.items()}
    if isinstance(template, (list, tuple)):
        return type(template)(pack(value, features, pads) for value in template)
    if isinstance(template, RaggedInput):
        value = features[template]
        pad = (pads or {}).get(str(template))  # none for a fixed width
        if pad is None:
            pad = savedmodel.default_padding(value.dtype)
        return tf.RaggedTensor.from_tensor(value, padding=pad)
    return features[template]


def serving_functions(
    model: tf.keras.Model,
    template: Any,
    specs: Mapping[str, tf.TensorSpec],
    output_name: str | Mapping[str | int, str],
    padding: Mapping[str, Any] | None = None,
) -> tuple[Any, Any]:
    """The two signatures' ``tf.function``\\ s: ``serving_default`` over the raw
    features ``specs``, and ``serve_examples`` over serialized ``tf.Example``\\ s
    (input key ``inputs``) holding the same features; variable-length ones
    padded as ``savedmodel.paddings`` says."""
    pads = savedmodel.paddings(specs, padding)

    def call(features):
        return model(pack(template, features, pads), training=False)

    return savedmodel.serving_signatures(call, specs, output_name, padding)
