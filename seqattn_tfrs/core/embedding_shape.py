"""What a gate says when a feature's layer returns other than ``[batch, d]``.

Framework-free, for both front-ends: the shape comes from the caller.
"""

from __future__ import annotations

from collections.abc import Sequence


def rank_problem(
    layer_name: str,
    name: str,
    shape: Sequence[int | None],
    reshape: str = "keras.layers.Reshape",
) -> str | None:
    """The error for feature ``name``'s output ``shape`` unless its rank is 2
    (None then). A rank-3 output gets the fixes: one id per example gives
    ``[batch, 1, d]`` after an Embedding; a listwise model's ``n`` items a
    feature keep their order through ``reshape((n * d,))``.

    Example:
      >>> print(rank_problem("gate", "a", (32, 8)))
      None
      >>> message = rank_problem("g", "items", (32, 5, 8))
      >>> message.split(";")[0]
      "g: the layer of feature 'items' returned a tensor of rank 3 (shape (32, 5, 8))"
      >>> "Reshape((8,))" in message, "Reshape((5 * 8,))" in message
      (True, True)
    """
    rank = len(shape)
    if rank == 2:
        return None
    hint = ""
    if rank == 3:
        n, d = shape[1], shape[2]
        hint = (
            f" [batch, {n}, {d}]: an input of shape [batch, 1] gives "
            "[batch, 1, d] after an Embedding, so feed [batch] ids or end the "
            f"feature's layer with {reshape}(({d},)); for {n} "
            "values per example (a listwise model's items), "
            f"Reshape(({n} * {d},)) keeps them in order (reshape back after "
            "the gate) and a pooling layer merges them."
        )
    return (
        f"{layer_name}: the layer of feature {name!r} returned a tensor of rank "
        f"{rank} (shape {tuple(shape)}); expected rank 2, [batch, d].{hint}"
    )
