"""Where a short selection run's extra time goes: the retrieval example's hooks.

Fits ``examples/movielens_retrieval.py``'s two towers on all features, then
gated with its callback, in one process, and prints each fit's wall time and
the seconds spent in the callback's hooks, in the held-out step (its first,
tracing call apart) and in each held-out probe pass (docs/details.md, the
retrieval example). Usage, from the repository root:

  python docs/fit_cost/retrieval_hooks.py
"""

import collections
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "examples")]

import movielens_retrieval as example  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from seqattn_tfrs import callback, heldout_probe  # noqa: E402

seconds: collections.Counter = collections.Counter()
calls: collections.Counter = collections.Counter()


def timed(function, key):
    def wrapper(*args, **kwargs):
        name = key() if callable(key) else key
        start = time.perf_counter()
        result = function(*args, **kwargs)
        seconds[name] += time.perf_counter() - start
        calls[name] += 1
        return result

    return wrapper


Callback = callback.SequentialAttentionCallback
for hook in ("on_train_begin", "on_train_batch_end", "on_epoch_end", "on_train_end"):
    setattr(Callback, hook, timed(getattr(Callback, hook), hook))
heldout_probe.HeldoutProbe.scores = timed(
    heldout_probe.HeldoutProbe.scores,
    lambda: f"probe pass {sum(n.startswith('probe') for n in calls) + 1}",
)
make_step = Callback._make_heldout_step


def make_timed_step(self):
    step = make_step(self)
    return timed(
        step,
        lambda: (
            "held-out step, rest"
            if calls["held-out step, first"]
            else "held-out step, first"
        ),
    )


Callback._make_heldout_step = make_timed_step

columns = example.load_columns(None)
train, heldout, test = example.split(columns, seed=0)
_, first = np.unique(columns["movie_id"].numpy(), return_index=True)
movies = {name: tf.gather(columns[name], first) for name in example.CANDIDATE}
for gated in (False, True):
    tf.keras.utils.set_random_seed(0)
    model = example.TwoTower(columns, movies, gated)
    seconds.clear()
    calls.clear()
    fit_seconds = example.fit(model, train, heldout, 5, 1024, gated)
    print(f"{'gated' if gated else 'all features'}: fit {fit_seconds:.2f} s")
    for name, total in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"  {name:28s} {total:6.2f} s  {calls[name]} calls")
