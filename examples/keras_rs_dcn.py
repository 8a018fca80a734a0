"""A keras-rs DCN ranking model on MovieLens 100K that picks its own features.

Keras 3 (JAX, TensorFlow or PyTorch backend): one ``keras.layers.Embedding``
per feature, gated by ``seqattn_tfrs.keras3.SequentialAttentionEmbedding``,
crossed by ``keras_rs.layers.FeatureCross``, then a small MLP predicting
whether a user rates a movie 4 or more. ``SequentialAttentionCallback`` picks
``--num_selected`` features during ``fit`` (the logits learn on held-out
batches), ``prune`` drops the other tables and their inputs, and
``export_for_serving`` writes a TF Serving SavedModel whose signature takes
only the kept features - never the label.

Usage::

    KERAS_BACKEND=jax python examples/keras_rs_dcn.py [--smoke] [--export_dir D]

The MovieLens files are read from the cache that ``seqattn_tfrs.movielens.data``
(the tf-keras application) fills; when absent they are fetched by that
module in a subprocess of its own (it needs ``TF_USE_LEGACY_KERAS=1``, which
must never be set in a Keras 3 process).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import keras_rs  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from seqattn_tfrs.keras3 import (  # noqa: E402
    SequentialAttentionCallback,
    SequentialAttentionEmbedding,
    export_for_serving,
    prune,
)


def movielens_dir() -> pathlib.Path:
    """The cached MovieLens 100K directory, fetched first if need be."""
    root = os.environ.get("SEQATTN_TFRS_CACHE", "~/.cache/seqattn_tfrs")
    target = pathlib.Path(root).expanduser() / "ml-100k"
    if not (target / "ml-100k.inter").exists():
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
        env.pop("KERAS_BACKEND", None)
        code = "from seqattn_tfrs.movielens.data import fetch_movielens_100k as f; f()"
        subprocess.run(
            [sys.executable, "-c", code],
            check=True,
            env=env,
            cwd=pathlib.Path(__file__).resolve().parents[1],
        )
    return target


def read_table(path: pathlib.Path) -> dict[str, list[str]]:
    """A RecBole atomic file as columns of strings (header types dropped)."""
    lines = path.read_text(encoding="latin-1").splitlines()
    names = [field.split(":")[0] for field in lines[0].split("\t")]
    rows = [line.split("\t") for line in lines[1:] if line]
    return {name: [row[i] for row in rows] for i, name in enumerate(names)}


def features_and_labels(directory: pathlib.Path) -> tuple[dict, np.ndarray]:
    """Integer ids per feature (0 .. vocabulary-1) and the liked label.

    Besides MovieLens's own fields, two random fields of 2,000 values stand
    in for noise a feature pipeline may carry; selection should skip them.
    """
    ratings = read_table(directory / "ml-100k.inter")
    users = read_table(directory / "ml-100k.user")
    items = read_table(directory / "ml-100k.item")
    user_row = {u: i for i, u in enumerate(users["user_id"])}
    item_row = {m: i for i, m in enumerate(items["item_id"])}
    u = np.array([user_row[x] for x in ratings["user_id"]])
    m = np.array([item_row[x] for x in ratings["item_id"]])
    seconds = np.array(ratings["timestamp"], np.float64).astype(np.int64)
    raw = {
        "user_id": np.array(ratings["user_id"]),
        "movie_id": np.array(ratings["item_id"]),
        "age": np.array(users["age"])[u].astype(int) // 10,
        "gender": np.array(users["gender"])[u],
        "occupation": np.array(users["occupation"])[u],
        "zip_region": np.array([z[:1] for z in users["zip_code"]])[u],
        "release_year": np.array(items["release_year"])[m],
        "genre": np.array([g.split(" ")[0] for g in items["class"]])[m],
        "hour": (seconds // 3600) % 24,
        "weekday": (seconds // 86400) % 7,
    }
    rng = np.random.default_rng(0)
    for i in range(2):
        raw[f"noise{i}"] = rng.integers(0, 2000, len(seconds))
    ids = {
        name: np.unique(values, return_inverse=True)[1].astype(np.int32)
        for name, values in raw.items()
    }
    liked = (np.array(ratings["rating"], np.float64) >= 4).astype(np.float32)
    return ids, liked


def build_model(vocabularies: dict[str, int], num_selected: int, dim: int):
    """Gated per-feature embeddings -> FeatureCross -> MLP; returns model and gate."""
    inputs = {n: keras.Input((), dtype="int32", name=n) for n in vocabularies}
    gate = SequentialAttentionEmbedding(
        {
            n: keras.layers.Embedding(v, dim, name=f"{n}_table")
            for n, v in vocabularies.items()
        },
        num_selected=num_selected,
        name="feature_gate",
    )
    gated = gate(inputs)
    x0 = keras.layers.Concatenate()([gated[n] for n in vocabularies])
    crossed = keras_rs.layers.FeatureCross()(x0, x0)
    hidden = keras.layers.Dense(64, activation="relu")(crossed)
    liked = keras.layers.Dense(1, activation="sigmoid", name="liked")(hidden)
    model = keras.Model(inputs, liked, name="dcn")
    model.compile(
        keras.optimizers.Adam(1e-3),
        "binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
    )
    return model, gate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_selected", type=int, default=4)
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--smoke", action="store_true", help="a quick run")
    parser.add_argument("--export_dir", default=None)
    args = parser.parse_args()

    ids, liked = features_and_labels(movielens_dir())
    order = np.random.default_rng(1).permutation(len(liked))
    if args.smoke:
        order = order[:20000]
    train, heldout, test = np.split(
        order, [int(0.8 * len(order)), int(0.9 * len(order))]
    )

    def part(rows):
        return {n: v[rows] for n, v in ids.items()}, liked[rows]

    selection_data = [
        part(heldout[i : i + args.batch]) for i in range(0, len(heldout), args.batch)
    ]
    vocabularies = {n: int(v.max()) + 1 for n, v in ids.items()}
    keras.utils.set_random_seed(0)
    model, gate = build_model(vocabularies, args.num_selected, args.dim)
    warmup, finetune = (1, 1) if args.smoke else (2, 2)
    callback = SequentialAttentionCallback(
        warmup_epochs=warmup,
        epochs_per_selection=1,
        finetune_epochs=finetune,
        selection_data=selection_data,
        verbose=1,
    )
    epochs = callback.schedule_length(gate.num_rounds)
    model.fit(
        *part(train),
        batch_size=args.batch,
        epochs=epochs,
        callbacks=[callback],
        verbose=0,
    )
    kept = list(gate.selected_features)
    print(f"selected, in order: {kept}")
    x_test, y_test = part(test)
    print(
        "test of the gated model:",
        model.evaluate(x_test, y_test, verbose=0, return_dict=True),
    )

    pruned = prune(model)
    full = keras.ops.convert_to_numpy(model.predict(x_test, verbose=0))
    small = keras.ops.convert_to_numpy(
        pruned.predict({n: x_test[n] for n in kept}, verbose=0)
    )
    print(
        f"pruned model: inputs {sorted(pruned.input)}, "
        f"max prediction change {float(np.max(np.abs(full - small))):.2e}"
    )

    base = args.export_dir or tempfile.mkdtemp(prefix="dcn-serving-")
    path = export_for_serving(pruned, base)
    import tensorflow as tf  # only to show what TF Serving would load

    serve = tf.saved_model.load(path).signatures["serving_default"]
    keys = sorted(serve.structured_input_signature[1])
    assert keys == sorted(kept) and "rating" not in keys, keys
    served = serve(**{n: tf.constant(x_test[n][:5]) for n in kept})
    print(
        f"exported {path}: serving_default takes {keys}; first scores "
        f"{[round(float(v), 3) for v in served['scores'].numpy()[:, 0]]}"
    )


if __name__ == "__main__":
    main()
