"""The selection callback driven by model.fit: schedule, picks, logs, resume."""

import warnings

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from seqattn_tfrs import SequentialAttentionCallback, SequentialAttentionEmbedding
from seqattn_tfrs.core import schedule as schedule_lib
from seqattn_tfrs.discovery import find_gated_layers

NAMES = ("a", "b", "c", "d", "e")


def linear_data(seed=0, n=512):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(NAMES))).astype(np.float32)
    y = x @ np.array([3.0, 0.0, 2.0, 0.0, 1.0], np.float32)
    return {n_: x[:, i] for i, n_ in enumerate(NAMES)}, y


def functional_model(num_selected=2, selections_per_round=1):
    inputs = {n: tf.keras.Input((), name=n) for n in NAMES}
    layer = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Reshape((1,)) for n in NAMES},
        num_selected,
        selections_per_round=selections_per_round,
    )
    gated = layer(inputs)
    out = tf.keras.layers.Dense(1)(
        tf.keras.layers.Concatenate()([gated[n] for n in NAMES])
    )
    model = tf.keras.Model(inputs, out)
    model.compile(tf.keras.optimizers.SGD(0.05), "mse")
    return model, layer


def dataset(seed=0, batch=64):
    x, y = linear_data(seed)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def test_picks_follow_the_schedule_and_land_in_history():
    tf.keras.utils.set_random_seed(0)
    model, layer = functional_model(num_selected=2)
    callback = SequentialAttentionCallback(
        warmup_epochs=1, finetune_epochs=1, verbose=0
    )
    history = model.fit(dataset(), epochs=4, callbacks=[callback], verbose=0)
    assert layer.selected_features == ("a", "c")
    assert [e["epoch"] for e in callback.events] == [1, 2]
    assert history.history["seqattn/num_selected"] == [0.0, 1.0, 2.0, 2.0]
    assert history.history["seqattn/picked/a"] == [1.0]
    assert history.history["seqattn/picked/c"] == [2.0]
    assert len(callback.gate_history) == 4


def test_train_then_select_every_pick_uses_trained_logits():
    tf.keras.utils.set_random_seed(0)
    model, layer = functional_model(num_selected=2)
    callback = SequentialAttentionCallback(
        warmup_epochs=1, finetune_epochs=0, verbose=0
    )
    model.fit(dataset(), epochs=3, callbacks=[callback], verbose=0)
    for gates in layer.gate_history():
        unselected = [g for g in gates.values() if g < 1.0]
        assert max(unselected) - min(unselected) > 0.05, gates  # not uniform


@pytest.mark.parametrize(
    "k, per_round, rounds",
    [(5, 2, 3), (4, 3, 2), (3, 1, 3)],
    ids=["5-by-2", "4-by-3", "3-by-1"],
)
def test_exactly_k_selected_for_any_round_size(k, per_round, rounds):
    tf.keras.utils.set_random_seed(0)
    model, layer = functional_model(num_selected=k, selections_per_round=per_round)
    callback = SequentialAttentionCallback(
        warmup_epochs=0, finetune_epochs=0, settle_fraction=0, verbose=0
    )
    model.fit(dataset(), epochs=rounds, callbacks=[callback], verbose=0)
    assert len(layer.selected_features) == k
    assert len(set(layer.selected_features)) == k
    assert [len(e["features"]) for e in callback.events] == (
        [per_round] * (rounds - 1) + [k - per_round * (rounds - 1)]
    )


def selected_in_four_epochs():
    """Warm-up, two rounds of one pick and a fine-tune: ``a`` and ``c``."""
    tf.keras.utils.set_random_seed(0)
    model, layer = functional_model(num_selected=2)
    callback = SequentialAttentionCallback(
        warmup_epochs=1, finetune_epochs=1, verbose=0
    )
    model.fit(dataset(), epochs=4, callbacks=[callback], verbose=0)
    return model, layer, callback


def test_finetune_gates_are_exactly_zero_and_inputs_no_longer_matter():
    model, layer, _ = selected_in_four_epochs()
    gates = layer.gate_values()
    assert {n: gates[n] for n in ("b", "d", "e")} == {"b": 0.0, "d": 0.0, "e": 0.0}
    x, _ = linear_data(1, 8)
    changed = dict(x, b=x["b"] * 100.0, d=-x["d"], e=x["e"] + 5.0)
    np.testing.assert_array_equal(
        model.predict(x, verbose=0), model.predict(changed, verbose=0)
    )


@pytest.mark.parametrize("again", ["same callback", "new callback", "within_fit"])
def test_a_later_fit_after_a_complete_selection_trains_and_selects_nothing(
    again, capsys
):
    model, layer, callback = selected_in_four_epochs()
    gates = layer.gate_values()
    weights = model.layers[-1].get_weights()[0].copy()
    later = {
        "same callback": callback,
        "new callback": SequentialAttentionCallback(verbose=1),
        "within_fit": SequentialAttentionCallback(within_fit=True, verbose=1),
    }[again]
    # 1 epoch of 8 steps: shorter than any schedule, which is not laid again.
    model.fit(dataset(), epochs=1, callbacks=[later], verbose=0)
    assert layer.selected_features == ("a", "c")
    assert layer.gate_values() == gates
    assert [e["epoch"] for e in callback.events] == [1, 2]
    assert not np.array_equal(model.layers[-1].get_weights()[0], weights)
    if again != "same callback":
        assert "selects nothing" in capsys.readouterr().out
        assert later.events == []


def test_evaluate_predict_and_validation_never_select():
    tf.keras.utils.set_random_seed(0)
    model, layer = functional_model(num_selected=2)
    callback = SequentialAttentionCallback(
        warmup_epochs=1, finetune_epochs=0, verbose=0
    )
    model.fit(
        dataset(), epochs=3, callbacks=[callback], validation_data=dataset(), verbose=0
    )
    assert len(callback.events) == 2  # validation passes added no pick
    fresh, fresh_layer = functional_model(num_selected=2)
    fresh_layer.gate_mode.assign(1)  # mid-round, logits trained
    fresh_layer.attention_logits.assign([1.0, 0.0, 2.0, 0.0, 0.0])
    for _ in range(3):
        fresh.evaluate(dataset(), verbose=0)
        fresh.predict(dataset(), verbose=0)
        fresh(linear_data(0, 4)[0], training=False)
    assert fresh_layer.selected_features == ()
    np.testing.assert_array_equal(
        fresh_layer.attention_logits.numpy(), [1.0, 0.0, 2.0, 0.0, 0.0]
    )


def test_schedule_longer_than_fit_fails_before_training():
    model, layer = functional_model(num_selected=3)
    callback = SequentialAttentionCallback(warmup_epochs=1, finetune_epochs=1)
    before = [v.numpy().copy() for v in model.trainable_variables]
    with pytest.raises(ValueError, match=r"needs 5 epochs .* fit runs 4 epochs"):
        model.fit(dataset(), epochs=4, callbacks=[callback], verbose=0)
    for old, new in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(old, new.numpy())


def test_step_mode_schedule():
    tf.keras.utils.set_random_seed(0)
    model, layer = functional_model(num_selected=2)
    callback = SequentialAttentionCallback(
        warmup_epochs=1, steps_per_selection=4, finetune_epochs=0, verbose=0
    )
    model.fit(dataset(), epochs=2, callbacks=[callback], verbose=0)  # 8 steps/epoch
    assert [e["step"] for e in callback.events] == [12, 16]
    assert layer.selection_complete
    with pytest.raises(ValueError, match="needs 32 steps"):
        model2, _ = functional_model(num_selected=2)
        model2.fit(
            dataset(),
            epochs=2,
            verbose=0,
            callbacks=[
                SequentialAttentionCallback(
                    warmup_epochs=1, steps_per_selection=8, finetune_epochs=1
                )
            ],
        )


def test_within_fit_lays_every_round_inside_the_fit():
    tf.keras.utils.set_random_seed(0)
    model, layer = functional_model(num_selected=2)
    callback = SequentialAttentionCallback(within_fit=True, verbose=0)
    # 3 epochs x 8 steps = 24 steps: too few for 2 rounds of at least 40; 100
    # steps would do, 13 epochs of 8.
    with pytest.raises(
        ValueError,
        match=r"2 selection rounds do not fit in 24 .* at least 100 steps \(at "
        r"least 13 epochs of 8 steps, where fit runs 3\)",
    ):
        model.fit(dataset(), epochs=3, callbacks=[callback], verbose=0)
    # 13 epochs x 8 = 104 steps: warm-up 10, 2 rounds of 42, fine-tune 10.
    history = model.fit(dataset(), epochs=13, callbacks=[callback], verbose=0)
    assert [e["step"] for e in callback.events] == [52, 94]
    assert layer.selected_features == ("a", "c")
    assert layer.selection_complete
    assert layer.schedule_record == {
        "unit": "steps",
        "warmup": 10,
        "rounds": 2,
        "per_round": 42,
        "finetune": 10,
        "within_fit": True,
    }
    assert history.history["seqattn/schedule/per_round_steps"] == [42.0]
    assert history.history["seqattn/schedule/warmup_steps"] == [10.0]


class StopAfter(tf.keras.callbacks.Callback):
    """Stops ``fit`` after ``epochs`` epochs, as EarlyStopping would."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.epochs:
            self.model.stop_training = True


def fit_stopped_by(other):
    """A 2-pick fit (warm-up 1, rounds of 1 epoch, fine-tune 1) with ``other``
    among the callbacks; the layer and the incomplete-selection warnings."""
    tf.keras.utils.set_random_seed(0)
    model, layer = functional_model(num_selected=2)
    callback = SequentialAttentionCallback(
        warmup_epochs=1, epochs_per_selection=1, finetune_epochs=1, verbose=0
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(dataset(), epochs=6, callbacks=[callback, other], verbose=0)
    said = [str(w.message) for w in caught if "finished selecting" in str(w.message)]
    return layer, said


def test_a_fit_stopped_before_the_last_pick_says_which_epoch_to_wait_for():
    layer, said = fit_stopped_by(StopAfter(2))
    assert not layer.selection_complete
    assert len(said) == 1
    assert "1 of 2 features after 1 of 2 rounds" in said[0]
    assert "last pick falls in epoch 3" in said[0]
    assert "start_from_epoch=3" in said[0]
    # The advice works: EarlyStopping that starts monitoring there stops
    # (or restores weights) only after the last pick.
    early = tf.keras.callbacks.EarlyStopping(
        "loss", patience=0, start_from_epoch=3, restore_best_weights=True
    )
    layer, said = fit_stopped_by(early)
    assert layer.selection_complete and not said


def test_within_fit_caps_a_long_round_and_fine_tunes_the_rest():
    tf.keras.utils.set_random_seed(0)
    model, layer = functional_model(num_selected=1)
    callback = SequentialAttentionCallback(within_fit=True, verbose=0)
    # 17 epochs x 8 = 136 steps: warm-up 13, one round of 110 steps capped at
    # MAX_STEPS_PER_ROUND = 100, then the fine-tune: its 13 and the 10 left.
    model.fit(dataset(), epochs=17, callbacks=[callback], verbose=0)
    assert [e["step"] for e in callback.events] == [113]
    assert layer.schedule_record == {
        "unit": "steps",
        "warmup": 13,
        "rounds": 1,
        "per_round": 100,
        "finetune": 23,
        "within_fit": True,
    }


def test_a_model_trained_before_selects_in_the_training_that_follows():
    # A warm start: 5 epochs (40 steps) without the callback, so the
    # optimizer's clock stands at 40 when the selection's fit begins.
    tf.keras.utils.set_random_seed(0)
    model, layer = functional_model(num_selected=2)
    model.fit(dataset(), epochs=5, verbose=0)
    assert int(model.optimizer.iterations) == 40
    callback = SequentialAttentionCallback(within_fit=True, verbose=0)
    model.fit(dataset(), epochs=13, callbacks=[callback], verbose=0)
    # The schedule of a fresh 13-epoch fit (warm-up 10, rounds of 42 steps),
    # counted from the selection's first step: picks after its steps 52 and 94.
    assert [e["step"] for e in callback.events] == [52, 94]
    assert layer.selection_complete and set(layer.selected_features) == {"a", "c"}
    assert layer.selection_state.schedule_origin.numpy().tolist() == [40, 0]
    assert layer.schedule_record["finetune"] == 10


def test_a_selection_whose_clock_went_back_is_refused_naming_the_cause():
    # Weights restored without the optimizer (as from .h5): the layer's
    # selection began at step 40, the new optimizer stands at 0.
    tf.keras.utils.set_random_seed(0)
    model, layer = functional_model(num_selected=2)
    model(linear_data()[0])
    layer.selection_state.schedule_origin.assign([40, 0])
    callback = SequentialAttentionCallback(within_fit=True, verbose=0)
    with pytest.raises(ValueError, match="began at optimizer step 40, and the opt"):
        model.fit(dataset(), epochs=13, callbacks=[callback], verbose=0)
    assert int(model.optimizer.iterations) == 0


def test_a_selection_from_initial_epoch_counts_its_schedule_from_there():
    tf.keras.utils.set_random_seed(0)
    model, layer = functional_model(num_selected=2)
    callback = SequentialAttentionCallback(
        warmup_epochs=1, epochs_per_selection=1, finetune_epochs=1, verbose=0
    )
    history = model.fit(
        dataset(), epochs=6, initial_epoch=2, callbacks=[callback], verbose=0
    )
    # Warm-up in epoch 2, rounds in epochs 3 and 4, fine-tune in epoch 5.
    assert [e["epoch"] for e in callback.events] == [3, 4]
    assert history.history["seqattn/num_selected"] == [0.0, 1.0, 2.0, 2.0]
    assert layer.selection_complete
    assert layer.selection_state.schedule_origin.numpy().tolist() == [0, 2]
    assert layer.schedule_record["finetune"] == 1  # epoch 5 only
    assert history.history["seqattn/schedule/finetune_epochs"] == [1.0]


@pytest.mark.parametrize(
    ("schedule", "fragments"),
    [
        (
            {"within_fit": True},
            ["needs 104 steps", "fit runs 56 steps from epoch 6", "48 more steps"],
        ),
        (
            {"warmup_epochs": 1, "epochs_per_selection": 1, "finetune_epochs": 1},
            ["needs 4 epochs", "fit runs 3 epochs from epoch 10", "1 more epochs"],
        ),
    ],
    ids=["within_fit", "epochs"],
)
def test_a_fit_too_short_from_initial_epoch_is_refused_before_training(
    schedule, fragments
):
    tf.keras.utils.set_random_seed(0)
    model, layer = functional_model(num_selected=2)
    callback = SequentialAttentionCallback(verbose=0, **schedule)
    initial = 6 if "within_fit" in schedule else 10
    with pytest.raises(ValueError) as info:
        model.fit(
            dataset(), epochs=13, initial_epoch=initial, callbacks=[callback], verbose=0
        )
    for fragment in fragments:
        assert fragment in str(info.value)
    assert int(model.optimizer.iterations) == 0  # no step ran


class Tower(tf.keras.layers.Layer):
    """A reusable tower that names its gate "gate", as a user might."""

    def __init__(self, names, **kwargs):
        super().__init__(**kwargs)
        self.gate = SequentialAttentionEmbedding(
            {n: tf.keras.layers.Reshape((1,)) for n in names}, 1, name="gate"
        )

    def call(self, inputs):
        gated = self.gate(inputs)
        return tf.concat([gated[n] for n in self.gate.feature_names], axis=1)


class TwoTowers(tf.keras.Model):
    def __init__(self):
        super().__init__()
        self.users, self.items = Tower(NAMES[:2]), Tower(NAMES[2:])
        self.out = tf.keras.layers.Dense(1)

    def call(self, x):
        users = self.users({n: x[n] for n in NAMES[:2]})
        items = self.items({n: x[n] for n in NAMES[2:]})
        return self.out(tf.concat([users, items], axis=1))


def test_gated_layers_that_share_a_name_are_refused():
    model = TwoTowers()
    model.compile(tf.keras.optimizers.SGD(0.05), "mse")
    callback = SequentialAttentionCallback(warmup_epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"share the name\(s\) \['gate'\]"):
        model.fit(dataset(), epochs=4, callbacks=[callback], verbose=0)
    assert int(model.optimizer.iterations) == 0
    from seqattn_tfrs import prune

    with pytest.raises(ValueError, match="pass `name=` to each gated layer"):
        prune(model)


def test_an_explicit_schedules_record_gives_the_fine_tune_that_runs():
    tf.keras.utils.set_random_seed(0)
    model, layer = functional_model(num_selected=2)
    callback = SequentialAttentionCallback(
        warmup_epochs=1, epochs_per_selection=1, finetune_epochs=1, verbose=0
    )
    # The schedule needs 4 epochs; fit runs 6: the fine-tune takes the rest.
    history = model.fit(dataset(), epochs=6, callbacks=[callback], verbose=0)
    assert layer.selection_complete
    assert layer.schedule_record == {
        "unit": "epochs",
        "warmup": 1,
        "rounds": 2,
        "per_round": 1,
        "finetune": 3,
        "within_fit": False,
    }
    assert history.history["seqattn/schedule/finetune_epochs"] == [3.0]


def test_schedule_length_in_steps_needs_the_steps_per_epoch():
    callback = SequentialAttentionCallback(warmup_epochs=1, steps_per_selection=8)
    with pytest.raises(ValueError, match=r"pass `steps_per_epoch` \(got None\)"):
        callback.schedule_length(2)
    # Warm-up and fine-tune of one 10-step epoch each, two rounds of 8 steps.
    assert callback.schedule_length(2, steps_per_epoch=10) == 36


def test_within_fit_refuses_a_ceiling_below_the_floor():
    with pytest.raises(ValueError, match=r"max_steps_per_round.*>= 40, got 30"):
        schedule_lib.within_fit(1000, 2, max_steps_per_round=30)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"within_fit": True, "warmup_epochs": 1}, "explicit {'warmup_epochs': 1}"),
        ({"within_fit": True, "warmup_fraction": 1.0}, "warmup_fraction.*got 1.0"),
        (
            {"within_fit": True, "warmup_fraction": 0.5, "finetune_fraction": 0.5},
            "must be < 1",
        ),
    ],
    ids=["explicit-too", "fraction", "no-room"],
)
def test_bad_within_fit_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SequentialAttentionCallback(**kwargs)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: dataset().take(0), "`selection_data` is empty"),
        (lambda: dataset().unbatch(), "looks unbatched.*scalars.*`.batch"),
        (
            lambda: tf.data.Dataset.from_tensor_slices(linear_data()[0]).batch(8),
            "a dict with keys .*label is missing",
        ),
        (
            lambda: tf.data.Dataset.from_tensor_slices(
                ({"a": np.zeros(8, np.float32)}, np.zeros(8, np.float32))
            ).batch(8),
            r"lacks feature\(s\) \['b', 'c', 'd', 'e'\]",
        ),
        (
            lambda: tf.data.Dataset.from_tensor_slices(
                ({n: np.full(8, "1.5") for n in NAMES}, np.zeros(8, np.float32))
            ).batch(8),
            r"(?s)`selection_data`'s batches could not go through model .*"
            r"Cast string to float.*the same keys, dtypes and shapes",
        ),
    ],
    ids=["empty", "unbatched", "no-label", "other-keys", "strings-for-floats"],
)
def test_bad_selection_data_is_refused_before_training(make, match):
    model, _ = functional_model(num_selected=2)
    callback = SequentialAttentionCallback(
        warmup_epochs=1, finetune_epochs=1, selection_data=make(), verbose=0
    )
    before = [v.numpy().copy() for v in model.trainable_variables]
    with pytest.raises(ValueError, match=match):
        model.fit(dataset(), epochs=4, callbacks=[callback], verbose=0)
    for old, new in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(old, new.numpy())


def test_tuples_for_a_tfrs_model_are_refused_before_training():
    class Ranker(tfrs.models.Model):
        def __init__(self):
            super().__init__()
            self.gate = SequentialAttentionEmbedding(
                {n: tf.keras.layers.Reshape((1,)) for n in NAMES}, 2
            )
            self.dense = tf.keras.layers.Dense(1)

        def call(self, features):
            gated = self.gate(features)
            return self.dense(tf.concat([gated[n] for n in NAMES], axis=1))

        def compute_loss(self, features, training=False):
            labels = tf.reshape(features["label"], [-1, 1])
            return tf.reduce_mean(tf.square(self(features) - labels))

    x, y = linear_data()
    train = tf.data.Dataset.from_tensor_slices({**x, "label": y}).batch(64)
    model = Ranker()
    model.compile(tf.keras.optimizers.SGD(0.05))
    callback = SequentialAttentionCallback(
        warmup_epochs=1, finetune_epochs=1, selection_data=dataset(), verbose=0
    )
    with pytest.raises(ValueError, match="tfrs.models.Model.*not an \\(x, y\\) tuple"):
        model.fit(train, epochs=4, callbacks=[callback], verbose=0)


def experimental_ranking(rows=4096, batch=64, seed=0):
    """A ``tfrs.experimental.models.Ranking`` over 4 integer fields, whose
    labels depend on ``a`` and ``b`` alone, and its ``(features, labels)``
    training and held-out batches (``sparse_features`` the gated dict)."""
    rng = np.random.default_rng(seed)
    x = {n: rng.integers(0, 20, rows) for n in "abcd"}
    effect = rng.normal(0.0, 1.5, (2, 20))
    logit = effect[0][x["a"]] + effect[1][x["b"]]
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)

    def batches(part):
        features = {
            "dense_features": np.zeros((rows, 1), np.float32)[part],
            "sparse_features": {n: v[part] for n, v in x.items()},
        }
        return tf.data.Dataset.from_tensor_slices((features, y[part])).batch(batch)

    gate = SequentialAttentionEmbedding(
        {n: tf.keras.layers.Embedding(20, 4) for n in "abcd"}, num_selected=2
    )
    model = tfrs.experimental.models.Ranking(
        embedding_layer=gate,
        bottom_stack=tf.keras.layers.Dense(4),
        top_stack=tf.keras.layers.Dense(1, "sigmoid"),
    )
    model.compile(tf.keras.optimizers.Adam(0.01))
    split = rows * 3 // 4
    return model, gate, batches(slice(0, split)), batches(slice(split, rows))


def test_the_experimental_ranking_model_selects_from_its_own_batches():
    # Its compute_loss takes (features, labels), the gated features under
    # `sparse_features`: held-out batches of that shape are what it needs.
    tf.keras.utils.set_random_seed(0)
    model, gate, train, heldout = experimental_ranking()
    callback = SequentialAttentionCallback(
        within_fit=True, selection_data=heldout, verbose=0
    )
    model.fit(train, epochs=3, callbacks=[callback], verbose=0)
    assert sorted(gate.selected_features) == ["a", "b"]
    # The second pick was ranked by the held-out probe and the gates' held-out z.
    assert set(callback.events[1]["probe_scores"]) == set("abcd") - {
        gate.selected_features[0]
    }


def test_experimental_ranking_batches_lacking_a_feature_are_refused():
    model, _, train, heldout = experimental_ranking(rows=512)
    lacking = heldout.map(
        lambda x, y: (
            {**x, "sparse_features": {n: x["sparse_features"][n] for n in "abc"}},
            y,
        )
    )
    callback = SequentialAttentionCallback(
        warmup_epochs=1, finetune_epochs=1, selection_data=lacking, verbose=0
    )
    with pytest.raises(ValueError, match=r"could not take: KeyError.*\['d'\] missing"):
        model.fit(train, epochs=4, callbacks=[callback], verbose=0)


def test_no_gated_layer_is_an_error():
    inputs = tf.keras.Input((1,))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(inputs))
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="found no SequentialAttentionEmbedding"):
        model.fit(
            np.zeros((4, 1)),
            np.zeros(4),
            epochs=3,
            verbose=0,
            callbacks=[SequentialAttentionCallback()],
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"warmup_epochs": -1}, "warmup_epochs.*got -1"),
        ({"finetune_epochs": -2}, "finetune_epochs.*got -2"),
        ({"epochs_per_selection": 0}, "epochs_per_selection.*got 0"),
        ({"steps_per_selection": 0}, "steps_per_selection.*got 0"),
        ({"epochs_per_selection": 1, "steps_per_selection": 5}, "at most one"),
        ({"settle_fraction": 1.0}, "settle_fraction.*got 1.0"),
        ({"selection_interval": 0}, "selection_interval.*got 0"),
        ({"verbose": 3}, "verbose.*got 3"),
    ],
    ids=[
        "warmup",
        "finetune",
        "epochs-per",
        "steps-per",
        "both",
        "settle",
        "interval",
        "verbose",
    ],
)
def test_bad_callback_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SequentialAttentionCallback(**kwargs)


def test_selection_data_must_be_a_dataset():
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        SequentialAttentionCallback(selection_data=[1, 2, 3])


def test_selection_data_moves_only_logits_and_keeps_metrics():
    """Drives the hooks directly: held-out steps touch logits, nothing else."""
    tf.keras.utils.set_random_seed(0)
    model, layer = functional_model(num_selected=2)
    model.fit(dataset(), epochs=20, verbose=0)  # dense fit: kernel ~ (3, 0, 2, 0, 1)
    model.compile(tf.keras.optimizers.SGD(0.0), "mse", metrics=["mae"])
    model.evaluate(dataset(), verbose=0)  # builds the compiled metrics
    callback = SequentialAttentionCallback(
        warmup_epochs=0,
        finetune_epochs=0,
        settle_fraction=0,
        selection_data=dataset(seed=5),
        verbose=0,
    )
    callback.set_model(model)
    callback.set_params({"epochs": 2, "steps": 8, "verbose": 0})
    callback.on_train_begin()
    callback.on_epoch_begin(0)
    weights = [v.numpy().copy() for v in model.trainable_variables]
    metrics = [v.numpy().copy() for m in model.metrics for v in m.variables]
    logits = layer.attention_logits.numpy().copy()
    for batch in range(8):
        callback.on_train_batch_end(batch)
    assert not np.array_equal(layer.attention_logits.numpy(), logits)
    for old, new in zip(weights, model.trainable_variables):
        np.testing.assert_array_equal(old, new.numpy())
    for old, new in zip(metrics, [v for m in model.metrics for v in m.variables]):
        np.testing.assert_array_equal(old, new.numpy())
    assert int(layer.learn_from_fit_batches.numpy()) == 0
    callback.on_epoch_end(0, {})
    assert layer.selected_features == ("a",)  # the largest contribution, 3 * 3


def test_tensorboard_gate_scalars(tmp_path):
    tf.keras.utils.set_random_seed(0)
    model, _ = functional_model(num_selected=1)
    callback = SequentialAttentionCallback(
        warmup_epochs=0,
        finetune_epochs=0,
        settle_fraction=0,
        verbose=0,
        log_dir=tmp_path,
    )
    model.fit(dataset(), epochs=1, callbacks=[callback], verbose=0)
    tags = set()
    for path in tmp_path.glob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            tags.update(value.tag for value in event.summary.value)
    assert {f"{callback._layers[0].name}/gate/{n}" for n in NAMES} <= tags


def test_resume_with_backup_and_restore_matches_uninterrupted(tmp_path):
    def run(interrupt_at):
        tf.keras.utils.set_random_seed(7)
        model, layer = functional_model(num_selected=3)
        callbacks = [
            tf.keras.callbacks.BackupAndRestore(str(tmp_path / f"b{interrupt_at}")),
            SequentialAttentionCallback(warmup_epochs=1, finetune_epochs=1, verbose=0),
        ]

        class Interrupt(tf.keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == interrupt_at:
                    raise RuntimeError("interrupted")

        if interrupt_at is not None:
            with pytest.raises(RuntimeError, match="interrupted"):
                model.fit(
                    dataset(), epochs=5, verbose=0, callbacks=[*callbacks, Interrupt()]
                )
            tf.keras.utils.set_random_seed(7)
            model, layer = functional_model(num_selected=3)
            callbacks[1] = SequentialAttentionCallback(
                warmup_epochs=1, finetune_epochs=1, verbose=0
            )
        model.fit(dataset(), epochs=5, verbose=0, callbacks=callbacks)
        return layer.selected_features, layer.round_gates.numpy()

    expected, expected_gates = run(None)
    assert len(expected) == 3
    for interrupt_at in (1, 2):  # mid-selection
        got, gates = run(interrupt_at)
        assert got == expected
        np.testing.assert_allclose(gates, expected_gates, atol=1e-5)


def test_finds_layers_in_subclassed_tfrs_models_and_dicts():
    class Inner(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.parts = {
                "g": SequentialAttentionEmbedding(
                    {"a": tf.keras.layers.Reshape((1,))}, 1
                )
            }

    class Outer(tfrs.models.Model):
        def __init__(self):
            super().__init__()
            self.inner = Inner()
            self.more = [
                SequentialAttentionEmbedding({"b": tf.keras.layers.Reshape((1,))}, 1)
            ]

    layers = find_gated_layers(Outer())
    assert sorted(layer.feature_names[0] for layer in layers) == ["a", "b"]


@pytest.mark.parametrize("terminate_on_nan", [False, True], ids=["plain", "terminate"])
def test_nan_loss_is_reported_and_never_picked_from(terminate_on_nan):
    tf.keras.utils.set_random_seed(0)
    model, layer = functional_model(num_selected=2)
    x, y = linear_data(0)
    x = {name: np.concatenate([v] * 3) for name, v in x.items()}  # 3 epochs of 8
    y = np.concatenate([y] * 3)
    # The last batch of round 1 (epoch 1), whose first 6 of 8 steps settle
    # (dense: nothing is selected yet) and whose logits learn in steps 6-7.
    y[512 + 64 * 7 : 512 + 64 * 8] = np.nan
    callbacks = [
        SequentialAttentionCallback(warmup_epochs=1, finetune_epochs=0, verbose=0)
    ]
    if terminate_on_nan:
        callbacks.append(tf.keras.callbacks.TerminateOnNaN())
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    fit = dict(epochs=3, steps_per_epoch=8, callbacks=callbacks, verbose=0)
    if terminate_on_nan:  # stops in round 1, which picks from its finite steps
        with pytest.warns(UserWarning, match="1 of 2 features after 1 of 2 rounds"):
            history = model.fit(data, **fit)
        assert history.history["seqattn/nonfinite_logit_steps"][-1] >= 1.0
        assert len(layer.selected_features) == 1
    else:  # the NaN weights leave round 2 without any finite logit step
        with pytest.raises(RuntimeError, match="no logit update was applied"):
            model.fit(data, **fit)
        assert len(layer.selected_features) == 1
    assert np.all(np.isfinite(layer.attention_logits.numpy()))
    assert int(layer.nonfinite_logit_steps.numpy()) >= 1


@pytest.mark.parametrize(
    ("optimizer", "traces"),
    [(tf.keras.optimizers.Adam, 1), (tf.keras.optimizers.legacy.Adam, 2)],
)
def test_the_optimizer_is_built_before_fit_traces_its_first_step(optimizer, traces):
    # Adam's moments created inside the first trace make tf.function trace
    # the (gated, long) step again; the callback creates them first, the same
    # ones: the fit is identical to one whose user built the optimizer.
    weights = []
    for built_by_hand in (False, True):
        tf.keras.utils.set_random_seed(0)
        model, layer = functional_model()
        model.compile(optimizer(0.05), "mse")
        if built_by_hand and traces == 1:
            model.optimizer.build(model.trainable_variables)
        callback = SequentialAttentionCallback(
            warmup_epochs=1, finetune_epochs=1, settle_fraction=0.5, verbose=0
        )
        model.fit(dataset(), epochs=4, callbacks=[callback], verbose=0)
        assert model.train_function.experimental_get_tracing_count() == traces
        assert layer.selected_features == ("a", "c")
        slots = [v.numpy() for v in model.optimizer.variables()]
        weights.append(model.get_weights() + slots)
    for ours, theirs in zip(*weights):
        np.testing.assert_array_equal(ours, theirs)


class _TFRSRanker(tfrs.Model):
    """A subclassed TFRS model: its head is built in fit's first trace."""

    def __init__(self):
        super().__init__()
        self.gate = SequentialAttentionEmbedding(
            {n: tf.keras.layers.Embedding(8, 2) for n in NAMES}, 2
        )
        self.head = tf.keras.layers.Dense(1)
        self.task = tfrs.tasks.Ranking(loss=tf.keras.losses.MeanSquaredError())

    def call(self, features):
        gated = self.gate({n: features[n] for n in NAMES})
        return self.head(tf.concat([gated[n] for n in NAMES], axis=1))

    def compute_loss(self, features, training=False):
        return self.task(labels=features["y"], predictions=self(features))


def test_a_model_with_layers_built_in_the_first_trace_keeps_its_optimizer_lazy():
    # The callback's held-out checks build the gate (and mark the model
    # built) but not the head; an optimizer built then would not know the
    # head's kernel and fit would fail on its first step.
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    ids = {n: rng.integers(0, 8, 512) for n in NAMES}
    values = rng.normal(size=(len(NAMES), 8))
    labels = 3 * values[0, ids["a"]] + 2 * values[2, ids["c"]]
    data = tf.data.Dataset.from_tensor_slices(
        {**ids, "y": labels.astype(np.float32)}
    ).batch(64)
    model = _TFRSRanker()
    model.compile(tf.keras.optimizers.Adam(0.05))
    callback = SequentialAttentionCallback(
        warmup_epochs=1,
        finetune_epochs=1,
        settle_fraction=0.5,
        selection_data=data,
        verbose=0,
    )
    model.fit(data, epochs=4, callbacks=[callback], verbose=0)
    assert model.train_function.experimental_get_tracing_count() == 2
    assert model.gate.selected_features == ("a", "c")


def test_a_selection_interval_longer_than_an_epoch_is_refused_before_training():
    model, _ = functional_model(num_selected=2)
    x, y = linear_data(1, 256)
    heldout = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    callback = SequentialAttentionCallback(
        warmup_epochs=1,
        finetune_epochs=0,
        selection_data=heldout,
        selection_interval=9,
        verbose=0,
    )  # epochs of 8 steps, whose batch count restarts every epoch
    with pytest.raises(ValueError, match=r"`selection_interval`=9 .* the 8 steps"):
        model.fit(dataset(), epochs=5, callbacks=[callback], verbose=0)
    assert model.optimizer.iterations.numpy() == 0


def test_a_budget_rule_needs_a_byte_budget():
    with pytest.raises(ValueError, match=r"`budget_rule`='gain_per_byte' .* needs"):
        SequentialAttentionEmbedding(
            {n: tf.keras.layers.Reshape((1,)) for n in NAMES},
            num_selected=2,
            budget_rule="gain_per_byte",
        )
