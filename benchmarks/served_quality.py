"""The served model: one fit then prune, against fit-rank-retrain.

The path a user takes from raw data to a served k-field model, per method of
``selection_quality.py``, on the same problems, splits, architecture, seeds and
k sweeps (its ``configure``, ``ranking`` and ``retrain`` are reused as they
are):

* Sequential Attention (``sa_heldout``; ``sa_train`` without held-out data):
  **one** ``fit`` of ``--fit_epochs`` epochs (default ``--epochs``, the most
  epochs an ERASE retraining may run) with
  ``SequentialAttentionCallback(within_fit=True)`` at the library's defaults
  (``selection_data`` = the validation split for ``sa_heldout``), then
  ``seqattn_tfrs.prune``; no retraining. The pruned model's predictions on
  the test split are checked against the gated model's. Where the schedule
  refuses k rounds in those steps (fewer than ``MIN_STEPS_PER_ROUND`` steps a
  round), the refusal is recorded in the row and the run is repeated with the
  fewest ``selections_per_round`` whose rounds fit (the fix the error names
  that keeps the epochs). With ``--sa_early_stopping`` the fit also
  validates and early-stops as the retrainings do, watching only the epochs
  after the last pick (``AfterLastPick``).
* ``<sa>_retrained``: Sequential Attention's own k picks retrained from
  scratch as the other methods are (what skipping the retraining costs).
* every other method: its ranking as in ``selection_quality.py`` (for
  permutation importance that includes fitting the all-fields model), then
  the top k retrained from scratch (ERASE: at most ``--epochs`` epochs, early
  stopping on validation AUC, best epoch restored).
* ``plain``: the all-fields model fitted for ``--fit_epochs`` fixed epochs,
  the baseline a user would otherwise run, timed in the same process.

Every fit and retraining is timed with the wall clock, in one process; a row
holds the total training seconds and epochs of its method's whole path to
the k-field model. One JSON line per (problem, seed, method, k) goes to
``--jsonl``; rows already there are skipped, so a run resumes.

Usage:
  python benchmarks/served_quality.py --problem ctr [--seeds 0,1,2]
  python benchmarks/served_quality.py --summary --problem ctr \\
      --jsonl docs/served_quality/ctr.jsonl   # the stored rows
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import functools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import pathlib  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import selection_quality as sq  # noqa: E402  (defines the shared flags)
import served_summary  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import seqattn_tfrs  # noqa: E402
from seqattn_tfrs.core import schedule as schedule_lib  # noqa: E402
from seqattn_tfrs.movielens.models import LABEL_KEY  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer(
    "fit_epochs",
    None,
    "Epochs of SA's one fit and of the plain fit (default: --epochs).",
)
flags.DEFINE_string(
    "jsonl",
    None,
    "Rows go here (default runs/served_quality/<problem>.jsonl; the stored "
    "rows are docs/served_quality/*.jsonl).",
)
flags.DEFINE_integer(
    "max_steps_per_round",
    None,
    "Ablation: the within-fit rounds' ceiling in steps (default: the library's "
    "MAX_STEPS_PER_ROUND; the steps beyond it go to the fine-tune).",
)
flags.DEFINE_bool("summary", False, "Print the tables of --jsonl and exit.")
flags.DEFINE_bool(
    "sa_early_stopping",
    False,
    "SA's one fit also validates on the validation split and early-stops on "
    "validation AUC (patience --patience, best epoch restored), watching only "
    "the epochs that end after the last pick; its `_retrained` rows are not "
    "written (the picks do not depend on it).",
)

SA_METHODS = ("sa_heldout", "sa_train")
# Training epochs of each ranking (permutation: its all-fields fit, counted
# when it runs; sfs: one gradient pass at initialisation, no update).
RANK_EPOCHS = {
    "all": lambda: 0,
    "random": lambda: 0,
    "sfs": lambda: 0,
    "one_shot": lambda: FLAGS.warmup_epochs + FLAGS.one_shot_epochs,
    "lpfs": lambda: FLAGS.lpfs_epochs,
}


class Retrainer:
    """``selection_quality.retrain`` with its seconds and epochs, cached per
    (fields, seed) so a set two methods pick is fitted once but charged to
    both."""

    def __init__(self, problem: sq.Problem) -> None:
        self.problem = problem
        self.cache: dict[tuple, dict] = {}

    def __call__(self, fields: list[str], seed: int) -> dict:
        key = (tuple(sorted(fields)), seed)
        if key not in self.cache:
            metrics, model, seconds = sq.retrain(self.problem, fields, seed)
            full = len(fields) == len(self.problem.names)
            self.cache[key] = {
                **metrics,
                "seconds": seconds,
                "epochs": model.epochs_run,
                "model": model if full else None,
            }
        return self.cache[key]


def feature_batches(problem: sq.Problem, split: str) -> list[dict]:
    """The split's batches without the label."""
    return [
        {k: v for k, v in batch.items() if k != LABEL_KEY}
        for batch in problem.dataset(split)
    ]


def fits_in(steps: int, k: int, per_round: int) -> bool:
    try:
        schedule_lib.within_fit(steps, math.ceil(k / per_round))
    except ValueError:
        return False
    return True


class AfterLastPick(tf.keras.callbacks.EarlyStopping):
    """Early stopping on validation AUC, as the retrainings have, that watches
    only the epochs ending after the gate's last pick: from ``fit``'s start
    it reads the schedule the selection callback (listed before it) laid
    out."""

    def __init__(self) -> None:
        super().__init__(
            "val_auc", patience=FLAGS.patience, mode="max", restore_best_weights=True
        )

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        record = self.model.gate.schedule_record
        schedule = schedule_lib.SelectionSchedule(
            warmup=record["warmup"],
            per_round=record["per_round"],
            finetune=record["finetune"],
            num_rounds=record["rounds"],
        )
        last = schedule_lib.last_pick_epoch(
            schedule, record["unit"] == "steps", self.params["steps"]
        )
        self.start_from_epoch = last - 1  # 0-based: the last pick's epoch


def served(problem: sq.Problem, method: str, seed: int, k: int, epochs: int) -> dict:
    """One within-fit selection run, then prune: the served model's row."""
    steps = epochs * int(problem.dataset("train").cardinality())
    per_round, refused = 1, None
    while True:
        tf.keras.backend.clear_session()
        start = time.perf_counter()
        tf.keras.utils.set_random_seed(seed)
        model = sq.build(
            problem,
            {n: problem.make_layer(n) for n in problem.names},
            num_selected=k,
            attention=seqattn_tfrs.AttentionOptions(selections_per_round=per_round),
        )
        callback = seqattn_tfrs.SequentialAttentionCallback(
            within_fit=True,
            selection_data=problem.dataset("val") if method == "sa_heldout" else None,
            verbose=0,
        )
        stopping = FLAGS.sa_early_stopping
        try:
            history = model.fit(
                problem.dataset("train", seed),
                validation_data=problem.dataset("val") if stopping else None,
                epochs=epochs,
                callbacks=[callback, AfterLastPick()] if stopping else [callback],
                verbose=0,
            )
        except ValueError as err:  # refused before any training step
            if refused is not None or "do not fit" not in str(err):
                raise
            refused = str(err)
            # The fix the message names that keeps the epochs: the fewest
            # features per round whose rounds get the steps they need.
            per_round = next(p for p in range(2, k + 1) if fits_in(steps, k, p))
            continue
        break
    seconds = time.perf_counter() - start
    picks = list(model.gate.selected_features)
    record = dict(model.gate.schedule_record)
    features = feature_batches(problem, "test")
    before = np.concatenate([model(f, training=False).numpy() for f in features])
    pruned = seqattn_tfrs.prune(model)
    after = np.concatenate([pruned(f, training=False).numpy() for f in features])
    test = pruned.evaluate(problem.dataset("test"), return_dict=True, verbose=0)
    return {
        "auc": test["auc"],
        "log_loss": test["log_loss"],
        "train_seconds": seconds,
        "epochs": len(history.epoch),
        "early_stopping": FLAGS.sa_early_stopping,
        "fields": picks,
        "selections_per_round": per_round,
        "schedule": record,
        "refused_one_per_round": refused,
        "kept_tables": len(pruned.gate.embedding_layers),
        "max_abs_prune_change": float(np.max(np.abs(before - after))),
    }


def main(argv):
    del argv
    path = pathlib.Path(
        FLAGS.jsonl or sq.ROOT / "runs" / "served_quality" / f"{FLAGS.problem}.jsonl"
    )
    if FLAGS.summary:
        summary = served_summary.summarise(
            served_summary.read_rows([path]), FLAGS.problem
        )
        print(served_summary.tables(summary))
        return
    problem, ks = sq.configure()
    epochs = FLAGS.fit_epochs or FLAGS.epochs
    if FLAGS.max_steps_per_round:  # the callback takes no ceiling argument
        schedule_lib.within_fit = functools.partial(
            schedule_lib.within_fit, max_steps_per_round=FLAGS.max_steps_per_round
        )
    k_max = max(ks)
    done = {(r["seed"], r["method"], r["k"]) for r in served_summary.read_rows([path])}
    path.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"{FLAGS.problem}: {len(problem.names)} fields, k {ks}, fit {epochs} "
        f"epochs of {int(problem.dataset('train').cardinality())} steps",
        flush=True,
    )

    def write(seed: int, method: str, k: int, row: dict) -> None:
        row = {"problem": FLAGS.problem, "seed": seed, "method": method, "k": k, **row}
        with path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        done.add((seed, method, k))
        print(
            f"seed {seed} {method:22s} k={k:<3d} AUC {row['auc']:.4f} "
            f"{row['train_seconds']:7.1f} s {row['epochs']:5.1f} ep "
            f"{row.get('fields', '')}",
            flush=True,
        )

    # Untimed: the process's first fit pays one-off start-up costs that would
    # otherwise land on whichever method runs first.
    tf.keras.utils.set_random_seed(0)
    sq.plain(problem, problem.names).fit(
        problem.dataset("train"), epochs=1, steps_per_epoch=4, verbose=0
    )
    for seed in map(int, FLAGS.seeds):
        retrain = Retrainer(problem)  # a fresh cache per seed
        n = len(problem.names)
        if (seed, "plain", n) not in done:
            tf.keras.backend.clear_session()
            start = time.perf_counter()
            tf.keras.utils.set_random_seed(seed)
            model = sq.plain(problem, problem.names)
            model.fit(problem.dataset("train", seed), epochs=epochs, verbose=0)
            seconds = time.perf_counter() - start
            test = model.evaluate(problem.dataset("test"), return_dict=True, verbose=0)
            write(
                seed,
                "plain",
                n,
                {
                    "auc": test["auc"],
                    "log_loss": test["log_loss"],
                    "train_seconds": seconds,
                    "epochs": epochs,
                },
            )
        for method in FLAGS.methods:
            if method in SA_METHODS:
                for k in ks:
                    if (seed, method, k) not in done:
                        write(seed, method, k, served(problem, method, seed, k, epochs))
                    name = f"{method}_retrained"
                    if (seed, name, k) in done or FLAGS.sa_early_stopping:
                        continue
                    row = next(
                        r
                        for r in served_summary.read_rows([path])
                        if (r["seed"], r["method"], r["k"]) == (seed, method, k)
                    )
                    fit = retrain(row["fields"], seed)
                    write(
                        seed,
                        name,
                        k,
                        {
                            "auc": fit["auc"],
                            "log_loss": fit["log_loss"],
                            "train_seconds": row["train_seconds"] + fit["seconds"],
                            "epochs": row["epochs"] + fit["epochs"],
                            "fields": row["fields"],
                            "retrain_seconds": fit["seconds"],
                            "retrain_epochs": fit["epochs"],
                        },
                    )
                continue
            if all((seed, method, k) in done for k in ks):
                continue
            tf.keras.backend.clear_session()
            full = {"spent": 0.0, "seconds": 0.0, "epochs": 0}

            def full_model(seed=seed, full=full, retrain=retrain):
                began = time.perf_counter()
                fit = retrain(problem.names, seed)
                full["spent"] = time.perf_counter() - began
                full["seconds"], full["epochs"] = fit["seconds"], fit["epochs"]
                return fit["model"]

            start = time.perf_counter()
            order = sq.ranking(method, problem, seed, k_max, full_model)
            # Permutation importance is charged its all-fields fit, whether or
            # not an earlier method's retraining had cached that model.
            rank_seconds = time.perf_counter() - start - full["spent"] + full["seconds"]
            rank_epochs = full["epochs"] or RANK_EPOCHS.get(method, lambda: 0)()
            for k in ks:
                fields = order if method == "all" else order[:k]
                fit = retrain(fields, seed)
                write(
                    seed,
                    method,
                    k,
                    {
                        "auc": fit["auc"],
                        "log_loss": fit["log_loss"],
                        "train_seconds": rank_seconds + fit["seconds"],
                        "epochs": rank_epochs + fit["epochs"],
                        "fields": fields,
                        "rank_seconds": rank_seconds,
                        "rank_epochs": rank_epochs,
                        "retrain_seconds": fit["seconds"],
                        "retrain_epochs": fit["epochs"],
                    },
                )
    summary = served_summary.summarise(served_summary.read_rows([path]), FLAGS.problem)
    print(served_summary.tables(summary))


if __name__ == "__main__":
    app.run(main)
