"""Test AUC against serving bytes: selection by count, by bytes, by width.

Trains one small ranking model (per-field embeddings, concatenated, two ReLU
layers) per variant on each data set, prunes it, and records its test AUC
against the bytes of the embedding tables it serves:

* ``all``: every field at full width (no selection);
* ``uniform-<d>``: every field at width ``d`` (the naive way to save bytes);

* ``count-<k>``: Sequential Attention keeps ``k`` fields;
* ``budget-<f>-<rule>``: it keeps the fields whose tables fit ``f`` x the
  all-fields bytes, ranking the affordable fields by ``rule``;
* ``width-<f>``: it keeps blocks of columns, ``f`` x all columns in all;
* ``combined-<f>-<rule>``: it keeps blocks of columns within ``f`` x all
  bytes (fields and widths chosen jointly, in one selection);
* ``after-<f>``: fields first, then widths, to compare with ``combined``:
  one fit selects fields under ``dim / block_size`` x the budget (the most
  that one block per kept table can still bring under it), prunes, and a
  second fit selects blocks of the kept, trained tables within ``f`` x all
  bytes (both by the default rule, attention per byte).

Models without selection train ``--plain_epochs`` epochs, the others warm-up,
rounds and fine-tune; every model is scored at its epoch of best validation
AUC among those run with its final set of fields and columns (memorising
models overfit within a few epochs: a fixed epoch count would favour the
smaller models).

Data sets: MovieLens 100K (the main job's fields, noise fields included, via
``job.prepare_data``; the real files, cached) and a synthetic Criteo-shaped set
(13 bucketised numeric + 26 categorical fields of 4 to ``--criteo_max_vocab``
values; the label comes from a few numeric and small fields, one large id
field, and a 40-value coarse version of that id that carries most of its
signal, so small tables can stand in for a large one).

Writes a JSON of all runs, a PNG of the Pareto curves and prints a table.

Usage:
  python benchmarks/pareto.py [--datasets movielens,criteo] [--output_dir docs]
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import seqattn_tfrs  # noqa: E402
from seqattn_tfrs.movielens.config import JobConfig  # noqa: E402
from seqattn_tfrs.movielens.job import prepare_data  # noqa: E402
from seqattn_tfrs.movielens.models import (  # noqa: E402
    LABEL_KEY,
    POSITIVE_RATING,
    build_feature_layer,
)
from seqattn_tfrs.sizes import layer_bytes  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("datasets", ["movielens", "criteo"], "Data sets to run.")
flags.DEFINE_list(
    "variants",
    ["all", "uniform", "count", "budget", "width", "combined", "after"],
    "Variant families to run.",
)
flags.DEFINE_list("uniform_dims", ["4", "8"], "Widths of the uniform variants.")
flags.DEFINE_list("counts", ["3", "6"], "Fields kept by the count variants.")
flags.DEFINE_list(
    "byte_fractions", ["0.05", "0.2"], "Budgets, as fractions of all tables' bytes."
)
flags.DEFINE_list(
    "rules",
    ["attention", "attention_per_byte"],
    "Budget rules compared by the budget and combined variants.",
)
flags.DEFINE_float(
    "entry_z",
    None,
    "If set, budgeted variants also stop when no affordable field or block "
    "helps by this many standard errors (the layers' entry_z); unset, they "
    "fill the budget (entry_z=None, not the field gate's default of 3).",
)
flags.DEFINE_list("width_fractions", ["0.25", "0.5"], "Kept fractions of columns.")
flags.DEFINE_integer("dim", 16, "Full embedding width.")
flags.DEFINE_integer("block_size", 4, "Columns per block in width selection.")
flags.DEFINE_integer("fields_per_round", 3, "Fields committed per round.")
flags.DEFINE_integer("blocks_per_round", 16, "Blocks committed per round.")
flags.DEFINE_integer("warmup_epochs", 1, "Dense epochs before the first round.")
flags.DEFINE_integer("epochs_per_round", 1, "Epochs per selection round.")
flags.DEFINE_integer("finetune_epochs", 3, "Epochs after the last pick.")
flags.DEFINE_integer(
    "plain_epochs", 5, "Epochs of a model without selection (best val AUC kept)."
)
flags.DEFINE_integer("batch_size", 2048, "Batch size.")
flags.DEFINE_float("learning_rate", 0.01, "Adam learning rate.")
flags.DEFINE_integer("selection_interval", 2, "Training steps per held-out step.")
flags.DEFINE_integer("movielens_examples", 25_000, "MovieLens ratings used.")
flags.DEFINE_integer("criteo_rows", 25_000, "Synthetic Criteo rows (80/10/10).")
flags.DEFINE_integer("criteo_max_vocab", 20_000, "Rows of the largest field.")
flags.DEFINE_list("seeds", ["0"], "Seeds of data, initialisation and shuffling.")
flags.DEFINE_string(
    "output_dir",
    "runs/pareto",
    "Where pareto.json and pareto.png go (the stored ones: docs).",
)

NUMERIC, CATEGORICAL, NUMERIC_BUCKETS = 13, 26, 16


@dataclasses.dataclass
class Data:
    """A data set: batches of ``(features, label)`` and its per-field layers."""

    name: str
    train: tf.data.Dataset
    val: tf.data.Dataset
    test: tf.data.Dataset
    layers: Callable[[int], dict[str, tf.keras.layers.Layer]]


# ------------------------------------------------------------------- data
def movielens(seed: int) -> Data:
    """The main job's MovieLens 100K fields (3 noise fields included)."""
    config = JobConfig(max_examples=FLAGS.movielens_examples, seed=seed)
    prepared = prepare_data(config)

    def split(name: str, shuffle: bool) -> tf.data.Dataset:
        batches = prepared.dataset(
            name, FLAGS.batch_size, shuffle_seed=seed if shuffle else None
        )

        def to_pair(batch):
            features = {k: v for k, v in batch.items() if k != LABEL_KEY}
            label = tf.cast(batch[LABEL_KEY] >= POSITIVE_RATING, tf.float32)
            return features, label

        return batches.map(to_pair)

    def layers(dim: int) -> dict[str, tf.keras.layers.Layer]:
        return {
            f.name: build_feature_layer(
                dataclasses.replace(f, embedding_dim=dim), prepared.vocabularies[f.name]
            )
            for f in config.all_features
        }

    return Data(
        "movielens",
        split("train", True),
        split("val", False).cache(),
        split("test", False).cache(),
        layers,
    )


def criteo_vocabularies(max_vocab: int) -> dict[str, int]:
    """Rows per field: 13 bucketised numeric, 26 categorical from 4 to max."""
    sizes = {f"i{j}": NUMERIC_BUCKETS for j in range(NUMERIC)}
    spread = np.geomspace(4, max_vocab, CATEGORICAL - 1).astype(int)
    sizes.update({f"c{j}": int(v) for j, v in enumerate(spread)})
    sizes["c_coarse"] = 40  # the largest field's id, in 40 groups
    return sizes


def criteo(seed: int) -> Data:
    """Synthetic Criteo-shaped data with planted signal (see the module doc)."""
    rng = np.random.default_rng(seed)
    rows = FLAGS.criteo_rows
    sizes = criteo_vocabularies(FLAGS.criteo_max_vocab)
    x = {}
    for j in range(NUMERIC):
        raw = rng.lognormal(size=rows)
        edges = np.quantile(raw, np.linspace(0, 1, NUMERIC_BUCKETS + 1)[1:-1])
        x[f"i{j}"] = np.digitize(raw, edges)
    for name, size in sizes.items():
        if name.startswith("c"):
            x[name] = rng.integers(0, size, rows)
    big = (
        f"c{CATEGORICAL - 2}"  # the largest field: an id whose groups carry the signal
    )
    x["c_coarse"] = x[big] * 40 // sizes[big]
    logit = (
        1.5 * rng.normal(size=40)[x["c_coarse"]]
        + 0.4 * rng.normal(size=sizes[big])[x[big]]
        + 0.8 * rng.normal(size=NUMERIC_BUCKETS)[x["i0"]]
        + 0.6 * rng.normal(size=NUMERIC_BUCKETS)[x["i1"]]
        + 1.0 * rng.normal(size=sizes["c3"])[x["c3"]]
        + 0.7 * rng.normal(size=sizes["c8"])[x["c8"]]
        - 0.5
    )
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    x = {k: v.astype(np.int64) for k, v in x.items()}
    cut = [int(rows * 0.8), int(rows * 0.9)]

    def split(lo: int, hi: int, shuffle: bool) -> tf.data.Dataset:
        part = tf.data.Dataset.from_tensor_slices(
            ({k: v[lo:hi] for k, v in x.items()}, y[lo:hi])
        )
        if shuffle:
            part = part.shuffle(hi - lo, seed=seed)
        return part.batch(FLAGS.batch_size)

    def layers(dim: int) -> dict[str, tf.keras.layers.Layer]:
        return {
            name: tf.keras.layers.Embedding(size, dim) for name, size in sizes.items()
        }

    return Data(
        "criteo",
        split(0, cut[0], True),
        split(cut[0], cut[1], False).cache(),
        split(cut[1], rows, False).cache(),
        layers,
    )


# ------------------------------------------------------------------ model
class Ranker(tf.keras.Model):
    """Concatenated field embeddings, then two ReLU layers and a sigmoid."""

    def __init__(self, embed: Any, names: list[str]) -> None:
        super().__init__()
        self.embed = embed
        self.names = names
        self.mlp = [
            tf.keras.layers.Dense(64, "relu"),
            tf.keras.layers.Dense(32, "relu"),
            tf.keras.layers.Dense(1, "sigmoid"),
        ]

    def call(self, features):
        if isinstance(self.embed, tf.keras.layers.Layer):
            out = self.embed(features)
        else:
            out = {name: self.embed[name](features[name]) for name in self.names}
        x = tf.concat([out[name] for name in self.names], axis=1)
        for layer in self.mlp:
            x = layer(x)
        return x


class BestEpoch(tf.keras.callbacks.Callback):
    """Restores, at the end of ``fit``, the weights of the best validation AUC.

    Only epochs that began with the selection complete (``ready()``) count, so
    every variant is scored at its best epoch of its final model.
    """

    def __init__(self, ready: Callable[[], bool]) -> None:
        super().__init__()
        self.ready = ready
        self.best = -1.0
        self.best_epoch: int | None = None
        self.weights: list[np.ndarray] | None = None
        self._counts = False

    def on_epoch_begin(self, epoch, logs=None):
        self._counts = self.ready()

    def on_epoch_end(self, epoch, logs=None):
        if self._counts and logs["val_auc"] > self.best:
            self.best, self.best_epoch = logs["val_auc"], epoch
            self.weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        if self.weights is not None:
            self.model.set_weights(self.weights)


def auc_on(model: tf.keras.Model, test: tf.data.Dataset) -> tuple[float, np.ndarray]:
    labels = np.concatenate([y.numpy() for _, y in test])
    scores = model.predict(test.map(lambda x, y: x), verbose=0)[:, 0]
    metric = tf.keras.metrics.AUC(num_thresholds=2000)
    metric.update_state(labels, scores)
    return float(metric.result()), scores


def compiled(embed: Any, names: list[str]) -> Ranker:
    model = Ranker(embed, names)
    model.compile(
        tf.keras.optimizers.Adam(FLAGS.learning_rate),
        "binary_crossentropy",
        metrics=[tf.keras.metrics.AUC(name="auc")],
    )
    return model


def fit_selection(
    model: Ranker, gate: Any, data: Data, finetune_epochs: int
) -> tuple[int, BestEpoch]:
    """Warm-up, the gate's rounds and ``finetune_epochs``; returns epochs run."""
    epochs = (
        FLAGS.warmup_epochs + gate.num_rounds * FLAGS.epochs_per_round + finetune_epochs
    )
    callbacks = [
        seqattn_tfrs.SequentialAttentionCallback(
            warmup_epochs=FLAGS.warmup_epochs,
            epochs_per_selection=FLAGS.epochs_per_round,
            finetune_epochs=finetune_epochs,
            selection_data=data.val,
            selection_interval=FLAGS.selection_interval,
            verbose=0,
        ),
        best := BestEpoch(lambda: gate.selection_complete),
    ]
    model.fit(
        data.train,
        epochs=epochs,
        validation_data=data.val,
        callbacks=callbacks,
        verbose=0,
    )
    return epochs, best


def width_layer(tables: dict[str, Any], **options: Any):
    return seqattn_tfrs.SequentialAttentionWidth(
        tables,
        block_size=FLAGS.block_size,
        selections_per_round=FLAGS.blocks_per_round,
        **options,
    )


def run_variant(data: Data, variant: str, all_bytes: int, seed: int) -> dict[str, Any]:
    """Trains, prunes and scores one variant."""
    tf.keras.utils.set_random_seed(seed)
    family, _, setting = variant.partition("-")
    dim = int(setting) if family == "uniform" else FLAGS.dim
    tables = data.layers(dim)
    names = list(tables)
    started = time.perf_counter()
    row: dict[str, Any] = {"dataset": data.name, "variant": variant, "seed": seed}
    if family in ("budget", "combined", "after"):
        row["entry_z"] = FLAGS.entry_z
    embed: Any = tables
    gate = None
    if family == "count":
        embed = seqattn_tfrs.SequentialAttentionEmbedding(
            tables, int(setting), selections_per_round=FLAGS.fields_per_round
        )
        gate = embed
    elif family == "budget":
        fraction, rule = setting.split("-", 1)
        embed = seqattn_tfrs.SequentialAttentionEmbedding(
            tables,
            budget_bytes=int(float(fraction) * all_bytes),
            budget_rule=rule,
            entry_z=FLAGS.entry_z,
            selections_per_round=FLAGS.fields_per_round,
        )
        gate = embed
    elif family == "width":
        columns = FLAGS.dim * len(tables)
        block = FLAGS.block_size
        target = max(block, round(float(setting) * columns / block) * block)
        embed = width_layer(tables, target_width=target)
        gate = embed.blocks
    elif family == "combined":
        fraction, rule = setting.split("-", 1)
        embed = width_layer(
            tables,
            budget_bytes=int(float(fraction) * all_bytes),
            budget_rule=rule,
            entry_z=FLAGS.entry_z,
        )
        gate = embed.blocks
    elif family == "after":
        # Fields first, in a fit of their own, under the most bytes that one
        # block per kept table can still bring under the budget; then blocks
        # of the kept (trained) tables under the budget, in a second fit.
        budget = int(float(setting) * all_bytes)
        fields = seqattn_tfrs.SequentialAttentionEmbedding(
            tables,
            budget_bytes=budget * FLAGS.dim // FLAGS.block_size,
            entry_z=FLAGS.entry_z,
            selections_per_round=FLAGS.fields_per_round,
        )
        first = compiled(fields, names)
        first_epochs, _ = fit_selection(first, fields, data, finetune_epochs=0)
        seqattn_tfrs.prune(first)
        row["fields_first"] = list(fields.selected_features)
        tables = fields.embedding_layers
        names = list(tables)
        embed = width_layer(tables, budget_bytes=budget, entry_z=FLAGS.entry_z)
        gate = embed.blocks
    model = compiled(embed, names)
    if gate is None:
        epochs = FLAGS.plain_epochs
        model.fit(
            data.train,
            epochs=epochs,
            validation_data=data.val,
            callbacks=[best := BestEpoch(lambda: True)],
            verbose=0,
        )
    else:
        epochs, best = fit_selection(model, gate, data, FLAGS.finetune_epochs)
        if family == "after":
            epochs += first_epochs
    auc, scores = auc_on(model, data.test)
    row.update(epochs=epochs, best_epoch=best.best_epoch)
    if gate is None:
        row["table_bytes"] = sum(layer_bytes(t) for t in tables.values())
        row["kept"] = names
    else:
        seqattn_tfrs.prune(model)
        pruned_auc, pruned_scores = auc_on(model, data.test)
        row["max_abs_change_after_prune"] = float(
            np.max(np.abs(pruned_scores - scores))
        )
        report = seqattn_tfrs.size_report(model)
        row["table_bytes"] = report["embedding_tables"]["after"]["bytes"]
        if isinstance(embed, seqattn_tfrs.SequentialAttentionWidth):
            kept = embed.kept_columns()
            row["kept"] = {n: len(c) for n, c in kept.items() if c}
        else:
            row["kept"] = list(gate.selected_features)
        auc = pruned_auc
    row["test_auc"] = auc
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


def variants() -> list[str]:
    chosen = []
    for family in FLAGS.variants:
        if family == "all":
            chosen.append("all")
        elif family == "uniform":
            chosen += [f"uniform-{d}" for d in FLAGS.uniform_dims]
        elif family == "count":
            chosen += [f"count-{k}" for k in FLAGS.counts]
        elif family in ("budget", "combined"):
            chosen += [
                f"{family}-{f}-{rule}"
                for f in FLAGS.byte_fractions
                for rule in FLAGS.rules
            ]
        elif family == "width":
            chosen += [f"width-{f}" for f in FLAGS.width_fractions]
        elif family == "after":
            chosen += [f"after-{f}" for f in FLAGS.byte_fractions]
        else:
            raise app.UsageError(f"Unknown variant family {family!r}.")
    return chosen


# ------------------------------------------------------------------- plot
def pareto_front(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs no other run beats on both fewer bytes and higher AUC."""
    ordered = sorted(rows, key=lambda r: (r["table_bytes"], -r["test_auc"]))
    front, best = [], -1.0
    for row in ordered:
        if row["test_auc"] > best:
            front.append(row)
            best = row["test_auc"]
    return front


def plot(rows: list[dict[str, Any]], path: pathlib.Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    datasets = sorted({r["dataset"] for r in rows})
    figure = Figure(figsize=(6.5 * len(datasets), 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(datasets), squeeze=False)[0]
    markers = {
        "all": ("k", "*"),
        "uniform": ("0.5", "s"),
        "count": ("C0", "o"),
        "budget": ("C1", "^"),
        "width": ("C2", "D"),
        "combined": ("C3", "P"),
        "after": ("C4", "X"),
    }
    for ax, name in zip(axes, datasets):
        mine = [r for r in rows if r["dataset"] == name]
        front = pareto_front(mine)
        ax.plot(
            [r["table_bytes"] for r in front],
            [r["test_auc"] for r in front],
            color="0.75",
            linewidth=3,
            zorder=0,
            label="Pareto front",
        )
        for family, (color, marker) in markers.items():
            runs = [r for r in mine if r["variant"].split("-")[0] == family]
            if not runs:
                continue
            ax.scatter(
                [r["table_bytes"] for r in runs],
                [r["test_auc"] for r in runs],
                color=color,
                marker=marker,
                s=60,
                label=family,
            )
            for r in runs:
                ax.annotate(
                    r["variant"].removeprefix(family + "-") or family,
                    (r["table_bytes"], r["test_auc"]),
                    fontsize=7,
                    xytext=(4, 3),
                    textcoords="offset points",
                )
        ax.set_xscale("log")
        ax.set_xlabel("embedding table bytes served")
        ax.set_ylabel("test AUC")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.savefig(path, dpi=110)


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per data set and variant: mean test AUC (and its range) and mean bytes."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["variant"]), []).append(row)
    return [
        {
            "dataset": name,
            "variant": variant,
            "seeds": len(runs),
            "test_auc": float(np.mean([r["test_auc"] for r in runs])),
            "auc_min": min(r["test_auc"] for r in runs),
            "auc_max": max(r["test_auc"] for r in runs),
            "table_bytes": float(np.mean([r["table_bytes"] for r in runs])),
            "all_bytes": runs[0]["all_bytes"],
        }
        for (name, variant), runs in groups.items()
    ]


def main(argv: list[str]) -> None:
    del argv
    makers = {"movielens": movielens, "criteo": criteo}
    unknown = [name for name in FLAGS.datasets if name not in makers]
    if unknown:
        raise app.UsageError(f"Unknown data set(s) {unknown}; expected {list(makers)}.")
    chosen = variants()
    output = pathlib.Path(FLAGS.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in map(int, FLAGS.seeds):
        for name in FLAGS.datasets:
            data = makers[name](seed)
            all_bytes = sum(layer_bytes(t) for t in data.layers(FLAGS.dim).values())
            for variant in chosen:
                row = run_variant(data, variant, all_bytes, seed)
                row["all_bytes"] = all_bytes
                rows.append(row)
                print(
                    f"{name:<10}{seed:>3} {variant:<34}AUC {row['test_auc']:.4f}  "
                    f"{row['table_bytes']:>11,} bytes  {row['seconds']:>6.1f} s",
                    flush=True,
                )
                (output / "pareto.json").write_text(json.dumps(rows, indent=1) + "\n")
    means = summary(rows)
    plot(means, output / "pareto.png")
    print("| data | variant | test AUC (mean, min-max) | table bytes | of all |")
    print("|---|---|---|---|---|")
    for row in means:
        print(
            f"| {row['dataset']} | {row['variant']} | {row['test_auc']:.4f} "
            f"({row['auc_min']:.4f}-{row['auc_max']:.4f}) | "
            f"{row['table_bytes']:,.0f} | {row['table_bytes'] / row['all_bytes']:.3f} |"
        )
    print(f"pareto: {len(rows)} runs written to {output}")


if __name__ == "__main__":
    app.run(main)
