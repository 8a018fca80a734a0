"""Selection quality of the library's defaults over generated planted problems.

For each problem seed of ``generator.generate_problem`` and each training seed,
one selection run with the public API only (``SequentialAttentionEmbedding``
and ``SequentialAttentionCallback``) and the defaults of both, except what a
user must choose: k (the answer's signal budget: the number of informative
groups for ctr, 4 for least squares), the optimizer, ``finetune_epochs=0``
(fine-tuning happens after the last pick and cannot change it) and, with
``--sources heldout``, ``selection_data`` = the problem's held-out rows.

Models: ``planted.ctr_model`` (4-wide embeddings, a 32-unit ReLU layer, a
sigmoid unit; Adam 0.01) and ``planted.linear_model`` (one scalar per field
into one Dense unit; Adam 0.05), batch 128; learning rates for SGD and Adagrad
from ``planted.LEARNING_RATES``. Each run appends one JSON line to
``--output`` (runs already there are skipped, so an interrupted sweep resumes).

Usage:
  python benchmarks/generated_quality.py --kind ctr --problems 0:30 \\
      --seeds 0 --sources heldout --output runs/ctr.jsonl
  python benchmarks/generated_quality.py --summary docs/generated_quality/ctr.jsonl

Ablations pass a ``--tag`` and layer/callback options, e.g.
``--tag settle05 --settle_fraction 0.5``.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Measure the seqattn_tfrs of this checkout, not whichever copy is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import collections  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from generated_run import run_one  # noqa: E402
from generator import describe, generate_problem, score_picks  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum(
    "kind", "ctr", ["ctr", "ctr_budget", "ctr_sparse", "least_squares"], "Problem kind."
)
flags.DEFINE_string("problems", "0:30", "Problem seeds, start:stop.")
flags.DEFINE_list("seeds", ["0"], "Training seeds.")
flags.DEFINE_list("sources", ["heldout"], "heldout (selection_data) and/or train.")
flags.DEFINE_enum("optimizer", "adam", ["adam", "adagrad", "sgd"], "Optimizer.")
flags.DEFINE_integer("batch_size", 128, "Training and held-out batch size.")
flags.DEFINE_string("tag", "default", "Names the settings in the output.")
flags.DEFINE_enum("model", "mlp", ["mlp", "dcn"], "ctr: planted.ctr_model / dcn_model.")
flags.DEFINE_integer("epochs_per_selection", None, "Callback option (None: default).")
flags.DEFINE_float("settle_fraction", None, "Callback option (None: default).")
flags.DEFINE_integer(
    "steps_per_selection", None, "Callback option: rounds of this many steps."
)
flags.DEFINE_integer(
    "selection_interval", None, "Callback option: training steps per held-out step."
)
flags.DEFINE_enum(
    "attention_signal", None, ["partial", "gradient", "score"], "Layer option."
)
flags.DEFINE_integer(
    "mirrored_devices",
    0,
    "Train under MirroredStrategy over this many logical CPUs (0: no strategy).",
)
flags.DEFINE_string("output", "", "JSON lines to append to.")
flags.DEFINE_string("summary", "", "Print the rates of this JSON-lines file; no runs.")
flags.DEFINE_bool("patterns", False, "With --summary: break the failures down.")
flags.DEFINE_list("summary_seeds", [], "With --summary: only these training seeds.")
flags.DEFINE_string(
    "paired", "", "With --summary: compare this tag with `default`, run by run."
)


def options_from_flags() -> tuple[dict, dict]:
    """The layer's and the callback's non-default options given as flags."""
    layer_options = {}
    if FLAGS.attention_signal:
        layer_options["attention_signal"] = FLAGS.attention_signal
    callback_options = {}
    if FLAGS.epochs_per_selection:
        callback_options["epochs_per_selection"] = FLAGS.epochs_per_selection
    if FLAGS.settle_fraction is not None:
        callback_options["settle_fraction"] = FLAGS.settle_fraction
    if FLAGS.steps_per_selection:
        callback_options["steps_per_selection"] = FLAGS.steps_per_selection
    if FLAGS.selection_interval:
        callback_options["selection_interval"] = FLAGS.selection_interval
    return layer_options, callback_options


# What a run's settings are when a record does not say (older records hold
# fewer of them): the flags' defaults.
DEFAULT_SETTINGS = {
    "epochs_per_selection": None,
    "settle_fraction": None,
    "steps_per_selection": None,
    "attention_signal": None,
    "selection_interval": None,
    "batch_size": 128,
    "model": "mlp",
    "mirrored_devices": 0,
}


def key(record: dict) -> tuple:
    """Which run a record is: a run already in ``--output`` under the same
    key is skipped, so every setting that changes a run is part of it."""
    settings = {**DEFAULT_SETTINGS, **record.get("settings", {})}
    fields = ("kind", "problem", "seed", "source", "optimizer", "tag")
    return tuple(record[f] for f in fields) + tuple(
        settings[name] for name in sorted(DEFAULT_SETTINGS)
    )


def load(path: str) -> list[dict]:
    p = pathlib.Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def run(argv) -> None:
    del argv
    start, stop = (int(v) for v in FLAGS.problems.split(":"))
    done = {key(r) for r in load(FLAGS.output)} if FLAGS.output else set()
    if FLAGS.output:
        pathlib.Path(FLAGS.output).parent.mkdir(parents=True, exist_ok=True)
    settings = {
        "epochs_per_selection": FLAGS.epochs_per_selection,
        "settle_fraction": FLAGS.settle_fraction,
        "steps_per_selection": FLAGS.steps_per_selection,
        "attention_signal": FLAGS.attention_signal,
        "selection_interval": FLAGS.selection_interval,
        "batch_size": FLAGS.batch_size,
        "model": FLAGS.model,
    }
    skipped = 0
    strategy = None
    if FLAGS.mirrored_devices:
        import tensorflow as tf

        settings["mirrored_devices"] = FLAGS.mirrored_devices
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.mirrored_devices
        )
        devices = [f"/cpu:{i}" for i in range(FLAGS.mirrored_devices)]
        strategy = tf.distribute.MirroredStrategy(devices)
    for problem_seed in range(start, stop):
        problem = generate_problem(problem_seed, FLAGS.kind)
        for seed in (int(s) for s in FLAGS.seeds):
            for source in FLAGS.sources:
                record = {
                    "kind": FLAGS.kind,
                    "problem": problem_seed,
                    "seed": seed,
                    "source": source,
                    "optimizer": FLAGS.optimizer,
                    "tag": FLAGS.tag,
                    "settings": settings,
                }
                if key(record) in done:
                    skipped += 1
                    continue
                record["rows"] = len(problem.labels)
                record["fields"] = len(problem.names)
                layer_options, callback_options = options_from_flags()
                record.update(
                    run_one(
                        problem,
                        seed,
                        source == "heldout",
                        optimizer=FLAGS.optimizer,
                        batch_size=FLAGS.batch_size,
                        layer_options=layer_options,
                        callback_options=callback_options,
                        architecture=FLAGS.model,
                        strategy=strategy,
                    )
                )
                record["problem_text"] = describe(problem.answer)
                print(
                    f"{FLAGS.kind} p{problem_seed:02d} s{seed} {source:7s} "
                    f"{record['seconds']:5.1f}s " + verdict(record),
                    flush=True,
                )
                if FLAGS.output:
                    with open(FLAGS.output, "a") as out:
                        out.write(json.dumps(record) + "\n")
    if skipped:
        print(
            f"{skipped} runs skipped: {FLAGS.output} already holds them (same "
            "problem, seed, source, optimizer, tag and settings); pass another "
            "--output or --tag to run them again.",
            flush=True,
        )


def verdict(r: dict) -> str:
    parts = [f"picks {r['order']}"]
    if r["kind"] != "least_squares":
        missed = [m["source"] for m in r["missed"]]
        parts.append(f"missed {missed}" if missed else "ALL")
    elif r["omp_order_agrees"]:
        parts.append("OMP-order")
    else:
        parts.append("OMP-set" if r["omp_set_agrees"] else "OMP-differs")
    if r["redundant_while_missing"]:
        parts.append("REDUNDANT")
    if r["noise_picks"]:
        parts.append(f"NOISE x{r['noise_picks']}")
    return " ".join(parts)


def summarize(path: str) -> None:
    cells = collections.defaultdict(list)
    answers = {}
    for r in load(path):
        if FLAGS.summary_seeds and str(r["seed"]) not in FLAGS.summary_seeds:
            continue
        if "strictly_redundant_while_missing" not in r:  # older records
            problem = (r["kind"], r["problem"])
            if problem not in answers:
                answers[problem] = generate_problem(r["problem"], r["kind"]).answer
            r.update(score_picks(answers[problem], r["order"]))
        cells[(r["kind"], r["optimizer"], r["source"], r["tag"])].append(r)
    if FLAGS.paired:
        paired(cells, FLAGS.paired)
        return
    for (kind, optimizer, source, tag), rs in sorted(cells.items()):
        n = len(rs)
        problems = len({r["problem"] for r in rs})
        seeds = len({r["seed"] for r in rs})

        def rate(name, rs=rs, n=n):
            return f"{sum(bool(r[name]) for r in rs)}/{n}"

        print(
            f"{kind} {optimizer} {source} [{tag}]: {n} runs "
            f"({problems} problems x {seeds} seeds)"
        )
        rows = [("no noise pick in the first k", rate("all_informative"))]
        rows += [
            ("runs with a noise pick", rate("noise_picks")),
            ("noise picks in all", sum(r["noise_picks"] for r in rs)),
            ("redundant pick while a group missing", rate("redundant_while_missing")),
            ("  of which strictly redundant", rate("strictly_redundant_while_missing")),
        ]
        if kind != "least_squares":
            rows.insert(0, ("every group covered in the first k", rate("all_groups")))
        if kind == "ctr_sparse":
            rows += [
                ("first pick = the oracle's first group", rate("first_pick_agrees")),
                ("first two = the oracle's first two", rate("first_two_agree")),
            ]
        if kind == "least_squares":
            rows += [
                ("OMP order agrees", rate("omp_order_agrees")),
                ("OMP set agrees", rate("omp_set_agrees")),
                ("first pick = OMP's first", rate("first_pick_agrees")),
                ("runs with a decoy pick", rate("decoy_picks")),
            ]
        for label, value in rows:
            print(f"  {label + ':':40s} {value}")
        seconds = sum(r["seconds"] for r in rs) / n
        print(f"  {'mean fit seconds:':40s} {seconds:.1f}")
        if FLAGS.patterns:
            if kind == "least_squares":
                least_squares_patterns(rs)
            else:
                ctr_patterns(rs, kind)


def paired(cells, tag: str) -> None:
    """Per metric, how runs of the same problem and seed moved from `default`."""
    for (kind, optimizer, source, cell_tag), rs in sorted(cells.items()):
        if cell_tag != tag:
            continue
        base = {
            (r["problem"], r["seed"]): r
            for r in cells.get((kind, optimizer, source, "default"), [])
        }
        pairs = [
            (base[r["problem"], r["seed"]], r)
            for r in rs
            if (r["problem"], r["seed"]) in base
        ]
        print(
            f"{kind} {optimizer} {source}: default vs {tag}, {len(pairs)} paired runs"
        )
        names = [] if kind == "least_squares" else ["all_groups"]
        names += [
            "noise_picks",
            "redundant_while_missing",
            "strictly_redundant_while_missing",
        ]
        if kind == "least_squares":
            names += [
                "omp_order_agrees",
                "omp_set_agrees",
                "first_pick_agrees",
                "decoy_picks",
            ]
        for name in names:
            a = sum(bool(x[name]) for x, _ in pairs)
            b = sum(bool(y[name]) for _, y in pairs)
            lost = sum(bool(x[name]) and not y[name] for x, y in pairs)
            gained = sum(not x[name] and bool(y[name]) for x, y in pairs)
            print(
                f"  {name:34s} {a:3d} -> {b:3d} (true->false {lost}, "
                f"false->true {gained})"
            )


def _count(rs, name) -> str:
    return f"{sum(bool(r[name]) for r in rs)}/{len(rs)}"


def _per_problem(rs, fails) -> str:
    """How many problems fail on 0, 1, 2, ... of their seeds."""
    by_problem = collections.defaultdict(list)
    for r in rs:
        by_problem[r["problem"]].append(fails(r))
    counts = collections.Counter(sum(v) for v in by_problem.values())
    return ", ".join(f"{n} seeds: {counts[n]}" for n in sorted(counts))


def ctr_patterns(rs, kind: str = "ctr") -> None:
    answers = {p: generate_problem(p, kind).answer for p in {r["problem"] for r in rs}}
    print(
        "  problems by seeds with a missed group:  ",
        _per_problem(rs, lambda r: not r["all_groups"]),
    )
    print(
        "  problems by seeds with a redundant pick:",
        _per_problem(rs, lambda r: r["redundant_while_missing"]),
    )
    pair = [r for r in rs if answers[r["problem"]]["interactions"]]
    alone = [r for r in rs if not answers[r["problem"]]["interactions"]]
    for label, group in (("with an XOR pair", pair), ("without an XOR pair", alone)):
        print(
            f"  {label}: every group {_count(group, 'all_groups')}, redundant "
            f"while missing {_count(group, 'redundant_while_missing')}, noise "
            f"{_count(group, 'noise_picks')}"
        )
    missed = collections.Counter(m["kind"] for r in rs for m in r["missed"])
    print(f"  missed groups by kind: {dict(missed)}")
    pair_missed = collections.Counter(
        len(
            set(answers[r["problem"]]["interactions"][0])
            & {m["source"] for m in r["missed"]}
        )
        for r in pair
    )
    print(f"  XOR members missed per run with a pair (0/1/2): {dict(pair_missed)}")
    weak = [m["logit_std"] for r in rs for m in r["missed"] if m["kind"] == "main"]
    print(f"  missed main effects' logit std: {np.round(sorted(weak), 2).tolist()}")
    both = sum(
        r["redundant_while_missing"]
        and any(m["kind"] == "interaction" for m in r["missed"])
        for r in rs
    )
    print(f"  redundant-pick runs that miss an XOR member: {both}")
    pairs = collections.Counter()
    for r in rs:
        answer = answers[r["problem"]]
        group_of = {f: g for g in answer["groups"] for f in g["members"]}
        first = {}
        for f in r["picks"]:
            if f not in group_of:
                continue
            members = group_of[f]["members"]
            source = group_of[f]["source"]
            if source in first:
                pairs[
                    f"{members[first[source]].split(':')[0]} then "
                    f"{members[f].split(':')[0]}"
                ] += 1
            else:
                first[source] = f
    print(f"  redundant picks (first member, then): {dict(pairs)}")
    cards = sorted(
        answers[r["problem"]]["noise"][f]
        for r in rs
        for f in r["picks"]
        if f in answers[r["problem"]]["noise"]
    )
    print(f"  noise picks' cardinalities: {cards}")


def least_squares_patterns(rs) -> None:
    answers = {
        p: generate_problem(p, "least_squares").answer
        for p in {r["problem"] for r in rs}
    }
    print(
        "  problems by seeds agreeing with OMP:    ",
        _per_problem(rs, lambda r: r["omp_order_agrees"]),
    )
    low = [r for r in rs if min(answers[r["problem"]]["omp_margins"]) < 1.1]
    high = [r for r in rs if min(answers[r["problem"]]["omp_margins"]) >= 1.1]
    for label, group in (("smallest OMP margin < 1.1", low), (">= 1.1", high)):
        print(
            f"  {label}: OMP order {_count(group, 'omp_order_agrees')}, "
            f"set {_count(group, 'omp_set_agrees')}"
        )
    steps = collections.defaultdict(list)
    for r in rs:
        answer = answers[r["problem"]]
        for i, (got, want) in enumerate(zip(r["picks"], answer["omp_order"])):
            if got != want:
                steps[i + 1].append(round(answer["omp_margins"][i], 2))
                break
    for step, margins in sorted(steps.items()):
        print(
            f"  first disagreement at step {step}: {len(margins)} runs, OMP "
            f"margins there {sorted(margins)}"
        )
    wrong = collections.Counter()
    for r in rs:
        if r["first_pick_agrees"]:
            continue
        answer = answers[r["problem"]]
        members = {f: rel for g in answer["groups"] for f, rel in g["members"].items()}
        wrong[members.get(r["picks"][0], "noise").split(":")[0]] += 1
    print(f"  a wrong first pick was: {dict(wrong)}")


def main(argv):
    if FLAGS.summary:
        summarize(FLAGS.summary)
    else:
        run(argv)


if __name__ == "__main__":
    app.run(main)
