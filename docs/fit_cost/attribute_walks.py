"""What listing a model's variables costs at every commit and probe pass.

``benchmarks/fit_cost.py``'s gated model (``--vocabulary`` strings per
field), compiled with an AUC metric and fitted one batch. Times, as min and
median of 5 blocks (milliseconds a call):

* ``model.metrics``' variables, which the held-out probe's pass listed at
  every pass before session 32 (now once a fit);
* every table's bytes measured afresh (``budget.feature_costs`` without a
  memo), which every commit did before session 32;
* the layer's ``feature_costs`` now (each built table measured once);
* ``make_train_function(force=True)``, which the callback ran in every first
  fit with ``selection_data`` before session 32 (now only where the step was
  traced before), and assigning ``train_function`` again, which it also did.

docs/fit_cost.md, "Per-round walks of tf-keras' tracked attributes".
Usage, from the repository root:

  python docs/fit_cost/attribute_walks.py                      # 1,000 strings
  python docs/fit_cost/attribute_walks.py --vocabulary 10000
"""

import os
import sys
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT + "/benchmarks", ROOT]
import fit_cost  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

import seqattn_tfrs  # noqa: E402
from seqattn_tfrs import budget  # noqa: E402


def per_call_ms(function, calls: int) -> tuple[float, float]:
    blocks = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        blocks.append((time.perf_counter() - start) / calls * 1e3)
    return round(min(blocks), 3), round(float(np.median(blocks)), 3)


def main() -> None:
    flags.FLAGS(sys.argv[:1] + ["--batch_size", "512"] + sys.argv[1:])
    model = fit_cost.build_model(gated=True)
    model.compile(tf.keras.optimizers.Adam(1e-3), "binary_crossentropy", ["AUC"])
    features, labels = fit_cost.make_data(512, seed=0)
    model.fit(features, labels, batch_size=512, epochs=1, verbose=0)
    gate = seqattn_tfrs.SequentialAttentionEmbedding
    (layer,) = [x for x in model.layers if isinstance(x, gate)]
    tables = layer.embedding_layers
    print(f"{flags.FLAGS.fields} fields of {flags.FLAGS.vocabulary} strings")
    print(
        "model.metrics' variables, ms (min, median):",
        per_call_ms(lambda: [v for m in model.metrics for v in m.variables], 10),
    )
    print(
        "every table's bytes measured afresh, ms:",
        per_call_ms(lambda: budget.feature_costs(tables, list(tables), {}), 5),
    )
    print("the layer's feature_costs, ms:", per_call_ms(layer.feature_costs, 5))
    print(
        "make_train_function(force=True), ms:",
        per_call_ms(lambda: model.make_train_function(force=True), 1),
    )
    print(
        "assigning train_function, ms:",
        per_call_ms(lambda: setattr(model, "train_function", model.train_function), 1),
    )


if __name__ == "__main__":
    main()
