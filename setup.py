"""Installs seqattn_tfrs: Sequential Attention embedding-table selection for TFRS."""

import pathlib
import re

import setuptools

ROOT = pathlib.Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"',
    (ROOT / "seqattn_tfrs" / "version.py").read_text(),
    re.M,
).group(1)

setuptools.setup(
    name="seqattn_tfrs",
    version=VERSION,
    description=(
        "Sequential Attention feature selection for TensorFlow Recommenders: "
        "choose the embedding tables a recommender needs, prune the rest, "
        "export a trimmed SavedModel for TF Serving."
    ),
    long_description=(ROOT / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["seqattn_tfrs", "seqattn_tfrs.*"]),
    python_requires=">=3.10",
    # The library itself: a gate layer, a callback, pruning and export over
    # tf.keras. tf-keras X.Y requires TensorFlow X.Y exactly, and the suite
    # runs on 2.21 only, so both are held to 2.21.x. TFRS is what users build
    # their models with, but the library never imports it.
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tf-keras>=2.21,<2.22",
        # The callback's `log_dir` writes TensorBoard summaries: tf.summary
        # needs the tensorboard package, which TensorFlow 2.21 does not pull in.
        "tensorboard>=2.21,<2.22",
        "numpy>=1.26",
    ],
    extras_require={
        # The MovieLens main job (`seqattn-tfrs`): a TFRS model, absl flags,
        # pydantic configs, a matplotlib plot and TF Serving warm-up records.
        # tensorflow-recommenders 0.7.7 is the release tested with TF 2.21;
        # tensorflow-serving-api X.Y pins tensorflow X.Y.
        "movielens": [
            "tensorflow-recommenders>=0.7.5,<0.8",
            "absl-py>=2.1",
            "pydantic>=2.6,<3",
            "matplotlib>=3.8",
            "tensorflow-serving-api>=2.21,<2.22",
        ],
        # Warm-up records for TF Serving written by `export_for_serving`.
        "serving": ["tensorflow-serving-api>=2.21,<2.22"],
        # The Keras 3 / keras-rs front-end (`seqattn_tfrs.keras3`), tested on
        # keras 3.15 and keras-rs 0.4 with the JAX and TensorFlow backends.
        "keras3": ["keras>=3.15,<4", "keras-rs>=0.4,<0.5", "jax[cpu]>=0.10"],
        "test": [
            "seqattn_tfrs[movielens,keras3]",
            # The Keras 3 scenarios run on PyTorch too (tested: 2.13.0, CPU
            # build).
            "torch==2.13.*",
            "pytest>=8",
            "hypothesis>=6.100",
            "scikit-learn>=1.4",
            "ruff>=0.6",
        ],
    },
    entry_points={"console_scripts": ["seqattn-tfrs=seqattn_tfrs.movielens.cli:run"]},
)
