"""Counting variables, parameters and bytes: the one counter both front-ends use."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence


def count_variables(
    entries: Iterable[tuple[Hashable, Sequence[int | None], int]],
) -> dict[str, int]:
    """Counts distinct variables, their parameters and their bytes.

    Args:
      entries: per variable ``(key, shape, bytes per element)``; entries with
        the same key are one variable. A shape with an unknown dimension
        counts 0 elements.

    Returns:
      ``{"variables": count, "parameters": elements, "bytes": bytes}``.

    Example:
      >>> count_variables([("a", (3, 2), 4), ("b", (), 4), ("a", (3, 2), 4)])
      {'variables': 2, 'parameters': 7, 'bytes': 28}
    """
    seen: dict[Hashable, tuple[Sequence[int | None], int]] = {}
    for key, shape, itemsize in entries:
        seen.setdefault(key, (tuple(shape), itemsize))
    parameters = size = 0
    for shape, itemsize in seen.values():
        elements = 0 if any(d is None for d in shape) else math.prod(shape)
        parameters += elements
        size += elements * itemsize
    return {"variables": len(seen), "parameters": parameters, "bytes": size}
