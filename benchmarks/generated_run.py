"""One selection run of the library's defaults on a generated problem.

Shared by ``generated_quality.py`` (the sweep) and the tests of a slice of it
(``tests/test_generated_quality.py``); defines no command-line flags.
"""

from __future__ import annotations

import time

from generator import score_picks


def run_one(
    problem,
    seed: int,
    heldout: bool,
    *,
    optimizer: str = "adam",
    batch_size: int = 128,
    layer_options: dict | None = None,
    callback_options: dict | None = None,
    architecture: str = "mlp",
    strategy=None,
) -> dict:
    """One selection run at the library's defaults (but the options given);
    the scores of its picks (``generator.score_picks``), order and fit time.
    ``architecture``: for CTR problems, ``"mlp"`` (``planted.ctr_model``) or
    ``"dcn"`` (``planted.dcn_model``). ``strategy``: a ``tf.distribute``
    strategy to build and compile the model under (None: none)."""
    import planted
    import tensorflow as tf

    import seqattn_tfrs

    kind, answer = problem.kind, problem.answer
    names, k = problem.names, answer["k"]
    layer_options = {"num_selected": k, **(layer_options or {})}
    callback_options = dict(callback_options or {})

    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)
    with (strategy or tf.distribute.get_strategy()).scope():
        if kind != "least_squares":
            build = {"mlp": planted.ctr_model, "dcn": planted.dcn_model}[architecture]
            model, layer = build(problem.features, **layer_options)
            loss = "binary_crossentropy"
        else:
            model, layer = planted.linear_model(names, **layer_options)
            loss = "mse"
        rates = "omp" if kind == "least_squares" else "ctr"
        model.compile(planted.make_optimizer(rates, optimizer), loss)

    def data(rows):
        features = {f: problem.features[f][rows] for f in names}
        return tf.data.Dataset.from_tensor_slices((features, problem.labels[rows]))

    split = problem.train_rows
    train = data(slice(0, split)).shuffle(split, seed=seed).batch(batch_size)
    held = data(slice(split, None)).batch(batch_size)
    callback = seqattn_tfrs.SequentialAttentionCallback(
        finetune_epochs=0,
        selection_data=held if heldout else None,
        verbose=0,
        **callback_options,
    )
    if "steps_per_selection" in callback_options:  # step mode: steps to epochs
        steps_per_epoch = -(-split // batch_size)
        steps = callback.schedule_length(layer.num_rounds, steps_per_epoch)
        epochs = -(-steps // steps_per_epoch)
    else:
        epochs = callback.schedule_length(layer.num_rounds)
    start = time.perf_counter()
    model.fit(train, epochs=epochs, callbacks=[callback], verbose=0)
    seconds = time.perf_counter() - start
    order = list(layer.selected_features)
    return {
        **score_picks(answer, order),
        "order": order,
        "seconds": round(seconds, 1),
        "epochs": epochs,
        "rounds": [_round_record(event) for event in callback.events],
    }


def _round_record(event: dict) -> dict:
    """A commit's picks and the statistics it read, rounded, for the row."""
    record = {
        "round": event["round"],
        "features": event["features"],
        "signal_exhausted": event["signal_exhausted"],
    }
    for name in ("probe_scores", "heldout_scores", "settled_scores"):
        if name in event:
            record[name] = {f: round(float(z), 3) for f, z in event[name].items()}
    return record
