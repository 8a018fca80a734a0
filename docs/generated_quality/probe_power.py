"""The held-out probe's power by direction, offline (docs/generated_quality.md,
"Session 37").

Fits a generated CTR problem's selection (``planted.ctr_model`` or
``planted.dcn_model``, Adam, batch 128, held-out ``selection_data``) to ``k``
picks, then, for every unselected candidate and the model as the fit left it
(the candidates' gates at 0), computes the probe's z from per-row gradients of
the loss with respect to the candidate's gated embedding: ``library`` (on the
probe's first fixed direction, as with one direction a feature), ``k2`` and
``k4`` (two and four random directions, a row's products added up), ``eig``
(the training side's top eigenvector), ``full`` (the whole gradient vector)
and ``residual`` (the output's ``p - y`` per value: no network). One JSON line
per candidate, with its role in the planted answer. From the repository root::

  python docs/generated_quality/probe_power.py PROBLEM SEED mlp|dcn [K]
"""

import json
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT + "/benchmarks", ROOT]

import generator  # noqa: E402
import numpy as np  # noqa: E402
import planted  # noqa: E402
import tensorflow as tf  # noqa: E402

import seqattn_tfrs  # noqa: E402
from seqattn_tfrs.core import probe as probe_lib  # noqa: E402

BATCH = 128


def roles_of(answer: dict) -> dict:
    roles = {}
    for group in answer["groups"]:
        for member, role in group["members"].items():
            roles[member] = group["kind"] + ":" + role.split(":")[0]
    for member in answer.get("noise", {}):
        roles[member] = "noise"
    return roles


def centred(values: np.ndarray) -> np.ndarray:
    """Less the mean of each batch of ``BATCH`` rows, as the probe does."""
    values = values.copy()
    for start in range(0, len(values), BATCH):
        values[start : start + BATCH] -= values[start : start + BATCH].mean(axis=0)
    return values


def z(a: np.ndarray) -> float:
    return float(a.sum() / np.sqrt((a * a).sum()))


def main() -> None:
    problem_seed, seed, kind = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    problem = generator.generate_problem(problem_seed, "ctr")
    names = problem.names
    k = int(sys.argv[4]) if len(sys.argv) > 4 else problem.answer["k"]
    tf.keras.utils.set_random_seed(seed)
    build = {"mlp": planted.ctr_model, "dcn": planted.dcn_model}[kind]
    model, layer = build(problem.features, num_selected=k)
    model.compile(planted.make_optimizer("ctr", "adam"), "binary_crossentropy")

    def data(rows):
        columns = {f: problem.features[f][rows] for f in names}
        return tf.data.Dataset.from_tensor_slices((columns, problem.labels[rows]))

    split = problem.train_rows
    train = data(slice(0, split)).shuffle(split, seed=seed).batch(BATCH)
    callback = seqattn_tfrs.SequentialAttentionCallback(
        finetune_epochs=0, selection_data=data(slice(split, None)).batch(BATCH)
    )
    epochs = callback.schedule_length(layer.num_rounds)
    model.fit(train, epochs=epochs, callbacks=[callback], verbose=0)
    outputs = [layer.output[n] for n in names]
    tail = tf.keras.Model(outputs, model.output)  # gated embeddings -> output

    def gradients(rows):
        x = {f: problem.features[f][rows] for f in names}
        y = problem.labels[rows].astype(np.float32)
        parts, predictions = [], []
        for start in range(0, len(y), BATCH):
            batch = {f: tf.constant(v[start : start + BATCH]) for f, v in x.items()}
            gated = layer(batch)
            embedded = [tf.identity(gated[n]) for n in names]
            with tf.GradientTape() as tape:
                tape.watch(embedded)
                p = tail(embedded)
                target = y[start : start + BATCH, None]
                loss = tf.reduce_sum(tf.keras.losses.binary_crossentropy(target, p))
            parts.append([g.numpy() for g in tape.gradient(loss, embedded)])
            predictions.append(p.numpy()[:, 0])
        per_feature = [np.concatenate([b[i] for b in parts]) for i in range(len(names))]
        return x, y, per_feature, np.concatenate(predictions)

    x_train, y_train, g_train, p_train = gradients(slice(0, split))
    x_held, y_held, g_held, p_held = gradients(slice(split, None))
    widths = [int(o.shape[-1]) for o in outputs]
    offsets = np.cumsum([0] + widths)
    first = probe_lib.probe_directions(widths, list(range(len(names))))
    roles = roles_of(problem.answer)
    for i, name in enumerate(names):
        if name in layer.selected_features:
            continue
        train_ids, held_ids = x_train[name], x_held[name]
        size = int(max(train_ids.max(), held_ids.max())) + 1

        def along(direction, i=i, train_ids=train_ids, held_ids=held_ids, size=size):
            sums = np.bincount(train_ids, centred(g_train[i] @ direction), size)
            return centred(g_held[i] @ direction) * sums[held_ids]

        step = first.shape[1] // len(names)  # directions a feature
        start, stop = offsets[i], offsets[i + 1]
        scores = {"library": z(along(first[start:stop, i * step]))}
        rng = np.random.default_rng([i, 7])
        for count in (2, 4):
            draws = rng.standard_normal((count, widths[i]))
            scores[f"k{count}"] = z(sum(along(u) for u in draws))
        _, vectors = np.linalg.eigh(g_train[i].T @ g_train[i])
        scores["eig"] = z(along(vectors[:, -1]))
        full = np.zeros((size, widths[i]))
        np.add.at(full, train_ids, centred(g_train[i]))
        scores["full"] = z((centred(g_held[i]) * full[held_ids]).sum(axis=1))
        residual = np.bincount(train_ids, centred(p_train - y_train), size)
        scores["residual"] = z(centred(p_held - y_held) * residual[held_ids])
        record = {"problem": problem_seed, "model": kind, "feature": name}
        record.update(role=roles.get(name, "interaction"))
        record.update(values=int(len(np.unique(train_ids))))
        record.update({key: round(value, 2) for key, value in scores.items()})
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
