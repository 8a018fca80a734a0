"""Times the settles' probe sums' parts on their own (session 54): the
scatter-add of a step's values into sums of different sizes, the strings'
hashing per field against one op for all, and the directions' second
moments. Prints milliseconds a call. Usage, from the repository root:

  TF_USE_LEGACY_KERAS=1 python docs/fit_cost/probe_sums_micro.py
"""

import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from seqattn_tfrs import tf_ops  # noqa: E402
from seqattn_tfrs.core import probe  # noqa: E402

WIDTH, VOCABULARY = 16, 1000


def per_call_ms(function, *args, calls: int = 200) -> float:
    function(*args)  # trace
    start = time.perf_counter()
    for _ in range(calls):
        function(*args)
    return (time.perf_counter() - start) / calls * 1e3


def scatter_ms(fields: int, batch: int, buckets: int, rng) -> float:
    """A step's ``batch x fields`` adds into ``fields x buckets`` sums."""
    sums = tf.Variable(tf.zeros([fields * buckets]))
    bucket_of = rng.integers(0, buckets, (fields, VOCABULARY))
    codes = rng.integers(0, VOCABULARY, (batch, fields))
    slots = np.arange(fields) * buckets + bucket_of[np.arange(fields), codes]
    slots = tf.constant(slots.reshape(-1).astype(np.int32))
    values = tf.constant(rng.normal(size=batch * fields).astype(np.float32))

    @tf.function
    def add(values, slots):
        sums.scatter_add(tf.IndexedSlices(values, slots))
        return tf.constant(0)

    return per_call_ms(add, values, slots)


def hashing_and_moments_ms(fields: int, batch: int, rng) -> dict:
    raw = [
        tf.constant(rng.integers(0, VOCABULARY, (batch, 1)).astype(str))
        for _ in range(fields)
    ]
    gradients = [
        tf.constant(rng.normal(size=(batch, WIDTH)).astype(np.float32))
        for _ in range(fields)
    ]

    @tf.function
    def keys_per_field(raw):
        return tf.stack([tf_ops.row_keys(r, probe.PROBE_BUCKETS) for r in raw], 1)

    @tf.function
    def keys_joined(raw):
        joined = tf.concat([tf.reshape(r, [-1, 1]) for r in raw], 1)
        return tf.strings.to_hash_bucket_fast(joined, probe.PROBE_BUCKETS)

    @tf.function
    def moments(gradients):
        return tf_ops.second_moments(gradients, WIDTH, probe.AXIS_ROWS)

    return {
        "hash per field": per_call_ms(keys_per_field, raw),
        "hash joined": per_call_ms(keys_joined, raw),
        "moments": per_call_ms(moments, gradients),
    }


def main() -> None:
    rng = np.random.default_rng(0)
    for fields, batch in ((26, 4096), (200, 512)):
        for buckets in (probe.PROBE_BUCKETS, 8192):
            megabytes = fields * buckets * 4 / 1e6
            milliseconds = scatter_ms(fields, batch, buckets, rng)
            print(
                f"{fields} fields, batch {batch}: scatter-add into {buckets} "
                f"buckets a field ({megabytes:.1f} MB) {milliseconds:.2f} ms"
            )
        parts = hashing_and_moments_ms(fields, batch, rng)
        print("   ", ", ".join(f"{k} {v:.2f} ms" for k, v in parts.items()))


if __name__ == "__main__":
    main()
