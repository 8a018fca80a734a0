"""The probe's sums added alone: a scatter-add of a batch's entries against a
segment sum over the whole sums and one dense add (session 44).

The sums hold ``K x 65,536`` float32 slots (``core.probe.PROBE_BUCKETS`` per
keyed feature); a batch adds ``B x K`` entries at random slots of 1,000 ids a
feature. One ``tf.function`` per form, best of 5 blocks of 100 calls. Usage:

  python docs/fit_cost/probe_sums_ops.py
"""

import os
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

BUCKETS = 65536
rng = np.random.default_rng(0)


def best_ms(function, *args, calls=100):
    function(*args)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            function(*args)
        times.append((time.perf_counter() - start) / calls * 1e3)
    return min(times)


for keyed in (8, 26):
    sums = tf.Variable(tf.zeros([keyed * BUCKETS]))

    @tf.function
    def scatter(values, slots, sums=sums):
        sums.scatter_add(tf.IndexedSlices(values, slots))

    @tf.function
    def segments(values, slots, sums=sums, size=keyed * BUCKETS):
        added = tf.math.unsorted_segment_sum(values, slots, size)
        sums.assign_add(added, read_value=False)

    for batch in (256, 512, 1024, 2048, 4096):
        values = tf.constant(rng.normal(size=batch * keyed).astype(np.float32))
        keys = rng.integers(0, 1000, size=(batch, keyed))
        slots = tf.constant((keys + np.arange(keyed) * BUCKETS).reshape(-1), tf.int32)
        print(
            f"K {keyed:2d}, batch {batch:4d} (1 entry per "
            f"{BUCKETS // batch} slots): scatter-add "
            f"{best_ms(scatter, values, slots):.2f} ms, segment sum "
            f"{best_ms(segments, values, slots):.2f} ms"
        )
