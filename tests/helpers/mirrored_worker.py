"""Selects under MirroredStrategy on two logical CPUs, or on one device.

Usage: mirrored_worker.py {mirrored,single} {train,heldout,entry_z,probe};
prints JSON. ``train`` and ``heldout`` keep 3 of 5 features, the logits
learning on the training or the held-out batches; ``entry_z`` selects under a
budget that fits every feature and stops on ``entry_z`` (with held-out
batches). ``probe`` selects on integer ids (``distributed_model``), whose
values the held-out probe hashes, and reports the probe before each commit.
"""

import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

NAMES = ("a", "b", "c", "d", "e")


def main():
    mode, source = sys.argv[1], sys.argv[2]
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    from commits import before_each_commit

    import seqattn_tfrs

    strategy = (
        tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        if mode == "mirrored"
        else tf.distribute.get_strategy()
    )
    if source == "probe":
        return select_ids(strategy)
    if source == "entry_z":
        # Every feature fits: only entry_z can keep b and d out. The score test
        # needs noise to measure against.
        rows, noise = 1024, 0.1
        options = {
            "budget_bytes": 100,
            "feature_bytes": {n: 1 for n in NAMES},
            "budget_rule": "attention",
            "entry_z": 3.0,
        }
    else:
        rows, noise, options = 512, 0.0, {"num_selected": 3}
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 5)).astype(np.float32)
    y = x @ np.array([3.0, 0.0, 2.0, 0.0, 1.0], np.float32)
    if noise:
        y += noise * rng.normal(size=rows).astype(np.float32)
    with strategy.scope():
        inputs = {n: tf.keras.Input((), name=n) for n in NAMES}
        layer = seqattn_tfrs.SequentialAttentionEmbedding(
            {n: tf.keras.layers.Reshape((1,)) for n in NAMES}, **options
        )
        gated = layer(inputs)
        model = tf.keras.Model(
            inputs,
            tf.keras.layers.Dense(1)(
                tf.keras.layers.Concatenate()([gated[n] for n in NAMES])
            ),
        )
        model.compile(tf.keras.optimizers.SGD(0.05), "mse")
    data = tf.data.Dataset.from_tensor_slices(
        ({n: x[:, i] for i, n in enumerate(NAMES)}, y)
    ).batch(64)
    evidence, heldout_batches = [], []

    def record(layer):
        if layer.entry_z is not None:
            evidence.append(layer.entry_evidence())
        # The held-out batches behind the round's held-out sums (each replica
        # adds its share).
        heldout_batches.append(float(layer.selection_state.heldout_batches.numpy()))

    before_each_commit(layer, record)
    callback = seqattn_tfrs.SequentialAttentionCallback(
        warmup_epochs=1,
        finetune_epochs=1,
        verbose=0,
        selection_data=None if source == "train" else data,
    )
    model.fit(data, epochs=1 + layer.num_rounds + 1, callbacks=[callback], verbose=0)
    replicas = getattr(layer.selected_mask, "values", (layer.selected_mask,))
    print(
        json.dumps(
            {
                "selected": list(layer.selected_features),
                "replica_masks": [v.numpy().tolist() for v in replicas],
                "round_gates": layer.round_gates.numpy().tolist(),
                "events": [event["features"] for event in callback.events],
                "evidence": evidence,
                "heldout_batches": heldout_batches,
            }
        )
    )


def select_ids(strategy):
    """The id model under ``strategy``, with held-out batches:
    per commit the probe's z and the L1 norm of its training-side sums, as
    ``probe_training_sums`` gives them and as the held-out pass read them
    (the first replica's copy)."""
    from commits import before_each_commit
    from distributed_model import EPOCHS, build_model, make_callback, make_dataset

    tf.keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model()
    layer = model.get_layer("gate")
    rounds = []

    def record(layer):
        sums = layer.probe_training_sums()
        rounds.append(
            {
                "z": layer.selection_state.probe_scores.numpy().tolist(),
                "sums_l1": None if sums is None else float(np.abs(sums).sum()),
                "read_l1": float(np.abs(layer.probe_sums.numpy()).sum()),
            }
        )

    before_each_commit(layer, record)
    callback = make_callback(make_dataset(seed=1))
    model.fit(make_dataset(), epochs=EPOCHS, callbacks=[callback], verbose=0)
    print(json.dumps({"selected": list(layer.selected_features), "rounds": rounds}))


if __name__ == "__main__":
    main()
