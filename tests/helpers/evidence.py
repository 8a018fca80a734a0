"""What the score test's sums must look like through a fit, on both front-ends."""

from __future__ import annotations

import numpy as np

SETTLING = 2  # seqattn_tfrs.core.modes.SETTLING, without importing a front-end


def check_settle_evidence(
    records: list[tuple[int, np.ndarray]], settle_steps: int, constant: int
) -> int:
    """Checks the score-test sums recorded after every training step.

    ``records``: per step, the gate mode set for the next step and the
    per-feature sums of squared scores after the step's held-out batch (one
    every step). In each settle (``settle_steps`` steps in ``SETTLING``) the
    first half adds nothing and the second half adds evidence; feature
    ``constant``, whose embedding never varies within a batch, never gets any
    (the test scores centred embeddings). Returns the settles seen.
    """
    settles = 0
    position = 0
    for mode, squares in records:
        position = position + 1 if mode == SETTLING else 0
        if mode != SETTLING:
            continue
        squares = np.asarray(squares, np.float64)
        # Zero up to rounding (an uncentred constant scores like the rest).
        assert squares[constant] <= 1e-9 * squares.sum(), (position, squares)
        if position <= settle_steps // 2:
            assert not squares.any(), (position, squares)
        else:
            assert squares.sum() > 0, (position, squares)
        if position == settle_steps:
            settles += 1
    assert settles > 0, records
    return settles


SELECTING = 1  # seqattn_tfrs.core.modes.SELECTING


def check_selecting_evidence(
    records: list[tuple[int, np.ndarray]], constant: int
) -> int:
    """Checks the held-out gate-gradient sums recorded after every step.

    ``records`` as for :func:`check_settle_evidence`, with the sums of squares
    of the statistic kept while the logits learn. They grow only while the
    gates select (each such step's held-out batch adds to them) and are zero
    in every other step (reset by each pick); feature ``constant`` gets none.
    Returns the rounds seen.
    """
    rounds = 0
    previous = None
    for mode, squares in records:
        squares = np.asarray(squares, np.float64)
        if mode != SELECTING:
            assert not squares.any(), (mode, squares)
            rounds += previous is not None
            previous = None
            continue
        assert squares.sum() > 0, squares
        assert squares[constant] <= 1e-9 * squares.sum(), squares
        if previous is not None:
            assert np.all(squares >= previous - 1e-6 * previous.sum()), (
                previous,
                squares,
            )
            assert squares.sum() > previous.sum(), (previous, squares)
        previous = squares
    assert rounds > 0, records
    return rounds


def check_float_pick(
    names: list[str],
    chosen: set[str],
    pick: str,
    settled: dict[str, float],
    gate: dict[str, float],
    held: dict[str, float],
) -> None:
    """Checks a later pick of a layer with no values to hash: the largest
    ``settled`` z among the candidates that help by the ``gate`` z or by the
    held-out score test's z (``held``, the event's ``probe_scores``), combined
    with the gate's as the probe's (``core.evidence.probe_evidence``; in a
    round where some candidate helps)."""
    from seqattn_tfrs.core import evidence

    helps, _ = evidence.probe_evidence(
        np.array([n in chosen for n in names]),
        np.array([gate.get(n, 0.0) for n in names]),
        np.array([held.get(n, 0.0) for n in names]),
        spent=False,
    )
    helping = {names[i] for i in np.flatnonzero(helps)}
    threshold = evidence.signal_threshold(len(gate))
    helping |= {n for n in gate if gate[n] >= threshold}
    assert pick == max(helping, key=settled.get), (pick, settled, gate, held)
