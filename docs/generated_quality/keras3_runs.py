"""One selection run of the Keras 3 front-end at its defaults on a generated
problem, fitted and scored, and the CTR sweep's model; shared by
``keras3_least_squares.py``, ``keras3_ctr.py`` and ``keras3_probe_timing.py``
(import it after they put ``benchmarks/`` and the checkout on ``sys.path``)."""

import json
import time

import keras
from generator import score_picks
from planted import keras3_ctr_model

from seqattn_tfrs.keras3 import (
    SequentialAttentionCallback,
)


def ctr_model(features, names, k, vocabularies=None):
    """The generated CTR sweep's model (as ``planted.ctr_model`` in tf-keras):
    a 4-wide ``keras.layers.Embedding`` per field, gated, concatenated into a
    32-unit ReLU layer and a sigmoid unit, Adam 0.01, binary cross-entropy.
    With ``vocabularies`` (name -> the training rows' distinct strings; the
    TensorFlow backend) the inputs are strings and each table a
    ``StringLookup`` (one out-of-vocabulary row) before its ``Embedding``.
    Returns ``(model, gate)``; seed Keras before calling it."""
    columns = {n: features[n] for n in names}
    model, gate = keras3_ctr_model(columns, vocabularies, num_selected=k)
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    return model, gate


def heldout_batches(features, y, start, batch_size):
    """Rows ``[start, end)`` as a list of ``(x, y)`` batches (``selection_data``
    without TensorFlow)."""
    return [
        (
            {n: v[i : i + batch_size] for n, v in features.items()},
            y[i : i + batch_size],
        )
        for i in range(start, len(y), batch_size)
    ]


def fit_and_record(
    model, gate, problem, features, y, held, seed, out, batch_size, verbose=0
) -> None:
    """Fits ``model`` on ``problem``'s training rows with the callback's
    defaults (``finetune_epochs=0``, ``selection_data=held``) and appends one
    JSON line to ``out``: the pick order, ``generator.score_picks`` of it and
    the fit's seconds."""
    split = problem.train_rows
    callback = SequentialAttentionCallback(
        finetune_epochs=0, selection_data=held, verbose=verbose
    )
    begin = time.perf_counter()
    model.fit(
        {n: v[:split] for n, v in features.items()},
        y[:split],
        batch_size=batch_size,
        epochs=callback.schedule_length(gate.num_rounds),
        callbacks=[callback],
        verbose=0,
    )
    order = list(gate.selected_features)
    record = {
        "problem": problem.seed,
        "seed": seed,
        "order": order,
        **score_picks(problem.answer, order),
        "seconds": round(time.perf_counter() - begin, 1),
        "rounds": [
            {k: v for k, v in event.items() if k not in ("epoch", "step", "layer")}
            for event in callback.events
        ],
    }
    out.write(json.dumps(record) + "\n")
    out.flush()
