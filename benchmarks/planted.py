"""Planted selection problems whose right answer is known.

Shared by ``planted_grid.py`` and the test suite's quality tests.
"""

from __future__ import annotations

import numpy as np


def omp_order(x: np.ndarray, y: np.ndarray, k: int) -> list[int]:
    """Orthogonal Matching Pursuit: pick the column nearest the residual, k times."""
    chosen, residual = [], y.copy()
    for _ in range(k):
        scores = np.abs(x.T @ residual)
        scores[chosen] = -1.0
        chosen.append(int(np.argmax(scores)))
        beta = np.linalg.lstsq(x[:, chosen], y, rcond=None)[0]
        residual = y - x[:, chosen] @ beta
    return chosen


def linear_problem(seed: int, n: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """8 features, y from x0, x3, x5, x7; x1 is a decoy correlated 0.9 with x0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    x[:, 1] = 0.9 * x[:, 0] + 0.44 * rng.normal(size=n)
    coef = np.array([3.0, 0.0, 0.0, 2.0, 0.0, 1.2, 0.0, 0.6], np.float32)
    y = (x @ coef + 0.3 * rng.normal(size=n)).astype(np.float32)
    return x, y


def binary_and_gaussian_problem(
    seed: int, n: int = 6000
) -> tuple[np.ndarray, np.ndarray]:
    """4 features: y = 1.25 x0 + 1.0 x1 + noise, x0 Gaussian, x1 +-1, x2-x3 noise.

    OMP's first pick is x0 (the larger correlation with y). A score test whose
    variance is the sum of squared per-example scores ranks x1 first: x0's
    scores ``x0 * r`` grow with ``x0**2`` where its own effect is in ``r``,
    while ``x1**2`` is always 1.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    x[:, 1] = rng.choice([-1.0, 1.0], n)
    y = 1.25 * x[:, 0] + 1.0 * x[:, 1] + 0.5 * rng.normal(size=n)
    return x, y.astype(np.float32)


def ctr_problem(seed: int, n: int = 12000) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Main effects m1-m3, an exact copy of m1, an XOR pair, memorisable noise."""
    rng = np.random.default_rng(seed)
    columns, logit = {}, np.zeros(n)
    for name, vocab, scale in (("m1", 20, 1.5), ("m2", 20, 1.0), ("m3", 20, 0.7)):
        values = rng.integers(0, vocab, n)
        logit += rng.normal(0, scale, vocab)[values]
        columns[name] = values
    columns["m1_copy"] = columns["m1"].copy()
    a, b = rng.integers(0, 2, n), rng.integers(0, 2, n)
    columns["xor_a"], columns["xor_b"] = a, b
    logit += 2.0 * (2 * (a ^ b) - 1)
    for i in range(4):  # 3,000 values over 8,000 training rows: memorisable
        columns[f"noise{i}"] = rng.integers(0, 3000, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return {k: v.astype(np.int64) for k, v in columns.items()}, y


def ctr_correct(selected: set[str]) -> bool:
    """Every source, no noise field, exactly one of the two copies."""
    return (
        not any(name.startswith("noise") for name in selected)
        and {"m2", "m3", "xor_a", "xor_b"} <= selected
        and len(selected & {"m1", "m1_copy"}) == 1
    )


# Learning rates at which each problem's model trains well under each optimizer.
LEARNING_RATES = {
    "omp": {"adam": 0.05, "sgd": 0.02, "adagrad": 0.3},
    "ctr": {"adam": 0.01, "sgd": 0.5, "adagrad": 0.2},
}


def make_optimizer(problem: str, name: str):
    """A fresh Keras optimizer ``name`` at ``problem``'s learning rate."""
    import tensorflow as tf

    optimizer = {
        "adam": tf.keras.optimizers.Adam,
        "sgd": tf.keras.optimizers.SGD,
        "adagrad": tf.keras.optimizers.Adagrad,
    }[name]
    return optimizer(LEARNING_RATES[problem][name])


def linear_model(names, **layer_options):
    """Scalar "embeddings" of numeric features, gated, into one Dense unit.

    Returns the uncompiled model and its gate layer; ``layer_options`` go to
    ``SequentialAttentionEmbedding`` (``num_selected`` among them).
    """
    import tensorflow as tf

    import seqattn_tfrs

    inputs = {name: tf.keras.Input((), name=name) for name in names}
    layer = seqattn_tfrs.SequentialAttentionEmbedding(
        {name: tf.keras.layers.Reshape((1,)) for name in names}, **layer_options
    )
    gated = layer(inputs)
    out = tf.keras.layers.Dense(1)(
        tf.keras.layers.Concatenate()([gated[name] for name in names])
    )
    return tf.keras.Model(inputs, out), layer


def ctr_model(columns, **layer_options):
    """4-wide embeddings of the CTR fields, gated, then a 32-unit ReLU layer.

    Returns the uncompiled model and its gate layer.
    """
    import tensorflow as tf

    import seqattn_tfrs

    names = list(columns)
    inputs = {name: tf.keras.Input((), name=name, dtype=tf.int64) for name in names}
    layer = seqattn_tfrs.SequentialAttentionEmbedding(
        {
            name: tf.keras.layers.Embedding(int(columns[name].max()) + 1, 4)
            for name in names
        },
        **layer_options,
    )
    gated = layer(inputs)
    hidden = tf.keras.layers.Dense(32, activation="relu")(
        tf.keras.layers.Concatenate()([gated[name] for name in names])
    )
    out = tf.keras.layers.Dense(1, activation="sigmoid")(hidden)
    return tf.keras.Model(inputs, out), layer


def dcn_model(columns, dim: int = 8, **layer_options):
    """A DCN over the CTR fields: ``dim``-wide embeddings, gated, one
    full-rank ``tfrs.layers.dcn.Cross`` layer, ReLU layers of 64 and 32 units
    and a sigmoid unit (the shape of the MovieLens job's model, and of the
    model issue 14's planted problem was tried on).

    Returns the uncompiled model and its gate layer.
    """
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    import seqattn_tfrs

    names = list(columns)
    inputs = {name: tf.keras.Input((), name=name, dtype=tf.int64) for name in names}
    layer = seqattn_tfrs.SequentialAttentionEmbedding(
        {
            name: tf.keras.layers.Embedding(int(columns[name].max()) + 1, dim)
            for name in names
        },
        **layer_options,
    )
    gated = layer(inputs)
    x0 = tf.keras.layers.Concatenate()([gated[name] for name in names])
    x = tfrs.layers.dcn.Cross(kernel_initializer="glorot_uniform")(x0, x0)
    for units in (64, 32):
        x = tf.keras.layers.Dense(units, activation="relu")(x)
    out = tf.keras.layers.Dense(1, activation="sigmoid")(x)
    return tf.keras.Model(inputs, out), layer


def keras3_ctr_model(columns, vocabularies=None, **layer_options):
    """``ctr_model`` for the Keras 3 front-end (import with Keras 3 as
    ``keras``): gated 4-wide tables, a 32-unit ReLU layer and a sigmoid unit;
    with ``vocabularies`` (name -> strings; the TensorFlow backend) string
    inputs, each table a ``StringLookup`` (one out-of-vocabulary row) before
    its ``Embedding``. Returns the uncompiled model and its gate layer; seed
    Keras before calling it.
    """
    import keras

    from seqattn_tfrs.keras3 import SequentialAttentionEmbedding

    names = list(columns)
    dtype = "string" if vocabularies else "int32"
    inputs = {name: keras.Input((), name=name, dtype=dtype) for name in names}
    if vocabularies:
        tables = {
            n: keras.Sequential(
                [
                    keras.layers.StringLookup(vocabulary=vocabularies[n]),
                    keras.layers.Embedding(len(vocabularies[n]) + 1, 4),
                ]
            )
            for n in names
        }
    else:
        tables = {
            n: keras.layers.Embedding(int(columns[n].max()) + 1, 4) for n in names
        }
    gate = SequentialAttentionEmbedding(tables, **layer_options)
    gated = gate(inputs)
    hidden = keras.layers.Dense(32, activation="relu")(
        keras.layers.Concatenate()([gated[n] for n in names])
    )
    out = keras.layers.Dense(1, activation="sigmoid")(hidden)
    return keras.Model(inputs, out), gate


def criteo_problem(
    seed: int, n: int, vocabulary: int = 10_000
) -> tuple[dict[str, np.ndarray], np.ndarray, set[str]]:
    """A Criteo-shaped click problem: 13 bucketised numeric + 26 categorical fields.

    Numeric fields ``i0``-``i12`` are log-normal values cut into 32 quantile
    buckets (ids 0-31); categorical fields ``c0``-``c25`` hold Zipf-distributed
    ids, their vocabularies spread geometrically from 10 to ``vocabulary``. The
    click logit has main effects of i0-i2 and c0-c4, an interaction of c5 and
    c6, and c7 is a noisy copy of c0 (80% equal); every other field is noise.

    Returns:
      The id columns (int64), the labels and the names of the noise fields.
    """
    rng = np.random.default_rng(seed)
    columns, logit = {}, np.zeros(n)
    for j in range(13):
        raw = rng.lognormal(0.0, 1.0, n)
        columns[f"i{j}"] = np.searchsorted(
            np.quantile(raw, np.linspace(0, 1, 33)[1:-1]), raw
        )
    for j, weight in enumerate((1.2, -0.9, 0.6)):
        logit += weight * (columns[f"i{j}"] / 31.0 - 0.5) * 2
    sizes = np.geomspace(10, vocabulary, 26).astype(int)
    for j, size in enumerate(sizes):
        columns[f"c{j}"] = (rng.zipf(1.2, n) - 1) % size
    for j, scale in enumerate((1.0, 0.8, 0.6, 0.5, 0.4)):
        logit += rng.normal(0, scale, sizes[j])[columns[f"c{j}"]]
    pair = columns["c5"] * sizes[6] + columns["c6"]
    logit += rng.normal(0, 1.0, sizes[5] * sizes[6])[pair]
    copy = rng.random(n) < 0.8
    columns["c7"] = np.where(copy, columns["c0"] % sizes[7], columns["c7"])
    y = (rng.random(n) < 1 / (1 + np.exp(-(logit - 1.0)))).astype(np.float32)
    signal = {"i0", "i1", "i2", "c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"}
    noise = {name for name in columns if name not in signal}
    return {k: v.astype(np.int64) for k, v in columns.items()}, y, noise


TWO_TOWER_USERS, TWO_TOWER_ITEMS = 400, 120
TWO_TOWER_ROWS, TWO_TOWER_TRAIN_ROWS = 16_000, 12_800
TWO_TOWER_QUERY = {
    "user_id": TWO_TOWER_USERS,
    "user_copy": TWO_TOWER_USERS,
    "age": 7,
    "hour": 24,
    "noise_a": 3000,
    "noise_b": 3000,
}
TWO_TOWER_CANDIDATE = {"item_id": TWO_TOWER_ITEMS, "item_genre": 12, "item_noise": 2000}


def two_tower_problem(seed: int) -> dict[str, np.ndarray]:
    """A planted two-tower retrieval problem (``benchmarks/two_tower.py``):
    ``TWO_TOWER_ROWS`` rows of every field, ``item_id`` drawn from a softmax
    over items of the user's taste plus their age group's plus the hour's.
    The query tower needs ``user_id`` (or its copy), ``age`` and ``hour``;
    the candidate tower ``item_id``."""
    rng = np.random.default_rng(seed)
    taste = rng.normal(size=(TWO_TOWER_USERS, 8))
    age_of_user = rng.integers(0, 7, TWO_TOWER_USERS)
    age_taste, hour_taste = rng.normal(size=(7, 8)), 0.7 * rng.normal(size=(24, 8))
    item_vectors = rng.normal(size=(TWO_TOWER_ITEMS, 8))
    rows = TWO_TOWER_ROWS
    users = rng.integers(0, TWO_TOWER_USERS, rows)
    hours = rng.integers(0, 24, rows)
    query = taste[users] + age_taste[age_of_user[users]] + hour_taste[hours]
    logits = query @ item_vectors.T
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    items = (p.cumsum(axis=1) > rng.random((rows, 1))).argmax(axis=1)
    return {
        "user_id": users,
        "user_copy": users.copy(),
        "age": age_of_user[users],
        "hour": hours,
        "noise_a": rng.integers(0, 3000, rows),
        "noise_b": rng.integers(0, 3000, rows),
        "item_id": items,
        "item_genre": items % 12,
        "item_noise": rng.integers(0, 2000, rows),
    }


def two_tower_correct(query: tuple[str, ...], candidate: tuple[str, ...]) -> bool:
    """Whether the towers picked the planted fields: one of the two user ids,
    then ``hour`` (a second pick), then ``age`` (a third, the user id's
    coarsening, ahead of the noise fields), and ``item_id``."""
    users = {"user_id", "user_copy"} & set(query)
    rest = {1: set(), 2: {"hour"}, 3: {"age", "hour"}}.get(len(query))
    return (
        len(users) == 1
        and set(query) - users == rest
        and tuple(candidate) == ("item_id",)
    )
