"""Gate values, and what the attention logits learn from.

Everything here runs inside a compiled training step, so it is written
against an ``ops`` namespace (see :mod:`seqattn_tfrs.core.ops`).

The learning signal starts from per-example gate gradients ``[B, N]``: per
example, d loss / d g_j = <upstream_j, e_j>. ``"partial"`` (the default)
first regresses out, over the batch, what a rescaling of the selected
features' embedding columns could explain - Rao's efficient score with those
column scales as nuisance parameters - so a candidate that only repeats a
selected feature scores about zero.
"""

from __future__ import annotations

import math
from typing import Any

from seqattn_tfrs.core.modes import DENSE, SETTLING

RIDGE = 1e-4  # of the nuisance Gram matrix's mean diagonal


def gate_values(ops: Any, logits: Any, selected: Any, mode: Any, complete: Any) -> Any:
    """Every feature's gate ``[N]`` in the given mode.

    Selected features get 1. In ``SELECTING`` the others share a softmax over
    their logits (stable; an empty set gives 0, never NaN); in ``SETTLING``,
    or once the selection is ``complete``, they get exactly 0; in ``DENSE``
    every gate is 1.

    Example:
      >>> import numpy as np
      >>> from seqattn_tfrs.core.ops import NUMPY
      >>> from seqattn_tfrs.core.modes import SELECTING
      >>> g = gate_values(NUMPY, np.log([1.0, 1.0, 3.0]), np.array([1.0, 0, 0]),
      ...                 SELECTING, False)
      >>> [round(float(x), 2) for x in g]
      [1.0, 0.25, 0.75]
    """
    unselected = 1.0 - selected
    masked = ops.where(unselected > 0, logits, ops.zeros_like(logits) - 1e30)
    shifted = ops.exp(masked - ops.max(masked)) * unselected
    total = ops.sum(shifted)
    softmax = shifted / ops.where(total > 0, total, ops.ones_like(total))
    selecting = selected + unselected * softmax
    only_selected = ops.logical_or(complete, ops.equal(mode, SETTLING))
    return ops.where(
        only_selected,
        selected,
        ops.where(ops.equal(mode, DENSE), ops.ones_like(selected), selecting),
    )


def logit_descent(
    ops: Any,
    per_example: Any,
    gates: Any,
    selected: Any,
    nuisance: Any | None,
    signal: str,
    nuisance_columns: Any | None = None,
) -> Any:
    """The gradient of the loss with respect to the logits, ``[N]``, by ``signal``.

    Args:
      ops: the array namespace.
      per_example: ``[B, N]`` per-example gradients of the loss with respect
        to each gate.
      gates: ``[N]`` current gate values.
      selected: ``[N]`` 0/1 mask of selected features.
      nuisance: ``[B, D]`` per-example gradients of a scale on each selected
        embedding column (``"partial"``; zero columns are allowed), or None.
      signal: ``"partial"``, ``"gradient"`` or ``"score"``.
      nuisance_columns: how many of the nuisance's columns are real (the rest
        being zeros that stand in for a gather), for the ridge; None: all.

    ``"score"``: per feature, the sum of the per-example gradients over the
    root of the sum of their squares - the score-test statistic for adding
    the feature; on least squares it is Orthogonal Matching Pursuit's
    ``|X_j' r| / ||X_j||`` up to a common factor. ``"gradient"`` and
    ``"partial"``: the paper's gradient through the softmax,
    ``d gate_j / d w_i = p_j (delta_ij - p_i)`` on the unselected set.

    Example:
      >>> import numpy as np
      >>> from seqattn_tfrs.core.ops import NUMPY
      >>> g = logit_descent(NUMPY, np.array([[1.0, -2.0], [1.0, -2.0]]),
      ...                   np.array([0.5, 0.5]), np.zeros(2), None, "gradient")
      >>> [round(float(x), 2) for x in g]
      [1.5, -1.5]
    """
    unselected = 1.0 - selected
    if nuisance is not None:
        total = efficient_score(ops, per_example, nuisance, nuisance_columns)
    else:
        total = ops.sum(per_example, axis=0)
    if signal == "score":
        spread = ops.sqrt(ops.sum(ops.square(per_example), axis=0))
        safe = ops.where(spread > 0, spread, ops.ones_like(spread))
        return ops.where(spread > 0, total / safe, ops.zeros_like(total)) * unselected
    probs = gates * unselected
    return probs * (total - ops.sum(probs * total)) * unselected


def ridge_system(ops: Any, nuisance: Any, columns: Any | None = None):
    """The nuisance's Gram matrix plus a ridge, and whether it is finite.

    The ridge is ``RIDGE`` times the mean diagonal over the ``columns`` real
    columns (all by default). If the Gram matrix is not finite an identity
    stands in: a NaN or inf loss then gives non-finite scores, which callers
    count and never apply, instead of a failed solve.
    """
    zz = ops.matmul(ops.transpose(nuisance), nuisance)
    width = ops.shape(zz)[0]
    count = width if columns is None else columns
    count = ops.maximum(ops.cast(count, "float32"), 1.0)
    ridge = RIDGE * ops.trace(zz) / count + 1e-12
    finite = ops.logical_and(ops.all(ops.isfinite(zz)), ops.isfinite(ridge))
    eye = ops.eye(width, dtype="float32")
    return ops.where(finite, zz + ridge * eye, eye), finite


def efficient_score(
    ops: Any, scores: Any, nuisance: Any, columns: Any | None = None
) -> Any:
    """Sums ``scores`` ``[B, N]`` after regressing out ``nuisance`` ``[B, D]``.

    Rao's efficient score ``U - F_sz F_zz^-1 U_z`` with per-example gradients
    as the Fisher information's factors (see :func:`ridge_system`).

    Example:
      >>> import numpy as np
      >>> from seqattn_tfrs.core.ops import NUMPY
      >>> x = np.array([[1.0, 2.0], [3.0, 6.0], [-1.0, 1.0]], np.float32)
      >>> [round(float(v), 3) for v in efficient_score(NUMPY, x[:, :1], x[:, 1:])]
      [-1.17]
    """
    system, finite = ridge_system(ops, nuisance, columns)
    sums = ops.where(ops.isfinite(nuisance), nuisance, ops.zeros_like(nuisance))
    coef = ops.solve(system, ops.sum(sums, axis=0)[:, None])
    cross = ops.matmul(ops.transpose(scores), nuisance)
    adjusted = ops.sum(scores, axis=0) - ops.matmul(cross, coef)[:, 0]
    return ops.where(finite, adjusted, ops.full_like(adjusted, math.nan))


def residual_scores(
    ops: Any, scores: Any, nuisance: Any, columns: Any | None = None
) -> Any:
    """Per-example ``scores`` ``[B, N]`` with ``nuisance`` ``[B, D]`` regressed
    out (the same ridge as :func:`efficient_score`, whose result is their sum;
    NaN where the nuisance is not finite).

    Example:
      >>> import numpy as np
      >>> from seqattn_tfrs.core.ops import NUMPY
      >>> x = np.array([[1.0, 2.0], [3.0, 6.0], [-1.0, 1.0]], np.float32)
      >>> [round(float(v), 3) for v in residual_scores(NUMPY, x[:, :1], x[:, 1:])[:, 0]]
      [0.073, 0.22, -1.463]
    """
    system, finite = ridge_system(ops, nuisance, columns)
    coef = ops.solve(system, ops.matmul(ops.transpose(nuisance), scores))
    residual = scores - ops.matmul(nuisance, coef)
    return ops.where(finite, residual, ops.full_like(residual, math.nan))


def centred(ops: Any, values: Any) -> Any:
    """``[B, D]`` values less their batch mean, per column.

    The score test behind ``entry_z`` scores each embedding centred: a shift
    of an embedding that the model's own biases can make carries no evidence
    that the feature helps (a mis-calibrated intercept would otherwise lend
    every feature a score).

    Example:
      >>> import numpy as np
      >>> from seqattn_tfrs.core.ops import NUMPY
      >>> centred(NUMPY, np.array([[1.0, 4.0], [3.0, 4.0]])).tolist()
      [[-1.0, 0.0], [1.0, 0.0]]
    """
    return values - ops.mean(values, axis=0)


def evidence_sums(
    ops: Any, per_example: Any, nuisance: Any | None, columns: Any | None = None
) -> tuple[Any, Any]:
    """A batch's sums of per-example scores and of their squares, each ``[N]``
    (the score test behind ``entry_z``; zeros if any is not finite)."""
    scores = (
        per_example
        if nuisance is None
        else residual_scores(ops, per_example, nuisance, columns)
    )
    return _zeros_unless_finite(
        ops, ops.sum(scores, axis=0), ops.sum(ops.square(scores), axis=0)
    )


def information_sums(
    ops: Any, per_example: Any, upstream_squares: Any
) -> tuple[Any, Any]:
    """A batch's factors of the model-based score test, each ``[N]``.

    ``per_example`` are the gate gradients ``[B, N]``, ``<upstream_j, e_j>``,
    and ``upstream_squares`` the squared norms ``[B, N]`` of each feature's
    upstream gradient. With every gate at 0 and no other input, the upstream
    gradient is the loss's derivative ``l_i`` times one vector per feature,
    so ``e_j`` projected on its direction is the feature's contribution
    ``u_ij`` up to a per-feature factor; the sums of the squared norms and of
    those projections give Rao's score test with the null model's variance,
    ``(sum g)^2 / (sum l^2 * sum u^2)`` up to a factor common to all features,
    in which that factor cancels (see ``selection.rao_statistics``). Unlike
    the sum of squared scores behind ``entry_z``, this denominator does not
    grow with a feature's own effect, so on least squares it ranks as
    Orthogonal Matching Pursuit does. Zeros if any is not finite.

    Example:
      >>> import numpy as np
      >>> from seqattn_tfrs.core.ops import NUMPY
      >>> g = np.array([[2.0], [-1.0]]); n2 = np.array([[4.0], [1.0]])
      >>> [v.tolist() for v in information_sums(NUMPY, g, n2)]
      [[5.0], [2.0]]
    """
    positive = upstream_squares > 0
    safe = ops.where(positive, upstream_squares, ops.ones_like(upstream_squares))
    projected = ops.where(
        positive, ops.square(per_example) / safe, ops.zeros_like(per_example)
    )
    return _zeros_unless_finite(
        ops, ops.sum(upstream_squares, axis=0), ops.sum(projected, axis=0)
    )


def _zeros_unless_finite(ops: Any, first: Any, second: Any) -> tuple[Any, Any]:
    """Both sums as they are if every entry of both is finite, else zeros (a
    NaN or inf batch adds no evidence)."""
    finite = ops.logical_and(
        ops.all(ops.isfinite(first)), ops.all(ops.isfinite(second))
    )
    return (
        ops.where(finite, first, ops.zeros_like(first)),
        ops.where(finite, second, ops.zeros_like(second)),
    )
