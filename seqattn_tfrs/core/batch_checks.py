"""Checks of ``selection_data``'s first batch that both callbacks run before
training: the label is there, the gated features are, and the batch is one.

Framework-free: a leaf's rank comes from the caller (a TensorFlow tensor's
``shape.rank``, a numpy array's ``ndim``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any


def describe(value: Any) -> str:
    """A batch element in a few words, for an error message.

    Example:
      >>> describe({"b": 1, "a": 2}), describe((1, 2)), describe(3.0)
      ("a dict with keys ['a', 'b']", 'a tuple of 2', 'a float')
    """
    if isinstance(value, Mapping):
        return f"a dict with keys {sorted(value)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def check_labelled(element: Any, model_name: str, example: str) -> Any:
    """The features part of an ``(x, y)`` or ``(x, y, sample_weight)`` batch.

    Raises:
      ValueError: ``element`` is not such a tuple (``example`` shows one).

    Example:
      >>> check_labelled(({"a": 1}, 0), "m", "")
      {'a': 1}
    """
    if not isinstance(element, (tuple, list)) or len(element) not in (2, 3):
        raise ValueError(
            f"`selection_data` yields {describe(element)}; model {model_name!r} "
            "computes its loss from (x, y) or (x, y, sample_weight) batches, so "
            f"the label is missing. Expected batches like the training data's, "
            f"e.g. {example}."
        )
    return element[0]


def nested_dicts(value: Any) -> list[Mapping]:
    """The dicts in a batch's nested structure (tuples, lists, dicts),
    outermost first.

    Example:
      >>> [sorted(d) for d in nested_dicts(({"x": 1, "s": {"a": 2}}, 0))]
      [['s', 'x'], ['a']]
    """
    found, pending = [], [value]
    while pending:
        item = pending.pop(0)
        if isinstance(item, Mapping):
            found.append(item)
            pending.extend(item.values())
        elif isinstance(item, (tuple, list)):
            pending.extend(item)
    return found


def check_features(
    features: Any, needed: Iterable[str], rank: Callable[[Any], int | None]
) -> None:
    """Raises where ``features`` (a batch's features part) hold no dict with
    every ``needed`` feature (at any depth), or hold them unbatched.

    Raises:
      ValueError: no dict, a missing feature, or a feature of rank 0 (a
        leaf's rank by ``rank``, None where unknown).

    Example:
      >>> check_features({"a": [1, 2]}, ["a", "b"], rank=lambda v: 1)
      Traceback (most recent call last):
      ...
      ValueError: `selection_data` lacks feature(s) ['b'] that the gated layers ...
    """
    needed = sorted(needed)
    dicts = nested_dicts(features)
    if not dicts:
        raise ValueError(
            f"`selection_data`'s features are {describe(features)}; expected a "
            "dict of feature tensors keyed by feature name, like the training "
            "data's."
        )
    # The dict that holds the most of them (all, where the data is right).
    found = max(dicts, key=lambda d: sum(name in d for name in needed))
    missing = [name for name in needed if name not in found]
    if missing:
        raise ValueError(
            f"`selection_data` lacks feature(s) {missing} that the gated layers "
            f"read; it has keys {sorted(found)}. Expected the training data's keys."
        )
    scalars = [name for name in needed if rank(found[name]) == 0]
    if scalars:
        raise ValueError(
            f"`selection_data` looks unbatched: feature(s) {scalars} are scalars "
            "(rank 0) in its first batch. Expected batches of rows (e.g. "
            "`.batch(batch_size)` on a tf.data.Dataset)."
        )
