"""Which features are functions of others, counted from raw feature values.

A feature and an exact copy of it under another name, or a re-coding of its
ids, split the rows into the same groups: each is a function of the other, and
the second table can add nothing the first one's (one free row per value)
cannot represent. Gradient signals see this only approximately (a copy keeps
part of its score while the selected feature is under-fitted), so the
selection checks it on data and passes such a candidate over.

A one-way function - a coarsening such as a zip code's prefix, or a user's
occupation next to the user id - is reported but not passed over: pooling the
finer feature's values, it can generalise where they have few rows each.
Once no candidate helps, a copy, which can neither help nor hurt, goes ahead
of every larger table, and of every candidate where each other one's held-out
statistic says it hurts (see :func:`seqattn_tfrs.core.selection.commit_round`).
The selection also takes a coarsening's source in its place when both help
and the source's held-out evidence is not clearly weaker
(:func:`finest_source`), and ranks the candidates related to a selected
feature after the others that help (:func:`related_to`).

Rows are grouped as each feature's table groups them where the table merges
values by design (:func:`table_groups`): a raw timestamp is nearly unique, so
the hour and the weekday are functions of it, but its bucketised table holds
20 groups, of which they are not.

Only exact dependence is declared, and only where the data could have shown
otherwise: were the candidate drawn independently of the selected feature
(from its own frequencies), the chance that every value of the selected
feature shows one candidate value only must be at most ``exp(-MIN_EVIDENCE)``.
An id-like feature whose values mostly occur once never makes another feature
its function.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

MIN_EVIDENCE = 7.0  # -log P(no violation | independent): at most about 0.1%
# The share of rows whose table output another raw value shares, from which a
# table's grouping counts instead of the raw values (:func:`table_groups`).
MERGED_ROWS = 0.5


def factorize(values: np.ndarray) -> np.ndarray:
    """Integer codes ``[rows]`` of a feature's values (``[rows, ...]``; the
    values of one row, e.g. a multi-hot list, count as one value).

    Example:
      >>> factorize(np.array([b"a", b"b", b"a"])).tolist()
      [0, 1, 0]
      >>> factorize(np.array([[1, 2], [1, 2], [2, 1]])).tolist()
      [0, 0, 1]
    """
    values = np.asarray(values)
    if values.ndim == 0:
        raise ValueError(
            f"`values` must have a leading rows dimension, got a scalar {values!r}."
        )
    rows = values.reshape(len(values), -1)
    if rows.shape[1] == 1:
        _, codes = np.unique(rows[:, 0], return_inverse=True)
    else:
        _, codes = np.unique(rows, axis=0, return_inverse=True)
    return codes.reshape(-1).astype(np.int64)


def functional_dependence(
    codes: Sequence[np.ndarray],
    min_evidence: float = MIN_EVIDENCE,
) -> np.ndarray:
    """``[N, N]`` booleans: entry ``[c, s]`` says feature ``c`` is a function of
    feature ``s`` on these rows (never on the diagonal).

    Args:
      codes: per feature, integer codes of its value in each row (see
        :func:`factorize`); all of the same length.
      min_evidence: declare ``c`` a function of ``s`` only when, with ``c``
        independent of ``s``, seeing one ``c`` value per ``s`` value would
        have had a probability of at most ``exp(-min_evidence)``.

    Example (``b`` is ``a``'s coarsening, ``a`` is not ``b``'s function, ``n``
    is neither):
      >>> rng = np.random.default_rng(0)
      >>> a = rng.integers(0, 40, 2000)
      >>> n = rng.integers(0, 40, 2000)
      >>> functional_dependence([a, a // 4, n]).astype(int).tolist()
      [[0, 0, 0], [1, 0, 0], [0, 0, 0]]
    """
    codes = [np.asarray(c, np.int64).reshape(-1) for c in codes]
    lengths = {len(c) for c in codes}
    if len(lengths) > 1:
        raise ValueError(
            f"`codes` must all have the same number of rows, got lengths "
            f"{[len(c) for c in codes]}."
        )
    n = len(codes)
    result = np.zeros([n, n], bool)
    rows = lengths.pop() if lengths else 0
    if rows == 0:
        return result
    sizes = [int(c.max()) + 1 for c in codes]
    counts = [np.bincount(c, minlength=size) for c, size in zip(codes, sizes)]
    frequencies = [count[count > 0] / rows for count in counts]
    # Group sizes (rows per value, at least 2) of every feature, and for each
    # feature c and each such size m, log P(m rows all show one c-value) =
    # log sum_c p_c**m, were the rows' c-values independent draws.
    groups = [np.unique(count[count >= 2], return_counts=True) for count in counts]
    all_sizes = np.unique(np.concatenate([lengths for lengths, _ in groups]))
    log_constants: dict[int, np.ndarray] = {}
    for s in range(n):
        lengths_s, multiplicity = groups[s]
        if not len(lengths_s):
            continue
        order = np.argsort(codes[s], kind="stable")
        same_group = codes[s][order][1:] == codes[s][order][:-1]
        where = np.searchsorted(all_sizes, lengths_s)
        for c in range(n):
            if c == s or len(frequencies[c]) > len(frequencies[s]):
                continue  # a function of s takes at most as many values as s
            # -log P(every s-value's rows show one c-value), were c independent
            # of s: a group of m rows is constant with probability sum_c p_c**m.
            if c not in log_constants:
                log_constants[c] = _log_constants(np.log(frequencies[c]), all_sizes)
            log_constant = log_constants[c][where]
            if -float(np.sum(multiplicity * log_constant)) < min_evidence:
                continue
            in_order = codes[c][order]
            changes = in_order[1:] != in_order[:-1]
            result[c, s] = not np.any(changes & same_group)
    return result


# Products ``size * log p`` held at once by ``_log_constants`` (8 MiB of
# float64), whatever the number of group sizes and of a feature's values.
_BLOCK = 1 << 20


def _log_constants(log_p: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """``log sum_v p_v**m`` for every group size ``m`` in ``sizes``, computed a
    block of sizes at a time so that memory stays bounded."""
    step = max(1, _BLOCK // len(log_p))
    return np.concatenate(
        [
            np.logaddexp.reduce(sizes[i : i + step, None] * log_p[None, :], axis=1)
            for i in range(0, len(sizes), step)
        ]
    )


def table_groups(raw: np.ndarray, looked_up: np.ndarray) -> np.ndarray:
    """Integer codes ``[rows]`` of the groups a feature's table puts its rows
    in, where the table's design groups values: rows with equal table outputs
    (``looked_up``, ``[rows, ...]``) share one where at least half of the rows
    share their table output with another raw value (``raw``, ``[rows,
    ...]``), as under a bucketisation or a small hash. Otherwise the raw
    values' codes: a vocabulary built on the training rows merges only the
    few held-out values it never saw into its out-of-vocabulary row, and
    those few rows must not break a relation that holds on all the others
    (MovieLens: 0.1-0.2% of the rows of ``movie_id``, 100% of a bucketised
    timestamp's). Also the raw values' where the table gives every row one
    output while they differ (an initialiser that gives every id the same
    vector, such as zeros): the outputs cannot show the grouping.

    Example (four raw values in two buckets; five raw values, two of them
    merged out of vocabulary; a zero-initialised table):
      >>> raw = np.array([3.0, 7.5, 12.0, 18.0])
      >>> table_groups(raw, np.array([[0.1], [0.1], [0.4], [0.4]])).tolist()
      [0, 0, 1, 1]
      >>> ids = np.array([4, 8, 15, 16, 23])
      >>> table_groups(ids, np.array([[0.2], [0.3], [0.1], [0.4], [0.4]])).tolist()
      [0, 1, 2, 3, 4]
      >>> table_groups(raw, np.zeros([4, 2])).tolist()
      [0, 1, 2, 3]
    """
    raw, looked_up = np.asarray(raw), np.asarray(looked_up)
    if len(raw) != len(looked_up):
        raise ValueError(
            f"`raw` and `looked_up` must have the same rows, got {len(raw)} and "
            f"{len(looked_up)}."
        )
    raw_codes = factorize(raw)
    # Each output row as one number, its projection on a fixed random
    # direction: equal rows give equal numbers, and distinct rows equal ones
    # with probability about rows**2 * 2**-52 (a 1-D sort, faster than rows').
    rows = looked_up.reshape(len(looked_up), -1).astype(np.float64)
    direction = np.random.default_rng(0).standard_normal(rows.shape[1])
    codes = factorize(rows @ direction)
    if not len(codes) or codes.max() == 0:
        return raw_codes
    # Raw values per table group, then the rows whose group holds several.
    raw_values = int(raw_codes.max()) + 1
    pairs = np.unique(codes * raw_values + raw_codes)
    values_in_group = np.bincount(pairs // raw_values)
    merged = float(np.mean(values_in_group[codes] > 1))
    return codes if merged >= MERGED_ROWS else raw_codes


def of_batches(
    names: Sequence[str],
    batches: Sequence[Mapping[str, tuple[np.ndarray, np.ndarray]]],
) -> tuple[np.ndarray, int]:
    """:func:`functional_dependence` of the features ``names`` over recorded
    batches, and the rows counted. Each batch maps a feature's name to its raw
    values and its table's outputs, grouped by :func:`table_groups`.

    Example (``t``, 20 raw values of two rows each, determines ``a``; its
    table of 4 buckets does not):
      >>> t = np.arange(40) // 2
      >>> a = t % 4
      >>> def batch(t_table):
      ...     return {"a": (a, np.eye(4)[a]), "t": (t, t_table)}
      >>> found, rows = of_batches(["a", "t"], [batch(np.eye(20)[t])])
      >>> found.astype(int).tolist(), rows
      ([[0, 1], [0, 0]], 40)
      >>> of_batches(["a", "t"], [batch(np.eye(4)[t // 5])])[0].astype(int).tolist()
      [[0, 0], [0, 0]]
    """
    codes = [
        table_groups(
            np.concatenate([batch[n][0] for batch in batches]),
            np.concatenate([batch[n][1] for batch in batches]),
        )
        for n in names
    ]
    return functional_dependence(codes), (len(codes[0]) if codes else 0)


class InputsRecordedError(Exception):
    """Raised inside a forward pass once every gate recorded its inputs: what
    the model computes after its gates is not needed to check dependence."""


class InputRecorder:
    """One list of recorded batches per gate; the append that completes a
    batch (every gate has recorded as many batches) raises
    :class:`InputsRecordedError`, which the caller's forward loop catches.

    Example:
      >>> recorder = InputRecorder(2)
      >>> first, second = recorder.lists
      >>> first.append({"a": np.zeros(2)})
      >>> try:
      ...     second.append({"b": np.ones(2)})
      ... except InputsRecordedError:
      ...     print("batch done", len(first), len(second))
      batch done 1 1
    """

    def __init__(self, count: int) -> None:
        self.lists = [_RecordedBatches(self) for _ in range(count)]

    def appended(self) -> None:
        """Called by each list after an append: raises once the batch is done."""
        lengths = {len(batches) for batches in self.lists}
        if len(lengths) == 1:
            raise InputsRecordedError


def record_batches(
    layers: Sequence[Any],
    batches: Iterable[Any],
    forward: Callable[[Any], Any],
    max_rows: int,
    **recording: Any,
) -> list[list[dict[str, tuple[np.ndarray, np.ndarray]]]]:
    """Each gate's recorded batches (``{name: (raw, table output)}``) while
    ``forward`` feeds ``batches`` through the gates (each gate's
    ``recording_inputs``, given the ``recording`` keyword arguments), up to
    the batch that brings the rows to ``max_rows``; stops after a batch that
    some gate did not record (that pass does not reach it), so the caller
    can try another. Each forward pass stops once every gate has recorded
    its batch.
    """
    recorder = InputRecorder(len(layers))
    rows = 0
    with contextlib.ExitStack() as stack:
        records = [
            stack.enter_context(layer.recording_inputs(into, **recording))
            for layer, into in zip(layers, recorder.lists)
        ]
        for batch in batches:
            with contextlib.suppress(InputsRecordedError):
                forward(batch)
            if not all(records):
                break
            raw, _ = next(iter(records[0][-1].values()))
            rows += len(raw)
            if rows >= max_rows:
                break
    return records


class _RecordedBatches(list):
    def __init__(self, recorder: InputRecorder) -> None:
        super().__init__()
        self._recorder = recorder

    def append(self, batch: Mapping[str, np.ndarray]) -> None:
        super().append(batch)
        self._recorder.appended()


def redundant_candidates(dependence: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """``[N]`` booleans: unselected features that group the rows exactly as a
    selected one does (each a function of the other).

    Example:
      >>> d = np.array([[0, 1, 0], [1, 0, 0], [1, 1, 0]], bool)  # 0, 1 copies;
      >>> # 2 a coarsening of both
      >>> redundant_candidates(d, np.array([True, False, False])).tolist()
      [False, True, False]
    """
    dependence = np.asarray(dependence, bool)
    same_groups = dependence & dependence.T
    selected = np.asarray(selected, bool)
    return ~selected & np.any(same_groups[:, selected], axis=1)


def functions_of(dependence: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """``[N]`` booleans: the unchosen features that are functions of a
    ``chosen`` one (its coarsenings and copies: no information it lacks).

    Example (1 coarsens 0; 0 is not a function of 1; 2 is unrelated):
      >>> dependence = np.zeros([3, 3], bool)
      >>> dependence[1, 0] = True
      >>> functions_of(dependence, np.array([True, False, False])).tolist()
      [False, True, False]
      >>> functions_of(dependence, np.array([False, True, False])).tolist()
      [False, False, False]
    """
    dependence = np.asarray(dependence, bool)
    chosen = np.asarray(chosen, bool)
    return ~chosen & dependence[:, chosen].any(axis=1)


def related_to(dependence: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """``[N]`` booleans: the unchosen features that are functions of a
    ``chosen`` one (:func:`functions_of`: coarsenings, copies) or of which a
    chosen one is a function (sources).

    Example (1 coarsens 0; 0 is chosen; 2 is unrelated):
      >>> dependence = np.zeros([3, 3], bool)
      >>> dependence[1, 0] = True
      >>> related_to(dependence, np.array([True, False, False])).tolist()
      [False, True, False]
      >>> related_to(dependence, np.array([False, True, False])).tolist()
      [True, False, False]
    """
    dependence = np.asarray(dependence, bool)
    chosen = np.asarray(chosen, bool)
    sources = ~chosen & dependence[chosen].any(axis=0)
    return functions_of(dependence, chosen) | sources


def finest_source(
    lead: int,
    helps: np.ndarray,
    dependence: np.ndarray,
    score: np.ndarray,
    evidence: np.ndarray | None = None,
    margin: float | None = None,
) -> int:
    """The feature to pick in place of ``lead``: a strict source of it (``lead``
    is a function of it, it is not one of ``lead``) that also ``helps``, the
    largest ``score`` first, down the chain; ``lead`` where none helps. With
    ``evidence`` (held-out z), a source whose z falls short of the current
    lead's by more than ``margin`` (the selection passes
    ``evidence.CLEARLY_WEAKER``, 2.33) does not take its place.

    A source holds all that its coarsening does: picked first, it covers the
    group at once, where the coarsening first would leave its source helping
    in a later round, two picks for one group. But where the source has few
    rows per value the training rows cannot teach it what its coarsening
    pools: evidence learned on the training rows and tested on held-out ones
    (the combined z of the rounds after the first) then falls well short of
    the coarsening's, and the coarsening is what a model can learn of the
    group. The first round's score test is no such evidence (it fits
    nothing: a learnable source's z falls 4-5 short of its coarsening's
    there too), so the first pick is given none
    (docs/generated_quality.md, "Session 46").

    Example (0 coarsens 1, 1 coarsens 2; 2 helps, then only 1; with
    evidence, 2's z falls 3 short of 1's):
      >>> dependence = np.zeros([3, 3], bool)
      >>> dependence[0, 1] = dependence[0, 2] = dependence[1, 2] = True
      >>> score = np.array([3.0, 2.0, 1.0])
      >>> finest_source(0, np.array([True, True, True]), dependence, score)
      2
      >>> finest_source(0, np.array([True, True, False]), dependence, score)
      1
      >>> z = np.array([6.0, 5.5, 2.5])
      >>> finest_source(0, np.array([True, True, True]), dependence, score, z, 2.33)
      1
    """
    if evidence is not None and margin is None:
        raise ValueError("`margin` is required with `evidence`, got None.")
    dependence = np.asarray(dependence, bool)
    score = np.asarray(score, np.float64)
    seen = np.zeros(len(score), bool)  # a check on data need not be transitive
    while True:
        seen[lead] = True
        sources = helps & dependence[lead] & ~dependence[:, lead] & ~seen
        if evidence is not None:
            z = np.asarray(evidence, np.float64)
            sources &= z >= z[lead] - margin
        if not sources.any():
            return int(lead)
        candidates = np.flatnonzero(sources)
        lead = int(candidates[np.argmax(score[candidates])])


def copies_of_chosen(
    names: Sequence[str],
    chosen: np.ndarray,
    dependencies: Mapping[str, Collection[str]] | None,
) -> np.ndarray:
    """``[N]`` booleans: the unchosen features that are copies (each a function
    of the other) of a chosen one, by a gate's ``functional_dependencies``."""
    if not dependencies:
        return np.zeros(len(names), bool)
    index = {name: i for i, name in enumerate(names)}
    matrix = np.zeros((len(names), len(names)), bool)
    for name, sources in dependencies.items():
        for source in sources:
            matrix[index[name], index[source]] = True
    return redundant_candidates(matrix, chosen)
