"""Retrained test AUC of Sequential Attention's top-k against permutation's.

On generated ctr problems (``generator.generate_problem``, ``--kind ctr``,
``ctr_budget`` or ``ctr_sparse``), per problem and training seed: the
problem's held-out rows are split in half, validation and test. Sequential
Attention (defaults, ``finetune_epochs=0``, ``selection_data`` = the
validation half, Adam 0.01, ``planted.ctr_model``) picks k fields (k = the
answer's number of informative groups, or ``--k``). Permutation importance
(``baselines.permutation_importance``) ranks the fields by the rise in
validation log loss when each is shuffled, on the same architecture without a
gate trained on every field (Adam 0.01, early stopping on validation AUC,
patience 1, at most 8 epochs, best epoch restored); its top k are taken. Each
top-k set (and, for reference, the answer's group sources: the oracle's first
k on ``ctr_sparse``, else the k of largest logit spread) is retrained from
scratch in that architecture with that schedule and scored on the test half.
Same architecture, optimizer, data and seed for every method; nothing is tuned
on the test half.

Usage:
  python benchmarks/generated_auc.py --problems 0:30 --seeds 0 \\
      --output runs/ctr_auc.jsonl
  python benchmarks/generated_auc.py --summary docs/generated_quality/ctr_auc.jsonl
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Measure the seqattn_tfrs of this checkout, not whichever copy is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import json  # noqa: E402
import pathlib  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from generator import generate_problem, score_picks  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("kind", "ctr", ["ctr", "ctr_budget", "ctr_sparse"], "Generator kind.")
flags.DEFINE_integer(
    "k", None, "Fields to select (default: the answer's number of groups)."
)
flags.DEFINE_string("problems", "0:30", "Problem seeds, start:stop.")
flags.DEFINE_list("seeds", ["0"], "Training seeds.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_integer("epochs", 8, "Most epochs of each retraining (early stopped).")
flags.DEFINE_float("tie", 0.002, "AUC differences below this count as ties.")
flags.DEFINE_string("output", "", "JSON lines to append to.")
flags.DEFINE_string("summary", "", "Print the win/tie/loss counts of this file.")
flags.DEFINE_list("summary_seeds", [], "With --summary: only these training seeds.")


def plain_model(features, names):
    import tensorflow as tf

    inputs = {f: tf.keras.Input((), name=f, dtype=tf.int64) for f in names}
    embedded = [
        tf.keras.layers.Embedding(int(features[f].max()) + 1, 4)(inputs[f])
        for f in names
    ]
    joined = embedded[0] if len(names) == 1 else tf.keras.layers.Concatenate()(embedded)
    hidden = tf.keras.layers.Dense(32, activation="relu")(joined)
    out = tf.keras.layers.Dense(1, activation="sigmoid")(hidden)
    model = tf.keras.Model(inputs, out)
    model.compile(
        tf.keras.optimizers.Adam(0.01),
        "binary_crossentropy",
        metrics=[
            tf.keras.metrics.AUC(name="auc"),
            tf.keras.metrics.BinaryCrossentropy(name="log_loss"),
        ],
    )
    return model


def run_one(problem, seed: int) -> dict:
    import baselines
    import planted
    import tensorflow as tf

    import seqattn_tfrs

    names, k = problem.names, FLAGS.k or problem.answer["k"]
    n, split = len(problem.labels), problem.train_rows
    middle = (split + n) // 2
    rows = {
        "train": slice(0, split),
        "val": slice(split, middle),
        "test": slice(middle, n),
    }

    def data(split_name, fields, columns=None, shuffle=False):
        r = rows[split_name]
        source = columns or {f: problem.features[f][r] for f in fields}
        ds = tf.data.Dataset.from_tensor_slices(
            ({f: source[f] for f in fields}, problem.labels[r])
        )
        if shuffle:
            ds = ds.shuffle(r.stop - r.start, seed=seed)
        return ds.batch(FLAGS.batch_size)

    def fit_plain(fields):
        tf.keras.backend.clear_session()
        tf.keras.utils.set_random_seed(seed)
        model = plain_model(problem.features, fields)
        stop = tf.keras.callbacks.EarlyStopping(
            "val_auc", patience=1, mode="max", restore_best_weights=True
        )
        model.fit(
            data("train", fields, shuffle=True),
            validation_data=data("val", fields),
            epochs=FLAGS.epochs,
            callbacks=[stop],
            verbose=0,
        )
        return model

    def test_auc(fields):
        model = fit_plain(fields)
        return float(model.evaluate(data("test", fields), verbose=0)[1])

    began = time.perf_counter()
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)
    model, layer = planted.ctr_model(problem.features, num_selected=k)
    model.compile(planted.make_optimizer("ctr", "adam"), "binary_crossentropy")
    callback = seqattn_tfrs.SequentialAttentionCallback(
        finetune_epochs=0, selection_data=data("val", names), verbose=0
    )
    model.fit(
        data("train", names, shuffle=True),
        epochs=callback.schedule_length(layer.num_rounds),
        callbacks=[callback],
        verbose=0,
    )
    sa = list(layer.selected_features)
    sa_seconds = time.perf_counter() - began

    began = time.perf_counter()
    full = fit_plain(names)
    all_auc = float(full.evaluate(data("test", names), verbose=0)[1])
    val = {f: tf.constant(problem.features[f][rows["val"]]) for f in names}
    scores = baselines.permutation_importance(
        full, val, lambda cols: data("val", names, cols), names, seed
    )
    permutation = baselines.rank(scores)[:k]
    permutation_seconds = time.perf_counter() - began

    # The reference: every group's source, or, for fewer fields than groups,
    # the oracle's first k (ctr_sparse), else the k of largest logit spread.
    groups = problem.answer["groups"]
    sources = problem.answer.get("oracle_order") or [
        g["source"] for g in sorted(groups, key=lambda g: -g["logit_std"])
    ]
    sources = sources[:k]
    auc = {"sa": test_auc(sa)}
    same = set(permutation) == set(sa)
    auc["permutation"] = auc["sa"] if same else test_auc(permutation)
    auc["sources"] = test_auc(sources)
    auc["all"] = all_auc
    return {
        "sa_order": sa,
        "permutation_order": permutation,
        "same_set": same,
        "auc": auc,
        "k": k,
        "sa": score_picks(problem.answer, sa),
        "permutation": score_picks(problem.answer, permutation),
        "sa_seconds": round(sa_seconds, 1),
        "permutation_seconds": round(permutation_seconds, 1),
    }


def load(path: str) -> list[dict]:
    p = pathlib.Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def summarize(path: str) -> None:
    rs = [
        r
        for r in load(path)
        if not FLAGS.summary_seeds or str(r["seed"]) in FLAGS.summary_seeds
    ]
    diffs = np.array([r["auc"]["sa"] - r["auc"]["permutation"] for r in rs])
    same = sum(r["same_set"] for r in rs)
    wins = int(np.sum(diffs >= FLAGS.tie))
    losses = int(np.sum(diffs <= -FLAGS.tie))
    print(
        f"{len(rs)} runs ({len({r['problem'] for r in rs})} problems): SA's top-k "
        f"against permutation's, retrained test AUC: {wins} wins, "
        f"{len(rs) - wins - losses} ties (|diff| < {FLAGS.tie}; {same} identical "
        f"sets), {losses} losses; mean diff {diffs.mean():+.4f}"
    )
    by_problem = {}
    for r in rs:
        diff = r["auc"]["sa"] - r["auc"]["permutation"]
        by_problem.setdefault(r["problem"], []).append(diff)
    if max(len(v) for v in by_problem.values()) > 1:
        verdicts = []
        for diffs_of in by_problem.values():
            d = np.array(diffs_of)
            if np.all(d >= FLAGS.tie):
                verdicts.append("win")
            elif np.all(d <= -FLAGS.tie):
                verdicts.append("loss")
            elif np.all(np.abs(d) < FLAGS.tie):
                verdicts.append("tie")
            elif np.all(d > -FLAGS.tie) or np.all(d < FLAGS.tie):
                verdicts.append("win or tie" if d.mean() > 0 else "loss or tie")
            else:
                verdicts.append("mixed")
        counts = {v: verdicts.count(v) for v in dict.fromkeys(sorted(verdicts))}
        print(f"  per problem over its seeds: {counts}")
    for name in ("sa", "permutation", "sources", "all"):
        values = [r["auc"][name] for r in rs]
        print(f"  mean test AUC {name:12s} {np.mean(values):.4f}")
    for method in ("sa", "permutation"):
        print(
            f"  {method}: every group covered "
            f"{sum(r[method]['all_groups'] for r in rs)}/{len(rs)}, runs with a "
            f"noise pick {sum(bool(r[method]['noise_picks']) for r in rs)}/{len(rs)}"
            f", redundant while missing "
            f"{sum(r[method]['redundant_while_missing'] for r in rs)}/{len(rs)}"
        )
    for r in rs:
        if abs(r["auc"]["sa"] - r["auc"]["permutation"]) >= FLAGS.tie:
            print(
                f"  p{r['problem']:02d} s{r['seed']}: SA {r['auc']['sa']:.4f} "
                f"{r['sa_order']} vs permutation {r['auc']['permutation']:.4f} "
                f"{r['permutation_order']}"
            )


def main(argv):
    del argv
    if FLAGS.summary:
        summarize(FLAGS.summary)
        return
    start, stop = (int(v) for v in FLAGS.problems.split(":"))
    done = {key(r) for r in load(FLAGS.output)}
    if FLAGS.output:
        pathlib.Path(FLAGS.output).parent.mkdir(parents=True, exist_ok=True)
    skipped = 0
    for problem_seed in range(start, stop):
        problem = generate_problem(problem_seed, FLAGS.kind)
        for seed in (int(s) for s in FLAGS.seeds):
            record = {"kind": FLAGS.kind, "problem": problem_seed, "seed": seed}
            record |= {"batch_size": FLAGS.batch_size, "epochs": FLAGS.epochs}
            record["requested_k"] = FLAGS.k  # None: the answer's groups
            if key(record) in done:
                skipped += 1
                continue
            record |= run_one(problem, seed)
            auc = record["auc"]
            print(
                f"p{problem_seed:02d} s{seed}: SA {auc['sa']:.4f} permutation "
                f"{auc['permutation']:.4f} sources {auc['sources']:.4f} all "
                f"{auc['all']:.4f} same set {record['same_set']}",
                flush=True,
            )
            if FLAGS.output:
                with open(FLAGS.output, "a") as out:
                    out.write(json.dumps(record) + "\n")
    if skipped:
        print(
            f"{skipped} runs skipped: {FLAGS.output} already holds them (same "
            "kind, problem, seed, batch size, epochs and --k); pass another --output "
            "to run them again.",
            flush=True,
        )


def key(record: dict) -> tuple:
    """Which run a record is (records before session 57 hold no kind, batch
    size, epochs or ``--k``: the kind is then unknown, the others the
    defaults)."""
    return (
        record.get("kind"),
        record["problem"],
        record["seed"],
        record.get("batch_size", 128),
        record.get("epochs", 8),
        record.get("requested_k"),
    )


if __name__ == "__main__":
    app.run(main)
