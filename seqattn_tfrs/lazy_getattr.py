"""Public names of a package that import their module on first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(
    package: str, public: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A package's module ``__getattr__`` for ``public`` (name -> the module
    defining it): a name's module is imported when the name is first read, and
    the value is cached in ``namespace`` (the package's globals).

    Example:
      >>> namespace = {}
      >>> attribute = lazy_getattr("pkg", {"dumps": "json"}, namespace)
      >>> attribute("dumps")([1]), sorted(namespace)
      ('[1]', ['dumps'])
      >>> attribute("loads")
      Traceback (most recent call last):
      AttributeError: module 'pkg' has no attribute 'loads'
    """

    def attribute(name: str) -> Any:
        if name not in public:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(public[name]), name)
        namespace[name] = value
        return value

    return attribute
