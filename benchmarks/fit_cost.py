"""Whole-``fit`` cost of a selection run against a plain fit of the same length.

One process, one functional Keras model over ``--fields`` string fields
(``StringLookup`` + ``Embedding`` per field, concatenated, Dense 256-128-1,
binary cross-entropy, Adam). Variants, each timed from the ``fit`` call to its
return (tracing, callback hooks, held-out steps and logging included; model
construction and ``compile`` are timed separately):

* ``plain``: the model without the gate layer, no callback;
* ``gated``: the same model with the gate layer, no callback (the gates stay 1);
* ``select_train``: the gate layer and ``SequentialAttentionCallback``
  (warm-up 1 epoch, one round per epoch, fine-tune 1 epoch), logits learning
  from the training batches;
* ``select_heldout``: the same with held-out ``selection_data``;
* ``select_heldout_every2`` (not run by default): the same with a held-out
  step every second training step (``selection_interval=2``);
* ``plain_built`` (not run by default): ``plain`` with the optimizer's
  variables built before ``fit`` (timed), as the callback builds them before
  the first trace, which spares ``fit`` tracing its first step twice.

Every variant runs ``num_selected + 2`` epochs of ``--steps_per_epoch`` steps.
The variants run in turn, ``--repeats`` times, the order rotated each repeat so
that load on the shared machine affects all alike; the report gives the median
of each and the ratio of medians (and the median of per-repeat ratios) to
``plain``, in wall time and, as a check that is less sensitive to other
processes on a shared machine, in the process's CPU time (all threads).

The first run of every variant (AutoGraph conversion of its code and other
one-time costs of a fresh process) is reported apart, not in the medians.

``--profile`` adds, in a separate pass after the timed repeats (so it does not
disturb them), one instrumented run of each selecting variant: the time spent
in every callback hook and in the callback's parts (``_set_modes``,
``_advance``/``commit_round``, the held-out step's first call, which traces
it, and its later calls, ``gate_values``), the number of traces of
``train_function`` and of the held-out step, and the first training step
(which traces ``train_function``) against the median step.

Usage:
  python benchmarks/fit_cost.py --steps_per_epoch 33 --repeats 5   # ~500 steps
  python benchmarks/fit_cost.py --steps_per_epoch 7 --repeats 7    # ~100 steps
  python benchmarks/fit_cost.py --steps_per_epoch 33 --repeats 1 --profile
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Measure the seqattn_tfrs of this checkout, not whichever copy is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import collections  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import seqattn_tfrs  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("fields", 26, "String fields.")
flags.DEFINE_integer("vocabulary", 1000, "Distinct values per field.")
flags.DEFINE_integer("dim", 16, "Embedding width.")
flags.DEFINE_integer("batch_size", 512, "Training (and held-out) batch size.")
flags.DEFINE_integer("num_selected", 13, "Fields selected: that many rounds.")
flags.DEFINE_integer("steps_per_epoch", 33, "Steps per epoch.")
flags.DEFINE_integer("repeats", 5, "Interleaved repeats of every variant.")
flags.DEFINE_integer("heldout_batches", 4, "Batches of the held-out dataset.")
VARIANTS = (
    "plain",
    "gated",
    "select_train",
    "select_heldout",
    "select_heldout_every2",
    "plain_built",
)
flags.DEFINE_list(
    "variants",
    list(VARIANTS[:4]),
    f"Variants to time, of {list(VARIANTS)}.",
)
flags.register_validator(
    "variants",
    lambda names: bool(names) and set(names) <= set(VARIANTS),
    message=f"--variants must be a non-empty list of {list(VARIANTS)}.",
)
flags.DEFINE_bool(
    "autotune",
    False,
    "Let tf.data autotune the (cached, in-memory) datasets. Off by default: "
    "with it, destroying fit's iterator at the end of fit waits, at random, "
    "for tf.data's autotuning thread, up to 18 s of idle wall time in a "
    "495-step fit (docs/fit_cost.md, session 39).",
)
flags.DEFINE_bool("profile", False, "Add one instrumented run per selecting variant.")
flags.DEFINE_string("output", "", "If set, write the results as JSON here.")


def make_data(rows: int, seed: int):
    """Rows of one problem: ``seed`` draws the rows, the effects are fixed (the
    held-out rows must follow the same labelling as the training rows)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, FLAGS.vocabulary, (FLAGS.fields, rows))
    effects = np.random.default_rng(0).normal(
        0.0, 1.0, (FLAGS.fields, FLAGS.vocabulary)
    )
    strength = np.where(np.arange(FLAGS.fields) < FLAGS.fields // 2, 0.5, 0.0)
    logit = (strength[:, None] * np.take_along_axis(effects, codes, 1)).sum(0)
    labels = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    features = {
        f"f{j}": np.char.add(f"v{j}_", codes[j].astype(str))
        for j in range(FLAGS.fields)
    }
    return features, labels


def training_batches(steps: int) -> tf.data.Dataset:
    """``steps`` batches of ``--batch_size`` training rows (seed 0), cached
    in memory and repeated without end."""
    features, labels = make_data(FLAGS.batch_size * steps, seed=0)
    return (
        tf.data.Dataset.from_tensor_slices((features, labels))
        .batch(FLAGS.batch_size, drop_remainder=True)
        .cache()
        .repeat()
    )


def build_model(gated: bool) -> tf.keras.Model:
    names = [f"f{j}" for j in range(FLAGS.fields)]
    inputs = {n: tf.keras.Input(shape=(), dtype=tf.string, name=n) for n in names}
    vocab = {
        n: [f"v{j}_{i}" for i in range(FLAGS.vocabulary)] for j, n in enumerate(names)
    }
    tables = {
        n: tf.keras.Sequential(
            [
                tf.keras.layers.StringLookup(vocabulary=vocab[n]),
                tf.keras.layers.Embedding(FLAGS.vocabulary + 1, FLAGS.dim),
            ],
            name=f"table_{n}",
        )
        for n in names
    }
    if gated:
        embedded = seqattn_tfrs.SequentialAttentionEmbedding(
            tables, num_selected=FLAGS.num_selected, name="gate"
        )(inputs)
    else:
        embedded = {n: tables[n](inputs[n]) for n in names}
    x = tf.keras.layers.Concatenate()([embedded[n] for n in names])
    x = tf.keras.layers.Dense(256, activation="relu")(x)
    x = tf.keras.layers.Dense(128, activation="relu")(x)
    out = tf.keras.layers.Dense(1, activation="sigmoid")(x)
    return tf.keras.Model(inputs, out)


class StepTimes(tf.keras.callbacks.Callback):
    """Wall time of every training step (profile runs only)."""

    def __init__(self):
        super().__init__()
        self._supports_tf_logs = True
        self.times: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def instrument(callback, layer_getter):
    """Wraps the callback's hooks and parts with timers; returns the totals."""
    totals: dict[str, list[float]] = collections.defaultdict(list)

    def timed(obj, name, key=None):
        original = getattr(obj, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                totals[key or name].append(time.perf_counter() - start)

        setattr(obj, name, wrapper)

    for hook in (
        "on_train_begin",
        "on_epoch_begin",
        "on_train_batch_begin",
        "on_train_batch_end",
        "on_epoch_end",
        "on_train_end",
    ):
        timed(callback, hook)
    for part in ("_set_modes", "_advance", "_make_heldout_step", "_run_probe"):
        if hasattr(callback, part):  # the probe's pass: since session 14
            timed(callback, part, f"  {part}")

    original_make = callback._make_heldout_step

    def make_timed_step():
        step = original_make()
        calls = {"n": 0}

        def run(iterator):
            start = time.perf_counter()
            try:
                return step(iterator)
            finally:
                key = "  heldout_step[first]" if calls["n"] == 0 else "  heldout_step"
                calls["n"] += 1
                totals[key].append(time.perf_counter() - start)

        run.tf_function = step
        return run

    callback._make_heldout_step = make_timed_step

    original_begin = callback.on_train_begin

    def begin(*args, **kwargs):
        result = original_begin(*args, **kwargs)
        for layer in layer_getter():
            for part in ("commit_round", "gate_values"):
                timed(layer, part, f"    layer.{part}")
        return result

    callback.on_train_begin = begin
    return totals


def main(argv):
    del argv
    tf.keras.utils.set_random_seed(0)
    epochs = FLAGS.num_selected + 2
    train = training_batches(FLAGS.steps_per_epoch)
    hf, hl = make_data(FLAGS.batch_size * FLAGS.heldout_batches, seed=1)
    heldout = (
        tf.data.Dataset.from_tensor_slices((hf, hl)).batch(FLAGS.batch_size).cache()
    )
    if not FLAGS.autotune:
        options = tf.data.Options()
        options.autotune.enabled = False
        train, heldout = train.with_options(options), heldout.with_options(options)

    def run(variant: str, profile: bool = False) -> dict:
        tf.keras.backend.clear_session()
        tf.keras.utils.set_random_seed(0)
        start = time.perf_counter()
        model = build_model(gated=not variant.startswith("plain"))
        model.compile(tf.keras.optimizers.Adam(1e-3), "binary_crossentropy")
        built = time.perf_counter() - start
        callbacks = []
        result: dict = {}
        if variant.startswith("select"):
            callback = seqattn_tfrs.SequentialAttentionCallback(
                warmup_epochs=1,
                finetune_epochs=1,
                selection_data=heldout
                if variant.startswith("select_heldout")
                else None,
                # "select_heldout_every2": a held-out step every second step.
                selection_interval=2 if variant.endswith("_every2") else 1,
                verbose=0,
            )
            callbacks.append(callback)
            if profile:
                totals = instrument(callback, lambda: callback._layers)
        if profile:
            steps = StepTimes()
            callbacks.append(steps)
        start, cpu = time.perf_counter(), time.process_time()
        if variant == "plain_built":  # what the callback does before the first trace
            model.optimizer.build(model.trainable_variables)
        model.fit(
            train,
            steps_per_epoch=FLAGS.steps_per_epoch,
            epochs=epochs,
            callbacks=callbacks,
            verbose=0,
        )
        result["fit_s"] = time.perf_counter() - start
        result["cpu_s"] = time.process_time() - cpu
        result["build_s"] = built
        if profile:
            times = np.array(steps.times)
            result["first_step_ms"] = times[0] * 1e3
            result["median_step_ms"] = float(np.median(times[1:])) * 1e3
            result["sum_steps_s"] = float(times.sum())
            result["train_function_traces"] = (
                model.train_function.experimental_get_tracing_count()
            )
            if variant.startswith("select"):
                step = callback._heldout_step
                if step is not None:
                    result["heldout_step_traces"] = (
                        step.tf_function.experimental_get_tracing_count()
                    )
                result["parts_ms"] = {
                    k: {"calls": len(v), "total_ms": round(sum(v) * 1e3, 1)}
                    for k, v in totals.items()
                }
                result["selected"] = list(callback._layers[0].selected_features)
        return result

    variants = list(FLAGS.variants)
    times = {v: [] for v in variants}
    cpu = {v: [] for v in variants}
    builds = {v: [] for v in variants}
    # The first run of each variant in the process pays one-time costs (AutoGraph
    # converting the code, TF's own start-up): recorded, not in the medians.
    first = {v: run(v)["fit_s"] for v in variants}
    for repeat in range(FLAGS.repeats):
        shift = repeat % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            result = run(variant)
            times[variant].append(result["fit_s"])
            cpu[variant].append(result["cpu_s"])
            builds[variant].append(result["build_s"])
            print(
                f"repeat {repeat} {variant:>15}: fit {result['fit_s']:.2f} s, "
                f"CPU {result['cpu_s']:.2f} s",
                flush=True,
            )

    total_steps = epochs * FLAGS.steps_per_epoch
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, TF {tf.__version__}",
        "fields": FLAGS.fields,
        "batch_size": FLAGS.batch_size,
        "epochs": epochs,
        "steps_per_epoch": FLAGS.steps_per_epoch,
        "total_steps": total_steps,
        "repeats": FLAGS.repeats,
        "autotune": FLAGS.autotune,
        "fit_s": times,
        "cpu_s": cpu,
        "median_cpu_s": {v: float(np.median(t)) for v, t in cpu.items()},
        "median_fit_s": {v: float(np.median(t)) for v, t in times.items()},
        "median_build_s": {v: float(np.median(t)) for v, t in builds.items()},
        "first_in_process_fit_s": first,
    }
    if "plain" in times:
        base = np.array(times["plain"])
        results["ratio_of_medians"] = {
            v: float(np.median(t) / np.median(base)) for v, t in times.items()
        }
        results["median_of_ratios"] = {
            v: float(np.median(np.array(t) / base)) for v, t in times.items()
        }
        base_cpu = np.median(cpu["plain"])
        results["cpu_ratio_of_medians"] = {
            v: float(np.median(t) / base_cpu) for v, t in cpu.items()
        }
        if "gated" in times:
            gated = np.array(times["gated"])
            results["ratio_to_gated"] = {
                v: float(np.median(t) / np.median(gated)) for v, t in times.items()
            }
        print(f"{total_steps} steps ({epochs} epochs x {FLAGS.steps_per_epoch}):")
        for v in variants:
            print(
                f"  {v:>15}: median {np.median(times[v]):6.2f} s, "
                f"x{results['ratio_of_medians'][v]:.3f} plain (ratio of medians), "
                f"x{results['median_of_ratios'][v]:.3f} (median of ratios), "
                f"+{np.median(times[v]) - np.median(base):.2f} s; CPU time "
                f"x{results['cpu_ratio_of_medians'][v]:.3f}"
            )
    if FLAGS.profile:
        results["profile"] = {}
        for variant in variants:
            result = run(variant, profile=True)
            results["profile"][variant] = result
            print(f"profile {variant}:")
            print(json.dumps(result, indent=2))
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    app.run(main)
