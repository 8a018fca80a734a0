"""The held-out pair test: two candidates that matter only together.

A pair of fields whose effect is their interaction (the parity of two
flags) has no marginal effect, so the probe's z of either field alone does
not see it (the gate's z does, beside the partner's soft gate), and once
no candidate helps on its own the least-harm order takes noise or
coarsenings instead (docs/generated_quality.md, "Session 23"); while main
effects still help, the greedy order takes weaker main effects before the
pair (docs/benchmarks.md, "session 33"). The held-out probe's pass
(:mod:`seqattn_tfrs.core.probe`) already has, per held-out row, each
candidate's projected gradient ``p_j(h)`` (the loss's derivative along the
candidate's fixed direction, less its batch mean) and its raw value's hash
bucket. For a pair ``(i, j)`` the rows are grouped by their two buckets:

* ``S_i[c]`` and ``S_j[c]``: the sums of ``p_i`` and of ``p_j`` over the
  even rows of group ``c``, the step a two-number table of the pair (one
  number in each field's direction) would take, fitted on those rows;
* on the odd rows, ``a_h = p_i(h) * S_i[c_h] + p_j(h) * S_j[c_h]``, the
  held-out loss's derivative along that step; the pair's z is
  ``sum(a) / sqrt(sum(a^2))``. (A sum ``p_i + p_j`` in one number would
  cancel where the two directions happen to point against each other.)

Given the even rows, the odd rows' terms are independent with mean 0 where
the pair carries nothing, so the z is a standard normal under that null
whatever the groups' sizes. Testing each half against the other and adding
both would count every group's product twice (a variance of 2, measured as
a noise pair's false positive). Both halves are held-out rows, so no
memorised training residual enters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np


def pair_z(
    keys: np.ndarray, projected: np.ndarray, tested: np.ndarray | None = None
) -> np.ndarray:
    """``[K, K]`` z of every pair of ``K`` features (symmetric; NaN on the
    diagonal), from ``[R, K]`` bucket keys and projected gradients of ``R``
    held-out rows; the even rows fit, the odd rows test. With ``tested``
    (``[K, K]`` booleans), only the pairs it marks (either way round); NaN
    for the others.

    Example (two flags whose parity sets the gradient's sign; a third field
    that does not matter):
      >>> rng = np.random.default_rng(0)
      >>> keys = rng.integers(0, 2, (4000, 3))
      >>> parity = np.where(keys[:, 0] == keys[:, 1], 1.0, -1.0)
      >>> projected = np.tile(parity + rng.normal(0, 2, 4000), (3, 1)).T
      >>> z = pair_z(keys, projected)
      >>> bool(z[0, 1] > 10), bool(abs(z[0, 2]) < 3), bool(np.isnan(z[0, 0]))
      (True, True, True)
    """
    keys = np.asarray(keys, np.int64)
    projected = np.asarray(projected, np.float64)
    if keys.ndim != 2 or keys.shape != projected.shape:
        raise ValueError(
            "`keys` and `projected` must both have shape [rows, features], got "
            f"{keys.shape} and {projected.shape}."
        )
    rows, count = keys.shape
    fit = np.arange(rows) % 2 == 0
    span = int(keys.max()) + 1 if keys.size else 1
    z = np.full((count, count), np.nan)
    if tested is not None:
        tested = np.asarray(tested, bool)
        tested = tested | tested.T
    for i in range(count):
        for j in range(i + 1, count):
            if tested is not None and not tested[i, j]:
                continue
            _, group = np.unique(keys[:, i] * span + keys[:, j], return_inverse=True)
            a = np.zeros(int((~fit).sum()))
            for gradient in projected[:, i], projected[:, j]:
                step = np.bincount(group[fit], gradient[fit], minlength=group.max() + 1)
                a += gradient[~fit] * step[group[~fit]]
            squares = float(a @ a)
            z[i, j] = z[j, i] = float(a.sum()) / math.sqrt(squares) if squares else 0.0
    return z


def pair_picks(
    pair_scores: np.ndarray,
    eligible: np.ndarray,
    combined: np.ndarray,
    threshold: Callable[[int], float],
) -> list[int] | None:
    """The pair to pick, as two feature indices (the member with the larger
    ``combined`` z first), or None: among the ``eligible`` features' pairs
    with a z (finite in ``pair_scores``), the largest z, where it clears
    ``threshold(number of those pairs)``.

    Example (``a`` and ``c`` together; ``b`` not eligible):
      >>> z = np.full((3, 3), np.nan)
      >>> z[0, 2] = z[2, 0] = 6.0
      >>> pair_picks(z, np.array([True, False, True]), np.array([0.1, 0, 0.3]),
      ...            lambda tests: 3.0)
      [2, 0]
      >>> print(pair_picks(z, np.array([True, True, False]), np.zeros(3),
      ...                  lambda tests: 3.0))
      None
    """
    candidates = np.flatnonzero(np.asarray(eligible, bool))
    pairs = [
        (float(pair_scores[i, j]), int(i), int(j))
        for n, i in enumerate(candidates)
        for j in candidates[n + 1 :]
        if np.isfinite(pair_scores[i, j])
    ]
    if not pairs:
        return None
    best, i, j = max(pairs, key=lambda pair: pair[0])
    if best < threshold(len(pairs)):
        return None
    return [i, j] if combined[i] >= combined[j] else [j, i]


def pair_matrix(
    layer_name: str,
    feature_names: Sequence[str],
    scores: Mapping[tuple[str, str], float],
) -> np.ndarray:
    """The pair test's z per pair of named features as the ``[N, N]``
    symmetric matrix a commit reads (NaN for a pair left out).

    Example:
      >>> pair_matrix("gate", ["a", "b", "c"], {("a", "c"): 4.0})[2, 0]
      np.float64(4.0)

    Raises:
      ValueError: ``scores`` names a feature not in ``feature_names``.
    """
    index = {name: i for i, name in enumerate(feature_names)}
    unknown = sorted({n for pair in scores for n in pair} - set(index))
    if unknown:
        raise ValueError(
            f"{layer_name}: `scores` names unknown features {unknown}; expected "
            f"pairs of {list(index)}."
        )
    matrix = np.full([len(index)] * 2, np.nan)
    for (first, second), z in scores.items():
        matrix[index[first], index[second]] = z
        matrix[index[second], index[first]] = z
    return matrix


def named_pair_scores(
    keyed: Sequence[str],
    keys: np.ndarray,
    projected: np.ndarray,
    candidate_pairs: Sequence[tuple[str, str]],
) -> dict[tuple[str, str], float]:
    """:func:`pair_z` of each of ``candidate_pairs`` whose features both are
    among ``keyed`` (the columns of the held-out rows' ``[R, K]`` bucket
    ``keys`` and ``projected`` gradients), by name; other pairs left out.

    Example (``c`` has no rows: its pair is left out):
      >>> rng = np.random.default_rng(0)
      >>> keys = rng.integers(0, 2, (4000, 2))
      >>> sign = np.where(keys[:, 0] == keys[:, 1], 1.0, -1.0)
      >>> projected = np.tile(sign + rng.normal(0, 2, 4000), (2, 1)).T
      >>> z = named_pair_scores(["a", "b"], keys, projected, [("a", "b"), ("a", "c")])
      >>> list(z), bool(z[("a", "b")] > 10)
      ([('a', 'b')], True)
    """
    keyed = list(keyed)
    tested = [(a, b) for a, b in candidate_pairs if a in keyed and b in keyed]
    names = sorted({n for pair in tested for n in pair}, key=keyed.index)
    columns = [keyed.index(n) for n in names]
    wanted = np.zeros((len(names), len(names)), bool)
    for a, b in tested:
        wanted[names.index(a), names.index(b)] = True
    z = pair_z(keys[:, columns], projected[:, columns], wanted)
    return {(a, b): float(z[names.index(a), names.index(b)]) for a, b in tested}
