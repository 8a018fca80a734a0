"""Training overhead of the gate layer and the selection callback.

Times training steps of one DCN ranking model shape on synthetic Criteo-shaped
data (13 bucketised numeric + 26 categorical fields) in four variants, in one
process, interleaved in short chunks, and reports the median step time of each
(and the mean, which spreads periodic held-out steps over all steps) relative
to the ungated model:

* ``plain``: the same architecture without the gate layer;
* ``gated``: the gate layer in a selection round, logits learning from the
  training batches (no extra pass);
* ``heldout-every-N``: the gate layer with ``selection_data``, one held-out
  logit step every N training steps.

Then whole runs (median of ``--run_repeats``, interleaved), each timed from
model construction to the end of ``fit``: one selection run of the gated model
(8 of the 39 fields, one epoch of warm-up, one per round, one of fine-tune;
logits from training batches, and from held-out batches every step), a plain
``fit`` of the ungated model for the same epochs, and a plain fit on 8 fields
(every fifth). Greedy forward selection by
retraining fits ``N + (N - 1) + ... + (N - k + 1)`` candidate models (284 for
N = 39, k = 8); its cost is estimated from the measured plain fits, between
that many k-field fits and that many N-field fits.

Usage:
  python benchmarks/overhead.py [--batch_size 4096] [--chunks 8] [--steps 20]
      [--num_selected 8] [--run_steps 8]
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Measure the seqattn_tfrs of this checkout, not whichever copy is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_recommenders as tfrs  # noqa: E402
from absl import app, flags  # noqa: E402

import seqattn_tfrs  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 4096, "Training batch size.")
flags.DEFINE_integer("chunks", 8, "Interleaved chunks per variant.")
flags.DEFINE_integer("steps", 20, "Timed steps per chunk.")
flags.DEFINE_integer("vocabulary", 10_000, "Rows of each categorical table.")
flags.DEFINE_integer("dim", 16, "Embedding width.")
flags.DEFINE_list("intervals", ["1", "10"], "Held-out step intervals to time.")
flags.DEFINE_integer("num_selected", 8, "Fields the timed selection run selects.")
flags.DEFINE_integer(
    "already_selected",
    4,
    "Fields marked selected in the timed `gated` variant, so that its steps "
    "include the partial signal's regression on their columns.",
)
flags.DEFINE_integer("run_steps", 8, "Steps per epoch of the timed whole runs.")
flags.DEFINE_integer("run_repeats", 3, "Interleaved repeats of the whole runs.")
flags.DEFINE_string("output", "", "If set, write the results as JSON here.")

NUMERIC, CATEGORICAL = 13, 26


def criteo_like(rows: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    features = {f"i{j}": rng.integers(0, 64, rows) for j in range(NUMERIC)}
    features.update(
        {f"c{j}": rng.integers(0, FLAGS.vocabulary, rows) for j in range(CATEGORICAL)}
    )
    logit = sum(np.sin(features[n] * 0.1 * (k + 1)) for k, n in enumerate(features))
    labels = (rng.random(rows) < 1 / (1 + np.exp(-logit / 3))).astype(np.float32)
    return features, labels


class DCN(tfrs.models.Model):
    def __init__(self, names: list[str], gated: bool) -> None:
        super().__init__()
        tables = {
            n: tf.keras.layers.Embedding(
                64 if n.startswith("i") else FLAGS.vocabulary, FLAGS.dim
            )
            for n in names
        }
        self.names = names
        self.embed = (
            seqattn_tfrs.SequentialAttentionEmbedding(
                tables, num_selected=FLAGS.num_selected
            )
            if gated
            else tables
        )
        self.cross = tfrs.layers.dcn.Cross()
        self.mlp = tf.keras.Sequential(
            [
                tf.keras.layers.Dense(256, "relu"),
                tf.keras.layers.Dense(64, "relu"),
                tf.keras.layers.Dense(1, "sigmoid"),
            ]
        )
        self.task = tfrs.tasks.Ranking(loss=tf.keras.losses.BinaryCrossentropy())

    def call(self, features):
        if isinstance(self.embed, seqattn_tfrs.SequentialAttentionEmbedding):
            embedded = self.embed(features)
        else:
            embedded = {n: self.embed[n](features[n]) for n in self.names}
        x = tf.concat([embedded[n] for n in self.names], axis=1)
        return self.mlp(self.cross(x))

    def compute_loss(self, features, training=False):
        return self.task(labels=features["label"], predictions=self(features))


class StepTimer(tf.keras.callbacks.Callback):
    def __init__(self, forward=None):
        super().__init__()
        self.forward = forward
        self.times: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        if self.forward is not None:  # the callback counts steps from both hooks
            self.forward.on_train_batch_begin(batch, logs)
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.forward is not None:
            self.forward.on_train_batch_end(batch, logs)
        self.times.append(time.perf_counter() - self._start)


def whole_runs(names: list[str], train, heldout) -> dict[str, float]:
    """Seconds of one selection run, plain fits, and a greedy retraining estimate."""
    k, n = FLAGS.num_selected, len(names)
    epochs = 1 + k + 1

    def timed(model_fn, callback=None) -> float:
        tf.keras.backend.clear_session()
        start = time.perf_counter()
        model = model_fn()
        model.compile(tf.keras.optimizers.Adam(1e-3))
        model.fit(
            train,
            steps_per_epoch=FLAGS.run_steps,
            epochs=epochs,
            callbacks=[callback] if callback else [],
            verbose=0,
        )
        return time.perf_counter() - start

    def selection(data):
        return seqattn_tfrs.SequentialAttentionCallback(
            warmup_epochs=1, finetune_epochs=1, selection_data=data, verbose=0
        )

    variants = {
        "plain_fit_s": (lambda: DCN(names, gated=False), lambda: None),
        "selection_train_s": (lambda: DCN(names, gated=True), lambda: selection(None)),
        "selection_heldout_s": (
            lambda: DCN(names, gated=True),
            lambda: selection(heldout),
        ),
        "plain_fit_k_fields_s": (
            lambda: DCN(names[::5][:k], gated=False),
            lambda: None,
        ),
    }
    times = {key: [] for key in variants}
    for _ in range(FLAGS.run_repeats):  # interleaved, median of the repeats
        for key, (model_fn, callback_fn) in variants.items():
            times[key].append(timed(model_fn, callback_fn()))
    runs = {"epochs": epochs, "steps_per_epoch": FLAGS.run_steps}
    runs.update({key: float(np.median(value)) for key, value in times.items()})
    fits = sum(n - j for j in range(k))
    runs["greedy_fits"] = fits
    runs["greedy_low_s"] = fits * runs["plain_fit_k_fields_s"]
    runs["greedy_high_s"] = fits * runs["plain_fit_s"]
    for key, value in runs.items():
        print(
            f"{key:>22}: {value:,.1f}"
            if isinstance(value, float)
            else f"{key:>22}: {value}"
        )
    return runs


def main(argv):
    del argv
    tf.keras.utils.set_random_seed(0)
    features, labels = criteo_like(FLAGS.batch_size * 8, seed=0)
    names = list(features)
    data = dict(features, label=labels)
    train = (
        tf.data.Dataset.from_tensor_slices(data)
        .batch(FLAGS.batch_size, drop_remainder=True)
        .cache()
        .repeat()
    )
    heldout = tf.data.Dataset.from_tensor_slices(data).batch(FLAGS.batch_size).take(2)

    variants = {"plain": (DCN(names, gated=False), None)}
    gated = DCN(names, gated=True)
    variants["gated"] = (gated, None)
    for interval in map(int, FLAGS.intervals):
        model = DCN(names, gated=True)
        driver = seqattn_tfrs.SequentialAttentionCallback(
            warmup_epochs=0,
            finetune_epochs=0,
            settle_fraction=0,
            selection_data=heldout,
            selection_interval=interval,
            verbose=0,
        )
        variants[f"heldout-every-{interval}"] = (model, driver)
    for name, (model, driver) in variants.items():
        model.compile(tf.keras.optimizers.Adam(1e-3))
        model.fit(train, steps_per_epoch=3, epochs=1, verbose=0)  # trace, warm up
        if isinstance(model.embed, seqattn_tfrs.SequentialAttentionEmbedding):
            if driver is None:
                model.embed.gate_mode.assign(1)  # a selection round, fit batches
                chosen = np.zeros(len(names), np.float32)
                chosen[: FLAGS.already_selected] = 1.0
                model.embed.selected_mask.assign(chosen)
                model.embed.num_picked.assign(FLAGS.already_selected)
            else:  # the callback's own hooks put the layer in a round
                driver.set_model(model)
                driver.set_params({"epochs": 100, "steps": 1000, "verbose": 0})
                driver.on_train_begin()
                driver.on_epoch_begin(0)
        variants[name] = (model, StepTimer(driver))

    for _ in range(FLAGS.chunks):
        for model, timer in variants.values():
            model.fit(
                train,
                steps_per_epoch=FLAGS.steps,
                epochs=1,
                verbose=0,
                callbacks=[timer],
            )

    def step_ms(timer, statistic):  # the first two steps of each chunk are dropped
        times = np.array(timer.times).reshape(FLAGS.chunks, FLAGS.steps)[:, 2:]
        return float(statistic(times)) * 1e3

    base = step_ms(variants["plain"][1], np.median)
    base_mean = step_ms(variants["plain"][1], np.mean)
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, TF {tf.__version__}",
        "fields": len(names),
        "batch_size": FLAGS.batch_size,
        "median_step_ms": {},
        "median_ratio_to_plain": {},
        "mean_ratio_to_plain": {},
    }
    for name, (_, timer) in variants.items():
        ms, mean = step_ms(timer, np.median), step_ms(timer, np.mean)
        results["median_step_ms"][name] = round(ms, 2)
        results["median_ratio_to_plain"][name] = round(ms / base, 3)
        results["mean_ratio_to_plain"][name] = round(mean / base_mean, 3)
        print(
            f"{name:>20}: median {ms:8.2f} ms/step x{ms / base:.3f}, "
            f"mean x{mean / base_mean:.3f}"
        )
    results["whole_runs"] = whole_runs(names, train, heldout)
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump(results, f, indent=2)
    summary = ", ".join(
        f"{k} x{v:.3f}"
        for k, v in results["mean_ratio_to_plain"].items()
        if k != "plain"
    )
    shape = f"{len(names)} fields, batch {FLAGS.batch_size}"
    runs = results["whole_runs"]
    run = runs["selection_heldout_s"]
    print(
        f"mean step time vs plain ({shape}): {summary}; selection run "
        f"x{run / runs['plain_fit_s']:.2f} a plain fit, greedy retraining est. "
        f"x{runs['greedy_low_s'] / run:.0f}-{runs['greedy_high_s'] / run:.0f} it"
    )


if __name__ == "__main__":
    app.run(main)
