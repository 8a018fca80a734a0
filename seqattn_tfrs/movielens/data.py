"""MovieLens 100K loading, feature derivation and splitting.

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
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

__all__ = [
    "TFDS_GENRE_NAMES",
    "TFDS_OCCUPATION_LABELS",
    "add_derived_features",
    "fetch_movielens_100k",
    "load_movielens_100k",
    "train_val_test_split",
]

# --------------------------------------------------------------------------
# Vocabularies, copied from tensorflow_datasets/structured/movielens*.py.
# --------------------------------------------------------------------------

#: Class names of the TFDS ``movie_genres`` feature; a genre's id is its index.
TFDS_GENRE_NAMES: tuple[str, ...] = (
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "IMAX",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "Unknown",
    "War",
    "Western",
    "(no genres listed)",
)

#: Class names of the TFDS ``user_occupation_label`` feature.
TFDS_OCCUPATION_LABELS: tuple[str, ...] = (
    "academic/educator",
    "artist",
    "clerical/admin",
    "customer service",
    "doctor/health care",
    "entertainment",
    "executive/managerial",
    "farmer",
    "homemaker",
    "lawyer",
    "librarian",
    "other/not specified",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "student",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)

# MovieLens 100K raw occupation -> TFDS occupation label (as TFDS maps it).
_OCCUPATION_CONVERSION: dict[str, str] = {
    "administrator": "clerical/admin",
    "artist": "artist",
    "doctor": "doctor/health care",
    "educator": "academic/educator",
    "engineer": "technician/engineer",
    "entertainment": "entertainment",
    "executive": "executive/managerial",
    "healthcare": "doctor/health care",
    "homemaker": "homemaker",
    "lawyer": "lawyer",
    "librarian": "librarian",
    "marketing": "sales/marketing",
    "none": "other/not specified",
    "other": "other/not specified",
    "programmer": "programmer",
    "retired": "retired",
    "salesman": "sales/marketing",
    "scientist": "scientist",
    "student": "student",
    "technician": "technician/engineer",
    "writer": "writer",
}

# TFDS bucketizes the raw age to the largest threshold <= age, or 1 below 18.
_AGE_THRESHOLDS: tuple[int, ...] = (18, 25, 35, 45, 50, 56)

# Genre spellings in the raw files that differ from the TFDS class names.
# TFDS renames "Children's" to "Children"; GroupLens' u.genre and RecBole's
# ``class`` column spell the first genre "unknown".
_GENRE_ALIASES: dict[str, str] = {"Children's": "Children", "unknown": "Unknown"}

_GENRE_IDS: dict[str, int] = {name: i for i, name in enumerate(TFDS_GENRE_NAMES)}
for _alias, _name in _GENRE_ALIASES.items():
    _GENRE_IDS[_alias] = _GENRE_IDS[_name]
del _alias, _name

_OCCUPATION_IDS: dict[str, int] = {
    name: i for i, name in enumerate(TFDS_OCCUPATION_LABELS)
}

# --------------------------------------------------------------------------
# File layouts.
# --------------------------------------------------------------------------

_GROUPLENS_FILES: tuple[str, ...] = ("u.data", "u.user", "u.item", "u.genre")
_RECBOLE_FILES: tuple[str, ...] = ("ml-100k.inter", "ml-100k.user", "ml-100k.item")

# Columns each RecBole atomic file must have (name before the ":type" suffix).
_RECBOLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "ml-100k.inter": ("user_id", "item_id", "rating", "timestamp"),
    "ml-100k.user": ("user_id", "age", "gender", "occupation", "zip_code"),
    "ml-100k.item": ("item_id", "movie_title", "release_year", "class"),
}

# RecBole's ml-100k.item spells GroupLens' "unknown" title and empty release
# date of movie 267 as "unkonwn"; these fixes restore the GroupLens values.
_RECBOLE_TITLE_FIXES: dict[str, str] = {"unkonwn": "unknown"}
_RECBOLE_MISSING_YEARS: frozenset[str] = frozenset({"", "unkonwn", "unknown"})

# --------------------------------------------------------------------------
# Download cache.
# --------------------------------------------------------------------------

_CACHE_ENV_VAR = "SEQATTN_TFRS_CACHE"
_RECBOLE_REQUIREMENT = "recbole==1.2.1"
_RECBOLE_WHEEL_GLOB = "recbole-1.2.1-*.whl"
_RECBOLE_MEMBER_DIR = "recbole/dataset_example/ml-100k"
_EXPECTED_DATA_ROWS: dict[str, int] = {
    "ml-100k.inter": 100_000,
    "ml-100k.user": 943,
    "ml-100k.item": 1_682,
}
_PIP_TIMEOUT_SECONDS = 900
_STDERR_TAIL_LINES = 20

_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")

_FRACTION_SUM_TOLERANCE = 1e-6

_VALID_SOURCES: tuple[str, ...] = ("auto", "files", "tfds")


def _manual_alternative(target: pathlib.Path) -> str:
    return (
        "Alternatively, get the data by hand: download the MovieLens 100K zip "
        "from https://grouplens.org/datasets/movielens/100k/, unzip it and pass "
        "its ml-100k directory (holding u.data, u.user, u.item, u.genre) as "
        "data_dir to load_movielens_100k(); or copy ml-100k.inter, ml-100k.user "
        f"and ml-100k.item from {_RECBOLE_MEMBER_DIR}/ inside the "
        f"{_RECBOLE_REQUIREMENT} wheel into {target}."
    )


def _resolve_cache_dir(cache_dir: str | os.PathLike | None) -> pathlib.Path:
    if cache_dir is None:
        env_value = os.environ.get(_CACHE_ENV_VAR)
        if env_value:
            return pathlib.Path(env_value).expanduser()
        return pathlib.Path("~/.cache/seqattn_tfrs").expanduser()
    return pathlib.Path(cache_dir).expanduser()


def _count_data_rows(path: pathlib.Path) -> int:
    """Returns the number of non-blank lines after the header line."""
    with open(path, "rb") as f:
        lines = sum(1 for line in f if line.strip())
    return max(lines - 1, 0)


def _cache_problems(directory: pathlib.Path) -> list[str]:
    """Lists what makes `directory` not a complete RecBole ml-100k copy."""
    problems = []
    for name, expected in _EXPECTED_DATA_ROWS.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{path} is missing")
            continue
        rows = _count_data_rows(path)
        if rows != expected:
            problems.append(f"{path} has {rows} data rows, expected {expected}")
    return problems


def _download_recbole_wheel(
    download_dir: pathlib.Path, target: pathlib.Path
) -> pathlib.Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        _RECBOLE_REQUIREMENT,
        "-d",
        str(download_dir),
    ]
    try:
        subprocess.run(
            command,
            check=True,
            capture_output=True,
            text=True,
            timeout=_PIP_TIMEOUT_SECONDS,
        )
    except subprocess.CalledProcessError as e:
        tail = "\n".join((e.stderr or "").strip().splitlines()[-_STDERR_TAIL_LINES:])
        raise RuntimeError(
            f"Could not download {_RECBOLE_REQUIREMENT} (which ships MovieLens "
            f"100K): `{' '.join(command)}` exited with status {e.returncode}. "
            f"Last lines of pip's stderr:\n{tail}\n{_manual_alternative(target)}"
        ) from e
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(
            f"Could not download {_RECBOLE_REQUIREMENT}: `{' '.join(command)}` "
            f"did not finish within {_PIP_TIMEOUT_SECONDS} s. "
            f"{_manual_alternative(target)}"
        ) from e
    wheels = sorted(download_dir.glob(_RECBOLE_WHEEL_GLOB))
    if len(wheels) != 1:
        found = sorted(p.name for p in download_dir.iterdir())
        raise RuntimeError(
            f"Expected pip to download exactly one {_RECBOLE_WHEEL_GLOB} file into "
            f"{download_dir}, found {found}. {_manual_alternative(target)}"
        )
    return wheels[0]


def _extract_dataset(wheel: pathlib.Path, destination: pathlib.Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = set(archive.namelist())
            for name in _RECBOLE_FILES:
                member = f"{_RECBOLE_MEMBER_DIR}/{name}"
                if member not in members:
                    raise RuntimeError(
                        f"The wheel {wheel} has no member {member!r}; expected "
                        f"the MovieLens 100K files under {_RECBOLE_MEMBER_DIR}/."
                    )
                with archive.open(member) as src, open(destination / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except zipfile.BadZipFile as e:
        raise RuntimeError(
            f"The downloaded file {wheel} is not a valid wheel: {e}"
        ) from e


def _install_atomically(staging: pathlib.Path, target: pathlib.Path) -> None:
    """Renames `staging` to `target`, replacing an incomplete `target`."""
    stale = None
    if target.exists() or target.is_symlink():
        stale = target.with_name(f".{target.name}.stale-{uuid.uuid4().hex}")
        os.rename(target, stale)
    try:
        os.rename(staging, target)
    except OSError:
        # Another process may have installed a complete copy meanwhile.
        if _cache_problems(target):
            raise
    if stale is not None:
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
        else:
            stale.unlink()


def fetch_movielens_100k(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Returns a directory holding the real MovieLens 100K data.

    The data comes from the RecBole 1.2.1 wheel on PyPI, which ships MovieLens
    100K as RecBole atomic files (``ml-100k.inter``, ``ml-100k.user``,
    ``ml-100k.item``). The wheel is downloaded with ``pip download`` into a
    temporary directory, the three files are extracted into a temporary sibling
    of the final directory, checked, and renamed into place, so the cache never
    holds a half-written copy. A complete cached copy is returned without any
    download; an incomplete one is replaced.

    Args:
        cache_dir: Cache root. Defaults to ``$SEQATTN_TFRS_CACHE`` if set, else
            ``~/.cache/seqattn_tfrs``. The data lives in ``<cache_dir>/ml-100k``.

    Returns:
        The ``<cache_dir>/ml-100k`` directory, usable as ``data_dir`` of
        :func:`load_movielens_100k`.

    Raises:
        RuntimeError: If pip cannot download the wheel (the message holds the
            tail of pip's stderr and how to get the data by hand), or if the
            wheel does not hold the complete data set (100,000 ratings, 943
            users, 1,682 movies).
    """
    root = _resolve_cache_dir(cache_dir)
    target = root / "ml-100k"
    if not _cache_problems(target):
        return target
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="seqattn_tfrs-pip-") as download_dir:
        wheel = _download_recbole_wheel(pathlib.Path(download_dir), target)
        staging = pathlib.Path(tempfile.mkdtemp(prefix=".ml-100k.partial-", dir=root))
        try:
            staging.chmod(0o755)  # mkdtemp makes it private to the user
            _extract_dataset(wheel, staging)
            problems = _cache_problems(staging)
            if problems:
                raise RuntimeError(
                    f"The MovieLens 100K files in {wheel.name} are incomplete: "
                    + "; ".join(problems)
                    + f". {_manual_alternative(target)}"
                )
            _install_atomically(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    return target


# --------------------------------------------------------------------------
# Parsing helpers.
# --------------------------------------------------------------------------


def _read_lines(path: pathlib.Path, encoding: str) -> list[tuple[int, str]]:
    """Reads `path` as (1-based line number, text) pairs without line ends.

    Trailing blank lines are dropped; a blank line before the last non-blank
    one is an error, as is text that does not decode.
    """
    data = path.read_bytes()
    raw_lines = data.split(b"\n")
    while raw_lines and not raw_lines[-1].strip():
        raw_lines.pop()
    lines = []
    for lineno, raw in enumerate(raw_lines, start=1):
        try:
            text = raw.removesuffix(b"\r").decode(encoding)
        except UnicodeDecodeError as e:
            raise ValueError(
                f"{path}, line {lineno}: cannot decode as {encoding}: {e}"
            ) from e
        if not text.strip():
            raise ValueError(f"{path}, line {lineno}: unexpected blank line")
        lines.append((lineno, text))
    return lines


def _split_fields(
    path: pathlib.Path, lineno: int, line: str, sep: str, expected: int
) -> list[str]:
    fields = line.split(sep)
    if len(fields) != expected:
        raise ValueError(
            f"{path}, line {lineno}: expected {expected} {sep!r}-separated "
            f"columns, got {len(fields)} in {line!r} (truncated or malformed line?)"
        )
    return fields


def _parse_int(path: pathlib.Path, lineno: int, column: str, text: str) -> int:
    if not _INT_RE.fullmatch(text):
        raise ValueError(
            f"{path}, line {lineno}: column {column!r} must be an integer, got {text!r}"
        )
    return int(text)


def _parse_float(path: pathlib.Path, lineno: int, column: str, text: str) -> float:
    if not _FLOAT_RE.fullmatch(text) or not math.isfinite(float(text)):
        raise ValueError(
            f"{path}, line {lineno}: column {column!r} must be a finite number, "
            f"got {text!r}"
        )
    return float(text)


def _parse_id(path: pathlib.Path, lineno: int, column: str, text: str) -> str:
    if not text or text != text.strip():
        raise ValueError(
            f"{path}, line {lineno}: column {column!r} must be a non-empty id "
            f"without surrounding spaces, got {text!r}"
        )
    return text


def _genre_id(path: pathlib.Path, lineno: int, name: str) -> int:
    try:
        return _GENRE_IDS[name]
    except KeyError:
        raise ValueError(
            f"{path}, line {lineno}: unknown genre {name!r}; expected one of "
            f"{sorted(_GENRE_IDS)}"
        ) from None


class _Users:
    """Per-user columns, filled row by row."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.gender: list[bool] = []
        self.zip_code: list[bytes] = []
        self.occupation_text: list[bytes] = []
        self.occupation_label: list[int] = []
        self.bucketized_age: list[float] = []
        self.raw_age: list[float] = []

    def add(
        self,
        path: pathlib.Path,
        lineno: int,
        fields: Sequence[str],
    ) -> None:
        """Adds a (user_id, age, gender, occupation, zip_code) row."""
        user_id, age_text, gender, occupation, zip_code = fields
        user_id = _parse_id(path, lineno, "user_id", user_id)
        if user_id in self.index:
            raise ValueError(f"{path}, line {lineno}: duplicate user id {user_id!r}")
        age = _parse_int(path, lineno, "age", age_text)
        if age < 0:
            raise ValueError(
                f"{path}, line {lineno}: column 'age' must be >= 0, got {age}"
            )
        if gender not in ("M", "F"):
            raise ValueError(
                f"{path}, line {lineno}: column 'gender' must be 'M' or 'F', "
                f"got {gender!r}"
            )
        if occupation not in _OCCUPATION_CONVERSION:
            raise ValueError(
                f"{path}, line {lineno}: unknown occupation {occupation!r}; "
                f"expected one of {sorted(_OCCUPATION_CONVERSION)}"
            )
        bucket = 1
        for threshold in _AGE_THRESHOLDS:
            if age >= threshold:
                bucket = threshold
        self.index[user_id] = len(self.index)
        self.gender.append(gender == "M")
        self.zip_code.append(zip_code.encode("utf-8"))
        self.occupation_text.append(occupation.encode("utf-8"))
        self.occupation_label.append(
            _OCCUPATION_IDS[_OCCUPATION_CONVERSION[occupation]]
        )
        self.bucketized_age.append(float(bucket))
        self.raw_age.append(float(age))


class _Items:
    """Per-movie columns, filled row by row."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.title: list[bytes] = []
        self.genres: list[list[int]] = []

    def add(
        self,
        path: pathlib.Path,
        lineno: int,
        item_id: str,
        title: str,
        genres: list[int],
    ) -> None:
        item_id = _parse_id(path, lineno, "item_id", item_id)
        if item_id in self.index:
            raise ValueError(f"{path}, line {lineno}: duplicate item id {item_id!r}")
        self.index[item_id] = len(self.index)
        self.title.append(title.encode("utf-8"))
        self.genres.append(genres)


class _Ratings:
    """Per-rating columns, filled row by row."""

    def __init__(self) -> None:
        self.user_id: list[bytes] = []
        self.movie_id: list[bytes] = []
        self.user_row: list[int] = []
        self.item_row: list[int] = []
        self.rating: list[float] = []
        self.timestamp: list[int] = []

    def add(
        self,
        path: pathlib.Path,
        lineno: int,
        users: _Users,
        items: _Items,
        fields: tuple[str, str, str, str],
    ) -> None:
        user_id, item_id, rating_text, timestamp_text = fields
        if user_id not in users.index:
            raise ValueError(
                f"{path}, line {lineno}: rating references unknown user id "
                f"{user_id!r} (not in the users file)"
            )
        if item_id not in items.index:
            raise ValueError(
                f"{path}, line {lineno}: rating references unknown item id "
                f"{item_id!r} (not in the items file)"
            )
        self.rating.append(_parse_float(path, lineno, "rating", rating_text))
        self.timestamp.append(_parse_int(path, lineno, "timestamp", timestamp_text))
        self.user_id.append(user_id.encode("utf-8"))
        self.movie_id.append(item_id.encode("utf-8"))
        self.user_row.append(users.index[user_id])
        self.item_row.append(items.index[item_id])


def _parse_grouplens(directory: pathlib.Path) -> tuple[_Users, _Items, _Ratings]:
    """Parses the GroupLens layout (latin-1 ``u.*`` files), as TFDS does."""
    genre_path = directory / "u.genre"
    by_index: dict[int, tuple[int, int]] = {}
    for lineno, line in _read_lines(genre_path, "latin-1"):
        name, index_text = _split_fields(genre_path, lineno, line, "|", 2)
        index = _parse_int(genre_path, lineno, "genre index", index_text)
        if index in by_index:
            raise ValueError(
                f"{genre_path}, line {lineno}: duplicate genre index {index}"
            )
        by_index[index] = (_genre_id(genre_path, lineno, name), lineno)
    if sorted(by_index) != list(range(len(by_index))):
        raise ValueError(
            f"{genre_path}: genre indices must be 0..{len(by_index) - 1} without "
            f"gaps, got {sorted(by_index)}"
        )
    column_genres = [by_index[i][0] for i in range(len(by_index))]

    item_path = directory / "u.item"
    items = _Items()
    n_columns = 5 + len(column_genres)
    for lineno, line in _read_lines(item_path, "latin-1"):
        # movie id | title | release date | video release date | IMDb URL | flags
        fields = _split_fields(item_path, lineno, line, "|", n_columns)
        genres = []
        for genre, flag in zip(column_genres, fields[5:], strict=True):
            if flag not in ("0", "1"):
                raise ValueError(
                    f"{item_path}, line {lineno}: genre flags must be '0' or '1', "
                    f"got {flag!r}"
                )
            if flag == "1":
                genres.append(genre)
        items.add(item_path, lineno, fields[0], fields[1], genres)

    user_path = directory / "u.user"
    users = _Users()
    for lineno, line in _read_lines(user_path, "latin-1"):
        fields = _split_fields(user_path, lineno, line, "|", 5)
        users.add(user_path, lineno, fields)

    rating_path = directory / "u.data"
    ratings = _Ratings()
    for lineno, line in _read_lines(rating_path, "latin-1"):
        fields = _split_fields(rating_path, lineno, line, "\t", 4)
        ratings.add(rating_path, lineno, users, items, tuple(fields))
    return users, items, ratings


def _read_recbole_table(path: pathlib.Path) -> list[tuple[int, dict[str, str]]]:
    """Reads a RecBole atomic file into (line number, {column: value}) rows."""
    lines = _read_lines(path, "utf-8")
    if not lines:
        raise ValueError(f"{path}: file is empty, expected a header line")
    header_lineno, header = lines[0]
    names = [field.split(":", 1)[0] for field in header.split("\t")]
    required = _RECBOLE_COLUMNS[path.name]
    missing = [name for name in required if name not in names]
    if missing:
        raise ValueError(
            f"{path}, line {header_lineno}: header {header!r} lacks column(s) "
            f"{missing}; expected columns {list(required)}"
        )
    rows = []
    for lineno, line in lines[1:]:
        fields = _split_fields(path, lineno, line, "\t", len(names))
        rows.append((lineno, dict(zip(names, fields, strict=True))))
    return rows


def _recbole_title(title: str, year: str) -> str:
    title = _RECBOLE_TITLE_FIXES.get(title, title)
    if year in _RECBOLE_MISSING_YEARS:
        return title
    return f"{title} ({year})"


def _parse_recbole(directory: pathlib.Path) -> tuple[_Users, _Items, _Ratings]:
    """Parses the RecBole atomic layout (UTF-8, tab-separated, with headers)."""
    item_path = directory / "ml-100k.item"
    items = _Items()
    for lineno, row in _read_recbole_table(item_path):
        genres = [_genre_id(item_path, lineno, g) for g in row["class"].split()]
        title = _recbole_title(row["movie_title"], row["release_year"])
        items.add(item_path, lineno, row["item_id"], title, genres)

    user_path = directory / "ml-100k.user"
    users = _Users()
    for lineno, row in _read_recbole_table(user_path):
        columns = ("user_id", "age", "gender", "occupation", "zip_code")
        users.add(user_path, lineno, [row[name] for name in columns])

    rating_path = directory / "ml-100k.inter"
    ratings = _Ratings()
    for lineno, row in _read_recbole_table(rating_path):
        fields = (row["user_id"], row["item_id"], row["rating"], row["timestamp"])
        ratings.add(rating_path, lineno, users, items, fields)
    return users, items, ratings


def _build_dataset(users: _Users, items: _Items, ratings: _Ratings) -> tf.data.Dataset:
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
    layouts: list[tuple[str, tuple[str, ...], Callable]] = [
        ("GroupLens", _GROUPLENS_FILES, _parse_grouplens),
        ("RecBole atomic", _RECBOLE_FILES, _parse_recbole),
    ]
    missing_by_layout = []
    for layout, names, parse in layouts:
        missing = [name for name in names if not (directory / name).is_file()]
        if not missing:
            return _build_dataset(*parse(directory))
        missing_by_layout.append(f"{layout} layout is missing {missing}")
    raise FileNotFoundError(
        f"data_dir={str(directory)!r} does not hold MovieLens 100K files: "
        + "; ".join(missing_by_layout)
        + f". Expected either {list(_GROUPLENS_FILES)} or {list(_RECBOLE_FILES)}."
    )


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
