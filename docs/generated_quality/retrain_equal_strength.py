"""Retrains field sets of fit_cost.py's equal-strength problem (generated_quality.md).

``benchmarks/fit_cost.py``'s data and architecture on a subset of fields: the
13 signal fields, the held-out selection of seed 0 (9 signal + 4 noise) and
its 9 signal fields alone, and four selections of session 15
(generated_quality.md, "Session 15"). Adam 1e-3, batch 512, early stopping on the
held-out rows (patience 1, best epoch restored), test AUC on 20,000 new rows,
seeds 0 and 1. Usage, from the repository root:

  python docs/generated_quality/retrain_equal_strength.py
"""

import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT + "/benchmarks", ROOT]
import fit_cost  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

flags.FLAGS(["x"])
BATCH = 512
SETS = {
    "13 signal": [f"f{j}" for j in range(13)],
    "held-out selection, seed 0": (
        [
            "f10",
            "f11",
            "f3",
            "f8",
            "f6",
            "f9",
            "f1",
            "f13",
            "f12",
            "f4",
            "f24",
            "f23",
            "f17",
        ]
    ),
    "its 9 signal fields": ["f10", "f11", "f3", "f8", "f6", "f9", "f1", "f12", "f4"],
    # residual_probe.py equal_strength --policy none, session 15: the
    # session-14 probe (4,096 buckets, probe z alone helps), then the kept
    # rule (gate and probe z combined); run seeds 0 and 1.
    "session-14 probe, run 0": "f10 f2 f0 f5 f7 f6 f4 f11 f3 f1 f12 f22 f24",
    "session-14 probe, run 1": "f8 f1 f7 f4 f11 f6 f2 f5 f14 f23 f18 f21 f19",
    "combined probe, run 0": "f10 f2 f0 f5 f7 f6 f8 f4 f11 f12 f9 f25 f1",
    "combined probe, run 1": "f8 f1 f7 f4 f11 f6 f2 f12 f9 f5 f14 f3 f24",
}
SETS = {name: f.split() if isinstance(f, str) else f for name, f in SETS.items()}
SPLITS = {
    "train": fit_cost.make_data(BATCH * 33, 0),
    "heldout": fit_cost.make_data(BATCH * 4, 1),
    "test": fit_cost.make_data(20000, 2),
}


def model_on(fields):
    inputs = {n: tf.keras.Input(shape=(), dtype=tf.string, name=n) for n in fields}
    embedded = [
        tf.keras.Sequential(
            [
                tf.keras.layers.StringLookup(
                    vocabulary=[f"v{n[1:]}_{i}" for i in range(1000)]
                ),
                tf.keras.layers.Embedding(1001, 16),
            ]
        )(inputs[n])
        for n in fields
    ]
    x = tf.keras.layers.Concatenate()(embedded)
    x = tf.keras.layers.Dense(256, activation="relu")(x)
    x = tf.keras.layers.Dense(128, activation="relu")(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1, activation="sigmoid")(x))
    model.compile(
        tf.keras.optimizers.Adam(1e-3),
        "binary_crossentropy",
        metrics=[tf.keras.metrics.AUC(name="auc")],
    )
    return model


def dataset(split, fields, shuffle=False):
    features, labels = SPLITS[split]
    data = tf.data.Dataset.from_tensor_slices(
        ({n: features[n] for n in fields}, labels)
    )
    return data.shuffle(20000, seed=0).batch(BATCH) if shuffle else data.batch(4096)


for seed in (0, 1):
    for name, fields in SETS.items():
        tf.keras.backend.clear_session()
        tf.keras.utils.set_random_seed(seed)
        model = model_on(fields)
        stop = tf.keras.callbacks.EarlyStopping(
            "val_auc", mode="max", patience=1, restore_best_weights=True
        )
        model.fit(
            dataset("train", fields, shuffle=True),
            validation_data=dataset("heldout", fields),
            epochs=10,
            callbacks=[stop],
            verbose=0,
        )
        auc = model.evaluate(dataset("test", fields), verbose=0, return_dict=True)
        print(f"seed {seed} {name:28s} test AUC {auc['auc']:.4f}")
