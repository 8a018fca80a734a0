"""Held-out rows read more than once in a round: the z's discount.

A round's held-out steps cycle over ``selection_data``; a row read again adds
about the same gradient again, which the statistic ``-sum / sqrt(sum of
squares)`` would count as new evidence. ``core.evidence.revisit_factor`` is
that inflation; the callback counts the batches and the pass.
"""

import numpy as np
import pytest
import tensorflow as tf
from helpers.commits import before_each_commit

import seqattn_tfrs
from seqattn_tfrs.core.evidence import revisit_factor
from seqattn_tfrs.core.selection import entry_statistics


@pytest.mark.parametrize("read", [5, 10, 15, 25, 40])
def test_revisit_factor_is_the_spread_of_a_null_z_over_re_read_rows(read):
    """Planted null: fixed per-row gradients of mean 0, a pass of 10 batches
    of 20 rows, ``read`` batches from a random place in the cycle. The z's
    standard deviation over 4,000 draws is the factor (to 5%; the estimate's
    own error is about 1%), and differs from 1 once rows repeat."""
    rng = np.random.default_rng(read)
    pass_batches, rows = 10, 20
    z = []
    for _ in range(4000):
        gradients = rng.normal(size=(pass_batches, rows))
        start = rng.integers(pass_batches)
        taken = gradients[(start + np.arange(read)) % pass_batches]
        z.append(entry_statistics(taken.sum(), np.square(taken).sum()))
    spread = float(np.std(z))
    assert spread / revisit_factor(read, pass_batches) == pytest.approx(1.0, abs=0.05)
    if read >= 2 * pass_batches:
        assert spread > 1.3  # the raw z is inflated: the discount matters


class InferencePasses(tf.keras.layers.Layer):
    """Passes its input on and counts the batches it sees in inference mode:
    once training has begun (after the callback's copy check), the held-out
    steps' and the held-out probe's (fit's training steps run in training
    mode)."""

    def build(self, input_shape):
        self.count = self.add_weight(
            name="count", shape=(), initializer="zeros", trainable=False
        )

    def call(self, x, training=None):
        if not training:
            self.count.assign_add(1.0)
        return tf.identity(x)


def linear_fit(selection_data, record):
    """Keeps 2 of 5 features of a planted linear problem: warm-up 1, two
    one-epoch rounds of 8 steps, the second half of each selecting: 5
    held-out steps, one as each of the last 5 steps ends (the step that ends
    the settle sets the selecting mode, then takes a held-out batch).
    ``record`` runs before each commit. Returns the layer and the batches
    the model saw in inference mode once training had begun."""
    names = ("a", "b", "c", "d", "e")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 5)).astype(np.float32)
    y = x @ np.array([3.0, 0.0, 2.0, 0.0, 0.0], np.float32)
    features = {n: x[:, i] for i, n in enumerate(names)}
    inputs = {n: tf.keras.Input((), name=n) for n in names}
    layer = seqattn_tfrs.SequentialAttentionEmbedding(
        {n: tf.keras.layers.Reshape((1,)) for n in names}, num_selected=2
    )
    gated = layer(inputs)
    joined = tf.keras.layers.Concatenate()([gated[n] for n in names])
    passes = InferencePasses()
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(passes(joined)))
    model.compile(tf.keras.optimizers.SGD(0.05), "mse")
    before_each_commit(layer, record)
    callback = seqattn_tfrs.SequentialAttentionCallback(
        warmup_epochs=1,
        epochs_per_selection=1,
        finetune_epochs=0,
        settle_fraction=0.5,
        selection_data=selection_data(features, y),
        verbose=0,
    )
    # After the selection callback's `on_train_begin`: its copy check ran.
    zero = tf.keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: passes.count.assign(0.0)
    )
    tf.keras.utils.set_random_seed(0)
    model.fit(
        features, y, batch_size=64, epochs=3, callbacks=[callback, zero], verbose=0
    )
    return layer, float(passes.count.numpy())


def test_the_callback_counts_a_rounds_heldout_batches_and_the_pass():
    """A one-batch ``selection_data`` read by 5 held-out steps a round: the
    committed z is the raw one over sqrt(5)."""
    seen = []

    def record(layer):
        state = layer.selection_state
        raw = entry_statistics(state.heldout_sum.numpy(), state.heldout_squares.numpy())
        seen.append(
            (
                float(state.heldout_batches.numpy()),
                state.heldout_pass_batches,
                raw,
                np.array(list(layer.heldout_evidence().values())),
            )
        )

    def one_batch(features, y):
        return tf.data.Dataset.from_tensor_slices((features, y)).take(64).batch(64)

    layer, _ = linear_fit(one_batch, record)
    assert layer.selected_features == ("a", "c")
    assert len(seen) == 2
    for read, pass_batches, raw, discounted in seen:
        assert (read, pass_batches) == (5.0, 1)
        assert np.any(raw != 0)
        np.testing.assert_allclose(discounted, raw / np.sqrt(5.0), rtol=1e-6)
    assert float(layer.selection_state.heldout_batches.numpy()) == 0.0


def test_a_pass_of_unknown_size_is_counted_and_an_endless_one_is_not_discounted():
    passes = []

    def record(layer):
        passes.append(layer.selection_state.heldout_pass_batches)

    def filtered(features, y):  # tf.data cannot tell its size: 3 batches
        data = tf.data.Dataset.from_tensor_slices((features, y)).take(150)
        return data.filter(lambda x, y: True).batch(64)

    def endless(features, y):
        return tf.data.Dataset.from_tensor_slices((features, y)).batch(64).repeat()

    linear_fit(filtered, record)
    linear_fit(endless, record)
    assert passes == [3, 3, None, None]


def test_features_without_values_to_hash_cost_one_score_pass_a_round():
    """Float features: the held-out probe has nothing to hash, so its pass
    runs the held-out score test instead, once before each commit after the
    first (session 58). The model sees the held-out steps' batches, the
    first round's score test (the settle's second half, 2) and each round's
    selecting part (5 each), and that pass's one batch before round 2's
    commit."""

    def one_batch(features, y):
        return tf.data.Dataset.from_tensor_slices((features, y)).take(64).batch(64)

    layer, seen = linear_fit(one_batch, lambda layer: None)
    assert layer.selected_features == ("a", "c")
    assert seen == 2 + 5 + 5 + 1
