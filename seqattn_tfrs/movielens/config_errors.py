"""The job config's errors: one ConfigError naming the dotted key and the file.

pydantic reports a location tuple and an error type; :func:`config_error`
turns the first error into the job's words (``selection.num_selected: must be
an int >= 1, got 0``), and :func:`config_class` makes a frozen, strict pydantic
dataclass whose constructor raises :class:`ConfigError` too.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from typing import Annotated, Any, Literal, TypeVar, Union

import annotated_types
import pydantic

__all__ = [
    "ConfigError",
    "config_class",
    "config_error",
    "join_key",
    "unwrap_annotation",
]


class ConfigError(ValueError):
    """A config value is unknown, missing, of the wrong type or out of range.

    Attributes:
      key: the dotted key path of the offending value (``""`` for the root).
      reason: what is wrong with it.
      source: the file (or other origin) the config came from, if known.
    """

    def __init__(self, key: str, reason: str, source: str | None = None) -> None:
        self.key = key
        self.reason = reason
        self.source = source
        where = f"config {source}: " if source else "config: "
        super().__init__(f"{where}{key or '<root>'}: {reason}")


_STRICT = pydantic.ConfigDict(
    extra="forbid",
    strict=True,
    allow_inf_nan=False,
    use_attribute_docstrings=True,
)
_C = TypeVar("_C")


def config_class(cls: type[_C]) -> type[_C]:
    """A frozen, strict pydantic dataclass whose constructor raises ConfigError."""
    cls = pydantic.dataclasses.dataclass(frozen=True, config=_STRICT)(cls)
    validate = cls.__init__

    @functools.wraps(validate)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        try:
            validate(self, *args, **kwargs)
        except pydantic.ValidationError as e:
            raise config_error(e, cls) from None

    cls.__init__ = __init__
    return cls


def unwrap_annotation(annotation: Any) -> tuple[Any, list[Any]]:
    """Strips ``Annotated`` and ``| None``; returns the type and its constraints."""
    metadata: list[Any] = []
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation, *extra = typing.get_args(annotation)
            for item in extra:
                metadata += getattr(item, "metadata", [item])
        elif origin in (Union, types.UnionType) and type(None) in (
            args := typing.get_args(annotation)
        ):
            rest = [a for a in args if a is not type(None)]
            if len(rest) != 1:
                return annotation, metadata
            annotation = rest[0]
        else:
            return annotation, metadata


def _locate(root: type, loc: tuple[Any, ...]) -> tuple[str, Any, list[Any]]:
    """The dotted key of a pydantic error location, its type and constraints."""
    key, annotation, metadata = "", root, []
    for part in loc:
        annotation, _ = unwrap_annotation(annotation)
        if dataclasses.is_dataclass(annotation):
            fields = annotation.__pydantic_fields__
            if isinstance(part, int) and part < len(fields):  # a positional argument
                part = list(fields)[part]
            if part not in fields:
                return join_key(key, str(part)), None, []
            annotation = fields[part].annotation
            metadata = list(fields[part].metadata)
            key = join_key(key, part)
        elif isinstance(part, int) and typing.get_origin(annotation) is tuple:
            annotation, metadata = typing.get_args(annotation)[0], []
            key = f"{key}[{part}]"
        else:  # a union's member: the error is about the whole value
            break
    return key, annotation, metadata


def _value_at(data: Any, key: str) -> Any:
    """The value under a dotted key in JSON-like data (``...`` if not there)."""
    for part in key.replace("[", ".[").split("."):
        if not part:
            continue
        try:
            data = data[int(part[1:-1])] if part.startswith("[") else data[part]
        except (LookupError, TypeError, ValueError):
            return ...
    return data


def join_key(path: str, key: str) -> str:
    """``path`` and ``key`` as one dotted key (``a.b``, ``a[0]``)."""
    if not key or not path:
        return path or key
    return f"{path}{key}" if key.startswith("[") else f"{path}.{key}"


def _describe(annotation: Any) -> str:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (Union, types.UnionType) and (
        type(None) in args
    ):
        rest = [a for a in args if a is not type(None)]
        return " or ".join(_describe(a) for a in rest) + " or null"
    annotation, _ = unwrap_annotation(annotation)
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) is Literal:
        return " or ".join(repr(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) is tuple:
        item, _ = unwrap_annotation(typing.get_args(annotation)[0])
        plural = {bool: "bools", int: "ints", float: "numbers", str: "strings"}
        return f"a list of {plural.get(item, 'objects')}"
    if dataclasses.is_dataclass(annotation):
        return "an object"
    return {bool: "a bool", int: "an int", float: "a number", str: "a string"}.get(
        annotation, str(annotation)
    )


def _range(annotation: Any, metadata: list[Any]) -> str:
    bounds = {}
    for item in metadata:
        for name in ("ge", "gt", "le", "lt"):
            if isinstance(item, getattr(annotated_types, name.capitalize())):
                bounds[name] = getattr(item, name)
    low = "ge" if "ge" in bounds else "gt" if "gt" in bounds else None
    high = "le" if "le" in bounds else "lt" if "lt" in bounds else None
    kind = "an int" if annotation is int else "a number"
    if low and high:
        left, right = "[" if low == "ge" else "(", "]" if high == "le" else ")"
        return f"{kind} in {left}{bounds[low]}, {bounds[high]}{right}"
    symbol = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    name = low or high
    return f"{kind} {symbol[name]} {bounds[name]}" if name else kind


def config_error(
    error: pydantic.ValidationError,
    root: type,
    source: str | None = None,
    data: Any = ...,
) -> ConfigError:
    """The first of pydantic's errors as a ConfigError naming the dotted key."""
    first = error.errors()[0]
    key, declared, metadata = _locate(root, first["loc"])
    annotation, extra = unwrap_annotation(declared)
    metadata += extra
    value = first.get("input")
    if typing.get_origin(annotation) in (Union, types.UnionType):
        whole = _value_at(data, key)
        value = value if whole is ... else whole
    shown = json.dumps(value, default=repr)
    got = f"got {shown} ({type(value).__name__})"
    kind = first["type"]
    if kind == "value_error" and isinstance(first["ctx"]["error"], ConfigError):
        inner = first["ctx"]["error"]
        return ConfigError(join_key(key, inner.key), inner.reason, source)
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        parent_type = _locate(root, first["loc"][:-1])[1] or root
        known = sorted(getattr(parent_type, "__pydantic_fields__", {}))
        reason = f"unknown key; expected one of {known}"
    elif kind in ("missing", "missing_argument"):
        reason = "missing required key"
    elif kind in ("greater_than_equal", "greater_than", "less_than", "less_than_equal"):
        reason = f"must be {_range(annotation, metadata)}, got {shown}"
    elif kind == "string_too_short":
        reason = f"must be a non-empty string, got {shown}"
    elif kind == "finite_number":
        reason = f"must be finite, got {shown}"
    elif annotation is not None and (
        kind.endswith("_type")
        or kind in ("literal_error", "dataclass_exact_type")
        or typing.get_origin(annotation) in (Union, types.UnionType)
    ):
        reason = f"expected {_describe(declared)}, {got}"
    else:
        reason = f"{first['msg']}, {got}"
    return ConfigError(key, reason, source)
