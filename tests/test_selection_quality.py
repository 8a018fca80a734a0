"""Selection quality on planted data whose right answer is known.

Measured limits, stated here rather than hidden (see the README): under Adam
the OMP order held on 4 of 6 runs (a decoy won the first pick on one seed), and
on the CTR problem an exact duplicate of a selected field was picked beside it
on every seed; under SGD the CTR recovery held on 2 of 3 seeds here (seed 0 also
took both copies). These tests pin down what holds on every seed tried.
"""

import numpy as np
import pytest
import tensorflow as tf

from seqattn_tfrs import SequentialAttentionCallback, SequentialAttentionEmbedding

OPTIMIZERS = {
    "sgd": lambda: tf.keras.optimizers.SGD(0.02),
    "adagrad": lambda: tf.keras.optimizers.Adagrad(0.3),
}


def omp(x, y, k):
    """Orthogonal Matching Pursuit: pick the column nearest the residual."""
    chosen, residual = [], y.copy()
    for _ in range(k):
        scores = np.abs(x.T @ residual)
        scores[chosen] = -1.0
        chosen.append(int(np.argmax(scores)))
        beta = np.linalg.lstsq(x[:, chosen], y, rcond=None)[0]
        residual = y - x[:, chosen] @ beta
    return chosen


def linear_problem(seed, n=4096):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    x[:, 1] = 0.9 * x[:, 0] + 0.44 * rng.normal(size=n)  # a decoy of x0
    coef = np.array([3.0, 0.0, 0.0, 2.0, 0.0, 1.2, 0.0, 0.6], np.float32)
    y = (x @ coef + 0.3 * rng.normal(size=n)).astype(np.float32)
    return x, y


@pytest.mark.parametrize("heldout", [False, True], ids=["train", "heldout"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_linear_regression_selects_the_omp_order(optimizer, seed, heldout):
    x, y = linear_problem(seed)
    expected = omp(x, y, 4)
    assert 1 not in expected  # the decoy is a trap OMP avoids
    names = [f"x{i}" for i in range(8)]
    tf.keras.utils.set_random_seed(seed)
    inputs = {n: tf.keras.Input((), name=n) for n in names}
    layer = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Reshape((1,)) for n in names}, num_selected=4
    )
    gated = layer(inputs)
    out = tf.keras.layers.Dense(1)(
        tf.keras.layers.Concatenate()([gated[n] for n in names])
    )
    model = tf.keras.Model(inputs, out)
    model.compile(OPTIMIZERS[optimizer](), "mse")

    def data(rows):
        features = {n: x[rows, i] for i, n in enumerate(names)}
        return tf.data.Dataset.from_tensor_slices((features, y[rows])).batch(64)

    train = data(slice(0, 3072))
    callback = SequentialAttentionCallback(
        warmup_epochs=2,
        epochs_per_selection=2,
        finetune_epochs=0,
        selection_data=data(slice(3072, None)) if heldout else None,
        verbose=0,
    )
    model.fit(train, epochs=10, callbacks=[callback], verbose=0)
    assert [names.index(f) for f in layer.selected_features] == expected


def ctr_problem(seed, n=12000):
    """Main effects, an exact duplicate, an XOR pair and memorisable noise."""
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


def fit_ctr(seed, optimizer, heldout):
    columns, y = ctr_problem(seed)
    names = list(columns)
    tf.keras.utils.set_random_seed(seed)
    inputs = {n: tf.keras.Input((), name=n, dtype=tf.int64) for n in names}
    layer = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Embedding(int(columns[n].max()) + 1, 4) for n in names},
        num_selected=5,
    )
    gated = layer(inputs)
    hidden = tf.keras.layers.Dense(32, activation="relu")(
        tf.keras.layers.Concatenate()([gated[n] for n in names])
    )
    model = tf.keras.Model(
        inputs, tf.keras.layers.Dense(1, activation="sigmoid")(hidden)
    )
    model.compile(optimizer, "binary_crossentropy")

    def data(rows):
        features = {n: columns[n][rows] for n in names}
        return tf.data.Dataset.from_tensor_slices((features, y[rows])).batch(128)

    callback = SequentialAttentionCallback(
        warmup_epochs=1,
        epochs_per_selection=2,
        finetune_epochs=0,
        selection_data=data(slice(8000, None)) if heldout else None,
        verbose=0,
    )
    model.fit(
        data(slice(0, 8000)).unbatch().shuffle(8000, seed=seed).batch(128),
        epochs=11,
        callbacks=[callback],
        verbose=0,
    )
    return set(layer.selected_features)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ctr_adagrad_with_heldout_recovers_every_source_and_one_copy(seed):
    selected = fit_ctr(seed, tf.keras.optimizers.Adagrad(0.2), heldout=True)
    assert not any(name.startswith("noise") for name in selected), selected
    assert {"m2", "m3", "xor_a", "xor_b"} <= selected, selected
    assert len(selected & {"m1", "m1_copy"}) == 1, selected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_adam_with_heldout_data_never_picks_memorising_noise(seed):
    selected = fit_ctr(seed, tf.keras.optimizers.Adam(0.01), heldout=True)
    assert not any(name.startswith("noise") for name in selected), selected


def test_adam_on_training_batches_falls_into_the_memorisation_trap():
    """Why `selection_data` exists: the training loss rewards memorising fields."""
    selected = fit_ctr(0, tf.keras.optimizers.Adam(0.01), heldout=False)
    assert sum(name.startswith("noise") for name in selected) >= 2, selected
