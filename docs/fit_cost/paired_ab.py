"""main against cost3 in one process (docs/fit_cost.md, "paired").

benchmarks/fit_cost.py's model, data and variants; the *_main variants swap
main's logit_learning.py and discovery.py (the only library modules cost3
changes) in for this checkout's. Interleaved, order rotated every repeat, the
first run of every variant dropped. Usage, from the repository root:

  mkdir -p /tmp/oldmods
  git show c5ca94d:seqattn_tfrs/logit_learning.py > /tmp/oldmods/old_logit_learning.py
  git show c5ca94d:seqattn_tfrs/discovery.py > /tmp/oldmods/old_discovery.py
  OLD_MODULES=/tmp/oldmods TF_USE_LEGACY_KERAS=1 \
    python docs/fit_cost/paired_ab.py 33 5 out.json  # steps per epoch, repeats

Session 11 (the per-feature gate in training steps): the old modules from
a7a71a5, ``BATCH=512`` and ``BATCH=4096`` (the batch size; default 512),
raw results in ``docs/fit_cost/paired_gate_{512,4096}.json``.
"""

import importlib.util
import json
import os
import sys
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
spe = int(sys.argv[1])
repeats = int(sys.argv[2])
out = sys.argv[3]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT + "/benchmarks", ROOT]
OLD = os.environ.get("OLD_MODULES", "/tmp/oldmods")
import fit_cost  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

batch = os.environ.get("BATCH", "512")
flags.FLAGS(["x", f"--steps_per_epoch={spe}", f"--batch_size={batch}"])
FL = flags.FLAGS
import seqattn_tfrs  # noqa: E402
from seqattn_tfrs import callback as cb_mod  # noqa: E402
from seqattn_tfrs import discovery as new_disc  # noqa: E402
from seqattn_tfrs import gate as gate_mod  # noqa: E402
from seqattn_tfrs import heldout as ho_mod  # noqa: E402
from seqattn_tfrs import logit_learning as new_ll  # noqa: E402


def load(name):
    spec = importlib.util.spec_from_file_location(name, f"{OLD}/{name}.py")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


old_ll = load("old_logit_learning")
old_disc = load("old_discovery")


def use(version):
    ll, disc = (old_ll, old_disc) if version == "main" else (new_ll, new_disc)
    gate_mod.logit_learning = ll
    cb_mod.find_gated_layers = disc.find_gated_layers
    ho_mod.find_width_layers = disc.find_width_layers


epochs = FL.num_selected + 2
train = fit_cost.training_batches(spe)
hf, hl = fit_cost.make_data(FL.batch_size * FL.heldout_batches, 1)
heldout = tf.data.Dataset.from_tensor_slices((hf, hl)).batch(FL.batch_size).cache()


def run(variant):
    kind, _, version = variant.partition("_")
    use(version or "cost3")
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(0)
    m = fit_cost.build_model(gated=kind != "plain")
    m.compile(tf.keras.optimizers.Adam(1e-3), "binary_crossentropy")
    cbs = []
    if kind in ("train", "heldout"):
        cb = seqattn_tfrs.SequentialAttentionCallback(
            warmup_epochs=1,
            finetune_epochs=1,
            selection_data=heldout if kind == "heldout" else None,
            verbose=0,
        )
        cbs.append(cb)
    w, c = time.perf_counter(), time.process_time()
    m.fit(train, steps_per_epoch=spe, epochs=epochs, callbacks=cbs, verbose=0)
    r = {"fit_s": time.perf_counter() - w, "cpu_s": time.process_time() - c}
    if cbs:
        r["selected"] = list(cbs[0]._layers[0].selected_features)
    return r


variants = [
    "plain",
    "gated_main",
    "gated_cost3",
    "train_main",
    "train_cost3",
    "heldout_main",
    "heldout_cost3",
]
first = {v: run(v) for v in variants}
res = {v: {"fit_s": [], "cpu_s": []} for v in variants}
sel = {v: first[v].get("selected") for v in variants}
for rep in range(repeats):
    shift = rep % len(variants)
    for v in variants[shift:] + variants[:shift]:
        r = run(v)
        res[v]["fit_s"].append(r["fit_s"])
        res[v]["cpu_s"].append(r["cpu_s"])
        if r.get("selected") != sel[v]:
            sel[v] = ("CHANGED", sel[v], r.get("selected"))
        print(
            f"repeat {rep} {v:>14}: fit {r['fit_s']:.2f} s CPU {r['cpu_s']:.2f} s",
            flush=True,
        )
pw = np.array(res["plain"]["fit_s"])
pc = np.array(res["plain"]["cpu_s"])
summary = {}
for v in variants:
    w = np.array(res[v]["fit_s"])
    c = np.array(res[v]["cpu_s"])
    summary[v] = {
        "wall_ratio_of_medians": float(np.median(w) / np.median(pw)),
        "wall_median_of_ratios": float(np.median(w / pw)),
        "cpu_ratio_of_medians": float(np.median(c) / np.median(pc)),
        "cpu_median_of_ratios": float(np.median(c / pc)),
        "median_fit_s": float(np.median(w)),
        "median_cpu_s": float(np.median(c)),
    }
    x = summary[v]
    print(
        f"{v:>14}: wall x{x['wall_ratio_of_medians']:.3f} "
        f"(median of ratios x{x['wall_median_of_ratios']:.3f}), "
        f"CPU x{x['cpu_ratio_of_medians']:.3f} "
        f"(median of ratios x{x['cpu_median_of_ratios']:.3f}); "
        f"median {np.median(w):.2f} s wall, {np.median(c):.2f} s CPU"
    )
print("selected", json.dumps(sel))
with open(out, "w") as f:
    json.dump(
        {
            "steps_per_epoch": spe,
            "total_steps": spe * epochs,
            "repeats": repeats,
            "runs": res,
            "first_in_process": first,
            "summary": summary,
            "selected": sel,
            "machine": f"{os.cpu_count()} cores, TF {tf.__version__}",
        },
        f,
        indent=1,
    )
