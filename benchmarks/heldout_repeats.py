"""Held-out rows revisited within a round: the calibration of the gate's z.

A round's held-out logit steps cycle over ``selection_data``; when the round
takes more held-out rows than ``selection_data`` holds, rows are seen again
(at slightly different weights). This measures what that does to the
held-out gate statistic (``layer.heldout_evidence()``, a z that the
candidates' "helps" threshold reads) of pure-noise candidates, whose z should
be about standard normal.

Problem: 10 fields of 20 values each; the click's logit is the sum of two
main effects (fields ``f0``, ``f1``; effects N(0, 1.2) per value), the other
eight fields are noise. 20,000 training rows, batch 256 (79 steps an epoch),
the planted CTR model (``planted.ctr_model``), Adam 0.01, ``num_selected=3``,
the callback's defaults (1-epoch rounds, ``settle_fraction`` 0.8: about 16
held-out steps of 256 rows a round, 4,096 rows), ``finetune_epochs=0``;
``selection_data`` is ``--heldout_rows`` rows drawn from the same generator,
batches of 256. A recording callback placed before the selection callback
reads every candidate's z at the end of each round, before its commit.

Usage:
  python benchmarks/heldout_repeats.py --heldout_rows 512,1024,2048,8192 \\
      --seeds 0,1,2,3,4,5 --output docs/generated_quality/heldout_repeats.jsonl
  python benchmarks/heldout_repeats.py \\
      --summary docs/generated_quality/heldout_repeats.jsonl
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Measure the seqattn_tfrs of this checkout, not whichever copy is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import collections  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("heldout_rows", ["1024", "8192"], "Rows of selection_data.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Problem and training seeds.")
flags.DEFINE_string("output", None, "JSON lines file to append runs to.")
flags.DEFINE_string("summary", None, "Summarise this JSON lines file and exit.")

TRAIN_ROWS = 20_000
BATCH = 256
FIELDS = 10
SIGNAL = ("f0", "f1")


def problem(seed: int, rows: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The first ``rows`` rows of seed ``seed``'s problem (see the module)."""
    rng = np.random.default_rng(seed)
    effects = [rng.normal(0, 1.2, 20) for _ in SIGNAL]
    columns = {f"f{i}": rng.integers(0, 20, rows) for i in range(FIELDS)}
    logit = sum(e[columns[name]] for e, name in zip(effects, SIGNAL))
    labels = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("float32")
    return columns, labels


def run(seed: int, heldout_rows: int) -> dict:
    import planted
    import tensorflow as tf

    import seqattn_tfrs

    columns, labels = problem(seed, TRAIN_ROWS + heldout_rows)
    train = {k: v[:TRAIN_ROWS] for k, v in columns.items()}
    held = {k: v[TRAIN_ROWS:] for k, v in columns.items()}
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)
    model, layer = planted.ctr_model(train, num_selected=3)
    model.compile(tf.keras.optimizers.Adam(0.01), "binary_crossentropy")
    rounds: list[dict[str, float]] = []

    class Recorder(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            evidence = layer.heldout_evidence()
            if any(evidence.values()):  # a round that learned on held-out rows
                picked = set(layer.selected_features)
                rounds.append({n: z for n, z in evidence.items() if n not in picked})

    selection = seqattn_tfrs.SequentialAttentionCallback(
        finetune_epochs=0,
        selection_data=tf.data.Dataset.from_tensor_slices((held, labels[TRAIN_ROWS:]))
        .batch(BATCH)
        .cache(),
        verbose=0,
    )
    dataset = tf.data.Dataset.from_tensor_slices((train, labels[:TRAIN_ROWS]))
    model.fit(
        dataset.shuffle(TRAIN_ROWS, seed=seed).batch(BATCH),
        epochs=selection.schedule_length(layer.num_rounds),
        callbacks=[Recorder(), selection],
        verbose=0,
    )
    probes = [e["probe_scores"] for e in selection.events if "probe_scores" in e]
    return {
        "seed": seed,
        "heldout_rows": heldout_rows,
        "order": list(layer.selected_features),
        "gate_z": rounds,
        "probe_z": probes,
    }


def summarise(path: str) -> None:
    groups = collections.defaultdict(list)
    with open(path) as lines:
        for line in lines:
            row = json.loads(line)
            groups[row["heldout_rows"]].append(row)
    print(
        "| held-out rows | runs | noise gate z: std, share |z| > 3, max |z| "
        "| noise probe z: std | runs with a noise pick | signal fields missed |"
    )
    print("|---|---|---|---|---|---|")
    for rows in sorted(groups):
        runs = groups[rows]
        gate, probe = (
            np.array(
                [
                    z
                    for r in runs
                    for scores in r[key]
                    for n, z in scores.items()
                    if n not in SIGNAL and z == z  # NaN: no probe z
                ]
            )
            for key in ("gate_z", "probe_z")
        )
        noisy = sum(any(p not in SIGNAL for p in r["order"][:2]) for r in runs)
        missed = sum(s not in r["order"] for r in runs for s in SIGNAL)
        probe_text = f"{probe.std():.2f}" if len(probe) else "-"
        print(
            f"| {rows} | {len(runs)} | {gate.std():.2f}, "
            f"{(np.abs(gate) > 3).mean():.2f}, {np.abs(gate).max():.1f} "
            f"| {probe_text} | {noisy} | {missed} |"
        )


def main(argv) -> None:
    del argv
    if FLAGS.summary:
        summarise(FLAGS.summary)
        return
    for rows in map(int, FLAGS.heldout_rows):
        for seed in map(int, FLAGS.seeds):
            result = run(seed, rows)
            print(json.dumps(result), flush=True)
            if FLAGS.output:
                with open(FLAGS.output, "a") as f:
                    f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    app.run(main)
