"""The README's usage example runs as written, on small synthetic data."""

from __future__ import annotations

import pathlib
import re

import numpy as np
import tensorflow as tf

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def usage_example() -> str:
    """The first Python block of the README."""
    return re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)


def synthetic_data(rows: int, seed: int):
    """Four string fields; the label depends on f0 and f2 only."""
    rng = np.random.default_rng(seed)
    vocabularies = {f"f{i}": [f"v{j}" for j in range(6)] for i in range(6)}
    ids = {name: rng.integers(0, 6, rows) for name in vocabularies}
    logit = 1.5 * (ids["f0"] >= 3) - 1.5 * (ids["f2"] % 2) + 0.2
    label = (rng.random(rows) < 1 / (1 + np.exp(-2 * logit))).astype(np.float32)
    features = {name: np.array(vocabularies[name])[v] for name, v in ids.items()}
    return vocabularies, {**features, "label": label}


def test_the_readme_usage_example_runs_as_written(tmp_path, monkeypatch):
    tf.keras.utils.set_random_seed(0)
    vocabularies, train = synthetic_data(3200, seed=0)
    _, held_out = synthetic_data(640, seed=1)
    namespace = {
        "vocabularies": vocabularies,
        "train_ds": tf.data.Dataset.from_tensor_slices(train).batch(32),
        "validation_ds": tf.data.Dataset.from_tensor_slices(held_out).batch(64),
    }
    monkeypatch.chdir(tmp_path)
    exec(compile(usage_example(), str(README), "exec"), namespace)

    model = namespace["model"]
    selected = set(model.embeddings.selected_features)
    assert {"f0", "f2"} <= selected and len(selected) == 4
    served = tf.saved_model.load(str(tmp_path / "models" / "ranker" / "1"))
    signature = served.signatures["serving_default"]
    inputs = sorted(signature.structured_input_signature[1])
    assert inputs == sorted(selected)  # the kept features, never the label
    row = {name: tf.constant([vocabularies[name][0]]) for name in inputs}
    scores = signature(**row)["scores"].numpy()
    expected = model({name: value for name, value in row.items()}).numpy()
    np.testing.assert_allclose(scores, expected, atol=1e-6)
