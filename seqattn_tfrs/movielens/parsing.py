"""MovieLens 100K's raw files, parsed into per-user, per-movie and per-rating columns.

Two layouts: GroupLens' ``u.*`` files (latin-1, parsed exactly as TFDS parses
them) and RecBole's atomic files (``ml-100k.*``, UTF-8, as
:func:`~seqattn_tfrs.movielens.fetch.fetch_movielens_100k` caches them).
Every malformed value is a ``ValueError`` naming the file and the line. No
TensorFlow here: :mod:`seqattn_tfrs.movielens.data` builds the dataset.
"""

from __future__ import annotations

import math
import pathlib
import re
from collections.abc import Sequence

__all__ = [
    "GROUPLENS_FILES",
    "LAYOUTS",
    "RECBOLE_FILES",
    "TFDS_GENRE_NAMES",
    "TFDS_OCCUPATION_LABELS",
    "Items",
    "Ratings",
    "Users",
    "parse_grouplens",
    "parse_recbole",
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

GROUPLENS_FILES: tuple[str, ...] = ("u.data", "u.user", "u.item", "u.genre")
RECBOLE_FILES: tuple[str, ...] = ("ml-100k.inter", "ml-100k.user", "ml-100k.item")
#: The layouts a data folder may hold: name, files, in the order tried.
LAYOUTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("GroupLens", GROUPLENS_FILES),
    ("RecBole atomic", RECBOLE_FILES),
)


def data_layout(directory: str | pathlib.Path) -> str:
    """The first of :data:`LAYOUTS` whose files are all in ``directory``.

    Raises:
      FileNotFoundError: ``directory`` holds neither layout completely (the
        message names what each layout misses).
    """
    directory = pathlib.Path(directory).expanduser()
    missing_by_layout = []
    for layout, names in LAYOUTS:
        missing = [name for name in names if not (directory / name).is_file()]
        if not missing:
            return layout
        missing_by_layout.append(f"{layout} layout is missing {missing}")
    raise FileNotFoundError(
        f"data_dir={str(directory)!r} does not hold MovieLens 100K files: "
        + "; ".join(missing_by_layout)
        + f". Expected either {list(GROUPLENS_FILES)} or {list(RECBOLE_FILES)}."
    )


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


_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


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


class Users:
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


class Items:
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


class Ratings:
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
        users: Users,
        items: Items,
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


def parse_grouplens(directory: pathlib.Path) -> tuple[Users, Items, Ratings]:
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
    items = Items()
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
    users = Users()
    for lineno, line in _read_lines(user_path, "latin-1"):
        fields = _split_fields(user_path, lineno, line, "|", 5)
        users.add(user_path, lineno, fields)

    rating_path = directory / "u.data"
    ratings = Ratings()
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


def parse_recbole(directory: pathlib.Path) -> tuple[Users, Items, Ratings]:
    """Parses the RecBole atomic layout (UTF-8, tab-separated, with headers)."""
    item_path = directory / "ml-100k.item"
    items = Items()
    for lineno, row in _read_recbole_table(item_path):
        genres = [_genre_id(item_path, lineno, g) for g in row["class"].split()]
        title = _recbole_title(row["movie_title"], row["release_year"])
        items.add(item_path, lineno, row["item_id"], title, genres)

    user_path = directory / "ml-100k.user"
    users = Users()
    for lineno, row in _read_recbole_table(user_path):
        columns = ("user_id", "age", "gender", "occupation", "zip_code")
        users.add(user_path, lineno, [row[name] for name in columns])

    rating_path = directory / "ml-100k.inter"
    ratings = Ratings()
    for lineno, row in _read_recbole_table(rating_path):
        fields = (row["user_id"], row["item_id"], row["rating"], row["timestamp"])
        ratings.add(rating_path, lineno, users, items, fields)
    return users, items, ratings
