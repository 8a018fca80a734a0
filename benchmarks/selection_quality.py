"""Selection quality against other field-selection methods (the ERASE protocol).

Every method ranks (or selects in order) the fields of one problem; for each k
of a sweep, the same DCN ranking architecture (``seqattn_tfrs.movielens.models``) is
retrained from scratch on the top-k fields only (Adam, early stopping on
validation AUC, best epoch restored) and scored on the test split. Reported per
method: test AUC and log loss per k, their mean over the sweep (an AUKC-style
summary), mean and spread (sample standard deviation) over seeds, the selection
wall time, and how many noise fields its largest set holds (``all``: every one).

Methods:

* ``sa_train`` / ``sa_heldout``: Sequential Attention (this package), the
  logits learning from training batches / from the validation split
  (``selection_data``); the ranking is the pick order;
* ``all``: no selection (one point, k = every field, repeated over the sweep);
* ``random``: a random order of the fields;
* ``one_shot``: the same gate, all k_max fields committed in one round (no
  sequential conditioning), logits from the validation split;
* ``permutation``, ``sfs``, ``lpfs``: see ``benchmarks/baselines.py``;
  ``permutation5`` (not run by default): permutation importance averaged over
  5 shuffles of each field, each its own.

Problems (``--problem``): ``movielens`` (the main job's 13 MovieLens fields plus
3 noise fields of 5,000 values, ``configs/movielens_100k.json``), ``ctr``
(``planted.ctr_problem``: main effects, a copy, an XOR pair, 4 memorisable
noise fields) and ``criteo`` (``planted.criteo_problem``: 13 bucketised numeric
+ 26 categorical fields, 28 of them noise). The data are fixed; seeds vary the
model initialisation, batch order and the random methods.

Usage:
  python benchmarks/selection_quality.py --problem ctr [--seeds 0,1,2] [--ks 2,4,6]
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Measure the seqattn_tfrs of this checkout, not whichever copy is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dataclasses  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import baselines  # noqa: E402
import numpy as np  # noqa: E402
import planted  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import seqattn_tfrs  # noqa: E402
from seqattn_tfrs.movielens.config import load_config  # noqa: E402
from seqattn_tfrs.movielens.job import PreparedData, prepare_data  # noqa: E402
from seqattn_tfrs.movielens.models import (  # noqa: E402
    LABEL_KEY,
    DCNRankingModel,
    build_feature_layer,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
METHODS = [
    "sa_heldout",
    "sa_train",
    "all",
    "random",
    "one_shot",
    "permutation",
    "sfs",
    "lpfs",
]

FLAGS = flags.FLAGS
flags.DEFINE_enum("problem", "ctr", ["movielens", "ctr", "criteo"], "Problem.")
flags.DEFINE_list("methods", METHODS, "Methods to compare.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
flags.DEFINE_list("ks", None, "The k sweep (default: per problem).")
flags.DEFINE_integer("rows", None, "Rows of synthetic data (default: per problem).")
flags.DEFINE_integer("vocabulary", 10_000, "criteo: largest categorical vocabulary.")
flags.DEFINE_integer("batch_size", None, "Batch size (default: per problem).")
flags.DEFINE_float("learning_rate", None, "Adam learning rate (default: per problem).")
flags.DEFINE_integer("epochs", 8, "Most epochs of each retraining (early stopped).")
flags.DEFINE_integer("patience", 1, "Early-stopping patience (epochs).")
flags.DEFINE_integer("warmup_epochs", 1, "Gate methods: dense warm-up epochs.")
flags.DEFINE_integer("round_epochs", 1, "Sequential Attention: epochs per round.")
flags.DEFINE_integer("one_shot_epochs", 3, "One-shot attention: epochs of its round.")
flags.DEFINE_integer("lpfs_epochs", 4, "LPFS: training epochs.")
flags.DEFINE_float("lpfs_penalty", 1e-3, "LPFS: L1 penalty on the gate parameters.")
flags.DEFINE_string("output", "", "If set, write the results as JSON here.")

# problem: (ks, rows, batch size, learning rate)
DEFAULTS = {
    "movielens": ([2, 4, 6, 8], None, 1024, 0.003),
    "ctr": ([2, 4, 6], 12_000, 256, 0.01),
    "criteo": ([4, 8, 12], 40_000, 1024, 0.003),
}


@dataclasses.dataclass
class Problem:
    """Prepared splits, a factory of fresh per-field layers, the noise fields."""

    data: PreparedData
    make_layer: Callable[[str], tf.keras.layers.Layer]
    names: list[str]
    noise: set[str]
    model_options: dict

    def dataset(self, split: str, seed: int | None = None) -> tf.data.Dataset:
        return self.data.dataset(split, FLAGS.batch_size, shuffle_seed=seed)


def synthetic(
    columns: dict[str, np.ndarray], y: np.ndarray, noise: set[str]
) -> Problem:
    """Splits id columns 80/10/10; labels become ratings 5 (click) or 1."""
    n = len(y)
    bounds = {"train": (0, int(0.8 * n)), "val": (int(0.8 * n), int(0.9 * n))}
    bounds["test"] = (int(0.9 * n), n)
    rating = np.where(y > 0, 5.0, 1.0).astype(np.float32)
    splits = {
        split: {
            **{k: tf.constant(v[a:b]) for k, v in columns.items()},
            LABEL_KEY: tf.constant(rating[a:b]),
        }
        for split, (a, b) in bounds.items()
    }
    sizes = {k: int(v.max()) + 1 for k, v in columns.items()}
    data = PreparedData(columns=splits, vocabularies={}, data_dir="")
    return Problem(
        data,
        lambda name: tf.keras.layers.Embedding(sizes[name], 8),
        list(columns),
        noise,
        {},
    )


def load_problem(name: str) -> Problem:
    if name == "ctr":
        columns, y = planted.ctr_problem(0, n=FLAGS.rows)
        return synthetic(columns, y, {f"noise{i}" for i in range(4)})
    if name == "criteo":
        return synthetic(*planted.criteo_problem(0, FLAGS.rows, FLAGS.vocabulary))
    config = load_config(ROOT / "configs" / "movielens_100k.json")
    data = prepare_data(config)
    features = {f.name: f for f in config.all_features}
    model = config.model
    return Problem(
        data,
        lambda n: build_feature_layer(features[n], data.vocabularies[n]),
        list(features),
        set(config.noise.names),
        {
            "cross_layers": model.cross_layers,
            "projection_dim": model.projection_dim,
            "hidden_units": model.hidden_units,
        },
    )


def build(problem: Problem, layers: dict, **gate) -> DCNRankingModel:
    model = DCNRankingModel(
        layers, use_gate=bool(gate), **problem.model_options, **gate
    )
    model.compile(tf.keras.optimizers.Adam(FLAGS.learning_rate))
    return model


def plain(problem: Problem, names: list[str]) -> DCNRankingModel:
    return build(problem, {n: problem.make_layer(n) for n in names})


def retrain(
    problem: Problem, fields: list[str], seed: int
) -> tuple[dict[str, float], DCNRankingModel, float]:
    """Fits the architecture on ``fields``: test metrics, the model, fit seconds."""
    start = time.perf_counter()
    tf.keras.utils.set_random_seed(seed)
    model = plain(problem, fields)
    stop = tf.keras.callbacks.EarlyStopping(
        "val_auc", patience=FLAGS.patience, mode="max", restore_best_weights=True
    )
    history = model.fit(
        problem.dataset("train", seed),
        validation_data=problem.dataset("val"),
        epochs=FLAGS.epochs,
        callbacks=[stop],
        verbose=0,
    )
    seconds = time.perf_counter() - start
    model.epochs_run = len(history.epoch)  # the training epochs it cost
    test = model.evaluate(problem.dataset("test"), return_dict=True, verbose=0)
    return {"auc": test["auc"], "log_loss": test["log_loss"]}, model, seconds


def gate_ranking(
    problem: Problem, seed: int, k: int, per_round: int, heldout: bool
) -> list[str]:
    model = build(
        problem,
        {n: problem.make_layer(n) for n in problem.names},
        num_selected=k,
        attention=seqattn_tfrs.AttentionOptions(selections_per_round=per_round),
    )
    callback = seqattn_tfrs.SequentialAttentionCallback(
        warmup_epochs=FLAGS.warmup_epochs,
        epochs_per_selection=FLAGS.round_epochs
        if per_round == 1
        else FLAGS.one_shot_epochs,
        finetune_epochs=0,
        selection_data=problem.dataset("val") if heldout else None,
        verbose=0,
    )
    epochs = callback.schedule_length(model.gate.num_rounds)
    model.fit(
        problem.dataset("train", seed), epochs=epochs, callbacks=[callback], verbose=0
    )
    return list(model.gate.selected_features)


def ranking(
    method: str,
    problem: Problem,
    seed: int,
    k_max: int,
    full_model: Callable[[], DCNRankingModel],
) -> list[str]:
    """The method's fields in order of preference (at least k_max of them)."""
    names = problem.names
    tf.keras.utils.set_random_seed(seed)
    if method in ("sa_heldout", "sa_train"):
        return gate_ranking(problem, seed, k_max, 1, method == "sa_heldout")
    if method == "one_shot":
        return gate_ranking(problem, seed, k_max, k_max, True)
    if method == "all":
        return list(names)
    if method == "random":
        return [str(n) for n in np.random.default_rng(seed).permutation(names)]
    if method in ("permutation", "permutation5"):
        scores = baselines.permutation_importance(
            full_model(),
            problem.data.columns["val"],
            lambda cols: dataclasses.replace(
                problem.data, columns={"val": cols}
            ).dataset("val", FLAGS.batch_size),
            names,
            seed,
            repeats=5 if method == "permutation5" else 1,
        )
        return baselines.rank(scores)
    if method == "sfs":
        layers, scales = baselines.scaled_layers(problem.make_layer, names)
        model = build(problem, layers)
        return baselines.rank(
            baselines.mask_sensitivity(model, scales, problem.dataset("train", seed))
        )
    if method == "lpfs":
        epsilon = tf.Variable(0.1, trainable=False)
        layers, scales = baselines.scaled_layers(
            problem.make_layer, names, epsilon, FLAGS.lpfs_penalty
        )
        model = build(problem, layers)
        train = problem.dataset("train", seed)
        steps = FLAGS.lpfs_epochs * int(train.cardinality())
        decay = baselines.EpsilonDecay(epsilon, 0.1, 1e-5, steps)
        model.fit(train, epochs=FLAGS.lpfs_epochs, callbacks=[decay], verbose=0)
        return baselines.rank({n: abs(float(s.x.numpy())) for n, s in scales.items()})
    raise ValueError(f"unknown method {method!r}")


def spread(values: list[float]) -> tuple[float, float]:
    values = np.asarray(values, float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def configure() -> tuple[Problem, list[int]]:
    """Fills ``--problem``'s defaults into the flags; the problem and its k sweep.

    Shared with ``served_quality.py``, so both protocols see the same splits,
    sizes and sweeps.
    """
    ks, rows, batch, rate = DEFAULTS[FLAGS.problem]
    FLAGS.rows = FLAGS.rows or rows
    FLAGS.batch_size = FLAGS.batch_size or batch
    FLAGS.learning_rate = FLAGS.learning_rate or rate
    ks = [int(k) for k in FLAGS.ks] if FLAGS.ks else ks
    return load_problem(FLAGS.problem), ks


def main(argv):
    del argv
    problem, ks = configure()
    k_max = max(ks)
    seeds = [int(s) for s in FLAGS.seeds]
    print(
        f"{FLAGS.problem}: {len(problem.names)} fields, noise {sorted(problem.noise)}"
    )

    cache: dict[tuple, tuple] = {}

    def evaluate(fields: list[str], seed: int):
        key = (tuple(sorted(fields)), seed)
        if key not in cache:
            metrics, model, seconds = retrain(problem, fields, seed)
            keep = model if len(fields) == len(problem.names) else None
            cache[key] = (metrics, keep, seconds)
        return cache[key]

    results: dict[str, dict] = {}
    for method in FLAGS.methods:
        runs = []
        for seed in seeds:
            tf.keras.backend.clear_session()
            fit = {"spent": 0.0, "seconds": 0.0}

            def full_model(seed=seed, fit=fit):
                began = time.perf_counter()
                _, model, fit["seconds"] = evaluate(problem.names, seed)
                fit["spent"] = time.perf_counter() - began
                return model

            start = time.perf_counter()
            order = ranking(method, problem, seed, k_max, full_model)
            # Permutation importance is charged its full model's fit, whether or
            # not an earlier method's retraining had already cached that model.
            seconds = time.perf_counter() - start - fit["spent"] + fit["seconds"]
            sweep = [len(problem.names)] * len(ks) if method == "all" else ks
            metrics = [evaluate(order[:k], seed)[0] for k in sweep]
            runs.append(
                {
                    "seed": seed,
                    "order": order[:k_max] if method != "all" else order,
                    "select_seconds": seconds,
                    "auc": [m["auc"] for m in metrics],
                    "log_loss": [m["log_loss"] for m in metrics],
                    "noise_in_top": len(set(order[: max(sweep)]) & problem.noise),
                }
            )
            print(
                f"{method:12s} seed {seed}: {seconds:6.1f} s, "
                f"AUC {np.round(runs[-1]['auc'], 4).tolist()}, top: {order[:k_max]}",
                flush=True,
            )
        results[method] = summarise(runs)
    report(problem, ks, results)


def summarise(runs: list[dict]) -> dict:
    auc = np.array([r["auc"] for r in runs])
    loss = np.array([r["log_loss"] for r in runs])
    return {
        "runs": runs,
        "auc_per_k": [spread(auc[:, i]) for i in range(auc.shape[1])],
        "log_loss_per_k": [spread(loss[:, i]) for i in range(loss.shape[1])],
        "mean_auc": spread(auc.mean(axis=1)),
        "mean_log_loss": spread(loss.mean(axis=1)),
        "select_seconds": spread([r["select_seconds"] for r in runs]),
        "noise_in_top": spread([r["noise_in_top"] for r in runs]),
    }


def report(problem: Problem, ks: list[int], results: dict) -> None:
    def cell(pair, digits=4):
        return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"

    head = " | ".join(f"AUC k={k}" for k in ks)
    print(
        f"\n| method | {head} | mean AUC | mean log loss | noise fields at k={max(ks)}"
        " | selection s |"
    )
    print("|---" * (len(ks) + 5) + "|")
    for method, r in results.items():
        per_k = " | ".join(cell(p) for p in r["auc_per_k"])
        print(
            f"| {method} | {per_k} | {cell(r['mean_auc'])} | "
            f"{cell(r['mean_log_loss'])} | {cell(r['noise_in_top'], 1)} | "
            f"{cell(r['select_seconds'], 1)} |"
        )
    print(f"\n| method | {head.replace('AUC', 'log loss')} |")
    print("|---" * (len(ks) + 1) + "|")
    for method, r in results.items():
        print(
            f"| {method} | " + " | ".join(cell(p) for p in r["log_loss_per_k"]) + " |"
        )
    if FLAGS.output:
        payload = {
            "problem": FLAGS.problem,
            "ks": ks,
            "fields": problem.names,
            "flags": {
                k: FLAGS[k].value
                for k in (
                    "seeds",
                    "rows",
                    "batch_size",
                    "learning_rate",
                    "epochs",
                    "round_epochs",
                    "one_shot_epochs",
                    "lpfs_epochs",
                )
            },
            "results": results,
        }
        pathlib.Path(FLAGS.output).write_text(json.dumps(payload, indent=1))
    chosen = [m for m in results if m != "all"]
    best = max(chosen, key=lambda m: results[m]["mean_auc"][0]) if chosen else "all"
    top = round(results[best]["mean_auc"][0], 4)
    # Methods tied at the printed precision are all named, in --methods order.
    tied = [m for m in chosen if round(results[m]["mean_auc"][0], 4) == top] or [best]
    parts = [f"best selection {' = '.join(tied)} {top:.4f}"]
    parts += [
        f"{m} {results[m]['mean_auc'][0]:.4f}"
        for m in ("sa_heldout", "sa_train", "all")
        if m in results and m not in tied
    ]
    seeds = len(results[best]["runs"])
    print(
        f"selection quality ({FLAGS.problem}, k={ks}, {seeds} seeds, mean test AUC "
        f"over k): " + ", ".join(parts)
    )


if __name__ == "__main__":
    app.run(main)
