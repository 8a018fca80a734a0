"""The held-out probe: what a retrained table would bring, tested on held-out rows.

A candidate's gate gradient goes through its table, trained only in the
warm-up and unchanged since (its gate is 0 while the model settles), so it
can miss what the feature would bring now: the partner of a selected XOR
field, or, late in a selection, any remaining signal
(:func:`seqattn_tfrs.core.evidence.signal_exhausted`). The probe asks the
data instead (docs/generated_quality.md, "Session 13"):

* while a round settles (the candidates' gates at 0), each training row's
  gradient of the loss with respect to candidate ``j``'s gated embedding,
  projected on a direction ``r_j`` and less its batch mean, is summed per
  hash bucket of the row's raw value: ``S_j[b]``, the step a one-number
  table of that feature would take if its gate were 1. ``r_j`` is the top
  eigenvector of the second moment of those gradients over the training
  rows since the last commit (the warm-up's and every settle's steps,
  ``AXIS_ROWS`` rows a step; :func:`principal_axes`), fixed for the round;
  before the first commit a random draw (:func:`initial_axes`). One random
  direction could fall near orthogonal to the gradients' mean and miss a
  weak main effect (a DCN's: z -0.5 against 10.1 along the whole vector;
  docs/generated_quality.md, "Session 37");
* on held-out rows with the candidates' gates at 0, ``a_h = p_j(h) *
  S_j[b_h] / m(b_h)`` (``p_j(h)`` the same projection, less its batch mean;
  ``m(b)`` the batch's rows with the row's bucket) is the held-out loss's
  derivative along that step, spread over the batch's rows of the value,
  and the probe's z is ``sum(a) / sqrt(sum(a^2))``; the commit reads it.
  Without ``m``, a value most rows share (a field that is 0 on 95% of rows,
  with rare values of large effect) weighs in by its count: after the
  batch-mean centring its sum is about minus every rare value's, and it
  multiplies the near-null gradients of most held-out rows, so the z of
  such a field fell (1.4 against 4.7 in
  docs/generated_quality/sparse_probe_toy.py, a broad field of like
  information 5.2 either way; docs/generated_quality.md, "Session 41").
  ``m`` depends on the held-out keys only, so the z is still a standard
  normal where the feature carries nothing. The Keras 3 callback
  runs this pass as the settle ends, on the model the sums came from (the
  round's selecting part can turn the model's map from a candidate's
  direction to the loss around); the tf-keras one at the commit, where the
  same timing lost a served cell (docs/keras3.md, "The probe at the
  settle's end").

Every round after the first (by count, with held-out data) uses it, combined
with the gate's z (``core.selection``, ``_probe_evidence``): the soft gates
see fields that matter together before either is selected, the probe alone
over-ranks noise where nothing is left to find. A floating-point feature has
no values to hash and so no probe z; in a layer of such features only, the
settled model's score test on the same settle's training rows ranks instead,
and the probe's pass runs the same test on held-out rows, whose z stands in
for the probe's (:func:`seqattn_tfrs.core.selection.commit_round`). Hashing
many values into few buckets dilutes the test (MovieLens' ``timestamp``,
about 50,000 values: z 0.7 in 4,096 buckets, 4.8 in 65,536); more random
directions than one did not strengthen it (docs/generated_quality.md,
"Session 15"), and testing the training rows' two halves against each other
instead of against held-out rows was biased where the model memorises rows
("Session 16").

The probe groups rows by raw value, not as the feature's table does: for a
bucketised feature it measures what a table of one row per value would
bring (MovieLens' ``timestamp``: the ratings of one session share a value),
which its buckets cannot hold. The copy check groups rows by table
(:func:`seqattn_tfrs.core.dependence.table_groups`); the probe's in-graph
sums have no such grouping to read (not attempted).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from seqattn_tfrs.core import evidence

# Hash buckets per feature of the training-side sums (4 bytes each: 256 KiB a
# feature, held only while a settle sums them; otherwise one float).
PROBE_BUCKETS = 65536

# Training rows a step adds to the second moments behind the next settle's
# probe directions (:func:`principal_axes`): a direction needs few rows, and
# with held-out data every step before the selection completes adds them,
# but those of the rounds' selecting parts.
AXIS_ROWS = 256


def probe_slots(keys, features):
    """The sums' flat index of each row's (feature, bucket):
    ``features[k] * PROBE_BUCKETS + keys[:, k]``, ``[B, K]`` for ``[B, K]``
    bucket keys (numpy or tensors).

    Example:
      >>> slots = probe_slots(np.array([[3, 5]]), np.array([0, 2]))
      >>> slots[0, 0].tolist(), (slots[0, 1] - 2 * PROBE_BUCKETS).tolist()
      (3, 5)
    """
    return keys + np.asarray(features, np.int32) * PROBE_BUCKETS


def initial_axes(widths: Sequence[int]) -> np.ndarray:
    """Each feature's first probe direction as a row of an ``[N, max(widths)]``
    float32 array (zeros past the feature's width): standard normals, a draw
    seeded by the feature's index, the column
    :func:`probe_directions` gives it.

    Example:
      >>> axes = initial_axes([2, 3])
      >>> axes.shape, float(axes[0, 2])
      ((2, 3), 0.0)
      >>> bool(np.all(axes[1] == probe_directions([2, 3], [1])[:, 0]))
      True
    """
    axes = np.zeros([len(widths), max(widths, default=0)], np.float32)
    for feature, width in enumerate(widths):
        axes[feature, :width] = np.random.default_rng([feature, 0x5EA]).standard_normal(
            width
        )
    return axes


def principal_axes(moments: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """The next settle's probe directions ``[N, W]``: per feature the top
    eigenvector of its upstream gradients' second moment ``moments[f]``
    (``[N, W, W]``, summed over training rows; zeros past the feature's
    width stay zero), signed so that its largest entry is positive; a
    feature whose moments hold no finite, nonzero sum keeps ``previous[f]``.

    Example (gradients along ``(1, 1)`` give that axis; no rows keep the old):
      >>> moments = np.zeros((2, 2, 2)); moments[0] = [[4.0, 4.0], [4.0, 4.0]]
      >>> principal_axes(moments, np.array([[1.0, 0.0], [0.0, 1.0]])).round(4)
      array([[0.7071, 0.7071],
             [0.    , 1.    ]], dtype=float32)
    """
    moments = np.asarray(moments, np.float64)
    axes = np.array(previous, np.float32, copy=True)
    for feature, moment in enumerate(moments):
        if not (np.all(np.isfinite(moment)) and np.trace(moment) > 0):
            continue
        _, vectors = np.linalg.eigh((moment + moment.T) / 2)
        top = np.where(np.any(moment != 0, axis=0), vectors[:, -1], 0.0)
        top = top * np.sign(top[np.argmax(np.abs(top))])
        axes[feature] = top.astype(np.float32)
    return axes


def probe_directions(widths: Sequence[int], features: Sequence[int]) -> np.ndarray:
    """The held-out probe's fixed directions as one ``[sum(widths[f]), K]``
    float32 block matrix: column ``c`` holds standard normals (a draw seeded
    by the feature's index) in the rows of feature ``features[c]``, whose
    embedding is ``widths[features[c]]`` wide. Joined upstream gradients of
    those features times this matrix are their projections, ``[B, K]``.

    Example:
      >>> m = probe_directions([2, 3, 1], [0, 2])
      >>> m.shape, bool(np.all(m[2:, 0] == 0)), bool(np.all(m[:2, 1] == 0))
      ((3, 2), True, True)
    """
    matrix = np.zeros([sum(widths[f] for f in features), len(features)], np.float32)
    start = 0
    for column, feature in enumerate(features):
        width = widths[feature]
        rng = np.random.default_rng([feature, 0x5EA])
        matrix[start : start + width, column] = rng.standard_normal(width)
        start += width
    return matrix


def score_vector(
    layer_name: str, feature_names: Sequence[str], scores: Mapping[str, float]
) -> np.ndarray:
    """The probe's z per named feature as the ``[N]`` array a commit reads
    (NaN for a feature left out).

    Example:
      >>> score_vector("gate", ["a", "b"], {"b": 2.5}).tolist()
      [nan, 2.5]

    Raises:
      ValueError: ``scores`` names a feature not in ``feature_names``.
    """
    unknown = sorted(set(scores) - set(feature_names))
    if unknown:
        raise ValueError(
            f"{layer_name}: `scores` names unknown features {unknown}; expected "
            f"some of {list(feature_names)}."
        )
    return np.array([scores.get(name, np.nan) for name in feature_names])


def probe_wanted(
    selected: np.ndarray, heldout_scores: np.ndarray | None, complete: bool
) -> bool:
    """Whether the next round's settle should sum the probe's training side:
    after a commit by count with held-out evidence (this round's statistic,
    ``heldout_scores``), while the selection goes on.

    Example:
      >>> probe_wanted(np.array([True, False, False]), np.array([9.0, 1.0, 0.5]),
      ...              complete=False)
      True
      >>> probe_wanted(np.array([True, False, False]), np.array([9.0, 1.0, 0.5]),
      ...              complete=True)
      False
      >>> probe_wanted(np.array([True, False]), None, complete=False)
      False
    """
    if complete:
        return False
    return evidence.helping(selected, heldout_scores) is not None


def probe_z(total: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """Per feature, the probe's ``sum(a) / sqrt(sum(a^2))`` from those sums (0
    where no row was added).

    Example (one feature; the held-out gradients agree with the training
    side's in two rows and disagree in one):

      >>> a = np.array([2.0, 2.0, -0.5])
      >>> probe_z(np.array([a.sum()]), np.array([(a * a).sum()])).round(4)
      array([1.2185])
    """
    total = np.asarray(total, np.float64)
    squares = np.asarray(squares, np.float64)
    return np.divide(
        total, np.sqrt(squares), out=np.zeros_like(total), where=squares > 0
    )
