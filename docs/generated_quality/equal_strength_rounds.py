"""Per-round evidence on fit_cost.py's equal-strength problem (generated_quality.md).

``benchmarks/fit_cost.py``'s data (13 signal and 13 noise string fields of
1,000 values, 16,896 training rows) and model, selecting 13 fields with
held-out ``selection_data`` (4 batches of 512 rows), warm-up 1 epoch, 13
rounds of 1 epoch, fine-tune 1, Adam 1e-3; the training rows are shuffled
with the seed. At every commit it prints, sorted, the held-out z-statistic
(``heldout_scores``) of the remaining signal and noise candidates, and with
``--oracle`` a statistic computed from the data instead of the gate: for each
candidate, the per-value mean of the current model's training residuals
(shrunk by 5 rows) as a new covariate, and its score test on the held-out
rows. The oracle asks whether the data still hold evidence for a candidate;
the gate's statistic, whether the candidate's current embedding carries it.

Usage, from the repository root (about 30 s a run):

  python docs/generated_quality/equal_strength_rounds.py --seed 0 --oracle
  python docs/generated_quality/equal_strength_rounds.py --settle_fraction 0.5
  python docs/generated_quality/equal_strength_rounds.py --attention_signal score
"""

import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT + "/benchmarks", ROOT]
import argparse  # noqa: E402

import fit_cost  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

import seqattn_tfrs  # noqa: E402
from seqattn_tfrs import selection_state  # noqa: E402
from seqattn_tfrs.core import selection  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--settle_fraction", type=float, default=0.8)
parser.add_argument("--attention_signal", default="partial")
parser.add_argument("--oracle", action="store_true")
args = parser.parse_args()
flags.FLAGS(["x"])
BATCH, SIGNAL_FIELDS, VOCABULARY = 512, 13, 1000
features, labels = fit_cost.make_data(BATCH * 33, 0)
heldout_features, heldout_labels = fit_cost.make_data(BATCH * 4, 1)


def codes(column):
    return np.char.partition(column.astype(str), "_")[:, 2].astype(int)


def oracle_z(model, names, candidates):
    """Score test of each candidate's cross-fitted residual encoding."""
    fitted = model.predict(features, batch_size=4096, verbose=0)[:, 0]
    held = model.predict(heldout_features, batch_size=4096, verbose=0)[:, 0]
    residual, held_residual = labels - fitted, heldout_labels - held
    result = {}
    for i in candidates:
        values = codes(features[names[i]])
        sums = np.bincount(values, residual, VOCABULARY)
        encoding = sums / (np.bincount(values, None, VOCABULARY) + 5.0)
        x = encoding[codes(heldout_features[names[i]])]
        information = (held * (1 - held) * x * x).sum()
        result[i] = (held_residual * x).sum() / np.sqrt(information)
    return result


def split(names, scores, candidates):
    signal = [scores[i] for i in candidates if int(names[i][1:]) < SIGNAL_FIELDS]
    noise = [scores[i] for i in candidates if int(names[i][1:]) >= SIGNAL_FIELDS]
    return f"signal {_sorted(signal)} noise {_sorted(noise)}"


def _sorted(values):
    return [round(float(x), 1) for x in sorted(values, reverse=True)]


commit = selection.commit_round


def printing_commit(spec, record, logits, gates, **kwargs):
    new, picks = commit(spec, record, logits, gates, **kwargs)
    names = spec.feature_names
    candidates = np.flatnonzero(~np.asarray(record.selected, bool))
    print(f"round {record.rounds_done + 1}: picks {[names[p] for p in picks]}")
    scores = kwargs.get("heldout_scores")
    if scores is not None and np.any(scores):
        print("  gate z  ", split(names, scores, candidates))
    if args.oracle:
        oracle = oracle_z(MODEL, names, candidates)
        print("  oracle z", split(names, oracle, candidates))
    return new, picks


selection_state.selection.commit_round = printing_commit

tf.keras.utils.set_random_seed(args.seed)
names = [f"f{j}" for j in range(26)]
inputs = {n: tf.keras.Input(shape=(), dtype=tf.string, name=n) for n in names}
tables = {
    n: tf.keras.Sequential(
        [
            tf.keras.layers.StringLookup(
                vocabulary=[f"v{j}_{i}" for i in range(VOCABULARY)]
            ),
            tf.keras.layers.Embedding(VOCABULARY + 1, 16),
        ]
    )
    for j, n in enumerate(names)
}
gate = seqattn_tfrs.SequentialAttentionEmbedding(
    tables, num_selected=13, attention_signal=args.attention_signal, name="gate"
)
embedded = gate(inputs)
x = tf.keras.layers.Concatenate()([embedded[n] for n in names])
x = tf.keras.layers.Dense(256, activation="relu")(x)
x = tf.keras.layers.Dense(128, activation="relu")(x)
MODEL = tf.keras.Model(inputs, tf.keras.layers.Dense(1, activation="sigmoid")(x))
MODEL.compile(tf.keras.optimizers.Adam(1e-3), "binary_crossentropy")
train = (
    tf.data.Dataset.from_tensor_slices((features, labels))
    .shuffle(20000, seed=args.seed)
    .batch(BATCH, drop_remainder=True)
    .cache()
    .repeat()
)
heldout = tf.data.Dataset.from_tensor_slices((heldout_features, heldout_labels)).batch(
    BATCH
)
callback = seqattn_tfrs.SequentialAttentionCallback(
    warmup_epochs=1,
    finetune_epochs=1,
    settle_fraction=args.settle_fraction,
    selection_data=heldout,
    verbose=0,
)
MODEL.fit(train, steps_per_epoch=33, epochs=15, callbacks=[callback], verbose=0)
picked = list(gate.selected_features)
noise = [n for n in picked if int(n[1:]) >= SIGNAL_FIELDS]
print(f"selected {picked}: {len(noise)} noise fields {noise}")
