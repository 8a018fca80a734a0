"""A fit with the selection callback on planted rows, held-out rows apart."""

import tensorflow as tf

from seqattn_tfrs import SequentialAttentionCallback


def fit_selecting(
    model, features, labels, batch_size, fit_first=False, split=4800, held_batch=256
):
    """Fits ``model`` with the callback (warm-up 1, one-epoch rounds, no
    fine-tune, 4 epochs) on the first ``split`` rows, the rest (batches of
    ``held_batch``) its ``selection_data``; with ``fit_first``, one epoch
    without it before. Returns the callback."""
    train = {n: v[:split] for n, v in features.items()}, labels[:split]
    held = {n: v[split:] for n, v in features.items()}, labels[split:]
    callback = SequentialAttentionCallback(
        warmup_epochs=1,
        epochs_per_selection=1,
        finetune_epochs=0,
        selection_data=tf.data.Dataset.from_tensor_slices(held).batch(held_batch),
        verbose=0,
    )
    tf.keras.utils.set_random_seed(0)
    if fit_first:
        model.fit(*train, batch_size=batch_size, epochs=1, verbose=0)
    model.fit(*train, batch_size=batch_size, epochs=4, callbacks=[callback], verbose=0)
    return callback
