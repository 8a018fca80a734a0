"""Byte budgets: Sequential Attention's budget rules against two trivial rules.

Issue 14, item 4: under a byte budget, the default rule should beat both
trivial rules. For each problem, budget fraction ``f`` (of the bytes of all the
problem's tables) and seed, every method yields a field set within
``f`` x all bytes; each set is retrained from scratch in the same DCN
architecture with the same schedule as ``selection_quality.py`` (its
``retrain``: Adam, early stopping on validation AUC, best epoch restored) and
scored on the test split. The data and splits are fixed; the seed sets the
model initialisation and batch order of every selection and retraining.

A field's cost is the bytes of its table as the library measures them
(``seqattn_tfrs.sizes.layer_bytes`` of its per-field layer, what the gate's
``feature_costs()`` reports; checked against the gate on every budget run).

Methods:

* ``size_sort``: the fields in ascending order of bytes (ties: problem order),
  each added when it still fits what is left of the budget and skipped
  otherwise (a greedy knapsack by size, going on past a field that does not
  fit). No training; the same set for every seed.
* ``count_cut``: Sequential Attention by count (``num_selected=k``,
  ``selection_data`` = the validation split, library defaults, the schedule
  of ``selection_quality.gate_ranking(..., heldout=True)``), its picks in
  pick order, each kept when it still fits (skipped otherwise). One count run
  per seed, with k = the most fields the largest budget can hold
  (``core.budget.max_affordable``, at most every field); its order serves
  every budget: with a fixed number of epochs per round, the first j picks
  of a k-field run do not depend on k.
* ``sa_<rule>``: the library's byte-budget selection (``budget_bytes``,
  ``AttentionOptions(budget_rule=<rule>)``, ``selection_data`` = the
  validation split, otherwise the same defaults and schedule), one run per
  (seed, budget), filling the budget (``entry_z=None``). With ``--entry_z
  Z`` the methods are ``sa_<rule>_z<Z>``: the selection also stops when no
  affordable field's score test passes ``Z`` (``sa_attention_per_byte_z3``
  is the library's default, ``entry_z="auto"``).

* ``informative_best`` (generated problems only; a reference, not a method:
  it reads the planted answer): every set of planted-informative fields (no
  noise field) that fits and leaves no room for another informative field,
  each retrained; per seed the one of best validation AUC. What a
  rule that knew which fields inform could reach, so how far above the
  trivial rules a cell leaves room to be.

Problems: ``--problem movielens|criteo|ctr`` (``selection_quality``'s, with
its defaults), or ``--generated 0:6``: generated ctr problems
(``generator.generate_problem(seed, "ctr")``; with ``--generated_kind
ctr_budget``, the family whose table sizes say nothing about a field's worth),
split 80/10/10 like the
synthetic problems of ``selection_quality`` (the held-out 20% halved into
validation and test, as ``generated_auc.py`` does), with the ``ctr`` problem's
batch size and learning rate and the same DCN architecture.

One JSON line per (problem, budget fraction, seed, method) is appended to
``<--results_dir>/<problem>.jsonl``. Identical field sets of one seed are
retrained once per process (fields in problem order, so the retraining is the
same either way); nothing is cached across processes.

Usage:
  python benchmarks/budget_quality.py --problem movielens [--seeds 0,1,2] \\
      [--budgets 0.05,0.1,0.2] [--rules attention_per_byte,attention]
  python benchmarks/budget_quality.py --generated 0:6 --seeds 0
  python benchmarks/budget_quality.py --summary docs/budget_quality/movielens.jsonl
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Measure the seqattn_tfrs of this checkout, not whichever copy is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import pathlib  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import selection_quality as sq  # noqa: E402  (defines the shared flags)
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import seqattn_tfrs  # noqa: E402
from seqattn_tfrs import sizes  # noqa: E402
from seqattn_tfrs.core.budget import max_affordable  # noqa: E402

TRIVIAL = ("size_sort", "count_cut")

FLAGS = flags.FLAGS
flags.DEFINE_list("budgets", ["0.05", "0.1", "0.2"], "Fractions of all bytes.")
flags.DEFINE_list(
    "rules", ["attention_per_byte", "attention"], "Budget rules (sa_<rule>)."
)
flags.DEFINE_list(
    "budget_methods", None, "Only these methods (default: trivial rules + rules)."
)
flags.DEFINE_string(
    "generated", "", "Generated ctr problems start:stop (instead of --problem)."
)
flags.DEFINE_enum(
    "generated_kind",
    "ctr",
    ["ctr", "ctr_budget"],
    "Generator kind of --generated: ctr (files generated-<seed>) or ctr_budget, "
    "whose table sizes say nothing about a field's worth (generated_budget-<seed>).",
)
flags.DEFINE_string(
    "results_dir",
    str(sq.ROOT / "runs" / "budget_quality"),
    "JSON lines go here (the stored rows: docs/budget_quality).",
)
flags.DEFINE_float(
    "entry_z",
    None,
    "Budget runs stop when no affordable field's score test passes this "
    "(methods sa_<rule>_z<entry_z>, e.g. sa_attention_per_byte_z3 for the "
    "library's default); unset, they fill the budget (entry_z=None).",
)
flags.DEFINE_multi_string("summary", [], "Summarise these JSON-lines files.")


def costs_of(problem: sq.Problem) -> dict[str, int]:
    """Bytes of each field's table, as the gate's ``feature_costs`` measures."""
    costs = {n: sizes.layer_bytes(problem.make_layer(n)) for n in problem.names}
    unknown = [n for n, c in costs.items() if c is None]
    if unknown:
        raise ValueError(f"bytes of {unknown} cannot be known before training")
    return costs


def size_sort(names: list[str], costs: dict[str, int], budget: int) -> list[str]:
    order = sorted(names, key=lambda n: (costs[n], names.index(n)))
    return cut_to_fit(order, costs, budget)


def cut_to_fit(order: list[str], costs: dict[str, int], budget: int) -> list[str]:
    kept, left = [], budget
    for name in order:
        if costs[name] <= left:
            kept.append(name)
            left -= costs[name]
    return kept


def gate_select(
    problem: sq.Problem, seed: int, costs: dict[str, int], **gate
) -> tuple[list[str], float, int]:
    """One Sequential Attention selection (held-out logits): picks, s, epochs."""
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    model = sq.build(problem, {n: problem.make_layer(n) for n in problem.names}, **gate)
    seen = model.gate.feature_costs()
    if seen != costs:
        raise AssertionError(f"gate costs {seen} differ from {costs}")
    callback = seqattn_tfrs.SequentialAttentionCallback(
        warmup_epochs=FLAGS.warmup_epochs,
        epochs_per_selection=FLAGS.round_epochs,
        finetune_epochs=0,
        selection_data=problem.dataset("val"),
        verbose=0,
    )
    epochs = callback.schedule_length(model.gate.num_rounds)
    model.fit(
        problem.dataset("train", seed), epochs=epochs, callbacks=[callback], verbose=0
    )
    return list(model.gate.selected_features), time.perf_counter() - start, epochs


def problems() -> list[tuple[str, sq.Problem, dict | None]]:
    """(label, problem, the planted answer or None) for each problem asked for."""
    if not FLAGS.generated:
        problem, _ = sq.configure()
        return [(FLAGS.problem, problem, None)]
    from generator import generate_problem

    _, rows, batch, rate = sq.DEFAULTS["ctr"]
    FLAGS.batch_size = FLAGS.batch_size or batch
    FLAGS.learning_rate = FLAGS.learning_rate or rate
    start, stop = (int(v) for v in FLAGS.generated.split(":"))
    out = []
    kind = FLAGS.generated_kind
    prefix = "generated" if kind == "ctr" else "generated_budget"
    for seed in range(start, stop):
        gen = generate_problem(seed, kind)
        # synthetic() splits 80/10/10 in row order: train = the generator's
        # training rows, its held-out rows halved into validation and test.
        assert gen.train_rows == int(0.8 * len(gen.labels))
        out.append(
            (
                f"{prefix}-{seed}",
                sq.synthetic(gen.features, gen.labels, set(gen.answer["noise"])),
                gen.answer,
            )
        )
    return out


def informative_sets(answer: dict, costs: dict[str, int], budget: int) -> list:
    """Every set of planted-informative fields (no noise field) that fits
    ``budget`` and leaves no room for another informative field."""
    fields = [f for g in answer["groups"] for f in g["members"]]
    found = []
    for chosen in itertools.product([False, True], repeat=len(fields)):
        kept = [f for f, keep in zip(fields, chosen) if keep]
        left = budget - sum(costs[f] for f in kept)
        if left >= 0 and not any(
            costs[f] <= left for f, keep in zip(fields, chosen) if not keep
        ):
            found.append(kept)
    return found


def run_problem(label: str, problem: sq.Problem, answer: dict | None = None) -> None:
    names = problem.names
    costs = costs_of(problem)
    total = sum(costs.values())
    fractions = [float(f) for f in FLAGS.budgets]
    budgets = {f: int(math.floor(f * total)) for f in fractions}
    suffix = "" if FLAGS.entry_z is None else f"_z{FLAGS.entry_z:g}"
    methods = FLAGS.budget_methods or [
        *TRIVIAL,
        *(f"sa_{r}{suffix}" for r in FLAGS.rules),
    ]
    out = pathlib.Path(FLAGS.results_dir) / f"{label}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"{label}: {len(names)} fields, {total} bytes; budgets "
        f"{budgets}; costs {costs}; noise {sorted(problem.noise)}",
        flush=True,
    )
    for seed in (int(s) for s in FLAGS.seeds):
        retrained: dict[tuple[str, ...], dict] = {}

        def score(fields: list[str], seed=seed, retrained=retrained) -> dict:
            key = tuple(n for n in names if n in fields)
            if key not in retrained:
                if not key:  # nothing fits: the constant model
                    retrained[key] = {
                        "auc": 0.5,
                        "val_auc": 0.5,
                        "log_loss": None,
                        "seconds": 0.0,
                    }
                else:
                    tf.keras.backend.clear_session()
                    metrics, model, seconds = sq.retrain(problem, list(key), seed)
                    val = model.evaluate(
                        problem.dataset("val"), return_dict=True, verbose=0
                    )
                    retrained[key] = {
                        "auc": float(metrics["auc"]),
                        "val_auc": float(val["auc"]),
                        "log_loss": float(metrics["log_loss"]),
                        "seconds": seconds,
                        "epochs": model.epochs_run,
                    }
                    retrained[key]["cached"] = False
                    return dict(retrained[key])
            return {**retrained[key], "cached": True}

        count_order, count_seconds = None, None
        if "count_cut" in methods:
            k = min(
                len(names), max_affordable(list(costs.values()), max(budgets.values()))
            )
            count_order, count_seconds, _ = gate_select(
                problem, seed, costs, num_selected=k
            )
            print(f"  seed {seed}: count k={k} {count_seconds:.0f} s: {count_order}")
        for fraction, budget in budgets.items():
            for method in methods:
                extra: dict = {}
                if method == "size_sort":
                    fields, seconds = size_sort(names, costs, budget), 0.0
                elif method == "count_cut":
                    fields = cut_to_fit(count_order, costs, budget)
                    seconds = count_seconds
                    extra = {"count_order": count_order, "selection_shared": True}
                elif method == "informative_best":
                    if answer is None:
                        raise ValueError("informative_best needs --generated")
                    start = time.perf_counter()
                    candidates = informative_sets(answer, costs, budget)
                    fields = max(candidates, key=lambda f: score(f)["val_auc"])
                    seconds = time.perf_counter() - start
                    extra = {"candidate_sets": len(candidates)}
                elif method.startswith("sa_"):
                    rule = method[3:].removesuffix(suffix)
                    try:
                        fields, seconds, epochs = gate_select(
                            problem,
                            seed,
                            costs,
                            budget_bytes=budget,
                            attention=seqattn_tfrs.AttentionOptions(
                                budget_rule=rule, entry_z=FLAGS.entry_z
                            ),
                        )
                    except Exception as error:  # noqa: BLE001  (reported, not fatal)
                        print(f"  {method} failed: {type(error).__name__}: {error}")
                        continue
                    extra = {"selection_epochs": epochs}
                else:
                    raise ValueError(f"unknown method {method!r}")
                spent = sum(costs[n] for n in fields)
                assert spent <= budget, (method, fields, spent, budget)
                result = score(fields)
                row = {
                    "problem": label,
                    "budget_fraction": fraction,
                    "budget_bytes": budget,
                    "total_bytes": total,
                    "seed": seed,
                    "method": method,
                    "fields": fields,
                    "bytes": spent,
                    "fraction": spent / total,
                    "auc": result["auc"],
                    "log_loss": result["log_loss"],
                    "select_seconds": round(seconds, 1),
                    "retrain_seconds": round(result["seconds"], 1),
                    "retrain_cached": result["cached"],
                    "retrain_epochs": result.get("epochs"),
                    **extra,
                }
                with out.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
                print(
                    f"  seed {seed} {fraction:.0%} {method:22s} AUC {row['auc']:.4f} "
                    f"{spent:>9d} B ({row['fraction']:.1%}) sel {seconds:5.0f} s "
                    f"fit {result['seconds']:4.0f} s{' (same set)' * result['cached']}"
                    f": {fields}",
                    flush=True,
                )


def load(path: str) -> list[dict]:
    text = pathlib.Path(path).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def verdict(diff: float, spread: float) -> str:
    if diff > spread:
        return "beats"
    if diff < -spread:
        return "loses"
    return "ties"


def summarize(paths: list[str]) -> None:
    """Per problem and budget: each method's mean test AUC (min-max) over seeds,
    mean bytes; per other method (an SA rule, or the ``informative_best``
    reference), against the better trivial rule of the cell:
    the mean difference, the seeds on which it beats both, and a verdict
    (beats / loses: the difference exceeds the larger half-range, (max-min)/2,
    of the two methods' AUCs over seeds; ties otherwise)."""
    rows = [r for p in paths for r in load(p)]
    cells: dict[tuple, dict[str, dict[int, dict]]] = {}
    for r in rows:
        key = (r["problem"], r["budget_fraction"])
        cells.setdefault(key, {}).setdefault(r["method"], {})[r["seed"]] = r
    tally: dict[str, dict[str, int]] = {}
    for (label, fraction), by_method in sorted(cells.items()):
        print(f"\n{label}, budget {fraction:.0%}")
        print("| method | seeds | test AUC mean (min-max) | mean bytes (% of all) |")
        print("|---|---|---|---|")
        stats = {}
        for method, runs in by_method.items():
            auc = np.array([runs[s]["auc"] for s in sorted(runs)])
            spent = np.mean([runs[s]["bytes"] for s in runs])
            share = np.mean([runs[s]["fraction"] for s in runs])
            stats[method] = auc
            print(
                f"| {method} | {len(auc)} | {auc.mean():.4f} ({auc.min():.4f}-"
                f"{auc.max():.4f}) | {spent:,.0f} ({share:.1%}) |"
            )
        if not all(t in by_method for t in TRIVIAL):
            continue
        for method, runs in by_method.items():
            if method in TRIVIAL:
                continue
            seeds = [s for s in sorted(runs) if all(s in by_method[t] for t in TRIVIAL)]
            won = sum(
                runs[s]["auc"] > max(by_method[t][s]["auc"] for t in TRIVIAL)
                for s in seeds
            )
            same = {
                t: sum(
                    set(runs[s]["fields"]) == set(by_method[t][s]["fields"])
                    for s in seeds
                )
                for t in TRIVIAL
            }
            means = {t: stats[t].mean() for t in TRIVIAL}
            best = max(means, key=means.get)
            diff = stats[method].mean() - means[best]
            spread = max(np.ptp(stats[method]), np.ptp(stats[best])) / 2
            call = verdict(diff, spread)
            t = tally.setdefault(method, {"beats": 0, "ties": 0, "loses": 0})
            t[call] += 1
            t["mean_wins"] = t.get("mean_wins", 0) + int(diff > 0)
            t["cells"] = t.get("cells", 0) + 1
            t["seed_wins"] = t.get("seed_wins", 0) + won
            t["seeds"] = t.get("seeds", 0) + len(seeds)
            print(
                f"{method}: {diff:+.4f} against {best} (half-range {spread:.4f}): "
                f"{call}; beats both on {won} of {len(seeds)} seeds; same set as "
                + ", ".join(f"{t} on {n}" for t, n in same.items())
            )
    methods = list(dict.fromkeys(m for by_method in cells.values() for m in by_method))
    for what, key in (("mean test AUC (min-max)", "auc"), ("mean bytes", "bytes")):
        print(
            f"\n{what}, every cell:\n| problem | budget | " + " | ".join(methods) + " |"
        )
        print("|---" * (len(methods) + 2) + "|")
        for (label, fraction), by_method in sorted(cells.items()):
            parts = []
            for method in methods:
                values = np.array(
                    [r[key] for r in by_method.get(method, {}).values()], float
                )
                if not values.size:
                    parts.append("")
                elif key == "bytes":
                    parts.append(f"{values.mean():,.0f}")
                else:
                    parts.append(
                        f"{values.mean():.4f} ({values.min():.4f}-{values.max():.4f})"
                    )
            print(f"| {label} | {fraction:.0%} | " + " | ".join(parts) + " |")
    print()
    for method, t in tally.items():
        print(
            f"{method}: above both trivial rules on the mean in {t['mean_wins']} of "
            f"{t['cells']} cells (beats {t['beats']}, ties {t['ties']}, loses "
            f"{t['loses']}); above both on {t['seed_wins']} of {t['seeds']} seeds"
        )


def main(argv):
    del argv
    if FLAGS.summary:
        summarize(FLAGS.summary)
        return
    for label, problem, answer in problems():
        run_problem(label, problem, answer)


if __name__ == "__main__":
    app.run(main)
