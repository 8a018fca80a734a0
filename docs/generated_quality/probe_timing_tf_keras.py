"""tf-keras: the held-out probe's z at the settle's end against at the commit.

Diagnostic of docs/keras3.md, "The probe at the settle's end": runs
generated CTR problems as ``generated_quality.py --kind ctr --sources
heldout`` does (``generated_run.run_one``, the defaults); where a settle that
summed the probe's training side ends, a fresh ``HeldoutProbe`` pass gives
each candidate's z then, beside the z the commit reads. Appends one JSON
line a run: the order, both z per probe round, and the candidates whose z
changed sign with ``|z| > 3`` at either moment (``flips``: round, name,
informative, z at the settle's end, z at the commit). It wraps the
callback's private hooks: a diagnostic, not an API::

  python docs/generated_quality/probe_timing_tf_keras.py 0:30 0 out.jsonl
"""

import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
sys.path[:0] = [".", "benchmarks"]

import json  # noqa: E402

import numpy as np  # noqa: E402
from generated_run import run_one  # noqa: E402
from generator import generate_problem  # noqa: E402

from seqattn_tfrs import callback as callback_module  # noqa: E402
from seqattn_tfrs import heldout_probe  # noqa: E402
from seqattn_tfrs.core import modes  # noqa: E402

Callback = callback_module.SequentialAttentionCallback
records: list[dict] = []
set_modes, run_probe = Callback._set_modes, Callback._run_probe


def set_modes_and_measure(self, units, steps_into_unit):
    before = dict(self._modes)
    set_modes(self, units, steps_into_unit)
    for layer in self._layers:
        if (
            before.get(id(layer)) == modes.SETTLING
            and self._modes[id(layer)] == modes.SELECTING
            and self.selection_data is not None
            and layer.probe_summed
        ):
            z = heldout_probe.HeldoutProbe(self.model, layer).scores(
                self.selection_data
            )
            round_number = len(layer.selected_features) + 1
            records.append({"when": "settle_end", "round": round_number, "z": z})


def run_probe_and_record(self, layer):
    probed = run_probe(self, layer)
    if probed is not None:
        round_number = len(layer.selected_features) + 1
        records.append({"when": "commit", "round": round_number, "z": probed[0]})
    return probed


def main() -> None:
    Callback._set_modes = set_modes_and_measure
    Callback._run_probe = run_probe_and_record
    start, stop = map(int, sys.argv[1].split(":"))
    seeds = [int(s) for s in sys.argv[2].split(",")]
    with open(sys.argv[3], "a") as out:
        for p in range(start, stop):
            problem = generate_problem(p, "ctr")
            informative = {m for g in problem.answer["groups"] for m in g["members"]}
            for seed in seeds:
                records.clear()
                result = run_one(problem, seed, True)
                at = {
                    when: {r["round"]: r["z"] for r in records if r["when"] == when}
                    for when in ("settle_end", "commit")
                }
                flips = [
                    [
                        n,
                        name,
                        name in informative,
                        round(at["settle_end"][n][name], 2),
                        round(z, 2),
                    ]
                    for n, scores in at["commit"].items()
                    for name, z in scores.items()
                    if name in at["settle_end"].get(n, {})
                    and np.sign(z) != np.sign(at["settle_end"][n][name])
                    and max(abs(z), abs(at["settle_end"][n][name])) > 3
                ]
                rounded = {
                    when: {
                        n: {k: round(v, 2) for k, v in z.items()}
                        for n, z in z_by.items()
                    }
                    for when, z_by in at.items()
                }
                record = {
                    "problem": p,
                    "seed": seed,
                    "order": result.get("order"),
                    "flips": flips,
                    **rounded,
                }
                out.write(json.dumps(record) + "\n")
                out.flush()


if __name__ == "__main__":
    main()
