"""One selection run of the Keras 3 front-end at its defaults on a generated
problem, fitted and scored; shared by ``keras3_least_squares.py`` and
``keras3_ctr.py`` (import it after they put ``benchmarks/`` and the checkout
on ``sys.path``)."""

import json
import time

from generator import score_picks

from seqattn_tfrs.keras3 import SequentialAttentionCallback


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
    }
    out.write(json.dumps(record) + "\n")
    out.flush()
