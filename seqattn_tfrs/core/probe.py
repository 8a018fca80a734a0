"""The split-half probe: evidence for the candidates once the gate's runs out.

Late in a selection the held-out gate statistic of every candidate can fall
to the level of noise (:func:`seqattn_tfrs.core.selection.signal_exhausted`):
a candidate's gate gradient goes through its table, trained only in the
warm-up and unchanged since (its gate is 0 while the model settles). The probe
asks the training rows instead, with no pass of its own:

* while a round settles (the candidates' gates at 0), each training row's
  gradient of the loss with respect to candidate ``j``'s gated embedding is
  projected on one fixed direction ``r_j``: ``g``, the step a one-number
  table of that feature would take from this row if its gate were 1;
* a hash of the row's raw values puts it in one of two halves (identical rows
  in the same one, so a row seen twice cannot meet itself across them); per
  half, ``g`` less its half's batch mean is summed per hash bucket of the
  row's value of ``j``: ``S0, S1``;
* at the commit, ``T = sum_b S0[b] S1[b]``: how far one half's step for the
  feature's values agrees with the other's. The model does not see a
  candidate while it settles, so for a feature unrelated to the label the
  halves are independent and ``E[T] = 0``; ``T``'s variance is then
  ``sum_b Var(S0[b]) Var(S1[b])``, estimated by ``sum_b S0[b]**2 S1[b]**2``,
  and the probe's z is ``T / sqrt(sum_b S0**2 S1**2)``. A variance from each
  row's own ``g**2`` would count a row that a settle sees twice (a settle
  longer than an epoch, or across an epoch's end) as two independent rows,
  and inflate z by up to the square root of the passes; the bucket sums'
  own products do not. The price: a feature of few values can reach at
  most ``sqrt(values)`` (2.6 for 7 values).

Both halves are training rows, so the test sees every settle step's rows
rather than the few thousand of ``selection_data`` (docs/generated_quality.md,
"Session 16"). Only the rounds whose gate statistic is exhausted use it,
combined with the gate's z (``core.selection``, ``_probe_evidence``): a
per-value sum is an additive fit, blind to a pair of fields that matter only
together, which the soft gates can see. A floating-point feature has no
values to hash and so no probe z. Hashing many values into few buckets
dilutes the test (MovieLens' ``timestamp``, about 50,000 values, needed far
more than 4,096 buckets: docs/generated_quality.md, "Session 15").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seqattn_tfrs.core import selection
from seqattn_tfrs.core.ops import NUMPY

# Hash buckets per feature of the sums; two sums a bucket (S0, S1), 4 bytes
# each: 512 KiB a feature, held only while a settle sums them (otherwise one
# float).
PROBE_BUCKETS = 65536
PROBE_PARTS = 2


def probe_slots(keys, features, halves, n_features: int):
    """The flat indices of a batch's sums, laid out ``[PROBE_PARTS, N,
    PROBE_BUCKETS]`` (``N = n_features``): row ``i``'s value of keyed feature
    ``k`` adds its ``g`` at ``(halves[i] * N + features[k]) * PROBE_BUCKETS +
    keys[i, k]``. Returns a ``[B, K]`` array.

    Args:
      keys: ``[B, K]`` hash buckets of the keyed features' values.
      features: ``[K]`` index of each keyed feature among the layer's ``N``.
      halves: ``[B]`` each row's half, 0 or 1.
      n_features: ``N``.

    Example:
      >>> slots = probe_slots(np.array([[3, 5]]), np.array([0, 2]), np.array([1]), 3)
      >>> (slots // PROBE_BUCKETS).tolist(), (slots % PROBE_BUCKETS).tolist()
      ([[3, 5]], [[3, 5]])
    """
    rows = halves[:, None] * n_features + np.asarray(features, np.int32)[None, :]
    return rows * PROBE_BUCKETS + keys


def probe_wanted(
    selected: np.ndarray, heldout_scores: np.ndarray | None, complete: bool
) -> bool:
    """Whether the next round's settle should sum the probe's training side:
    after this round's picks (``selected``), fewer than two candidates still
    clear :func:`~seqattn_tfrs.core.selection.signal_threshold` on this
    round's held-out statistic, so the next round's is likely exhausted.

    Example:
      >>> probe_wanted(np.array([True, False, False]), np.array([9.0, 1.0, 0.5]),
      ...              complete=False)
      True
      >>> probe_wanted(np.array([True, False, False]), np.array([9.0, 5.0, 4.0]),
      ...              complete=False)
      False
      >>> probe_wanted(np.array([True, False]), None, complete=False)
      False
    """
    if complete:
        return False
    helps = selection.helping(selected, heldout_scores)
    return helps is not None and int(helps.sum()) < 2


def split_half_z(sums: Any, ops: Any = NUMPY) -> Any:
    """Per feature, the probe's z from its sums ``[PROBE_PARTS, N, buckets]``
    (``S0, S1``; see the module docstring); NaN for a feature with nothing
    summed in one of the halves (no values to hash). ``ops`` is the array
    namespace (:mod:`seqattn_tfrs.core.ops`): the front-ends reduce their sums
    where they live.

    Example (one feature, three values; the halves agree on two, disagree on
    one, and a fourth value is seen in one half only):

      >>> s0, s1 = np.array([[2.0, 1.0, -1.0, 3.0]]), np.array([[1.5, 2.0, 0.5, 0.0]])
      >>> z = split_half_z(np.stack([s0, s1]))
      >>> z.round(4)  # (3 + 2 - 0.5) / sqrt(9 + 4 + 0.25)
      array([1.2362])
      >>> split_half_z(np.stack([s0, 0 * s1]))
      array([nan])
    """
    s0, s1 = sums[0], sums[1]
    product = s0 * s1
    total = ops.sum(product, axis=1)
    variance = ops.sum(ops.square(product), axis=1)
    positive = variance > 0
    z = ops.where(
        positive,
        total / ops.sqrt(ops.where(positive, variance, ops.ones_like(variance))),
        ops.zeros_like(total),
    )
    keyed = ops.logical_and(
        ops.sum(ops.square(s0), axis=1) > 0, ops.sum(ops.square(s1), axis=1) > 0
    )
    return ops.where(keyed, z, ops.full_like(z, np.nan))
