"""Keras 3 scenarios, run as ``python scenarios.py NAME...`` in a clean process.

``KERAS_BACKEND`` must be set before ``import keras`` and the suite's root
conftest makes ``tf.keras`` Keras 2, so ``test_backends.py`` runs these in a
subprocess per backend. Each scenario prints one JSON line with its result;
a failed assertion exits non-zero.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import keras  # noqa: E402
from planted import (  # noqa: E402
    TWO_TOWER_CANDIDATE,
    TWO_TOWER_QUERY,
    TWO_TOWER_TRAIN_ROWS,
    binary_and_gaussian_problem,
    ctr_correct,
    ctr_problem,
    keras3_ctr_model,
    linear_problem,
    omp_order,
    two_tower_correct,
    two_tower_problem,
)

from seqattn_tfrs.core.pairs import named_pair_scores  # noqa: E402
from seqattn_tfrs.keras3 import (  # noqa: E402
    SequentialAttentionCallback,
    SequentialAttentionEmbedding,
    dependence_check,
    export_for_serving,
    prune,
)
from seqattn_tfrs.keras3.callback import find_gated_layers  # noqa: E402


def batches(features: dict, y: np.ndarray, rows: slice, size: int) -> list:
    """Held-out batches as a plain list of ``(x, y)`` numpy pairs."""
    x = {name: column[rows] for name, column in features.items()}
    n = len(y[rows])
    return [
        ({k: v[i : i + size] for k, v in x.items()}, y[rows][i : i + size])
        for i in range(0, n, size)
    ]


def linear_model(
    names: list[str], **options
) -> tuple[keras.Model, SequentialAttentionEmbedding]:
    inputs = {name: keras.Input((1,), name=name) for name in names}
    gate = SequentialAttentionEmbedding(
        {name: keras.layers.Identity() for name in names}, **options
    )
    gated = gate(inputs)
    out = keras.layers.Dense(1)(keras.layers.Concatenate()([gated[n] for n in names]))
    return keras.Model(inputs, out), gate


def omp(seed: int = 0) -> dict:
    """The linear problem's OMP order, logits learning from held-out batches
    (a ``tf.data.Dataset``, read as numpy on every backend)."""
    x, y = linear_problem(seed)
    expected = omp_order(x, y, 4)
    names = [f"x{i}" for i in range(8)]
    keras.utils.set_random_seed(seed)
    model, gate = linear_model(names, num_selected=4)
    model.compile(keras.optimizers.Adam(0.05), "mse")
    features = {n: x[:, i : i + 1] for i, n in enumerate(names)}
    import tensorflow as tf  # held-out batches as a tf.data.Dataset here

    heldout = tf.data.Dataset.from_tensor_slices(
        ({k: v[3072:] for k, v in features.items()}, y[3072:])
    ).batch(64)
    callback = SequentialAttentionCallback(
        warmup_epochs=2,
        epochs_per_selection=2,
        finetune_epochs=0,
        selection_data=heldout,
        verbose=0,
    )
    train = {k: v[:3072] for k, v in features.items()}
    model.fit(
        train, y[:3072], batch_size=64, epochs=10, callbacks=[callback], verbose=0
    )
    order = [names.index(f) for f in gate.selected_features]
    assert order == expected, (order, expected)
    return {"order": order, "expected": expected}


def first_pick() -> dict:
    """OMP's first pick where the sum-of-squares score test ranks another
    (``binary_and_gaussian_problem``, as ``tests/test_selection_quality.py``
    on tf-keras), seeds 0-2."""
    names = [f"x{i}" for i in range(4)]
    picks = []
    for seed in range(3):
        x, y = binary_and_gaussian_problem(seed)
        assert omp_order(x[4000:], y[4000:], 1) == [0]
        keras.utils.set_random_seed(seed)
        model, gate = linear_model(names, num_selected=1)
        model.compile(keras.optimizers.Adam(0.05), "mse")
        features = {n: x[:, i : i + 1] for i, n in enumerate(names)}
        callback = SequentialAttentionCallback(
            finetune_epochs=0,
            selection_data=batches(features, y, slice(4000, None), 128),
            verbose=0,
        )
        model.fit(
            {k: v[:4000] for k, v in features.items()},
            y[:4000],
            batch_size=128,
            epochs=callback.schedule_length(gate.num_rounds),
            callbacks=[callback],
            verbose=0,
        )
        picks.append(gate.selected_features[0])
    assert picks == ["x0"] * 3, picks
    return {"picks": picks}


def settled() -> dict:
    """Least squares on float features (no values to group): after the first
    pick each settle runs the score test on its training rows, which ranks
    the later commits' candidates that help, and the probe's pass the same
    test on the held-out rows, which also makes one help, as on tf-keras
    (``tests/test_probe.py``, same problem)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers.evidence import check_float_pick

    rng = np.random.default_rng(0)
    count, names = 6000, [f"x{i}" for i in range(5)]
    x = rng.normal(size=(count, 5)).astype(np.float32)
    y = (2.0 * x[:, 0] + 1.2 * x[:, 1] + 0.8 * x[:, 2]).astype(np.float32)
    y += rng.normal(size=count).astype(np.float32)
    features = {n: x[:, i : i + 1] for i, n in enumerate(names)}
    keras.utils.set_random_seed(0)
    model, gate = linear_model(names, num_selected=3)
    model.compile(keras.optimizers.Adam(0.05), "mse")
    seen = []  # per commit: the settled z and the gate's z of the candidates
    commit = gate.commit_round

    def recording_commit(require_learning=False):
        chosen = set(gate.selected_features)
        fresh, held = gate.entry_evidence(), gate.heldout_evidence()
        seen.append(
            (
                {n: fresh[n] for n in names if n not in chosen},
                {n: held[n] for n in names if n not in chosen},
            )
        )
        return commit(require_learning)

    gate.commit_round = recording_commit
    callback = SequentialAttentionCallback(
        finetune_epochs=0,
        selection_data=batches(features, y, slice(4800, None), 128),
        verbose=0,
    )
    model.fit(
        {k: v[:4800] for k, v in features.items()},
        y[:4800],
        batch_size=128,
        epochs=callback.schedule_length(gate.num_rounds),
        callbacks=[callback],
        verbose=0,
    )
    assert gate.selected_features == ("x0", "x1", "x2"), gate.selected_features
    assert len(seen) == 3
    # Round 1's first pick is by the held-out score test of the intercept-only
    # model; the settled test runs only in the settles after it.
    # The events carry both statistics of those commits and the probe's pass's
    # held-out score test (each candidate's gate at 0), as on tf-keras.
    reported = [e for e in callback.events if "settled_scores" in e]
    assert [e["round"] for e in reported] == [2, 3], callback.events
    for event, (fresh, held) in zip(reported, seen[1:]):
        assert event["settled_scores"] == fresh
        assert event["heldout_scores"] == held
        tested = event["probe_scores"]
        assert set(tested) == set(held), (tested, held)
        (pick,) = event["features"]
        assert all(fresh.values()), fresh  # summed in the settle's training steps
        assert fresh[pick] > 5 and tested[pick] > 5, event  # the strongest left
        assert abs(tested["x3"]) < 3 and abs(tested["x4"]) < 3, tested  # no signal
        chosen = set(gate.selected_features[: event["round"] - 1])
        check_float_pick(names, chosen, pick, fresh, held, tested)
    assert not any(gate.entry_evidence().values())  # reset by the last commit
    return {
        "selected": list(gate.selected_features),
        "settled_z": [{n: round(z, 1) for n, z in f.items()} for f, _ in seen[1:]],
    }


def fit_generated(model, gate, problem, features, *callbacks):
    """Compiles ``model`` (Adam 0.01, binary cross-entropy) and fits it on a
    generated problem's training rows with the selection callback's defaults
    (``finetune_epochs=0``, the held-out rows as ``selection_data``, batch
    128), ``callbacks`` after it; returns the selection callback."""
    split = problem.train_rows
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    callback = SequentialAttentionCallback(
        finetune_epochs=0,
        selection_data=batches(features, problem.labels, slice(split, None), 128),
        verbose=0,
    )
    model.fit(
        {n: v[:split] for n, v in features.items()},
        problem.labels[:split],
        batch_size=128,
        epochs=callback.schedule_length(gate.num_rounds),
        callbacks=[callback, *callbacks],
        verbose=0,
    )
    return callback


def ctr(seed: int = 0) -> dict:
    """The planted CTR problem: sources, one copy, no noise (held-out data)."""
    columns, y = ctr_problem(seed)
    columns = {k: v.astype(np.int32) for k, v in columns.items()}
    keras.utils.set_random_seed(seed)
    model, gate = keras3_ctr_model(columns, num_selected=5)
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    order = np.random.default_rng(seed).permutation(8000)
    train = {k: v[:8000][order] for k, v in columns.items()}
    callback = SequentialAttentionCallback(
        warmup_epochs=1,
        epochs_per_selection=2,
        finetune_epochs=0,
        selection_data=batches(columns, y, slice(8000, None), 128),
        verbose=0,
    )
    model.fit(
        train,
        y[:8000][order],
        batch_size=128,
        epochs=11,
        callbacks=[callback],
        verbose=0,
    )
    selected = list(gate.selected_features)
    assert ctr_correct(set(selected)), selected
    return {"selected": selected}


def prune_export() -> dict:
    """A `within_fit` schedule, then prune and export; the SavedModel is checked
    by plain TensorFlow in a process of its own."""
    columns, y = ctr_problem(0, n=2048)
    names = ["m1", "m2", "m3", "noise0"]
    columns = {k: columns[k].astype(np.int32) for k in names}
    keras.utils.set_random_seed(0)
    model, gate = keras3_ctr_model(columns, num_selected=2)
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    callback = SequentialAttentionCallback(within_fit=True, verbose=0)
    model.fit(columns, y, batch_size=64, epochs=4, callbacks=[callback], verbose=0)
    kept = list(gate.selected_features)
    assert [e["step"] for e in callback.events] == [64, 116], callback.events
    # A later fit (1 epoch, shorter than any schedule) trains and selects nothing.
    later = SequentialAttentionCallback(within_fit=True, verbose=0)
    model.fit(columns, y, batch_size=64, epochs=1, callbacks=[later], verbose=0)
    assert list(gate.selected_features) == kept and not later.events, later.events
    pruned = prune(model)
    assert sorted(pruned.input) == sorted(kept), (sorted(pruned.input), kept)
    probe = {k: v[:64] for k, v in columns.items()}
    full = keras.ops.convert_to_numpy(model.predict(probe, verbose=0))
    small = keras.ops.convert_to_numpy(
        pruned.predict({k: probe[k] for k in kept}, verbose=0)
    )
    np.testing.assert_allclose(small, full, rtol=0, atol=1e-6)
    # The served gate never learns: no held-out probe sums (256 KiB a feature).
    (served_gate,) = find_gated_layers(pruned)
    state_floats = sum(int(np.prod(v.shape)) for v in served_gate.learning_state)
    assert state_floats < 100, state_floats
    dropped_tables = [
        w.path
        for w in pruned.weights
        if any(f"/{n}/" in w.path for n in set(names) - set(kept))
    ]
    base = tempfile.mkdtemp()
    path = export_for_serving(pruned, base)
    np.savez(os.path.join(base, "probe.npz"), expected=small, **probe)
    check = subprocess.run(
        [
            sys.executable,
            str(pathlib.Path(__file__).with_name("load_export.py")),
            path,
            os.path.join(base, "probe.npz"),
            ",".join(kept),
        ],
        env={
            k: v
            for k, v in os.environ.items()
            if k not in ("KERAS_BACKEND", "TF_USE_LEGACY_KERAS")
        },
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert served_gate.gate_history() == gate.gate_history(), (
        served_gate.gate_history(),
        gate.gate_history(),
    )
    assert len(gate.gate_history()) == 2, gate.gate_history()
    # TF Serving's Regress API: one output named "outputs"; a mapping for a
    # model of one output is refused and leaves no version behind.
    regress = export_for_serving(pruned, base, output_name="outputs")
    assert os.path.basename(regress) == "2", regress
    try:
        export_for_serving(pruned, base, output_name={0: "scores"})
    except ValueError as error:
        assert "pass `output_name` as a string" in str(error), str(error)
    else:
        raise AssertionError("a mapping output_name for one output was accepted")
    try:  # `padding` names variable-length inputs; these are all scalars
        export_for_serving(pruned, base, padding={kept[0]: 0})
    except ValueError as error:
        assert f"`padding` names ['{kept[0]}']" in str(error), str(error)
    else:
        raise AssertionError("a padding for a scalar feature was accepted")
    assert sorted(os.listdir(base)) == [
        ".seqattn_tfrs_export.lock",
        "1",
        "2",
        "probe.npz",
    ], os.listdir(base)
    if keras.backend.backend() == "torch":
        # Exported by a child process on TensorFlow, which cannot load a layer
        # class defined here: the error says so and what to do.
        class Twice(keras.layers.Layer):
            def call(self, x):
                return 2.0 * x

        inputs = keras.Input((1,), name="x")
        custom = keras.Model(inputs, Twice()(inputs))
        try:
            export_for_serving(custom, base)
        except RuntimeError as error:
            assert "export it from a process on the TensorFlow" in str(error)
            assert "Twice" in str(error), str(error)
        else:
            raise AssertionError("a model the child cannot load was exported")
        assert sorted(os.listdir(base))[1:] == ["1", "2", "probe.npz"], os.listdir(base)
    return {
        "kept": kept,
        "export": path,
        "regress_export": regress,
        "loader": check.stdout.strip().splitlines()[-1],
        "dropped_weights_left": dropped_tables,
    }


def distributed() -> dict:
    """A gate over keras-rs's DistributedEmbedding (two features share a table):
    selection, then pruning keeps only the tables the kept features use."""
    import inspect

    import keras_rs

    columns, y = ctr_problem(1, n=2048)
    columns["m1_twin"] = columns["m1"]  # shares m1's table
    names = ["m1", "m1_twin", "m2", "noise0"]
    batch = 256
    shared = keras_rs.layers.TableConfig("t_m1", 20, 4)
    tables = {
        "m1": shared,
        "m1_twin": shared,
        "m2": keras_rs.layers.TableConfig("t_m2", 20, 4),
        "noise0": keras_rs.layers.TableConfig("t_noise0", 3000, 4),
    }
    configs = {
        n: keras_rs.layers.FeatureConfig(n, tables[n], (batch,), (batch, 4))
        for n in names
    }
    inputs = {
        n: keras.Input((), batch_size=batch, dtype="int32", name=n) for n in names
    }
    # keras-rs also takes nested dicts of configs; a gate needs them flat.
    try:
        SequentialAttentionEmbedding(
            keras_rs.layers.DistributedEmbedding({"group": configs}), num_selected=2
        )
    except ValueError as error:
        assert "flat dict of `FeatureConfig`s" in str(error), str(error)
    else:
        raise AssertionError("a nested DistributedEmbedding was accepted")
    keras.utils.set_random_seed(0)
    gate = SequentialAttentionEmbedding(
        keras_rs.layers.DistributedEmbedding(configs), num_selected=2
    )
    gated = gate(inputs)
    out = keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.Dense(16, activation="relu")(
            keras.layers.Concatenate()([gated[n] for n in names])
        )
    )
    model = keras.Model(inputs, out)
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    x = {n: columns[n].astype(np.int32) for n in names}
    callback = SequentialAttentionCallback(
        warmup_epochs=1, epochs_per_selection=1, finetune_epochs=1, verbose=0
    )
    model.fit(x, y, batch_size=batch, epochs=4, callbacks=[callback], verbose=0)
    kept = list(gate.selected_features)
    assert gate.selection_complete and len(kept) == 2, kept
    costs = gate.feature_costs()
    assert costs["noise0"] == 3000 * 4 * 4 and costs["m1"] == costs["m1_twin"], costs
    pruned = prune(model)
    assert sorted(pruned.input) == sorted(kept)
    probe = {k: v[:batch] for k, v in x.items()}
    full = keras.ops.convert_to_numpy(model.predict(probe, batch_size=batch, verbose=0))
    small = keras.ops.convert_to_numpy(
        pruned.predict({k: probe[k] for k in kept}, batch_size=batch, verbose=0)
    )
    np.testing.assert_allclose(small, full, rtol=0, atol=1e-6)
    kept_tables = sorted({tables[n].name for n in kept})
    new_gate = [
        layer
        for layer in pruned.layers
        if isinstance(layer, SequentialAttentionEmbedding)
    ][0]
    assert sorted(new_gate.embeddings.get_embedding_tables()) == kept_tables
    parameters = set(inspect.signature(SequentialAttentionEmbedding).parameters)
    assert parameters - {"kwargs"} <= set(gate.get_config()), parameters
    return {"kept": kept, "tables": kept_tables}


def saved_layouts() -> dict:
    """The gate's own variables go into ``.keras`` files by name and come back
    with every value; a file of an earlier release, saved by position, loads
    by its layout (the variables it lacks keep their initial values); a file
    naming a variable this gate lacks, or matching no layout, is refused."""
    import zipfile

    import h5py

    from seqattn_tfrs.keras3 import saved_state

    names = ["a", "b", "c"]

    def gate_model():
        inputs = {n: keras.Input((), dtype="int32", name=n) for n in names}
        gate = SequentialAttentionEmbedding(
            {n: keras.layers.Embedding(7, 2) for n in names}, 2, name="gate"
        )
        gated = gate(inputs)
        joined = keras.layers.Concatenate()(list(gated.values()))
        return keras.Model(inputs, keras.layers.Dense(1)(joined)), gate

    def own(gate):
        return {v.name: keras.ops.convert_to_numpy(v) for v in gate._own_variables()}

    model, gate = gate_model()
    rng = np.random.default_rng(0)
    for variable in gate._own_variables():  # distinct values of each dtype
        value = rng.integers(1, 50, size=variable.shape)
        variable.assign(value.astype(keras.backend.standardize_dtype(variable.dtype)))
    saved = own(gate)
    path = os.path.join(tempfile.mkdtemp(), "model.keras")
    model.save(path)
    with (
        zipfile.ZipFile(path) as archive,
        archive.open("model.weights.h5") as raw,
        h5py.File(raw) as weights,
    ):
        stored = set(weights["layers/sequential_attention_embedding/vars"])
    assert stored == set(saved), sorted(stored)
    loaded = keras.models.load_model(path).get_layer("gate")
    for name, value in own(loaded).items():
        np.testing.assert_array_equal(value, saved[name], err_msg=name)

    fresh_model, fresh = gate_model()
    initial = own(fresh)
    for layout in saved_state.POSITIONAL_LAYOUTS:
        _, target = gate_model()
        target.load_own_variables({str(i): saved[n] for i, n in enumerate(layout)})
        for name, value in own(target).items():
            want = saved[name] if name in layout else initial[name]
            np.testing.assert_array_equal(value, want, err_msg=f"{len(layout)} {name}")
    # The two layouts of 14 variables differ only in dtypes: position 6 is
    # `score_squares` (float) in one and `selection_order` (int) in the other.
    fourteen = [lay for lay in saved_state.POSITIONAL_LAYOUTS if len(lay) == 14]
    assert len(fourteen) == 2 and fourteen[0][6] != fourteen[1][6], fourteen
    refused = []
    for store, expected in (
        ({**saved, "later_sums": np.zeros(3)}, "['later_sums']"),
        ({str(i): saved[n] for i, n in enumerate(sorted(saved)[:13])}, "13 variables"),
        ({"round_gates": np.zeros((9, 3), np.float32)}, "`round_gates` has shape"),
    ):
        try:
            fresh.load_own_variables(store)
        except ValueError as error:
            assert expected in str(error), (expected, str(error))
            refused.append(expected)
        else:
            raise AssertionError(f"loading {sorted(store)} must raise")
    return {"layouts": len(saved_state.POSITIONAL_LAYOUTS), "refused": len(refused)}


def config() -> dict:
    """get_config covers every constructor argument; a .keras file round-trips."""
    import inspect

    names = ["a", "b", "c"]
    inputs = {n: keras.Input((), dtype="int32", name=n) for n in names}
    gate = SequentialAttentionEmbedding(
        {n: keras.layers.Embedding(7, 2) for n in names},
        budget_bytes=200,
        selections_per_round=2,
        attention_signal="score",
        name="gate",
    )
    gated = gate(inputs)
    model = keras.Model(
        inputs, keras.layers.Dense(1)(keras.layers.Concatenate()(list(gated.values())))
    )
    parameters = set(inspect.signature(SequentialAttentionEmbedding).parameters)
    config = gate.get_config()
    assert parameters - {"kwargs"} <= set(config), parameters - set(config)
    again = SequentialAttentionEmbedding.from_config(config)
    assert again.get_config() == config
    path = os.path.join(tempfile.mkdtemp(), "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    probe = {n: np.arange(4, dtype=np.int32) % 7 for n in names}
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded.predict(probe, verbose=0)),
        keras.ops.convert_to_numpy(model.predict(probe, verbose=0)),
        rtol=0,
        atol=1e-6,
    )
    restored = loaded.get_layer("gate")
    assert type(restored) is SequentialAttentionEmbedding
    assert restored.num_rounds == gate.num_rounds == 2, restored.num_rounds
    for bad, expected in (
        ({"num_selected": 0}, "`num_selected` must be an int in [1, 3]"),
        ({"num_selected": 1, "budget_bytes": 9}, "Pass exactly one of"),
        ({"num_selected": 1, "attention_momentum": 1.0}, "`attention_momentum`"),
        (
            {"num_selected": 1, "selections_per_round": 2},
            "`selections_per_round`=2 is more than the 1 features",
        ),
    ):
        try:
            SequentialAttentionEmbedding({"a": keras.layers.Embedding(3, 2)}, **bad)
        except ValueError as error:
            assert expected.replace("[1, 3]", "[1, 1]") in str(error) or (
                expected in str(error)
            ), (bad, str(error))
        else:
            raise AssertionError(f"{bad} was accepted")
    # A selection that keeps every feature: prune drops nothing, and the
    # result is a pruned layer (export takes it), in its config too.
    rng = np.random.default_rng(0)
    x = {n: rng.normal(size=(256, 1)).astype("float32") for n in names}
    y = x["a"] + x["b"] - x["c"]
    keras.utils.set_random_seed(0)
    model, gate = linear_model(names, num_selected=3, selections_per_round=3)
    model.compile(keras.optimizers.Adam(0.05), "mse")
    callback = SequentialAttentionCallback(
        warmup_epochs=1, epochs_per_selection=1, finetune_epochs=0, verbose=0
    )
    model.fit(x, y, batch_size=64, epochs=2, callbacks=[callback], verbose=0)
    pruned = find_gated_layers(prune(model))[0]
    assert pruned.is_pruned and pruned.pruned_feature_widths == {}, pruned
    kept = pruned.get_config()
    assert kept["pruned_feature_widths"] == {}, kept["pruned_feature_widths"]
    assert SequentialAttentionEmbedding.from_config(kept).is_pruned

    class Towers(keras.Model):  # two towers that each name their gate "gate"
        def __init__(self):
            super().__init__()
            self.users, self.items = (
                SequentialAttentionEmbedding(
                    {n: keras.layers.Identity() for n in part}, 1, name="gate"
                )
                for part in (names[:1], names[1:])
            )

    try:
        find_gated_layers(Towers())
    except ValueError as error:
        assert "share the name(s) ['gate']" in str(error), str(error)
    else:
        raise AssertionError("two gates named 'gate' were accepted")
    # A listwise model's table gives [batch, 5, 8]: the error names the fixes.
    listwise = SequentialAttentionEmbedding({"items": keras.layers.Embedding(9, 8)}, 1)
    try:
        listwise({"items": np.zeros((2, 5), "int32")})
    except ValueError as error:
        message = str(error)
        assert "returned a tensor of rank 3" in message, message
        assert "keras.layers.Reshape((8,))" in message, message
        assert "Reshape((5 * 8,)) keeps them in order" in message, message
    else:
        raise AssertionError("a [batch, 5, 8] embedding was accepted")
    return {"config_keys": sorted(config)}


def budget() -> dict:
    """A byte budget with `entry_z`, rounds counted in steps: the kept bytes
    stay within the budget, the selection closes, and a schedule too long
    for `fit` is refused before training."""
    x, y = linear_problem(0, n=2048)
    names = [f"x{i}" for i in range(8)]
    costs = {n: 100 * (1 + i % 3) for i, n in enumerate(names)}  # 100-300 bytes
    keras.utils.set_random_seed(0)
    model, gate = linear_model(
        names, budget_bytes=450, feature_bytes=costs, entry_z=2.0
    )
    model.compile(keras.optimizers.Adam(0.05), "mse")
    features = {n: x[:, i : i + 1] for i, n in enumerate(names)}
    train = {k: v[:1536] for k, v in features.items()}
    callback = SequentialAttentionCallback(
        warmup_epochs=2,
        steps_per_selection=48,
        finetune_epochs=1,
        selection_data=batches(features, y, slice(1536, None), 64),
        verbose=0,
    )
    try:
        model.fit(
            train, y[:1536], batch_size=64, epochs=2, callbacks=[callback], verbose=0
        )
    except ValueError as error:
        assert "needs" in str(error) and "steps" in str(error), str(error)
    else:
        raise AssertionError("a schedule longer than fit was accepted")
    epochs = -(-callback.schedule_length(gate.num_rounds, 24) // 24)
    model.fit(
        train, y[:1536], batch_size=64, epochs=epochs, callbacks=[callback], verbose=0
    )
    kept = list(gate.selected_features)
    assert gate.selection_complete, kept
    assert gate.progress() == f"{len(kept)} features within a budget of 450 bytes"
    assert set(gate.entry_evidence()) == set(names)
    assert sum(costs[n] for n in kept) <= 450, kept
    assert "x0" in kept, kept  # the strongest feature
    return {
        "kept": kept,
        "rounds": gate.record().rounds_done,
        "events": len(callback.events),
    }


def recoding_problem(rows: int = 3840, seed: int = 0) -> tuple[dict, np.ndarray]:
    """A strong field and its re-coding, two weaker fields, a noise field."""
    rng = np.random.default_rng(seed)
    strong = rng.integers(0, 8, rows)
    medium = rng.integers(0, 5, rows)
    weak = rng.integers(0, 4, rows)
    logit = (
        rng.normal(0, 1.5, 8)[strong]
        + rng.normal(0, 1.0, 5)[medium]
        + rng.normal(0, 0.6, 4)[weak]
    )
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    columns = {
        "strong": strong,
        "recoded": rng.permutation(8)[strong],
        "medium": medium,
        "weak": weak,
        "noise": rng.integers(0, 50, rows),
    }
    return {k: v.astype(np.int32) for k, v in columns.items()}, y


def _check_compiles(model, gate, columns, y) -> dict:
    """JAX: the dependence check's tables compile as one program (fewer
    compiles than the tables' distinct shapes, which an eager pass compiles
    one by one) and record exactly the eager pass's table outputs."""
    import jax

    from seqattn_tfrs.core import dependence as dependence_lib

    counting = []

    def count(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration" and counting:
            counting[-1] += 1

    jax.monitoring.register_event_duration_secs_listener(count)
    data = batches(columns, y, slice(2560, 2816), 128)
    counting.append(0)  # nothing cached yet: the callback's own check
    dependence_check.check_functional_dependence(model, [gate], data)
    recorded, compiles = {}, {"check": counting.pop()}
    for together in (True, False):  # the compiled pass first: nothing cached
        counting.append(0)
        (recorded[together],) = dependence_lib.record_batches(
            [gate],
            iter(data),
            lambda batch: model(batch[0], training=False),
            max_rows=10_000,
            compiled_lookups=together,
        )
        compiles[together] = counting.pop()
    shapes = {tuple(t.embeddings.shape) for t in gate.embeddings.values()}
    assert max(compiles["check"], compiles[True]) <= 1 < len(shapes), compiles
    assert compiles[False] >= len(shapes), (compiles, shapes)
    assert len(recorded[True]) == len(recorded[False]) == 2
    for ours, eager in zip(recorded[True], recorded[False]):
        for name, (raw, table) in eager.items():
            np.testing.assert_array_equal(ours[name][0], raw)
            np.testing.assert_array_equal(ours[name][1], table)
    return {
        "check": compiles["check"],
        "compiled": compiles[True],
        "eager": compiles[False],
    }


def dependence() -> dict:
    """A field and its re-coding: the callback finds the pair on
    `selection_data` (and checks nothing without it), and the layer's commit
    passes over the copy of a selected feature."""
    columns, y = recoding_problem()
    pair = {"strong": ("recoded",), "recoded": ("strong",)}

    def fit(selection_data: bool) -> tuple[keras.Model, SequentialAttentionEmbedding]:
        keras.utils.set_random_seed(0)
        # Two picks in one round: the copies share the largest logits.
        model, gate = keras3_ctr_model(columns, num_selected=2, selections_per_round=2)
        model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
        callback = SequentialAttentionCallback(
            warmup_epochs=1,
            epochs_per_selection=1,
            finetune_epochs=0,
            selection_data=(
                batches(columns, y, slice(2560, None), 128) if selection_data else None
            ),
            verbose=0,
        )
        train = {k: v[:2560] for k, v in columns.items()}
        model.fit(
            train, y[:2560], batch_size=128, epochs=2, callbacks=[callback], verbose=0
        )
        return model, gate

    model, checked = fit(selection_data=True)
    assert checked.functional_dependencies == pair, checked.functional_dependencies
    selected = list(checked.selected_features)
    assert not {"strong", "recoded"} <= set(selected), selected
    path = os.path.join(tempfile.mkdtemp(), "model.keras")
    model.save(path)  # the check's result is state: it survives a restart
    loaded = keras.models.load_model(path).get_layer(checked.name)
    assert loaded.functional_dependencies == pair, loaded.functional_dependencies
    _, unchecked = fit(selection_data=False)
    assert unchecked.functional_dependencies is None
    on_jax = keras.backend.backend() == "jax"
    compiles = _check_compiles(model, checked, columns, y) if on_jax else None

    # The layer's own commit, on hand-set logits (the copy's second largest).
    logits = np.array([3.0, 2.0, 1.0, 0.5, 0.0], np.float32)
    found = keras.ops.convert_to_numpy(checked.dependence) > 0
    picks = {}
    for name, matrix in (("with", found), ("without", None)):
        gate = SequentialAttentionEmbedding(
            {n: keras.layers.Embedding(50, 4) for n in columns}, num_selected=3
        )
        gate.build(None)
        if matrix is not None:
            gate.set_functional_dependence(matrix)
        picks[name] = []
        for _ in range(2):
            gate.attention_logits.assign(logits)  # each commit zeroes them
            picks[name] += gate.commit_round()
    assert picks == {
        "with": ["strong", "medium"],
        "without": ["strong", "recoded"],
    }, picks
    return {
        "dependencies": checked.functional_dependencies,
        "selected": selected,
        "commits": picks,
        "check_compiles": compiles,
        "by_table": _grouped_by_tables(),
    }


def _grouped_by_tables() -> dict:
    """Raw times (two rows each) determine the hour; a table of the times in
    4 buckets does not, a table of one row per time does."""
    from seqattn_tfrs.keras3.dependence_check import check_functional_dependence

    time = np.repeat(np.arange(400), 2)
    columns = {"time": time, "hour": time % 24}
    y = np.zeros([800, 1], np.float32)
    found = {}
    for name, time_table in (
        (
            "buckets",
            keras.Sequential(
                [
                    keras.layers.Discretization(bin_boundaries=[100, 200, 300]),
                    keras.layers.Embedding(4, 4),
                ]
            ),
        ),
        ("one_row_each", keras.layers.Embedding(400, 4)),
    ):
        gate = SequentialAttentionEmbedding(
            {"time": time_table, "hour": keras.layers.Embedding(24, 4)},
            num_selected=1,
        )
        inputs = {n: keras.Input(shape=(), dtype="int32", name=n) for n in columns}
        gated = gate(inputs)
        joined = keras.layers.Concatenate()([gated["time"], gated["hour"]])
        model = keras.Model(inputs, keras.layers.Dense(1)(joined))
        data = [
            ({n: v[i : i + 200] for n, v in columns.items()}, y[i : i + 200])
            for i in range(0, 800, 200)
        ]
        check_functional_dependence(model, [gate], data)
        found[name] = gate.functional_dependencies
    assert found == {"buckets": {}, "one_row_each": {"hour": ("time",)}}, found
    return found


def evidence() -> dict:
    """The score test's sums (``entry_z``, ``"gain_per_byte"``) skip each
    settle's first half and score centred embeddings, and the held-out
    statistics of the selecting part count only selecting steps' held-out
    batches, as on tf-keras (``tests/test_budget.py``, same planted data and
    schedule)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers.evidence import check_selecting_evidence, check_settle_evidence

    rng = np.random.default_rng(0)
    n = 4000
    small, other, noise = (rng.integers(0, 10, n) for _ in range(3))
    logit = 2.0 * rng.normal(size=10)[small] + 1.5 * rng.normal(size=10)[other]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    columns = {"small": small, "other": other, "noise": noise}
    # A constant feature: one embedding.
    columns["const"] = np.zeros(n, np.int64)
    columns = {k: v.astype(np.int32) for k, v in columns.items()}
    names = list(columns)
    keras.utils.set_random_seed(0)
    inputs = {name: keras.Input((), name=name, dtype="int32") for name in names}
    gate = SequentialAttentionEmbedding(
        {k: keras.layers.Embedding(int(v.max()) + 1, 4) for k, v in columns.items()},
        budget_bytes=300,
        feature_bytes={name: 100 for name in names},
        budget_rule="gain_per_byte",
    )
    gated = gate(inputs)
    out = keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.Concatenate()([gated[name] for name in names])
    )
    model = keras.Model(inputs, out)
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    records = []

    def record(batch, logs):
        sync = getattr(model, "jax_state_sync", None)
        if sync is not None:
            sync()
        records.append(
            (
                int(keras.ops.convert_to_numpy(gate.gate_mode)),
                keras.ops.convert_to_numpy(gate.learning_state[6]),
                keras.ops.convert_to_numpy(gate.learning_state[8]),
                keras.ops.convert_to_numpy(gate.learning_state[10]),
            )
        )

    callback = SequentialAttentionCallback(
        warmup_epochs=1,
        steps_per_selection=20,
        finetune_epochs=0,
        selection_data=batches(columns, y, slice(3000, None), 100),
        verbose=0,
    )
    assert gate.num_rounds == 3
    train = {k: v[:3000] for k, v in columns.items()}
    recorder = keras.callbacks.LambdaCallback(on_train_batch_end=record)
    model.fit(
        train,
        y[:3000],
        batch_size=100,
        epochs=3,
        callbacks=[callback, recorder],
        verbose=0,
    )
    assert gate.selection_complete
    settle = [(mode, squares) for mode, squares, _, _ in records]
    settles = check_settle_evidence(settle, 16, names.index("const"))
    assert settles == 2, settles
    # The first pick's variance factors are kept in the same steps.
    projections = [(mode, sums) for mode, _, _, sums in records]
    assert check_settle_evidence(projections, 16, names.index("const")) == 2
    selecting = [(mode, squares) for mode, _, squares, _ in records]
    rounds = check_selecting_evidence(selecting, names.index("const"))
    assert rounds == 3, rounds
    return {
        "settles": settles,
        "selecting_rounds": rounds,
        "selected": list(gate.selected_features),
    }


def stopped() -> dict:
    """A fit stopped before the last pick warns with the epoch to wait for;
    EarlyStopping told to start monitoring there lets the selection finish."""
    import warnings

    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 3)).astype("float32")
    y = (x @ np.array([2.0, 1.0, 0.0], "float32"))[:, None]
    names = ["a", "b", "c"]
    features = {n: x[:, i : i + 1] for i, n in enumerate(names)}

    class StopAfter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 >= 2:
                self.model.stop_training = True

    def fit(other) -> tuple[SequentialAttentionEmbedding, list[str]]:
        keras.utils.set_random_seed(0)
        model, gate = linear_model(names, num_selected=2)
        model.compile(keras.optimizers.Adam(0.05), "mse")
        callback = SequentialAttentionCallback(
            warmup_epochs=1, epochs_per_selection=1, finetune_epochs=1, verbose=0
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(
                features,
                y,
                batch_size=64,
                epochs=6,
                callbacks=[callback, other],
                verbose=0,
            )
        said = [
            str(w.message) for w in caught if "finished selecting" in str(w.message)
        ]
        return gate, said

    gate, said = fit(StopAfter())
    assert not gate.selection_complete
    assert len(said) == 1 and "1 of 2 rounds" in said[0], said
    assert "start_from_epoch=3" in said[0], said
    early = keras.callbacks.EarlyStopping(
        "loss", patience=0, start_from_epoch=3, restore_best_weights=True
    )
    gate, said = fit(early)
    assert gate.selection_complete and not said, said
    return {"selected": list(gate.selected_features)}


def warm_start() -> dict:
    """The schedule counts from the selection's first fit: a model trained
    before selects in the training that follows, a fit from `initial_epoch`
    > 0 lays the schedule from there, and one too short for it is refused
    before any step."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 3)).astype("float32")
    y = (x @ np.array([2.0, 1.0, 0.0], "float32"))[:, None]
    names = ["a", "b", "c"]
    features = {n: x[:, i : i + 1] for i, n in enumerate(names)}

    def fresh():
        keras.utils.set_random_seed(0)
        model, gate = linear_model(names, num_selected=2)
        model.compile(keras.optimizers.Adam(0.05), "mse")
        return model, gate

    def origin(gate) -> list[int]:
        return keras.ops.convert_to_numpy(gate.schedule_origin).tolist()

    fit = {"batch_size": 64, "verbose": 0}  # 8 steps an epoch
    model, gate = fresh()
    model.fit(features, y, epochs=3, **fit)  # 24 steps without the callback
    callback = SequentialAttentionCallback(within_fit=True, verbose=0)
    model.fit(features, y, epochs=13, callbacks=[callback], **fit)
    # A fresh 13-epoch fit's schedule (warm-up 10, rounds of 42 steps), from
    # the selection's first step.
    assert [e["step"] for e in callback.events] == [52, 94], callback.events
    assert gate.selection_complete and origin(gate) == [24, 0], origin(gate)
    warm = list(gate.selected_features)

    model, gate = fresh()
    callback = SequentialAttentionCallback(
        warmup_epochs=1, epochs_per_selection=1, finetune_epochs=1, verbose=0
    )
    model.fit(features, y, epochs=6, initial_epoch=2, callbacks=[callback], **fit)
    assert [e["epoch"] for e in callback.events] == [3, 4], callback.events
    assert gate.selection_complete and origin(gate) == [0, 2], origin(gate)
    from_epoch_2 = list(gate.selected_features)

    model, gate = fresh()
    callback = SequentialAttentionCallback(within_fit=True, verbose=0)
    try:
        model.fit(features, y, epochs=13, initial_epoch=6, callbacks=[callback], **fit)
    except ValueError as error:
        assert "fit runs 56 steps from epoch 6" in str(error), str(error)
    else:
        raise AssertionError("a within_fit schedule from epoch 6 of 13 must raise")
    iterations = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    assert iterations == 0, iterations
    return {"warm_start": warm, "from_epoch_2": from_epoch_2}


def selection_data_checks() -> dict:
    """``selection_data`` a Keras 3 user may get wrong is refused, naming it,
    when the callback is built (not batches, read-once) or before the first
    step (no batch, no label, a missing feature, unbatched, text for ids); a
    list of batches and a PyDataset of the same rows are taken."""
    rng = np.random.default_rng(0)
    x = {n: rng.integers(0, 8, 256).astype(np.int32) for n in "abc"}
    y = (x["a"] % 2).astype(np.float32)

    def batches(features=x, labels=y):
        return [
            ({n: v[i : i + 64] for n, v in features.items()}, labels[i : i + 64])
            for i in range(0, 256, 64)
        ]

    class Rows(keras.utils.PyDataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return batches()[i]

    def fit(data) -> SequentialAttentionEmbedding:
        keras.utils.set_random_seed(0)
        model, gate = keras3_ctr_model(x, num_selected=1)
        model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
        callback = SequentialAttentionCallback(
            warmup_epochs=1, finetune_epochs=0, selection_data=data, verbose=0
        )
        model.fit(x, y, batch_size=64, epochs=2, callbacks=[callback], verbose=0)
        return gate

    refused = {
        "generator": (
            lambda: iter(batches()),
            "is a list_iterator, which can be read once",
        ),
        "arrays": (lambda: (x, y), "is a tuple of 2, not batches"),
        "dict": (
            lambda: {"x": x, "y": y},
            "is a dict with keys ['x', 'y'], not batches",
        ),
        "empty": (lambda: [], "yielded no batch"),
        "no label": (lambda: [b[0] for b in batches()], "so the label is missing"),
        "missing": (
            lambda: batches({n: x[n] for n in "ab"}),
            "lacks feature(s) ['c'] that the gated layers read",
        ),
        "unbatched": (
            lambda: [({n: v[0] for n, v in x.items()}, y[0])],
            "looks unbatched: feature(s) ['a', 'b', 'c'] are scalars",
        ),
        "text ids": (
            lambda: batches({n: v.astype(str) for n, v in x.items()}),
            "feature 'a' is <U11, but model",
        ),
    }
    for case, (make, expected) in refused.items():
        try:
            fit(make())
        except ValueError as error:
            assert expected in str(error), (case, str(error))
            assert "`selection_data`" in str(error), (case, str(error))
        else:
            raise AssertionError(f"{case}: selection_data was accepted")
    taken = {
        name: fit(data).selected_features
        for name, data in (("list", batches()), ("PyDataset", Rows()))
    }
    assert taken["list"] == taken["PyDataset"] == ("a",), taken
    return {"refused": sorted(refused), "taken": {k: list(v) for k, v in taken.items()}}


def two_tower() -> dict:
    """A subclassed two-tower retrieval model written as Keras's guides write
    them: ``call`` takes no ``training`` and ``compute_loss`` (the in-batch
    softmax) is overridden without it, and the model is not built before
    ``fit`` (on TensorFlow Keras builds it only at the first step). Each
    tower's gate picks the planted fields of ``planted.two_tower_problem``."""
    import warnings

    from keras import ops

    data = two_tower_problem(0)
    rows = TWO_TOWER_TRAIN_ROWS

    class TwoTower(keras.Model):
        def __init__(self, query_picks=3):
            super().__init__()
            self.query_gate, self.candidate_gate = (
                SequentialAttentionEmbedding(
                    {n: keras.layers.Embedding(size, 16) for n, size in sizes.items()},
                    num_selected=k,
                )
                for sizes, k in (
                    (TWO_TOWER_QUERY, query_picks),
                    (TWO_TOWER_CANDIDATE, 1),
                )
            )
            self.query_dense = keras.layers.Dense(32)
            self.candidate_dense = keras.layers.Dense(32)

        def call(self, x):
            query = ops.concatenate(list(self.query_gate(x).values()), axis=1)
            candidate = ops.concatenate(list(self.candidate_gate(x).values()), 1)
            return ops.matmul(
                self.query_dense(query), ops.transpose(self.candidate_dense(candidate))
            )

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
            labels = ops.eye(ops.shape(y_pred)[0])
            return ops.mean(
                keras.losses.categorical_crossentropy(labels, y_pred, from_logits=True)
            )

    train = {name: values[:rows] for name, values in data.items()}
    held = {name: values[rows:] for name, values in data.items()}
    selection_data = [
        ({name: v[i : i + 640] for name, v in held.items()}, np.zeros(640, "float32"))
        for i in range(0, len(held["user_id"]), 640)
    ]
    zeros = np.zeros(rows, "float32")
    if keras.backend.backend() == "tensorflow":
        # Unbuilt at `on_train_begin` and no held-out batch to build it on.
        model = TwoTower()
        model.compile(keras.optimizers.Adagrad(0.1))
        try:
            model.fit(
                train,
                zeros,
                batch_size=256,
                epochs=4,
                verbose=0,
                callbacks=[SequentialAttentionCallback(within_fit=True)],
            )
        except ValueError as error:
            assert "are not built when training begins" in str(error), error
            assert model.query_gate.name in str(error), error
        else:
            raise AssertionError("an unbuilt model without selection_data fitted")
    keras.utils.set_random_seed(0)
    model = TwoTower()
    model.compile(keras.optimizers.Adagrad(0.1))
    callback = SequentialAttentionCallback(
        within_fit=True, selection_data=selection_data, verbose=0
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(
            train, zeros, batch_size=256, epochs=4, callbacks=[callback], verbose=0
        )
    # Keras traces the unbuilt model to build it (on PyTorch on the "meta"
    # device); a gate it cannot trace leaves the model marked built unbuilt.
    unbuilt = [str(w.message) for w in caught if "unbuilt state" in str(w.message)]
    assert not unbuilt, unbuilt
    query = model.query_gate.selected_features
    candidate = model.candidate_gate.selected_features
    assert two_tower_correct(query, candidate), (query, candidate)
    # One pick a tower, in rounds of the same length: while one tower's gates
    # are 0 the other's get no gradient, so the soft gates' held-out lead
    # decides, not the first round's score test (noise here).
    keras.utils.set_random_seed(1)
    single = TwoTower(query_picks=1)
    single.compile(keras.optimizers.Adagrad(0.1))
    callback = SequentialAttentionCallback(
        within_fit=True, selection_data=selection_data, verbose=0
    )
    single.fit(train, zeros, batch_size=256, epochs=4, callbacks=[callback], verbose=0)
    picks = (
        single.query_gate.selected_features,
        single.candidate_gate.selected_features,
    )
    assert two_tower_correct(*picks), picks
    return {
        "query": list(query),
        "candidate": list(candidate),
        "one_pick_each": [list(p) for p in picks],
    }


def selecting_linear_model(names: list[str], x: dict, weights: list):
    """A compiled linear model and its gate, selecting, with ``weights``
    (the first call fills the empty list, so later models start alike)."""
    from seqattn_tfrs.core.modes import SELECTING

    model, gate = linear_model(names, num_selected=4)
    model.compile(keras.optimizers.Adam(0.05), "mse")
    model.predict(x, verbose=0)
    if weights:
        model.set_weights(weights)
    else:
        weights.extend(model.get_weights())
    gate.gate_mode.assign(SELECTING)
    return model, gate


def heldout_ahead() -> dict:
    """On JAX the held-out step is traced when training begins and compiled
    in a background thread for ``selection_data``'s first batch's shapes:
    steps on batches of those shapes compile nothing more and move the
    logits exactly as the plain ``jax.jit`` path does; a batch of another
    size (the last, smaller one) takes that path. Other backends ignore the
    example batch."""
    import logging

    from seqattn_tfrs.keras3 import heldout

    x, y = linear_problem(0)
    names = [f"x{i}" for i in range(8)]
    features = {n: x[:, i : i + 1] for i, n in enumerate(names)}
    data = batches(features, y, slice(0, 160), 64)  # 64, 64 and 32 rows
    compiles: list[str] = []
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        class Compiles(logging.Handler):
            def emit(self, record):
                if "XLA compilation" in record.getMessage():
                    compiles.append(record.threadName)

        jax.config.update("jax_log_compiles", True)
        handler = Compiles()
        logging.getLogger("jax").addHandler(handler)

    weights: list = []

    def logit_state(example) -> tuple[list, list[int]]:
        model, gate = selecting_linear_model(names, data[0][0], weights)
        step = heldout.make_step(model, [gate], example)
        counts = []
        for batch in data:
            before = compiles.count("MainThread")
            step(batch)
            counts.append(compiles.count("MainThread") - before)
        return [keras.ops.convert_to_numpy(v) for v in gate.learning_state], counts

    plain, plain_compiles = logit_state(None)
    ahead, ahead_compiles = logit_state(data[0])
    for a, b in zip(plain, ahead):
        np.testing.assert_array_equal(a, b)
    moved = any(np.any(v != 0) for v in ahead)
    assert moved, ahead
    if backend == "jax":
        jax.config.update("jax_log_compiles", False)
        logging.getLogger("jax").removeHandler(handler)
        # The steps compile for the first batch's shape and the last's; ahead
        # of time only for the last: the first compiled in another thread.
        assert plain_compiles == [1, 0, 1], plain_compiles
        assert ahead_compiles == [0, 0, 1], ahead_compiles
        assert set(compiles) == {"MainThread", heldout.COMPILE_THREAD}, compiles
    return {"compiles": {"jit": plain_compiles, "ahead": ahead_compiles}}


def heldout_device() -> dict:
    """On JAX, held-out batches that fit ``heldout.DEVICE_BYTES`` stay on the
    device after the first pass (``selection_data`` is read once) and move
    the logits exactly as host batches do; a pass over the limit, or a batch
    of strings, is read from ``selection_data`` on every pass. Batches of
    ``(x, y, None)`` move the logits as ``(x, y)`` do, on every backend."""
    from seqattn_tfrs.keras3 import heldout

    x, y = linear_problem(0)
    names = [f"x{i}" for i in range(8)]
    features = {n: x[:, i : i + 1] for i, n in enumerate(names)}
    data = batches(features, y, slice(0, 160), 64)  # 64, 64 and 32 rows
    unweighted = [(x, y, None) for x, y in data]

    class Counted(list):
        passes = 0

        def __iter__(self):
            Counted.passes += 1
            return super().__iter__()

    def cycle(source, limit, count=7):
        Counted.passes = 0
        stream = heldout.Batches(Counted(source), limit)
        return [next(stream) for _ in range(count)], Counted.passes

    def same_logits(*sources) -> None:
        """Held-out steps over each source, from the same weights, leave the
        same logit state; and they move it."""
        states, weights = [], []
        for source in sources:
            model, gate = selecting_linear_model(names, data[0][0], weights)
            step = heldout.make_step(model, [gate], data[0])
            for batch in source:
                step(batch)
            states.append([keras.ops.convert_to_numpy(v) for v in gate.learning_state])
        for other in states[1:]:
            for a, b in zip(states[0], other):
                np.testing.assert_array_equal(a, b)
        assert any(np.any(v != 0) for v in states[0])

    # Everything fits: one pass read, then the kept copies, in order (the
    # callback keeps nothing on other backends: every pass reads the data).
    on_jax = keras.backend.backend() == "jax"
    kept, passes = cycle(data, heldout.DEVICE_BYTES if on_jax else 0)
    for got, want in zip(kept, data * 3):
        for a, b in zip(keras.tree.flatten(got), keras.tree.flatten(want)):
            np.testing.assert_array_equal(np.asarray(a), b)
    if not on_jax:
        assert passes == 3, passes
        same_logits(data, unweighted)
        return {"passes": {"kept": passes}}
    import jax

    assert passes == 1, passes
    assert all(isinstance(a, jax.Array) for a in keras.tree.flatten(kept[3]))
    assert kept[3] is kept[0] and kept[6] is kept[0], "not the kept copies"
    # A batch's None (no sample weights) is no obstacle.
    _, none_passes = cycle(unweighted, heldout.DEVICE_BYTES)
    assert none_passes == 1, none_passes
    # One byte short of the pass: every pass reads the data again.
    whole = sum(a.nbytes for batch in data for a in keras.tree.flatten(batch))
    _, over = cycle(data, whole - 1)
    assert over == 3, over
    # Strings cannot live on the device: read every pass.
    text = [({"s": np.array(["a", "b"])}, np.zeros(2, "float32"))]
    _, strings = cycle(text, heldout.DEVICE_BYTES, count=3)
    assert strings == 3, strings
    with contextlib.suppress(ValueError):
        next(heldout.Batches([], heldout.DEVICE_BYTES))
        raise AssertionError("an empty `selection_data` must raise")
    # Kept device batches, host batches and unweighted ones move the logits
    # alike.
    same_logits(data, kept[:3], unweighted)
    return {"passes": {"kept": passes, "over_limit": over, "strings": strings}}


def heldout_revisits() -> dict:
    """A one-batch ``selection_data`` read by every held-out step of a round:
    the callback learns the pass (one batch) from the first pass, counts the
    round's held-out batches in the gate's state, and the committed z is
    the raw one over sqrt(batches read), as on tf-keras
    (``tests/test_heldout_revisits.py``). So is the first round's score
    test's z where a threshold reads it (``entry_z_scores``), its held-out
    batches counted apart; the later settles' score test reads training
    rows, which count for nothing."""
    from seqattn_tfrs.core import selection as selection_lib
    from seqattn_tfrs.core.selection import entry_statistics

    rng = np.random.default_rng(0)
    names = [f"x{i}" for i in range(5)]
    x = rng.normal(size=(512, 5)).astype(np.float32)
    y = x @ np.array([3.0, 0.0, 2.0, 0.0, 0.0], np.float32)
    features = {n: x[:, i : i + 1] for i, n in enumerate(names)}
    keras.utils.set_random_seed(0)
    model, gate = linear_model(names, num_selected=2)
    model.compile(keras.optimizers.SGD(0.05), "mse")
    seen, scored = [], []
    commit = gate.commit_round

    def recording_commit(require_learning=False):
        state = [keras.ops.convert_to_numpy(v) for v in gate.learning_state]
        held = gate.heldout_evidence()
        raw = entry_statistics(state[7], state[8])
        seen.append((float(state[11]), gate.heldout_pass_batches, raw, held))
        scored.append(float(state[12]))
        return commit(require_learning)

    gate.commit_round = recording_commit
    core_commit = selection_lib.commit_round
    handed = []

    def recording_core_commit(*args, **kwargs):
        handed.append((kwargs["entry_scores"], kwargs["entry_z_scores"]))
        return core_commit(*args, **kwargs)

    selection_lib.commit_round = recording_core_commit
    callback = SequentialAttentionCallback(
        warmup_epochs=1,
        epochs_per_selection=1,
        finetune_epochs=0,
        settle_fraction=0.5,
        selection_data=batches(features, y, slice(0, 64), 64),
        verbose=0,
    )
    try:
        model.fit(features, y, batch_size=64, epochs=3, callbacks=[callback], verbose=0)
    finally:
        selection_lib.commit_round = core_commit
    assert gate.selected_features == ("x0", "x2"), gate.selected_features
    assert len(seen) == 2, seen
    # Round 1: a held-out score-test batch as each of the settle's last two
    # steps ends (its first half is dropped); round 2 tests training rows.
    assert scored == [2.0, 0.0], scored
    entry, entry_z = handed[0]
    assert np.any(entry != 0)
    np.testing.assert_allclose(entry_z, entry / np.sqrt(2.0), rtol=1e-5)
    np.testing.assert_allclose(handed[1][1], handed[1][0], rtol=1e-6)
    for read, pass_batches, raw, held in seen:
        # A held-out batch as each of the round's last 5 steps ends (the
        # settle's last sets the selecting mode).
        assert (read, pass_batches) == (5.0, 1), (read, pass_batches)
        assert np.any(raw != 0)
        want = raw / np.sqrt(read)
        np.testing.assert_allclose([held[n] for n in names], want, rtol=1e-5)
    return {"read": [r for r, *_ in seen]}


def _probe_model(weights: dict) -> tuple[keras.Model, SequentialAttentionEmbedding]:
    """Two int features of 2-wide tables into one Dense unit without bias,
    with the given weights: ``a`` selected, the round settling, the probe's
    training side asked for (as after a commit that wants it)."""
    from seqattn_tfrs.core.modes import SETTLING

    inputs = {n: keras.Input((), name=n, dtype="int32") for n in ("a", "b")}
    gate = SequentialAttentionEmbedding(
        {n: keras.layers.Embedding(5, 2) for n in ("a", "b")}, num_selected=2
    )
    gated = gate(inputs)
    dense = keras.layers.Dense(1, use_bias=False)
    model = keras.Model(
        inputs, dense(keras.layers.Concatenate()([gated["a"], gated["b"]]))
    )
    model.compile(keras.optimizers.SGD(0.0), "mse")
    gate.embeddings["a"].embeddings.assign(weights["a"])
    gate.embeddings["b"].embeddings.assign(weights["b"])
    dense.kernel.assign(weights["kernel"])
    gate.selected_mask.assign(np.array([1.0, 0.0], np.float32))
    gate.selection_order.assign(np.array([0, -1], np.int32))
    gate.rounds_done.assign(1)
    gate.gate_mode.assign(SETTLING)
    gate.learn_from_fit_batches.assign(0)
    gate.settled_test_active.assign(1)
    return model, gate


def probe() -> dict:
    """The held-out probe (core.probe), by hand on a linear model: a
    settling training step adds each keyed feature's upstream gradient,
    projected on its fixed direction and less its batch mean, at its hash
    bucket; the probe's held-out pass adds ``sum(a)`` and ``sum(a^2)`` of
    ``a = p * rows * S[bucket] / m`` (``m``: the batch's rows of the bucket)
    and changes nothing else; the pair test's pass hands back each row's
    ``p * rows`` and bucket key. Then, on a
    generated CTR problem whose weak main effects the gate's z alone missed
    (the smallest table, a 2-value noise field, was picked third), the
    probe's z finds them."""
    from seqattn_tfrs.core import probe as probe_lib
    from seqattn_tfrs.keras3 import heldout, learning
    from seqattn_tfrs.keras3.heldout_probe import HeldoutProbe

    rng = np.random.default_rng(0)
    weights = {
        "a": rng.normal(size=(5, 2)).astype(np.float32),
        "b": rng.normal(size=(5, 2)).astype(np.float32),
        "kernel": rng.normal(size=(4, 1)).astype(np.float32),
    }
    x = {"a": np.array([0, 1, 1, 3], np.int32), "b": np.array([2, 2, 4, 0], np.int32)}
    y = np.array([[1.0], [0.0], [2.0], [-1.0]], np.float32)
    model, gate = _probe_model(weights)
    model.train_on_batch(x, y)
    buckets = probe_lib.PROBE_BUCKETS
    directions = probe_lib.probe_directions([2, 2], [0, 1])  # [4, 2]
    r = {"a": directions[:2, 0], "b": directions[2:, 1]}
    w = {"a": weights["kernel"][:2, 0], "b": weights["kernel"][2:, 0]}
    y_pred = weights["a"][x["a"]] @ w["a"]  # b's gate is 0 while settling
    upstream = 2.0 * (y_pred - y[:, 0]) / len(y)  # d mean-squared error
    sums = keras.ops.convert_to_numpy(gate.learning_state[13]).reshape(2, buckets)
    expected = np.zeros((2, buckets))
    for f, name in enumerate(("a", "b")):
        p = upstream * (w[name] @ r[name])
        np.add.at(expected[f], x[name], p - p.mean())
    np.testing.assert_allclose(sums, expected, rtol=1e-5, atol=1e-7)
    assert np.count_nonzero(expected) == 6, expected  # a: 3 ids, b: 3 ids
    # The same step added each feature's second moments (its upstream
    # gradient is each row's upstream times its kernel rows), from which the
    # commit sets the next directions: b's turns to its kernel rows.
    cap = learning.AXIS_CAPACITY
    moments = keras.ops.convert_to_numpy(gate.learning_state[17]).reshape(2, cap, cap)
    for f, name in enumerate(("a", "b")):
        outer = (upstream**2).sum() * np.outer(w[name], w[name])
        np.testing.assert_allclose(moments[f, :2, :2], outer, rtol=1e-5)
    assert not np.any(moments[:, 2:]) and not np.any(moments[:, :, 2:])
    axes = learning.next_directions(gate.learning_state, 2).reshape(2, cap)
    unit = w["b"] / np.linalg.norm(w["b"])
    unit *= np.sign(unit[np.argmax(np.abs(unit))])
    np.testing.assert_allclose(axes[1, :2], unit, rtol=1e-5)
    assert not np.any(axes[:, 2:]), axes

    # Rows 0 and 1 share their pair of values: the pair test fits on row 0
    # (and 2) and tests on row 1.
    held_x = {"a": np.array([1, 1, 3], np.int32), "b": np.array([2, 2, 4], np.int32)}
    held_y = np.array([[0.5], [1.0], [0.0]], np.float32)
    before = [keras.ops.convert_to_numpy(v) for v in model.variables]
    heldout.make_step(model, [gate], flag="probe_pass")((held_x, held_y))
    total, squares = (keras.ops.convert_to_numpy(v) for v in gate.learning_state[14:16])
    y_held = weights["a"][held_x["a"]] @ w["a"]
    upstream = 2.0 * (y_held - held_y[:, 0]) / len(held_y)
    rows = np.zeros((3, 2))  # each held-out row's p * rows, less its mean
    for f, name in enumerate(("a", "b")):
        p = upstream * (w[name] @ r[name]) * len(held_y)
        rows[:, f] = p - p.mean()
        # Over the batch's rows with the row's id: rows 0 and 1 share theirs.
        shared = (held_x[name][:, None] == held_x[name][None, :]).sum(1)
        a = rows[:, f] * expected[f][held_x[name]] / shared
        np.testing.assert_allclose(
            [total[f], squares[f]], [a.sum(), (a * a).sum()], rtol=1e-4, atol=1e-9
        )
    assert squares[1] > 0, squares
    after = [keras.ops.convert_to_numpy(v) for v in model.variables]
    changed = [
        v.path
        for v, old, new in zip(model.variables, before, after)
        if not np.array_equal(old, new)
    ]
    pass_sums = gate.learning_state[14:16]
    assert sorted(changed) == sorted(v.path for v in pass_sums), changed
    passes = HeldoutProbe(model, [gate])
    passes.run_pass([gate], [(held_x, held_y)])  # the same pass, by name
    scores = passes.scores(gate)
    assert list(scores) == ["b"], scores  # the selected `a` has none
    np.testing.assert_allclose(scores["b"], total[1] / np.sqrt(squares[1]), 1e-5)
    pair = passes.pair_scores(gate, [(held_x, held_y)], [("a", "b")])
    handed = keras.ops.convert_to_numpy(gate.learning_state[13])[:12]
    np.testing.assert_allclose(handed[:6].reshape(3, 2), rows, rtol=1e-4, atol=1e-9)
    assert handed[6:].reshape(3, 2).tolist() == [[1, 2], [1, 2], [3, 4]], handed
    keyed = np.array([[1, 2], [1, 2], [3, 4]])
    by_hand = named_pair_scores(["a", "b"], keyed, rows, [("a", "b")])
    np.testing.assert_allclose(pair[("a", "b")], by_hand[("a", "b")], rtol=1e-4)
    assert np.isclose(abs(pair[("a", "b")]), 1.0), pair  # one tested row: sign(a)
    # Without held-out data (the logits learn from training batches) no probe
    # runs, and a settling step adds no moments; with it, it does.
    before = keras.ops.convert_to_numpy(gate.learning_state[17])
    for source, changes in ((1, False), (0, True)):
        gate.learn_from_fit_batches.assign(source)
        model.train_on_batch(x, y)
        after = keras.ops.convert_to_numpy(gate.learning_state[17])
        assert (not np.array_equal(after, before)) == changes, source
        before = after

    import generator

    problem = generator.generate_problem(29, "ctr")
    features = {n: problem.features[n].astype(np.int32) for n in problem.names}
    split, k = problem.train_rows, problem.answer["k"]
    keras.utils.set_random_seed(0)
    model, gate = keras3_ctr_model(features, num_selected=k)
    passes = {}  # rounds done -> (step, the pass's sums) when they appeared

    class WatchPass(keras.callbacks.Callback):
        """Runs after the selection callback: the pass's sums as each step ends."""

        def on_train_batch_end(self, batch, logs=None):
            if hasattr(model, "jax_state_sync"):
                model.jax_state_sync()
            sums = [keras.ops.convert_to_numpy(v) for v in gate.learning_state[14:16]]
            done = int(keras.ops.convert_to_numpy(gate.rounds_done))
            step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
            if np.any(sums[1] > 0):
                seen = passes.setdefault(done, (step, sums))
                np.testing.assert_array_equal(seen[1], sums)  # kept to the commit

    steps = -(-split // 128)
    callback = fit_generated(model, gate, problem, features, WatchPass())
    order = list(gate.selected_features)
    scored = generator.score_picks(problem.answer, order)
    assert scored["all_groups"] and scored["noise_picks"] == 0, (order, scored)
    probed = [e["round"] for e in callback.events if "probe_scores" in e]
    assert probed == list(range(2, k + 1)), callback.events
    _assert_learned_directions(gate, width=4)
    # Each round's pass ran as its settle ended, before the selecting part
    # (not at the commit), and the commit ranked by that pass's z.
    round_steps = callback.epochs_per_selection * steps
    settle = int(callback.settle_fraction * round_steps)
    assert sorted(passes) == list(range(1, k)), sorted(passes)
    for event in callback.events[1:]:
        done = event["round"] - 1
        step, (total, squares) = passes[done]
        want = (callback.warmup_epochs + done * callback.epochs_per_selection) * steps
        assert step == want + settle, (event["round"], step, want + settle)
        z = probe_lib.probe_z(total, squares)
        for name, score in event["probe_scores"].items():
            np.testing.assert_allclose(score, z[gate.feature_names.index(name)])
    return {"order": order, "probe_rounds": probed, "pair_z": pair[("a", "b")]}


def _assert_learned_directions(gate, width: int) -> None:
    """Every commit set each feature's next probe direction from its
    moments: a unit vector in its table's ``width`` columns, no longer the
    first draw."""
    from seqattn_tfrs.core import probe as probe_lib
    from seqattn_tfrs.keras3 import learning

    count, cap = len(gate.feature_names), learning.AXIS_CAPACITY
    axes = keras.ops.convert_to_numpy(gate.learning_state[16]).reshape(count, cap)
    first = probe_lib.initial_axes([cap] * count)
    assert not np.any(np.all(axes == first, axis=1)), axes[:, :width]
    assert not np.any(axes[:, width:]), axes
    np.testing.assert_allclose(np.linalg.norm(axes, axis=1), 1.0, rtol=1e-5)


def probe_strings() -> dict:
    """TensorFlow backend: string ids are hashed for the held-out probe as
    tf-keras hashes them (``tf.strings.to_hash_bucket_fast``), so a model
    whose tables look strings up gets the probe in every round after the
    first, and on the generated CTR problem of ``probe`` (ids written as
    text) finds every group without a noise pick."""
    import generator
    import tensorflow as tf

    from seqattn_tfrs.core import probe as probe_lib
    from seqattn_tfrs.keras3 import learning

    text = tf.constant([["a"], ["b"], ["a"]])
    keys = keras.ops.convert_to_numpy(learning.row_keys(text)).tolist()
    want = tf.strings.to_hash_bucket_fast(["a", "b", "a"], probe_lib.PROBE_BUCKETS)
    assert keys == want.numpy().tolist() and keys[0] == keys[2], keys

    problem = generator.generate_problem(29, "ctr")
    features = {
        n: problem.features[n].astype("U").astype(object) for n in problem.names
    }
    split, k = problem.train_rows, problem.answer["k"]
    names = problem.names
    keras.utils.set_random_seed(0)
    vocabularies = {n: sorted(set(features[n][:split])) for n in names}
    model, gate = keras3_ctr_model(features, vocabularies, num_selected=k)
    callback = fit_generated(model, gate, problem, features)
    assert gate.probe_features == tuple(names), gate.probe_features
    probed = [e["round"] for e in callback.events if "probe_scores" in e]
    assert probed == list(range(2, k + 1)), callback.events
    _assert_learned_directions(gate, width=4)
    order = list(gate.selected_features)
    scored = generator.score_picks(problem.answer, order)
    assert scored["all_groups"] and scored["noise_picks"] == 0, (order, scored)
    return {"order": order, "probe_rounds": probed}


def doctests() -> dict:
    """The docstring examples of every ``seqattn_tfrs.keras3`` module."""
    import doctest
    import importlib
    import pkgutil

    import seqattn_tfrs.keras3 as package

    counts = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert failed == 0, f"{info.name}: {failed} of {attempted} examples failed"
        counts[info.name] = attempted
    return {"examples": counts}


def main() -> None:
    for name in sys.argv[1:]:
        start = time.perf_counter()
        result = globals()[name]()
        print(
            json.dumps(
                {
                    "scenario": name,
                    "backend": keras.backend.backend(),
                    "seconds": round(time.perf_counter() - start, 1),
                    **result,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
