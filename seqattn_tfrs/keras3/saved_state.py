"""The gate's own variables in ``.keras`` and ``.weights.h5`` files.

Keras saves a layer's own variables by position (``"0"``, ``"1"``, ...), so
every variable a release adds made the files of the releases before it
unloadable. The gate saves them by name instead: a file loads in any later
release, a variable the file lacks keeping its initial value (for the
learning state: no evidence yet). Files saved by position by earlier releases
load by their layout, found from the variables' count, shapes and dtypes.

Example (a plain dict stands in for Keras' store):
  >>> import numpy as np
  >>> values = [np.zeros(2), np.zeros(2), np.zeros(())]
  >>> layout_of("gate", values, {"a": ((2,), "float32"), "b": ((2,), "float32"),
  ...                            "c": ((), "float32")}, [("a", "b", "c")])
  ('a', 'b', 'c')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_LEARNING = (
    "attention_logits",
    "logit_momentum",
    "logit_second_moment",
    "logit_steps",
    "nonfinite_logit_steps",
)
_SCORES = ("score_sum", "score_squares")
_HELDOUT = ("heldout_score_sum", "heldout_score_squares")
_VARIANCE = ("score_upstream_norms", "score_projections")
_PROBE = ("probe_sums", "probe_total", "probe_squares")
_RECORD = (
    "selected_mask",
    "selection_order",
    "rounds_done",
    "gate_mode",
    "learn_from_fit_batches",
    "budget_closed",
)
_DEPENDENCE = ("functional_dependence", "dependence_checked")
_LATER = _SCORES + _HELDOUT + _VARIANCE

# The layouts earlier releases saved by position, oldest first: the trainable
# variables (the learning state) in creation order, then the others.
POSITIONAL_LAYOUTS: tuple[tuple[str, ...], ...] = (
    _LEARNING + _RECORD + ("round_gates",),  # no `entry_z`
    _LEARNING + _SCORES + _RECORD + ("round_gates",),
    _LEARNING + _RECORD + ("round_gates",) + _DEPENDENCE,  # the copy check
    _LEARNING + _SCORES + _RECORD + ("round_gates",) + _DEPENDENCE,
    _LEARNING + _SCORES + _HELDOUT + _RECORD + ("round_gates",) + _DEPENDENCE,
    _LEARNING + _LATER + _RECORD + ("round_gates",) + _DEPENDENCE,
    _LEARNING + _LATER + _RECORD + ("settled_test_active", "round_gates") + _DEPENDENCE,
    _LEARNING
    + _LATER
    + ("heldout_batches",)
    + _RECORD
    + ("settled_test_active", "round_gates")
    + _DEPENDENCE,
    _LEARNING
    + _LATER
    + ("heldout_batches",)
    + _PROBE
    + _RECORD
    + ("settled_test_active", "round_gates")
    + _DEPENDENCE,
)


def save(variables: Sequence[Any], store: Any) -> None:
    """Writes each variable to ``store`` under its name."""
    for variable in variables:
        store[variable.name] = variable


def load(layer_name: str, variables: Sequence[Any], store: Any) -> None:
    """Assigns ``variables`` from ``store``: by name, or, for a file saved by
    position, by the earlier layout it matches.

    Raises:
      ValueError: the store names a variable the layer does not have (a file
        of a later release), or it is positional and matches no layout, or
        a value's shape differs from its variable's.
    """
    by_name = {variable.name: variable for variable in variables}
    keys = list(store.keys())
    if keys and all(key.isdigit() for key in keys):
        stored = [np.asarray(store[str(i)]) for i in range(len(keys))]
        specs = {name: (tuple(v.shape), str(v.dtype)) for name, v in by_name.items()}
        names = layout_of(layer_name, stored, specs, POSITIONAL_LAYOUTS)
        values = dict(zip(names, stored))
    else:
        unknown = sorted(set(keys) - set(by_name))
        if unknown:
            raise ValueError(
                f"{layer_name}: the saved file holds variables {unknown} this "
                f"release's gate does not have (it has {sorted(by_name)}); it "
                "was saved by a later release of seqattn_tfrs."
            )
        values = {key: store[key] for key in keys}
    for name, value in values.items():
        variable = by_name[name]
        value = np.asarray(value)
        if value.shape != tuple(variable.shape):
            raise ValueError(
                f"{layer_name}: saved `{name}` has shape {value.shape}, "
                f"expected {tuple(variable.shape)}."
            )
        variable.assign(value)


def layout_of(
    layer_name: str,
    values: Sequence[np.ndarray],
    specs: Mapping[str, tuple[tuple[int, ...], Any]],
    layouts: Sequence[Sequence[str]],
) -> tuple[str, ...]:
    """The one layout of ``layouts`` whose names, in order, match the values
    a store held by position in count, shape and dtype kind (``specs``: name
    to ``(shape, dtype)``).

    Raises:
      ValueError: no layout, or more than one, matches.
    """
    count = len(values)

    def matches(names: Sequence[str]) -> bool:
        return len(names) == count and all(
            name in specs
            and value.shape == tuple(specs[name][0])
            and value.dtype.kind == np.dtype(specs[name][1]).kind
            for name, value in zip(names, values)
        )

    found = [tuple(names) for names in layouts if matches(names)]
    if len(found) != 1:
        shapes = [(value.shape, str(value.dtype)) for value in values]
        raise ValueError(
            f"{layer_name}: the saved file holds {count} variables by position "
            f"({shapes}), which match {len(found)} of the gate's earlier layouts "
            "(expected exactly 1); it was not saved by a release of "
            "seqattn_tfrs with this layer's features and options."
        )
    return found[0]
