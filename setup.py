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
    install_requires=[
        "tensorflow==2.21.0",
        "tf-keras==2.21.0",
        "tensorflow-recommenders==0.7.7",
        "tensorflow-datasets==4.9.10",
        "tensorboard==2.21.0",
        "absl-py>=2.1",
        "numpy>=1.26",
        "matplotlib>=3.8",
    ],
    extras_require={
        "serving": ["tensorflow-serving-api==2.21.0"],
        "test": [
            "pytest>=8",
            "hypothesis>=6.100",
            "scikit-learn>=1.4",
            "ruff>=0.6",
            "tensorflow-serving-api==2.21.0",
        ],
    },
    entry_points={"console_scripts": ["seqattn-tfrs=seqattn_tfrs.cli:run"]},
)
