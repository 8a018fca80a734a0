"""The held-out probe's z for a field without signal, with and without the
held-out projections centred (docs/generated_quality.md, "Session 19").

A field of ``V`` equally frequent values, whose training-side sums ``S[b]``
are independent of the held-out rows (no signal), and held-out projected
gradients ``p`` with mean ``mu`` (in units of their spread; the MovieLens
runs' held-out means were 0.03 of a spread at the median, 0.12 at most). The
z is ``sum(a) / sqrt(sum(a^2))`` with ``a = p * S[b]`` (as before session 19)
or ``a = (p - mean(p)) * S[b]`` (centred, as the training side). It prints,
over 2,000 draws of 10,000 held-out rows, the z's spread (1 for a valid test)
and how often it clears 2.95 (the threshold of about 30 tests; 0.0016 for a
valid one-sided test).

Usage: python docs/generated_quality/probe_null_simulation.py  (about 20 s)
"""

import numpy as np

ROWS, DRAWS, THRESHOLD = 10_000, 2_000, 2.95


def main() -> None:
    rng = np.random.default_rng(0)
    for mu in (0.03, 0.1):
        for values in (2, 7, 20, 100, 5000):
            raw, centred = [], []
            for _ in range(DRAWS):
                sums = rng.normal(size=values)
                bucket = rng.integers(0, values, ROWS)
                p = rng.normal(mu, 1.0, ROWS)
                a = p * sums[bucket]
                raw.append(a.sum() / np.sqrt((a * a).sum()))
                c = (p - p.mean()) * sums[bucket]
                centred.append(c.sum() / np.sqrt((c * c).sum()))
            raw, centred = np.array(raw), np.array(centred)
            print(
                f"mean {mu:4.2f}, {values:5d} values: spread of z {raw.std():5.2f} "
                f"raw, {centred.std():4.2f} centred; P(z > {THRESHOLD}) "
                f"{np.mean(raw > THRESHOLD):.3f} raw, "
                f"{np.mean(centred > THRESHOLD):.3f} centred"
            )


if __name__ == "__main__":
    main()
