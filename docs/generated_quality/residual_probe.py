"""A prototype candidate statistic fitted on training rows, tested on held-out rows.

Since session 14 the library has its own version of this probe (on by
default with ``selection_data``): ``--policy none`` runs the library as it
is and prints, for each round in which the library's probe ran, its z of the
remaining signal and noise fields. ``--library_buckets`` sets the library
probe's buckets (session 15 measured 4,096 against 65,536 buckets, and 1, 4
and 16 directions, a setting the library dropped in session 16), and
``--rounds_log FILE`` appends every such round's gate z and probe z as JSON
lines; the other policies wrap the commit rule
with this prototype's statistic, as in session 13 (it replaces the held-out
statistic the rule sees; the library's own probe still applies where that
statistic is spent, so they no longer reproduce session 13's numbers alone).

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
  # the training side summed over the settle's steps, as a library would
  python docs/generated_quality/residual_probe.py equal_strength --seed 0 \\
      --policy fallback --project 1 --window settle
  # the MovieLens main job at its default config (~2-3 min; the job's report
  # and saved model go to --output_dir)
  python docs/generated_quality/residual_probe.py movielens --policy fallback
"""

import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT + "/benchmarks", ROOT]
import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402

DEFAULTS = os.path.join(ROOT, "docs", "generated_quality", "ctr.jsonl")


def install_probe(
    model, layer, train, held, loss_of, policy, project=0, buckets=0, window="commit"
):
    """Wraps the commit rule so that it sees the probe's z (see the docstring).

    ``train`` and ``held`` are lists of batches in the form ``fit`` takes, and
    ``loss_of(batch)`` the model's loss summed over the batch's rows. With
    ``project`` > 0, each candidate's ``u_j`` is first projected on that many
    fixed random directions (memory: ``project`` numbers per value instead of
    the embedding's width); with ``buckets`` > 0, the values are hashed into
    that many buckets per feature (their index modulo ``buckets``). A row of
    several values (a multi-valued feature) counts as one value.

    With ``window="settle"`` the training side is summed as a library version
    would sum it: at every training step of a settle (something selected), on
    the next batch of ``train`` (cycled) with the model of that step, each
    batch's ``u_j`` less its batch mean; the sums restart at every commit.
    Returns the callbacks ``fit`` must run for that (none for ``"commit"``).
    """
    import tensorflow as tf

    from seqattn_tfrs import selection_state, tf_ops
    from seqattn_tfrs.core import evidence, modes

    names = list(layer.feature_names)
    captured = {}
    layer_call = layer.call

    def capturing_call(features, training=None):
        """The layer's call; under a probe's tape it keeps outputs and inputs."""
        outputs = layer_call(features, training=training)
        tape = captured.get("tape")
        if tape is not None:
            outputs = {n: tf.identity(v) for n, v in outputs.items()}
            tape.watch(list(outputs.values()))
            captured["outputs"] = outputs
            captured["keys"] = {n: row_keys(features[n]) for n in names}
        return outputs

    def row_keys(value):
        rows = tf_ops.row_values(value)
        if rows.ndim == 1:
            return rows
        return np.array(["|".join(map(repr, r)) for r in rows.reshape(len(rows), -1)])

    layer.call = capturing_call

    def upstream(batches):
        """Per feature, ``u_j`` of every row ``[rows, d_j]`` and its keys."""
        grads, keys = [], []
        for batch in batches:
            with tf.GradientTape() as tape:
                captured["tape"] = tape
                loss = loss_of(batch)
                captured["tape"] = None
            outputs = [captured["outputs"][n] for n in names]
            grads.append([g.numpy() for g in tape.gradient(loss, outputs)])
            keys.append(captured["keys"])
        return (
            [np.concatenate([g[i] for g in grads]) for i in range(len(names))],
            {n: np.concatenate([k[n] for k in keys]) for n in names},
        )

    commit = selection_state.selection.commit_round
    settled = []  # (u less its batch mean, keys) of the settle's steps

    class SettleWindow(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.batches = itertools.cycle(train)

        def on_train_batch_end(self, batch, logs=None):
            if layer.selected_features and (
                int(layer.gate_mode.numpy()) == modes.SETTLING
            ):
                u, keys = upstream([next(self.batches)])
                settled.append(([g - g.mean(0) for g in u], keys))

    def probe(candidates):
        before = int(layer.gate_mode.numpy())
        layer.set_gate_mode(modes.SETTLING)  # the candidates' gates at 0
        if window == "settle":
            u = [np.concatenate([b[0][i] for b in settled]) for i in range(len(names))]
            keys = {n: np.concatenate([b[1][n] for b in settled]) for n in names}
        elif window == "commit":
            u, keys = upstream(train)
        u_held, held_keys = upstream(held)
        layer.set_gate_mode(before)
        z = np.zeros(len(names))
        if window == "heldout":
            for i in candidates:
                z[i] = pair_z(u_held[i], held_keys[names[i]], i)
            return z
        for i in candidates:
            if project:
                direction = np.random.default_rng(i).normal(
                    size=(u[i].shape[1], project)
                )
                u[i], u_held[i] = u[i] @ direction, u_held[i] @ direction
            both = np.concatenate([keys[names[i]], held_keys[names[i]]])
            ids = np.unique(both, return_inverse=True)[1].reshape(-1)
            if buckets:
                ids = ids % buckets
            train_ids, held_ids = ids[: len(u[i])], ids[len(u[i]) :]
            sums = np.zeros((ids.max() + 1, u[i].shape[1]))
            np.add.at(sums, train_ids, u[i] - u[i].mean(0))
            a = (u_held[i] * sums[held_ids]).sum(1)
            z[i] = a.sum() / np.sqrt((a * a).sum() + 1e-30)
        return z

    def pair_z(u, keys, i):
        """The held-out rows alone: z of the sum, over pairs of distinct rows
        that share a value, of ``<u(h), u(h')>`` (a U-statistic; its mean is 0
        when the value says nothing about the gradient)."""
        if project:
            u = u @ np.random.default_rng(i).normal(size=(u.shape[1], project))
        u = u - u.mean(0)
        ids = np.unique(keys, return_inverse=True)[1].reshape(-1)
        if buckets:
            ids = ids % buckets
        sums = np.zeros((ids.max() + 1, u.shape[1]))
        np.add.at(sums, ids, u)
        norms = (u * u).sum(1)
        pairs = (sums * sums).sum() - norms.sum()
        outer = np.zeros((ids.max() + 1, u.shape[1], u.shape[1]))
        np.add.at(outer, ids, u[:, :, None] * u[:, None, :])
        variance = 2 * ((outer * outer).sum() - (norms * norms).sum())
        return pairs / np.sqrt(max(variance, 1e-30))

    def probing_commit(spec, record, logits, gates, **kwargs):
        selected = np.asarray(record.selected, bool)
        scores = kwargs.get("heldout_scores")
        use = selected.any() and scores is not None and np.any(scores)
        if use and policy == "fallback":
            use = evidence.signal_exhausted(selected, scores)
        if use:
            kwargs["heldout_scores"] = probe(np.flatnonzero(~selected))
        settled.clear()
        return commit(spec, record, logits, gates, **kwargs)

    selection_state.selection.commit_round = probing_commit
    return [SettleWindow()] if window == "settle" else []


def array_batches(features, labels, size=4096):
    """``(features, labels)`` batches of numpy arrays."""
    return [
        (
            {n: v[start : start + size] for n, v in features.items()},
            labels[start : start + size],
        )
        for start in range(0, len(labels), size)
    ]


def summed_loss(model):
    """Binary cross-entropy of a ``(features, labels)`` batch, summed."""
    import tensorflow as tf

    def loss_of(batch):
        y = tf.constant(batch[1].reshape(-1, 1), tf.float32)
        return tf.reduce_sum(tf.keras.losses.binary_crossentropy(y, model(batch[0])))

    return loss_of


def configure_library_probe(args):
    """Sets the library probe's buckets from ``--library_buckets`` and, with
    ``--rounds_log``, wraps the commit rule to append, per round in which the
    library's probe ran, every feature's selected flag, gate z and probe z
    (NaN: none) as a JSON line."""
    from seqattn_tfrs import selection_state
    from seqattn_tfrs.core import probe

    probe.PROBE_BUCKETS = args.library_buckets
    if not args.rounds_log:
        return
    commit = selection_state.selection.commit_round

    def logged_commit(spec, record, logits, gates, **kwargs):
        probe_z = kwargs.get("probe_scores")
        if probe_z is not None and np.any(np.nan_to_num(probe_z)):
            line = {
                "seed": args.seed,
                "buckets": args.library_buckets,
                "selected": np.asarray(record.selected, bool).tolist(),
                "gate_z": np.asarray(kwargs["heldout_scores"], float).tolist(),
                "probe_z": [None if np.isnan(z) else float(z) for z in probe_z],
            }
            with open(args.rounds_log, "a") as out:
                out.write(json.dumps(line) + "\n")
        return commit(spec, record, logits, gates, **kwargs)

    selection_state.selection.commit_round = logged_commit


def equal_strength(args):
    import fit_cost
    import tensorflow as tf
    from absl import flags

    import seqattn_tfrs

    flags.FLAGS(["x"])  # fit_cost's defaults: 26 fields of 1,000 values, k=13
    configure_library_probe(args)
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
    extra = []
    if args.policy != "none":
        extra = install_probe(
            model,
            gate,
            array_batches(features, labels, 4096 if args.window == "commit" else batch),
            array_batches(held_features, held_labels),
            summed_loss(model),
            args.policy,
            args.project,
            args.buckets,
            args.window,
        )
    callback = seqattn_tfrs.SequentialAttentionCallback(
        warmup_epochs=1, finetune_epochs=1, selection_data=held.batch(batch), verbose=0
    )
    model.fit(
        train, steps_per_epoch=33, epochs=15, callbacks=[callback, *extra], verbose=0
    )
    picked = list(gate.selected_features)
    noise = [n for n in picked if int(n[1:]) >= signal_fields]
    for event in callback.events:  # the library's own probe, where it ran
        if "probe_scores" in event:
            z = event["probe_scores"]
            signal = sorted(v for n, v in z.items() if int(n[1:]) < signal_fields)
            rest = sorted(v for n, v in z.items() if int(n[1:]) >= signal_fields)
            print(
                f"round {event['round']}: picked {event['features']}; probe z "
                f"signal {np.round(signal, 1).tolist()}, noise max {max(rest):.1f}"
            )
    print(
        f"seed {args.seed} {args.policy} project {args.project} buckets "
        f"{args.buckets} window {args.window}: selected {picked}: {len(noise)} noise"
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
            extra = []
            if args.policy != "none":
                extra = install_probe(
                    model,
                    layer,
                    array_batches(*train, 4096 if args.window == "commit" else 128),
                    array_batches(*held),
                    summed_loss(model),
                    args.policy,
                    args.project,
                    args.buckets,
                    args.window,
                )
            model.fit(
                tf.data.Dataset.from_tensor_slices(train)
                .shuffle(split, seed=seed)
                .batch(128),
                epochs=callback.schedule_length(layer.num_rounds),
                callbacks=[callback, *extra],
                verbose=0,
            )
            order = list(layer.selected_features)
            record = {"problem": p, "seed": seed, "policy": args.policy}
            record.update(project=args.project, buckets=args.buckets)
            record.update(window=args.window)
            record.update(order=order, **score_picks(problem.answer, order))
            print(p, seed, order, record["all_groups"], record["noise_picks"])
            with open(args.output, "a") as out:
                out.write(json.dumps(record) + "\n")


def movielens(args):
    """The main job (``seqattn-tfrs``, its default config) with the probe on
    its selection run; the baseline's run is as the job's."""
    import tensorflow as tf

    from seqattn_tfrs.movielens import cli, job

    timed_fit = job._timed_fit

    def probing_fit(model, train, epochs, callbacks, verbose):
        if getattr(model, "gate", None) is not None and args.policy != "none":
            (selection,) = [c for c in callbacks if hasattr(c, "selection_data")]

            def loss_of(batch):
                rows = tf.shape(next(iter(batch.values())))[0]
                loss = model.compute_loss(batch, training=False)
                return loss * tf.cast(rows, loss.dtype)

            install_probe(
                model,
                model.gate,
                train,
                selection.selection_data,
                loss_of,
                args.policy,
                args.project,
                args.buckets,
            )
        return timed_fit(model, train, epochs, callbacks, verbose)

    job._timed_fit = probing_fit
    configure_library_probe(args)
    sys.argv = [
        "seqattn-tfrs",
        "--seed",
        str(args.seed),
        "--output_dir",
        args.output_dir,
    ]
    cli.run()


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
one.add_argument("--window", choices=["commit", "settle", "heldout"], default="commit")
many = sub.add_parser("ctr")
many.add_argument("--window", choices=["commit", "settle", "heldout"], default="commit")
many.add_argument("--project", type=int, default=0)
many.add_argument("--buckets", type=int, default=0)
many.add_argument("--problems", default="0:30")
many.add_argument("--seeds", default="0,1,2")
many.add_argument(
    "--policy", choices=["replace", "fallback", "none"], default="fallback"
)
many.add_argument("--output", required=True)
job = sub.add_parser("movielens")
job.add_argument("--seed", type=int, default=42)
job.add_argument(
    "--policy", choices=["replace", "fallback", "none"], default="fallback"
)
job.add_argument("--project", type=int, default=1)
job.add_argument("--buckets", type=int, default=0)
job.add_argument("--output_dir", default="/tmp/residual_probe_movielens")
for command in (one, job):  # the library's own probe (policy none)
    command.add_argument("--library_buckets", type=int, default=65536)
    command.add_argument("--rounds_log", default="")
summary = sub.add_parser("compare")
summary.add_argument("files", nargs="+")

if __name__ == "__main__":
    args = parser.parse_args()
    commands = {
        "equal_strength": equal_strength,
        "ctr": generated_ctr,
        "movielens": movielens,
        "compare": compare,
    }
    commands[args.command](args)
