"""One training step in every gate mode, old against new ``logit_learning.py``.

``benchmarks/fit_cost.py``'s model and data. Builds the ungated model and one
gated model per ``logit_learning`` module given (each loaded from a file and
swapped into ``seqattn_tfrs.gate``), commits 8 picks, then times blocks of
``train_function`` calls with every gate 1 (``dense``), while settling, while
the logits learn from training batches (``select_fit``), and the callback's
held-out step (``heldout``). The blocks are interleaved in one process; the
report gives medians and the median of per-repeat ratios to the ungated
model (docs/fit_cost.md, session 11). Usage, from the repository root:

  mkdir -p /tmp/mods
  git show a7a71a5:seqattn_tfrs/logit_learning.py > /tmp/mods/ll_old.py
  cp seqattn_tfrs/logit_learning.py /tmp/mods/ll_new.py
  python docs/fit_cost/step_modes.py 512 12 30 ll_old,ll_new  # batch, repeats, block
"""

import importlib.util
import os
import sys
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT + "/benchmarks", ROOT]
MODULES = os.environ.get("MODULES", "/tmp/mods")
import fit_cost  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

from seqattn_tfrs import gate as gate_mod  # noqa: E402
from seqattn_tfrs import heldout as heldout_lib  # noqa: E402
from seqattn_tfrs.core import modes  # noqa: E402

batch, repeats, block = (int(a) for a in sys.argv[1:4])
names = sys.argv[4].split(",")
flags.FLAGS(["x", f"--batch_size={batch}"])


def load(name):
    spec = importlib.util.spec_from_file_location(name, f"{MODULES}/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


versions = {name: load(name) for name in names}
data = fit_cost.training_batches(8)


def prepare(version):
    if version:
        gate_mod.logit_learning = versions[version]
    tf.keras.utils.set_random_seed(0)
    model = fit_cost.build_model(gated=version is not None)
    model.compile(tf.keras.optimizers.Adam(1e-3), "binary_crossentropy")
    out = {"iterator": iter(data), "train": model.make_train_function()}
    for _ in range(4):
        out["train"](out["iterator"])
    if version:
        layer = model.get_layer("gate")
        for _ in range(8):
            layer.set_gate_mode(modes.SELECTING)
            layer.commit_round()
        out["layer"] = layer
        out["heldout"] = heldout_lib.make_heldout_step(model, [layer])
        out["heldout_iterator"] = iter(
            model.distribute_strategy.experimental_distribute_dataset(data)
        )
    return out


MODES = {
    "dense": (modes.DENSE, 1),
    "settle": (modes.SETTLING, 1),
    "select_fit": (modes.SELECTING, 1),
    "heldout": (modes.SELECTING, 0),
}
prepared = {None: prepare(None), **{v: prepare(v) for v in versions}}
cases = [("plain", None)] + [(m, v) for v in versions for m in MODES]
wall = {c: [] for c in cases}
cpu = {c: [] for c in cases}
for _ in range(repeats):
    for mode, version in cases:
        p = prepared[version]
        if version:
            gate_mode, from_fit = MODES[mode]
            p["layer"].learn_from_fit_batches.assign(from_fit)
            p["layer"].set_gate_mode(gate_mode)
        if mode == "heldout":

            def call(p=p):
                p["heldout"](p["heldout_iterator"])
        else:

            def call(p=p):
                p["train"](p["iterator"])

        call()
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(block):
            call()
        if version:
            p["layer"].attention_logits.numpy()  # waits for the last step
        wall[(mode, version)].append((time.perf_counter() - w0) / block * 1e3)
        cpu[(mode, version)].append((time.process_time() - c0) / block * 1e3)
base = ("plain", None)
for case in cases:
    w = np.array(wall[case])
    c = np.array(cpu[case])
    print(
        f"{case[0]:>10} {case[1] or '':>8}: wall {np.median(w):6.2f} ms "
        f"x{np.median(w / np.array(wall[base])):.3f}, CPU {np.median(c):6.2f} ms "
        f"x{np.median(c / np.array(cpu[base])):.3f}"
    )
