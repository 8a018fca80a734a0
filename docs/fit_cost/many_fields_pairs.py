"""The pair test's cost with many fields: one tf-keras selection run, timed.

A planted CTR problem of ``--fields`` fields (12 main effects of 20-200
values, the rest noise of 10-1,000 values), 30,000 training and 16,384
held-out rows, ``planted.ctr_model``, Adam 0.01, batch 512, one round an
epoch, k = 16 (four picks past the signal, where rounds are spent and the
held-out pair test runs). Prints one JSON line: the fit's wall time, the
time in the pair test's numpy (``core.pairs.pair_z``), the pairs tested,
the picks. ``--max_pair_candidates`` overrides
``core.evidence.MAX_PAIR_CANDIDATES`` (a large value: every pair).

  TF_USE_LEGACY_KERAS=1 python docs/fit_cost/many_fields_pairs.py --fields 100
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, "benchmarks"), ROOT]

import numpy as np  # noqa: E402
import planted  # noqa: E402
import tensorflow as tf  # noqa: E402

import seqattn_tfrs  # noqa: E402
from seqattn_tfrs.core import evidence, pairs  # noqa: E402

SIGNAL = 12


def problem(fields: int, rows: int, seed: int) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(seed)
    columns, logit = {}, np.zeros(rows)
    for f in range(fields):
        vocab = (
            int(rng.integers(20, 201)) if f < SIGNAL else int(rng.integers(10, 1001))
        )
        values = rng.integers(0, vocab, rows)
        if f < SIGNAL:
            logit += rng.normal(0, 0.8, vocab)[values]
        columns[f"{'s' if f < SIGNAL else 'n'}{f:03d}"] = values
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return columns, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_pair_candidates", type=int, default=None)
    args = parser.parse_args()
    if args.max_pair_candidates is not None:
        evidence.MAX_PAIR_CANDIDATES = args.max_pair_candidates
    spent = {"seconds": 0.0, "pairs": 0, "calls": 0}
    original = pairs.pair_z

    def timed_pair_z(keys, projected, tested=None):
        start = time.perf_counter()
        z = original(keys, projected, tested)
        spent["seconds"] += time.perf_counter() - start
        spent["pairs"] += int(np.isfinite(z).sum()) // 2
        spent["calls"] += 1
        return z

    pairs.pair_z = timed_pair_z
    train_rows, heldout_rows = 30_000, 16_384
    columns, y = problem(args.fields, train_rows + heldout_rows, args.seed)
    train = {k: v[:train_rows] for k, v in columns.items()}
    heldout = {k: v[train_rows:] for k, v in columns.items()}
    tf.keras.utils.set_random_seed(args.seed)
    model, layer = planted.ctr_model(columns, num_selected=SIGNAL + 4)
    model.compile(tf.keras.optimizers.Adam(0.01), "binary_crossentropy")
    callback = seqattn_tfrs.SequentialAttentionCallback(
        warmup_epochs=1,
        epochs_per_selection=1,
        finetune_epochs=1,
        selection_data=tf.data.Dataset.from_tensor_slices(
            (heldout, y[train_rows:])
        ).batch(2048),
        verbose=0,
    )
    epochs = callback.schedule_length(layer.num_rounds)
    start = time.perf_counter()
    model.fit(
        train,
        y[:train_rows],
        batch_size=512,
        epochs=epochs,
        verbose=0,
        callbacks=[callback],
    )
    wall = time.perf_counter() - start
    picks = list(layer.selected_features)
    print(
        json.dumps(
            {
                "fields": args.fields,
                "seed": args.seed,
                "max_pair_candidates": evidence.MAX_PAIR_CANDIDATES,
                "fit_seconds": round(wall, 1),
                "pair_z_seconds": round(spent["seconds"], 1),
                "pair_tests": spent["calls"],
                "pairs_tested": spent["pairs"],
                "signal_picks": sum(p.startswith("s") for p in picks),
                "picks": picks,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
