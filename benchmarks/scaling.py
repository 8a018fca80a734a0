"""How the wall time of a selection run grows with fields and with vocabulary.

The same DCN ranking model (``seqattn_tfrs.movielens.models.DCNRankingModel``, 8-wide
embeddings, Adam, batch 1024) selects 4 fields on synthetic id data: one epoch
of warm-up, one per round, no fine-tune (5 epochs of ``--steps`` steps), logits
from training batches. Two sweeps:

* fields: F fields of 1,000 values each, F in ``--fields`` (10, 40, 160);
* vocabulary: 16 fields of 1,000 values except one of V values, V in
  ``--vocabularies`` (10^3 to 10^6).

Each point also times a plain ``fit`` of the ungated model for the same steps,
so the gate's own share is visible; the two runs alternate, and each point
reports the median of ``--repeats`` runs: the whole run (building and tracing
included) and the time per step after the first epoch (steady state); the
growth exponents are fitted to the steady per-step times.

Usage:
  python benchmarks/scaling.py [--fields 10,40,160] [--vocabularies 1000,...]
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Measure the seqattn_tfrs of this checkout, not whichever copy is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import seqattn_tfrs  # noqa: E402
from seqattn_tfrs.movielens.models import LABEL_KEY, DCNRankingModel  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("fields", ["10", "40", "160"], "Field counts to sweep.")
flags.DEFINE_list(
    "vocabularies", ["1000", "10000", "100000", "1000000"], "Vocabularies to sweep."
)
flags.DEFINE_integer("steps", 20, "Steps per epoch.")
flags.DEFINE_integer("batch_size", 1024, "Batch size.")
flags.DEFINE_integer("repeats", 1, "Runs per point (median).")
flags.DEFINE_string("output", "", "If set, write the results as JSON here.")

SELECTED = 4


def dataset(sizes: dict[str, int]) -> tf.data.Dataset:
    rows = FLAGS.batch_size * FLAGS.steps
    rng = np.random.default_rng(0)
    columns = {name: rng.integers(0, size, rows) for name, size in sizes.items()}
    first = next(iter(columns.values()))
    columns[LABEL_KEY] = np.where(first % 2 == 0, 5.0, 1.0).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices(columns).batch(FLAGS.batch_size).cache()


class Clock(tf.keras.callbacks.Callback):
    """Seconds from the start of the second epoch to the end of training."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            self.start = time.perf_counter()

    def on_train_end(self, logs=None):
        self.seconds = time.perf_counter() - self.start


def timed_run(
    sizes: dict[str, int], data: tf.data.Dataset, gated: bool
) -> tuple[float, float]:
    """Seconds of the whole run, and of its epochs after the first (traced)."""
    tf.keras.backend.clear_session()
    start = time.perf_counter()
    model = DCNRankingModel(
        {name: tf.keras.layers.Embedding(size, 8) for name, size in sizes.items()},
        use_gate=gated,
        num_selected=SELECTED,
    )
    model.compile(tf.keras.optimizers.Adam(1e-3))
    callback = seqattn_tfrs.SequentialAttentionCallback(
        warmup_epochs=1, finetune_epochs=0, verbose=0
    )
    epochs = callback.schedule_length(SELECTED)
    clock = Clock()
    model.fit(
        data,
        epochs=epochs,
        callbacks=[callback, clock] if gated else [clock],
        verbose=0,
    )
    return time.perf_counter() - start, clock.seconds


def point(sizes: dict[str, int]) -> dict[str, float]:
    data = dataset(sizes)
    times = {
        key: []
        for key in ("plain_s", "plain_steady_s", "selection_s", "selection_steady_s")
    }
    for _ in range(FLAGS.repeats):
        for kind, gated in (("plain", False), ("selection", True)):
            total, steady = timed_run(sizes, data, gated)
            times[f"{kind}_s"].append(total)
            times[f"{kind}_steady_s"].append(steady)
    result = {key: float(np.median(value)) for key, value in times.items()}
    steps = (SELECTED) * FLAGS.steps  # the epochs after the first
    result["selection_step_ms"] = result["selection_steady_s"] / steps * 1e3
    result["plain_step_ms"] = result["plain_steady_s"] / steps * 1e3
    result["ratio"] = result["selection_steady_s"] / result["plain_steady_s"]
    return result


def row(r: dict[str, float]) -> str:
    return (
        f"{r['selection_s']:.1f} | {r['plain_s']:.1f} | {r['selection_step_ms']:.1f} "
        f"| {r['plain_step_ms']:.1f} | x{r['ratio']:.2f} |"
    )


def growth(xs: list[int], ys: list[float]) -> float:
    """The exponent b of a least-squares fit y ~ a * x**b (log-log slope)."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def main(argv):
    del argv
    results = {"fields": {}, "vocabulary": {}}
    print(
        "| sweep | value | selection run (s) | plain fit (s) | selection ms/step "
        "| plain ms/step | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for count in map(int, FLAGS.fields):
        r = point({f"f{i}": 1000 for i in range(count)})
        results["fields"][count] = r
        print(f"| fields | {count} | {row(r)}", flush=True)
    for vocabulary in map(int, FLAGS.vocabularies):
        sizes = {f"f{i}": 1000 for i in range(16)}
        sizes["f0"] = vocabulary
        r = point(sizes)
        results["vocabulary"][vocabulary] = r
        print(f"| vocabulary | {vocabulary:,} | {row(r)}", flush=True)
    slopes = {
        sweep: growth(
            list(results[sweep]),
            [r["selection_step_ms"] for r in results[sweep].values()],
        )
        for sweep in results
        if len(results[sweep]) > 1
    }
    results["log_log_slope"] = slopes
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump(results, f, indent=2)

    def slope(sweep: str) -> str:
        return f"{slopes[sweep]:.2f}" if sweep in slopes else "? (one point)"

    print(
        "scaling: selection step time ~ fields^{}, ~ vocabulary^{}; "
        "selection/plain step x{:.2f}-x{:.2f}".format(
            slope("fields"),
            slope("vocabulary"),
            min(
                r["ratio"]
                for s in ("fields", "vocabulary")
                for r in results[s].values()
            ),
            max(
                r["ratio"]
                for s in ("fields", "vocabulary")
                for r in results[s].values()
            ),
        )
    )


if __name__ == "__main__":
    app.run(main)
