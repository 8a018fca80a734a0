"""A prototype candidate statistic fitted on training rows, tested on held-out rows.

generated_quality.md, "Session 13". At each commit after the first, for every
candidate ``j`` and with the candidates' gates at 0 (the settled model):

* ``u_j``, the gradient of the loss with respect to the candidate's gated
  embedding, is computed on every training row and summed per value of the
  feature (less its mean over the rows): ``G_j[v]``, the gradient the
  candidate's table would get if its gate were 1, fresh from the current model
  and from no stale embedding;
* on the held-out rows, ``a_h = <u_j(h), G_j[v_h]>`` is the held-out loss's
  derivative along that training step, and the probe's z is
  ``sum(a) / sqrt(sum(a ** 2))``.

The probe is computed in numpy from a full pass over the data (a prototype:
it costs an epoch's forward and backward passes per round). With
``--policy replace`` it replaces the held-out gate statistic
(``heldout_scores``) in every commit after the first; with ``--policy
fallback`` only in rounds where no candidate's gate statistic clears
``signal_threshold`` (where the library's rule ranks by the least harm).

Usage, from the repository root:

  # fit_cost.py's equal-strength problem (13 signal + 13 noise fields), ~70 s
  python docs/generated_quality/residual_probe.py equal_strength --seed 0 \\
      --policy fallback
  # generated ctr problems, as generated_quality.py's defaults (Adam,
  # selection_data), one JSON line per run
  python docs/generated_quality/residual_probe.py ctr --problems 0:30 \\
      --seeds 0,1,2 --policy fallback --output /tmp/probe.jsonl
  # compare with the defaults' runs (tag rao_first) of the same problems
  python docs/generated_quality/residual_probe.py compare /tmp/probe.jsonl
"""

import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT + "/benchmarks", ROOT]
import argparse  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402

DEFAULTS = os.path.join(ROOT, "docs", "generated_quality", "ctr.jsonl")


def install_probe(model, layer, train, held, policy, project=0, buckets=0):
    """Wraps the commit rule so that it sees the probe's z (see the docstring).

    ``train`` and ``held`` are ``(features, labels)`` of numpy arrays. With
    ``project`` > 0, each candidate's ``u_j`` is first projected on that many
    fixed random directions (memory: ``project`` numbers per value instead of
    the embedding's width); with ``buckets`` > 0, the values are hashed into
    that many buckets per feature (their id modulo ``buckets``).
    """
    import tensorflow as tf

    from seqattn_tfrs import selection_state
    from seqattn_tfrs.core import modes

    names = list(layer.feature_names)
    gated = layer.output
    tail = tf.keras.Model([gated[n] for n in names], model.output)
    ids = {}
    for n in names:
        both = np.concatenate([np.asarray(train[0][n]), np.asarray(held[0][n])])
        ids[n] = np.unique(both, return_inverse=True)[1].reshape(-1)
        if buckets:
            ids[n] = ids[n] % buckets
    directions = [
        np.random.default_rng(i).normal(size=(v.shape[-1], project))
        for i, v in enumerate(gated.values())
    ]
    rows = len(train[1])
    commit = selection_state.selection.commit_round

    def upstream(features, labels):
        parts = []
        for start in range(0, len(labels), 4096):
            batch = {n: tf.constant(features[n][start : start + 4096]) for n in names}
            values = [tf.identity(v) for v in layer(batch).values()]
            y = tf.constant(labels[start : start + 4096].reshape(-1, 1), tf.float32)
            with tf.GradientTape() as tape:
                tape.watch(values)
                loss = tf.reduce_sum(
                    tf.keras.losses.binary_crossentropy(y, tail(values))
                )
            parts.append([g.numpy() for g in tape.gradient(loss, values)])
        return [np.concatenate([p[i] for p in parts]) for i in range(len(names))]

    def probe(candidates):
        before = int(layer.gate_mode.numpy())
        layer.set_gate_mode(modes.SETTLING)  # the candidates' gates at 0
        u, u_held = upstream(*train), upstream(*held)
        layer.set_gate_mode(before)
        if project:
            u = [v @ d for v, d in zip(u, directions)]
            u_held = [v @ d for v, d in zip(u_held, directions)]
        z = np.zeros(len(names))
        for i in candidates:
            train_ids, held_ids = ids[names[i]][:rows], ids[names[i]][rows:]
            sums = np.zeros((ids[names[i]].max() + 1, u[i].shape[1]))
            np.add.at(sums, train_ids, u[i] - u[i].mean(0))
            a = (u_held[i] * sums[held_ids]).sum(1)
            z[i] = a.sum() / np.sqrt((a * a).sum() + 1e-30)
        return z

    def probing_commit(spec, record, logits, gates, **kwargs):
        selected = np.asarray(record.selected, bool)
        scores = kwargs.get("heldout_scores")
        use = selected.any() and scores is not None and np.any(scores)
        if use and policy == "fallback":
            use = selection_state.selection.signal_exhausted(selected, scores)
        if use:
            kwargs["heldout_scores"] = probe(np.flatnonzero(~selected))
        return commit(spec, record, logits, gates, **kwargs)

    selection_state.selection.commit_round = probing_commit


def equal_strength(args):
    import fit_cost
    import tensorflow as tf
    from absl import flags

    import seqattn_tfrs

    flags.FLAGS(["x"])  # fit_cost's defaults: 26 fields of 1,000 values, k=13
    batch, signal_fields = 512, 13
    features, labels = fit_cost.make_data(batch * 33, 0)
    held_features, held_labels = fit_cost.make_data(batch * 4, 1)
    tf.keras.utils.set_random_seed(args.seed)
    model = fit_cost.build_model(gated=True)
    gate = model.get_layer("gate")
    model.compile(tf.keras.optimizers.Adam(1e-3), "binary_crossentropy")
    train = (
        tf.data.Dataset.from_tensor_slices((features, labels))
        .shuffle(20000, seed=args.seed)
        .batch(batch, drop_remainder=True)
        .cache()
        .repeat()
    )
    held = tf.data.Dataset.from_tensor_slices((held_features, held_labels))
    if args.policy != "none":
        install_probe(
            model,
            gate,
            (features, labels),
            (held_features, held_labels),
            args.policy,
            args.project,
            args.buckets,
        )
    callback = seqattn_tfrs.SequentialAttentionCallback(
        warmup_epochs=1, finetune_epochs=1, selection_data=held.batch(batch), verbose=0
    )
    model.fit(train, steps_per_epoch=33, epochs=15, callbacks=[callback], verbose=0)
    picked = list(gate.selected_features)
    noise = [n for n in picked if int(n[1:]) >= signal_fields]
    print(
        f"seed {args.seed} {args.policy} project {args.project} buckets "
        f"{args.buckets}: selected {picked}: {len(noise)} noise"
    )


def generated_ctr(args):
    import planted
    import tensorflow as tf
    from generator import generate_problem, score_picks

    import seqattn_tfrs
    from seqattn_tfrs import selection_state

    default_commit = selection_state.selection.commit_round
    start, stop = (int(v) for v in args.problems.split(":"))
    for p in range(start, stop):
        problem = generate_problem(p, "ctr")
        names, split = problem.names, problem.train_rows
        train = (
            {f: problem.features[f][:split] for f in names},
            problem.labels[:split],
        )
        held = ({f: problem.features[f][split:] for f in names}, problem.labels[split:])
        for seed in (int(s) for s in args.seeds.split(",")):
            selection_state.selection.commit_round = default_commit
            tf.keras.backend.clear_session()
            tf.keras.utils.set_random_seed(seed)
            model, layer = planted.ctr_model(
                problem.features, num_selected=problem.answer["k"]
            )
            model.compile(planted.make_optimizer("ctr", "adam"), "binary_crossentropy")
            callback = seqattn_tfrs.SequentialAttentionCallback(
                finetune_epochs=0,
                selection_data=tf.data.Dataset.from_tensor_slices(held).batch(128),
                verbose=0,
            )
            if args.policy != "none":
                install_probe(
                    model, layer, train, held, args.policy, args.project, args.buckets
                )
            model.fit(
                tf.data.Dataset.from_tensor_slices(train)
                .shuffle(split, seed=seed)
                .batch(128),
                epochs=callback.schedule_length(layer.num_rounds),
                callbacks=[callback],
                verbose=0,
            )
            order = list(layer.selected_features)
            record = {"problem": p, "seed": seed, "policy": args.policy}
            record.update(project=args.project, buckets=args.buckets)
            record.update(order=order, **score_picks(problem.answer, order))
            print(p, seed, order, record["all_groups"], record["noise_picks"])
            with open(args.output, "a") as out:
                out.write(json.dumps(record) + "\n")


def compare(args):
    """Rates of the probe's runs and of the defaults' runs of the same runs."""
    probe = {}
    for path in args.files:
        with open(path) as lines:
            for r in map(json.loads, lines):
                probe[(r["problem"], r["seed"])] = r
    defaults = {}
    with open(DEFAULTS) as lines:
        runs = [json.loads(line) for line in lines]
    for r in runs:
        if (r["tag"], r["source"], r["optimizer"]) == ("rao_first", "heldout", "adam"):
            defaults[(r["problem"], r["seed"])] = r
    keys = sorted(set(probe) & set(defaults))
    for label, runs in (("probe", probe), ("defaults", defaults)):
        rs = [runs[k] for k in keys]
        print(
            f"{label:9s} runs {len(rs)}: every group covered "
            f"{sum(r['all_groups'] for r in rs)}, a noise pick "
            f"{sum(r['noise_picks'] > 0 for r in rs)}, a redundant pick while a "
            f"group was missing {sum(r['redundant_while_missing'] > 0 for r in rs)}"
        )
    for k in keys:
        a, b = probe[k], defaults[k]
        if (a["all_groups"], a["noise_picks"]) != (b["all_groups"], b["noise_picks"]):
            print(
                f"  problem {k[0]} seed {k[1]}: probe {a['order']}, defaults "
                f"{b['order']}"
            )


parser = argparse.ArgumentParser()
sub = parser.add_subparsers(dest="command", required=True)
one = sub.add_parser("equal_strength")
one.add_argument("--seed", type=int, default=0)
one.add_argument(
    "--policy", choices=["replace", "fallback", "none"], default="fallback"
)
one.add_argument("--project", type=int, default=0)
one.add_argument("--buckets", type=int, default=0)
many = sub.add_parser("ctr")
many.add_argument("--project", type=int, default=0)
many.add_argument("--buckets", type=int, default=0)
many.add_argument("--problems", default="0:30")
many.add_argument("--seeds", default="0,1,2")
many.add_argument(
    "--policy", choices=["replace", "fallback", "none"], default="fallback"
)
many.add_argument("--output", required=True)
summary = sub.add_parser("compare")
summary.add_argument("files", nargs="+")

if __name__ == "__main__":
    args = parser.parse_args()
    {"equal_strength": equal_strength, "ctr": generated_ctr, "compare": compare}[
        args.command
    ](args)
