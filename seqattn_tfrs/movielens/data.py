"""MovieLens 100K as a tf.data dataset: loading, feature derivation and splitting.

The files come from :mod:`~seqattn_tfrs.movielens.fetch` (the RecBole wheel,
cached) and are read by :mod:`~seqattn_tfrs.movielens.parsing`; this module
turns the parsed columns into a dataset.

The loader produces the same features, with the same dtypes and values, as the
TFDS ``movielens/100k-ratings`` dataset, without needing TFDS's download (which
needs internet access to GroupLens). The real data is obtained from the RecBole
1.2.1 wheel on PyPI, which ships MovieLens 100K in RecBole's "atomic file"
format (see :func:`fetch_movielens_100k`).

Feature schema of every element (one element per rating)::

    user_id                tf.string   e.g. b"196"
    movie_id               tf.string   e.g. b"242"
    movie_title            tf.string   UTF-8, e.g. b"Kolya (1996)"
    movie_genres           tf.int64    1-D, variable length, TFDS genre ids
    user_gender            tf.bool     True = male
    user_zip_code          tf.string
    user_occupation_text   tf.string   raw MovieLens occupation, e.g. b"writer"
    user_occupation_label  tf.int64    TFDS occupation class id
    bucketized_user_age    tf.float32  one of 1, 18, 25, 35, 45, 50, 56
    raw_user_age           tf.float32
    timestamp              tf.int64    seconds since the Unix epoch (UTC)
    user_rating            tf.float32  1..5

Differences from TFDS that do not affect values or dtypes: elements come in the
order of the ratings file (TFDS shuffles them when it builds its dataset), and
``movie_genres`` is sliced from a ``tf.RaggedTensor``, so each element holds a
dense 1-D tensor but ``Dataset.batch`` yields a ``tf.RaggedTensor`` instead of
failing on rows of different lengths. A ``Dataset.map`` on unbatched elements
turns the spec into a plain ``tf.TensorSpec``, as in TFDS; batch such a dataset
with ``Dataset.ragged_batch`` (or map after batching).
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
import pathlib
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from seqattn_tfrs.movielens.fetch import fetch_movielens_100k
from seqattn_tfrs.movielens.parsing import (
    TFDS_GENRE_NAMES,
    TFDS_OCCUPATION_LABELS,
    Items,
    Ratings,
    Users,
    data_layout,
    parse_grouplens,
    parse_recbole,
)

__all__ = [
    "TFDS_GENRE_NAMES",
    "TFDS_OCCUPATION_LABELS",
    "add_derived_features",
    "fetch_movielens_100k",
    "load_movielens_100k",
    "train_val_test_split",
]

_FRACTION_SUM_TOLERANCE = 1e-6

_VALID_SOURCES: tuple[str, ...] = ("auto", "files", "tfds")


def _build_dataset(users: Users, items: Items, ratings: Ratings) -> tf.data.Dataset:
    user_row = np.asarray(ratings.user_row, dtype=np.int64)
    item_row = np.asarray(ratings.item_row, dtype=np.int64)

    def per_user(values: list, dtype) -> np.ndarray:
        return np.asarray(values, dtype=dtype)[user_row]

    item_genres = tf.RaggedTensor.from_row_lengths(
        values=np.asarray(
            [g for genres in items.genres for g in genres], dtype=np.int64
        ),
        row_lengths=np.asarray([len(g) for g in items.genres], dtype=np.int64),
    )
    columns = {
        "user_id": np.asarray(ratings.user_id, dtype=object),
        "movie_id": np.asarray(ratings.movie_id, dtype=object),
        "movie_title": np.asarray(items.title, dtype=object)[item_row],
        "movie_genres": tf.gather(item_genres, item_row),
        "user_gender": per_user(users.gender, np.bool_),
        "user_zip_code": per_user(users.zip_code, object),
        "user_occupation_text": per_user(users.occupation_text, object),
        "user_occupation_label": per_user(users.occupation_label, np.int64),
        "bucketized_user_age": per_user(users.bucketized_age, np.float32),
        "raw_user_age": per_user(users.raw_age, np.float32),
        "timestamp": np.asarray(ratings.timestamp, dtype=np.int64),
        "user_rating": np.asarray(ratings.rating, dtype=np.float32),
    }
    string_columns = (
        "user_id",
        "movie_id",
        "movie_title",
        "user_zip_code",
        "user_occupation_text",
    )
    for name in string_columns:
        # An empty object array would otherwise become float64.
        columns[name] = tf.constant(
            columns[name], dtype=tf.string, shape=[len(user_row)]
        )
    return tf.data.Dataset.from_tensor_slices(columns)


def _load_files(data_dir: str | os.PathLike) -> tf.data.Dataset:
    directory = pathlib.Path(data_dir).expanduser()
    parse = {"GroupLens": parse_grouplens, "RecBole atomic": parse_recbole}
    return _build_dataset(*parse[data_layout(directory)](directory))


def load_movielens_100k(
    data_dir: str | os.PathLike | None = None, *, source: str = "auto"
) -> tf.data.Dataset:
    """Loads MovieLens 100K ratings with the TFDS ``movielens/100k-ratings`` schema.

    Local files (``source="files"``) may use either of two layouts, detected by
    which files exist (GroupLens is used if both are complete):

    * GroupLens: ``u.data``, ``u.user``, ``u.item``, ``u.genre`` (latin-1,
      ``|``/tab separated), parsed exactly as TFDS parses them.
    * RecBole atomic files: ``ml-100k.inter``, ``ml-100k.user``,
      ``ml-100k.item`` (UTF-8, tab separated, ``name:type`` headers), as
      returned by :func:`fetch_movielens_100k`. RecBole strips the trailing
      ``(year)`` from titles into a ``release_year`` column; the TFDS title is
      rebuilt as ``f"{title} ({year})"`` when the year is present. RecBole's
      misspelt ``"unkonwn"`` title/year of movie 267 becomes the GroupLens title
      ``"unknown"`` with no year. Genre ``"Children's"`` maps to TFDS
      ``"Children"`` and ``"unknown"`` to ``"Unknown"``, as in TFDS.

    Elements are in ratings-file order. See the module docstring for the
    features and their dtypes.

    Args:
        data_dir: Directory with the files for ``source="files"``/``"auto"``;
            for ``source="tfds"``, the TFDS data directory (``None`` for the
            TFDS default).
        source: ``"files"`` reads ``data_dir``; ``"tfds"`` calls
            ``tfds.load("movielens/100k-ratings", split="train")``; ``"auto"``
            reads ``data_dir`` if given, else the directory returned by
            :func:`fetch_movielens_100k`.

    Returns:
        A dataset with one feature dict per rating (100,000 for the full data).

    Raises:
        ValueError: If `source` is not one of "auto", "files", "tfds", if
            ``source="files"`` without `data_dir`, or if a file is malformed
            (the message names the file and line).
        FileNotFoundError: If `data_dir` holds neither complete layout.
        RuntimeError: If ``source="auto"`` needs to download and cannot.
    """
    if source not in _VALID_SOURCES:
        raise ValueError(
            f"source must be one of {list(_VALID_SOURCES)}, got {source!r}"
        )
    if source == "tfds":
        # Imported here: it is heavy and only this source needs it.
        import tensorflow_datasets as tfds

        return tfds.load(
            "movielens/100k-ratings",
            split="train",
            data_dir=None if data_dir is None else os.fspath(data_dir),
        )
    if data_dir is None:
        if source == "files":
            raise ValueError(
                "data_dir is required when source='files', got None; pass the "
                "directory holding the MovieLens 100K files"
            )
        data_dir = fetch_movielens_100k()
    return _load_files(data_dir)


# --------------------------------------------------------------------------
# Derived features.
# --------------------------------------------------------------------------

_SECONDS_PER_DAY = 86_400
_SECONDS_PER_HOUR = 3_600
# Day 0 of the Unix epoch, 1970-01-01, was a Thursday (weekday 3, Monday = 0).
_EPOCH_WEEKDAY = 3
_TITLE_YEAR_PATTERN = r"^.*\((\d{4})\)\s*$"
_DERIVED_INPUTS: tuple[str, ...] = ("user_zip_code", "movie_title", "timestamp")


def add_derived_features(features: dict) -> dict:
    """Returns `features` plus features derived from it, for ``Dataset.map``.

    Pure and graph-compatible; works on single elements and on batches (any
    shape, as long as the three inputs have the same shape). Added features:

    * ``user_zip_prefix`` (tf.string): first 3 bytes of ``user_zip_code``.
    * ``movie_release_year`` (tf.string): the ``YYYY`` of a trailing
      ``"(YYYY)"`` in ``movie_title``, or ``""`` if the title has none.
    * ``hour_of_day`` (tf.int64, 0..23): UTC hour of ``timestamp``.
    * ``weekday`` (tf.int64, 0..6, 0 = Monday): UTC weekday of ``timestamp``.

    All input features, including the already multi-valent ``movie_genres``,
    are passed through unchanged.

    Args:
        features: Feature dict with at least ``user_zip_code``,
            ``movie_title`` and ``timestamp``.

    Returns:
        A new dict; `features` itself is not modified.

    Raises:
        ValueError: If `features` lacks one of the required keys.
    """
    missing = [name for name in _DERIVED_INPUTS if name not in features]
    if missing:
        raise ValueError(
            f"features must contain {list(_DERIVED_INPUTS)}; missing {missing} "
            f"among keys {sorted(features)}"
        )
    zip_code = tf.convert_to_tensor(features["user_zip_code"], dtype=tf.string)
    title = tf.convert_to_tensor(features["movie_title"], dtype=tf.string)
    timestamp = tf.cast(features["timestamp"], tf.int64)

    has_year = tf.strings.regex_full_match(title, _TITLE_YEAR_PATTERN)
    year = tf.strings.regex_replace(title, _TITLE_YEAR_PATTERN, r"\1")
    days = tf.math.floordiv(timestamp, _SECONDS_PER_DAY)
    seconds_of_day = tf.math.floormod(timestamp, _SECONDS_PER_DAY)

    derived = dict(features)
    derived["user_zip_prefix"] = tf.strings.substr(zip_code, 0, 3)
    derived["movie_release_year"] = tf.where(has_year, year, tf.zeros_like(year))
    derived["hour_of_day"] = tf.math.floordiv(seconds_of_day, _SECONDS_PER_HOUR)
    derived["weekday"] = tf.math.floormod(days + _EPOCH_WEEKDAY, 7)
    return derived


# --------------------------------------------------------------------------
# Splitting.
# --------------------------------------------------------------------------


def train_val_test_split(
    dataset: tf.data.Dataset,
    *,
    seed: int,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
) -> tuple[tf.data.Dataset, ...]:
    """Shuffles `dataset` once, deterministically, and cuts it into parts.

    The whole dataset is shuffled with a buffer of its full size, the given
    seed and ``reshuffle_each_iteration=False``, so every iteration of every
    part sees the same order and the parts are disjoint and cover the data.
    Part ``i`` has ``round(n * sum(fractions[:i + 1])) -
    round(n * sum(fractions[:i]))`` elements; the last part takes the rest.

    Args:
        dataset: A finite dataset. If its cardinality is unknown (e.g. after
            ``filter``), it is counted by iterating it once.
        seed: Shuffle seed.
        fractions: Positive fractions summing to 1 (within 1e-6), one per
            returned part; by default train/validation/test = 0.8/0.1/0.1.

    Returns:
        One dataset per fraction, in order.

    Raises:
        ValueError: If `fractions` is empty, has a non-positive entry or does
            not sum to 1, if `seed` is not an int, or if `dataset` is infinite.
        TypeError: If `dataset` is not a ``tf.data.Dataset``.
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(
            f"dataset must be a tf.data.Dataset, got {type(dataset).__name__}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    values = _validate_fractions(fractions)

    size = int(dataset.cardinality())
    if size == tf.data.INFINITE_CARDINALITY:
        raise ValueError("dataset must be finite, got an infinite dataset")
    if size == tf.data.UNKNOWN_CARDINALITY:
        size = int(dataset.reduce(np.int64(0), lambda count, _: count + 1))

    shuffled = dataset.shuffle(
        buffer_size=max(size, 1), seed=int(seed), reshuffle_each_iteration=False
    )
    bounds = [0]
    cumulative = 0.0
    for fraction in values[:-1]:
        cumulative += fraction
        bounds.append(min(round(size * cumulative), size))
    bounds.append(size)
    return tuple(
        shuffled.skip(start).take(stop - start)
        for start, stop in itertools.pairwise(bounds)
    )


def _validate_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    """Returns `fractions` as floats, or raises ValueError naming the value."""
    expected = (
        "fractions must be a non-empty sequence of positive finite numbers "
        f"summing to 1 (within 1e-6), got {fractions!r}"
    )
    try:
        items = tuple(fractions)
    except TypeError as e:
        raise ValueError(expected) from e
    if not items or not all(
        isinstance(f, numbers.Real) and not isinstance(f, bool) for f in items
    ):
        raise ValueError(expected)
    values = tuple(float(f) for f in items)
    if not all(math.isfinite(f) and f > 0 for f in values):
        raise ValueError(expected)
    total = math.fsum(values)
    if abs(total - 1.0) > _FRACTION_SUM_TOLERANCE:
        raise ValueError(f"{expected} (sum {total!r})")
    return values
