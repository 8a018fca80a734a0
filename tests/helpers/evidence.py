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
