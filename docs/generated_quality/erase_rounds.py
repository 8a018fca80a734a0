"""Every round's statistics of one Sequential Attention run of the ERASE protocol.

Runs ``benchmarks/selection_quality.py``'s ``sa_heldout`` selection (same
problem, splits, model and schedule) and prints, before each commit, every
candidate's attention logit, held-out gate z (``heldout_evidence``), score
test z (``entry_evidence``, the intercept-only model's in round 1) and gate,
then the pick; the held-out probe's z of the rounds where it ran follows
from the callback's events. generated_quality.md, "Session 18".

Usage, from the repository root (about a minute per seed for ctr):

  python docs/generated_quality/erase_rounds.py --problem ctr --seed 0
"""

import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT + "/benchmarks", ROOT]

import selection_quality as sq  # noqa: E402
from absl import app, flags  # noqa: E402

import seqattn_tfrs  # noqa: E402

flags.DEFINE_integer("seed", 0, "Training seed.")
flags.DEFINE_integer("k", 6, "Features to select.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    problem, _ = sq.configure()
    original = seqattn_tfrs.SequentialAttentionEmbedding.commit_round

    def commit_round(layer, require_learning=False):
        logits = dict(zip(layer.feature_names, layer.attention_logits.numpy()))
        held, entry = layer.heldout_evidence(), layer.entry_evidence()
        gates = layer.gate_values()
        print(
            f"round {len(layer.selected_features) + 1}, selected "
            f"{list(layer.selected_features)}"
        )
        rest = [n for n in layer.feature_names if n not in layer.selected_features]
        for name in sorted(rest, key=lambda n: -logits[n]):
            print(
                f"  {name:12s} logit {logits[name]:+.3f}  held-out z "
                f"{held[name]:+7.2f}  score z {entry[name]:+7.2f}  gate "
                f"{gates[name]:.3f}"
            )
        picks = original(layer, require_learning)
        print(f"  picked {picks}")
        return picks

    seqattn_tfrs.SequentialAttentionEmbedding.commit_round = commit_round
    callbacks = []
    make = seqattn_tfrs.SequentialAttentionCallback

    def recording(*args, **kwargs):  # keeps the callback for its events
        callbacks.append(make(*args, **kwargs))
        return callbacks[-1]

    sq.seqattn_tfrs.SequentialAttentionCallback = recording
    sq.tf.keras.utils.set_random_seed(FLAGS.seed)
    order = sq.gate_ranking(problem, FLAGS.seed, FLAGS.k, 1, True)
    for event in callbacks[0].events:
        if "probe_scores" in event:
            probe = event["probe_scores"]
            print(
                f"round {event['round']} probe z: "
                + ", ".join(
                    f"{n} {z:+.2f}"
                    for n, z in sorted(probe.items(), key=lambda i: -i[1])
                )
            )
    print("order", order)


if __name__ == "__main__":
    app.run(main)
