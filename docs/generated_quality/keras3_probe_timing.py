"""The Keras 3 probe's held-out side at the settle's end against at the commit.

Diagnostic of docs/keras3.md, "The probe at the settle's end": one generated
CTR run as ``keras3_ctr.py`` fits it; at the end of each settle that summed
the probe's training side, and again right before the commit, it runs the
probe's held-out pass (all candidates: their z) and, for the watched
features, the pass once per held-out value with the training sums set to
that value's one-hot, which gives ``H[b]``: the held-out rows' summed
projection in bucket ``b``. It prints the training sums ``S[b]``, ``H[b]``
and their correlation. The model, logits and metrics are left as they were
(the pass changes only its own sums, which are put back after). It subclasses
the callback's private hooks: a diagnostic, not an API::

  KERAS_BACKEND=jax python docs/generated_quality/keras3_probe_timing.py \\
      29 2 f03,f00
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.pop("TF_USE_LEGACY_KERAS", None)

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path[:0] = [".", "benchmarks"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generator import generate_problem  # noqa: E402
from keras3_runs import ctr_model, heldout_batches  # noqa: E402

from seqattn_tfrs.core import probe as probe_lib  # noqa: E402
from seqattn_tfrs.core.modes import SELECTING, SETTLING  # noqa: E402
from seqattn_tfrs.keras3 import (  # noqa: E402
    SequentialAttentionCallback,
    heldout,
    learning,
)

BATCH = 128


def main() -> None:
    problem_seed, seed = int(sys.argv[1]), int(sys.argv[2])
    watched = sys.argv[3].split(",")
    problem = generate_problem(problem_seed, "ctr")
    names, k, split = problem.names, problem.answer["k"], problem.train_rows
    features = {n: np.asarray(problem.features[n], np.int32) for n in names}
    y = np.asarray(problem.labels, np.float32)
    held = heldout_batches(features, y, split, BATCH)
    keras.utils.set_random_seed(seed)
    model, gate = ctr_model(features, names, k)
    state = gate.learning_state
    sums_index = learning.LEARNED

    def held_out_pass(step) -> tuple[np.ndarray, np.ndarray]:
        for variable in state[sums_index + 1 :]:
            variable.assign(np.zeros(variable.shape, np.float32))
        for batch in held:
            step(batch)
        total, squares = (
            keras.ops.convert_to_numpy(v).astype(np.float64)
            for v in state[sums_index + 1 :]
        )
        return total, squares

    class Timing(SequentialAttentionCallback):
        def _measure(self, when: str) -> None:
            self._sync()
            step = heldout.make_step(self.model, [gate], flag="probe_pass")
            sums = keras.ops.convert_to_numpy(state[sums_index]).copy()
            kept = [keras.ops.convert_to_numpy(v) for v in state[sums_index + 1 :]]
            mode = int(keras.ops.convert_to_numpy(gate.gate_mode))
            gate.gate_mode.assign(SETTLING)
            z = probe_lib.probe_z(*held_out_pass(step))
            selected = gate.selected_features
            print(f"== {when}, selected {list(selected)}")
            print(
                "   z: "
                + ", ".join(
                    f"{n} {z[i]:.2f}"
                    for i, n in enumerate(gate.feature_names)
                    if n not in selected
                )
            )
            for name in watched:
                i = gate.feature_names.index(name)
                values = np.unique(features[name][split:])
                slots = i * probe_lib.PROBE_BUCKETS + values
                per_bucket = []
                for slot in slots:
                    one_hot = np.zeros_like(sums)
                    one_hot[slot] = 1.0
                    state[sums_index].assign(one_hot)
                    per_bucket.append(held_out_pass(step)[0][i])
                state[sums_index].assign(sums)
                train, test = sums[slots], np.array(per_bucket)
                print(
                    f"   {name}: corr(S, H) {np.corrcoef(train, test)[0, 1]:+.3f}; "
                    f"S {np.round(train[:6], 3).tolist()}; "
                    f"H {np.round(test[:6], 2).tolist()}"
                )
            for variable, value in zip(state[sums_index + 1 :], kept):
                variable.assign(value)  # the library's own pass, if any
            gate.gate_mode.assign(mode)

        def _set_modes(self, units: int, steps_into_unit: int) -> None:
            before = self._modes.get(id(gate))
            super()._set_modes(units, steps_into_unit)  # may run the pass
            if (
                before == SETTLING
                and self._modes.get(id(gate)) == SELECTING
                and gate.probe_summed()
            ):
                self._measure("at the settle's end")

        def _run_probe(self, layer):
            if self.selection_data is not None and layer.probe_summed():
                self._measure("before the commit")
            return super()._run_probe(layer)

    callback = Timing(finetune_epochs=0, selection_data=held, verbose=1)
    model.fit(
        {n: v[:split] for n, v in features.items()},
        y[:split],
        batch_size=BATCH,
        epochs=callback.schedule_length(gate.num_rounds),
        callbacks=[callback],
        verbose=0,
    )
    print("order", gate.selected_features)


if __name__ == "__main__":
    main()
