"""Scores fixed rows with exported SavedModels in a process without seqattn_tfrs.

Usage: serve_exports.py ROWS_JSON EXPORT_DIR...

ROWS_JSON maps feature names to per-row values; each export gets the features
its ``serving_default`` signature takes. Prints one line of JSON: per export,
its scores, its signature inputs, its variables and its ``selection.json``.
"""

import json
import os
import sys


class BlockSeqattn:
    def find_spec(self, name, path=None, target=None):
        if name == "seqattn_tfrs" or name.startswith("seqattn_tfrs."):
            raise ImportError("seqattn_tfrs is blocked in this process")
        return None


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402


def serve(path, rows):
    loaded = tf.saved_model.load(path)
    serving = loaded.signatures["serving_default"]
    specs = serving.structured_input_signature[1]
    inputs = {name: tf.constant(rows[name], spec.dtype) for name, spec in specs.items()}
    with open(os.path.join(path, "assets.extra", "selection.json")) as handle:
        selection = json.load(handle)
    return {
        "inputs": sorted(specs),
        "scores": serving(**inputs)["scores"].numpy().tolist(),
        "variables": sorted([v.name, v.shape.as_list()] for v in serving.variables),
        "selection": selection,
    }


def main():
    # Installed here, not at import: pytest's doctest collection imports this
    # file into the test process, which must keep importing the package.
    sys.meta_path.insert(0, BlockSeqattn())
    rows = json.loads(sys.argv[1])
    print(json.dumps({path: serve(path, rows) for path in sys.argv[2:]}))


if __name__ == "__main__":
    main()
