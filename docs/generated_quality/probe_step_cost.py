"""What summing the probe inside training would cost per step (generated_quality.md).

The ops a library version of ``residual_probe.py``'s probe (one direction,
hashed buckets) would add to a settle step, timed in one ``tf.function``
against a training step of ``benchmarks/fit_cost.py``'s plain model (26
string fields of 1,000 values, 16-wide embeddings, Dense 256-128, Adam) in
the same process:
- each field's raw strings hashed into ``--buckets`` buckets;
- each field's upstream gradient ``[B, 16]`` less its batch mean, projected on
  one fixed direction;
- the ``[B, 26]`` projections added into a ``[26, buckets]`` variable
  (``scatter_nd_add``, or with ``--add segment`` an ``unsorted_segment_sum``
  and one ``assign_add``).

The upstream gradients are random tensors of the right shape (the cost of
the ops does not depend on their values). Medians of ``--steps`` steps after
warm-up, interleaved.

Usage, from the repository root:

  python docs/generated_quality/probe_step_cost.py --batch 512
  python docs/generated_quality/probe_step_cost.py --add segment
  python docs/generated_quality/probe_step_cost.py --part call  # the call alone
"""

import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT + "/benchmarks", ROOT]
import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--batch", type=int, default=512)
parser.add_argument("--buckets", type=int, default=4096)
parser.add_argument("--steps", type=int, default=60)
parser.add_argument(
    "--add",
    choices=["scatter", "segment"],
    default="scatter",
    help="scatter_nd_add into the variable, or unsorted_segment_sum then assign_add",
)
parser.add_argument(
    "--part",
    choices=["all", "hash", "project", "scatter", "call"],
    default="all",
    help="time one part of the probe's ops (call: none, only the function call)",
)
args = parser.parse_args()


def main():
    import fit_cost
    import tensorflow as tf
    from absl import flags

    flags.FLAGS(["x"])
    fields, width = flags.FLAGS.fields, flags.FLAGS.dim
    features, labels = fit_cost.make_data(args.batch, 0)
    batch = {n: tf.constant(v) for n, v in features.items()}
    y = tf.constant(labels)
    model = fit_cost.build_model(gated=False)
    model.compile(tf.keras.optimizers.Adam(1e-3), "binary_crossentropy")
    train_step = model.make_train_function()  # what fit calls once per step
    data = iter(tf.data.Dataset.from_tensors((batch, y)).repeat())
    sums = tf.Variable(tf.zeros([fields, args.buckets]))
    directions = tf.constant(
        np.random.default_rng(0).normal(size=(fields, width)), tf.float32
    )
    upstream = tf.random.normal([args.batch, fields, width])
    names = list(features)

    given_keys = tf.random.uniform([args.batch, fields], 0, args.buckets, tf.int64)
    given_projections = tf.random.normal([args.batch, fields])

    @tf.function
    def accumulate(batch, upstream):
        if args.part == "call":
            return tf.constant(0)
        if args.part in ("all", "hash"):
            keys = tf.stack(
                [tf.strings.to_hash_bucket_fast(batch[n], args.buckets) for n in names],
                axis=1,
            )  # [B, fields]
        else:
            keys = given_keys
        if args.part == "hash":
            return keys
        if args.part in ("all", "project"):
            centred = upstream - tf.reduce_mean(upstream, axis=0, keepdims=True)
            projected = tf.reduce_sum(centred * directions, axis=-1)
        else:
            projected = given_projections
        if args.part == "project":
            return projected
        field = tf.broadcast_to(tf.range(fields, dtype=tf.int64), tf.shape(keys))
        if args.add == "segment":
            flat = tf.reshape(field * args.buckets + keys, [-1])
            total = tf.math.unsorted_segment_sum(
                tf.reshape(projected, [-1]), flat, fields * args.buckets
            )
            return sums.assign_add(tf.reshape(total, [fields, args.buckets]))
        return sums.scatter_nd_add(tf.stack([field, keys], axis=-1), projected)

    train_times, probe_times = [], []
    for step in range(args.steps + 10):
        start = time.perf_counter()
        train_step(data)
        middle = time.perf_counter()
        accumulate(batch, upstream)
        end = time.perf_counter()
        if step >= 10:  # the first steps trace
            train_times.append(middle - start)
            probe_times.append(end - middle)
    train, probe = np.median(train_times), np.median(probe_times)
    print(
        f"batch {args.batch}, {fields} fields, {args.buckets} buckets, part "
        f"{args.part}, add {args.add}: training "
        f"step {train * 1e3:.2f} ms, probe sums {probe * 1e3:.3f} ms "
        f"({probe / train:.1%} of a step)"
    )


if __name__ == "__main__":
    main()
