"""Tests for the MovieLens data module: loading, derived features, splits, fetching."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import time
import types
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from seqattn_tfrs.movielens import data

# ---------------------------------------------------------------------------
# Hand-written fixtures: 3 users, 3 movies, 5 ratings, in both layouts.
# ---------------------------------------------------------------------------

U_GENRE = (
    "unknown|0\nAction|1\nAdventure|2\nAnimation|3\nChildren's|4\nComedy|5\n"
    "Crime|6\nDocumentary|7\nDrama|8\nFantasy|9\nFilm-Noir|10\nHorror|11\n"
    "Musical|12\nMystery|13\nRomance|14\nSci-Fi|15\nThriller|16\nWar|17\n"
    "Western|18\n\n"
)
#                                                     flags: unknown, Action,
# Adventure, Animation, Children's, Comedy, Crime, Documentary, Drama, Fantasy,
# Film-Noir, Horror, Musical, Mystery, Romance, Sci-Fi, Thriller, War, Western.
U_ITEM = (
    "1|Toy Story (1995)|01-Jan-1995||http://example.org/toy"
    "|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "543|Misérables, Les (1995)|01-Jan-1995||http://example.org/mis"
    "|0|0|0|0|0|0|0|0|1|0|0|0|1|0|0|0|0|0|0\n"
    "89|Blade Runner (1982)|01-Jan-1982||http://example.org/blade"
    "|0|0|0|0|0|0|0|0|0|0|1|0|0|0|0|1|0|0|0\n"
)
U_USER = "196|49|M|writer|55105\n7|17|F|administrator|05201\n42|56|M|none|T8H1N\n"
U_DATA = (
    "196\t1\t3\t881250949\n"
    "7\t543\t5\t891717742\n"
    "42\t89\t1\t878887116\n"
    "196\t89\t4\t0\n"
    "7\t1\t2\t1000000000\n"
)

RB_INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "196\t1\t3\t881250949\n"
    "7\t543\t5\t891717742\n"
    "42\t89\t1\t878887116\n"
    "196\t89\t4\t0\n"
    "7\t1\t2\t1000000000\n"
)
RB_USER = (
    "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    "196\t49\tM\twriter\t55105\n"
    "7\t17\tF\tadministrator\t05201\n"
    "42\t56\tM\tnone\tT8H1N\n"
)
RB_ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "1\tToy Story\t1995\tAnimation Children's Comedy\n"
    "543\tMisérables, Les\t1995\tDrama Musical\n"
    "89\tBlade Runner\t1982\tFilm-Noir Sci-Fi\n"
)

# TFDS ids: Animation 2, Children 3, Comedy 4, Drama 7, Film-Noir 9, Musical 12,
# Sci-Fi 15, Unknown 17. Occupation labels: clerical/admin 2,
# other/not specified 11, writer 21.
_USER_196 = {
    "user_id": b"196",
    "user_gender": True,
    "user_zip_code": b"55105",
    "user_occupation_text": b"writer",
    "user_occupation_label": 21,
    "bucketized_user_age": 45.0,
    "raw_user_age": 49.0,
}
_USER_7 = {
    "user_id": b"7",
    "user_gender": False,
    "user_zip_code": b"05201",
    "user_occupation_text": b"administrator",
    "user_occupation_label": 2,
    "bucketized_user_age": 1.0,
    "raw_user_age": 17.0,
}
_USER_42 = {
    "user_id": b"42",
    "user_gender": True,
    "user_zip_code": b"T8H1N",
    "user_occupation_text": b"none",
    "user_occupation_label": 11,
    "bucketized_user_age": 56.0,
    "raw_user_age": 56.0,
}
_TOY_STORY = {
    "movie_id": b"1",
    "movie_title": b"Toy Story (1995)",
    "movie_genres": [2, 3, 4],
}
_MISERABLES = {
    "movie_id": b"543",
    "movie_title": "Misérables, Les (1995)".encode(),
    "movie_genres": [7, 12],
}
_BLADE_RUNNER = {
    "movie_id": b"89",
    "movie_title": b"Blade Runner (1982)",
    "movie_genres": [9, 15],
}
EXPECTED_ROWS = [
    {**_USER_196, **_TOY_STORY, "timestamp": 881250949, "user_rating": 3.0},
    {**_USER_7, **_MISERABLES, "timestamp": 891717742, "user_rating": 5.0},
    {**_USER_42, **_BLADE_RUNNER, "timestamp": 878887116, "user_rating": 1.0},
    {**_USER_196, **_BLADE_RUNNER, "timestamp": 0, "user_rating": 4.0},
    {**_USER_7, **_TOY_STORY, "timestamp": 1000000000, "user_rating": 2.0},
]
EXPECTED_DTYPES = {
    "user_id": tf.string,
    "movie_id": tf.string,
    "movie_title": tf.string,
    "movie_genres": tf.int64,
    "user_gender": tf.bool,
    "user_zip_code": tf.string,
    "user_occupation_text": tf.string,
    "user_occupation_label": tf.int64,
    "bucketized_user_age": tf.float32,
    "raw_user_age": tf.float32,
    "timestamp": tf.int64,
    "user_rating": tf.float32,
}


def _write(directory: pathlib.Path, files: dict[str, str], encoding: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_bytes(text.encode(encoding))


def _grouplens_files(**overrides: str) -> dict[str, str]:
    files = {"u.genre": U_GENRE, "u.item": U_ITEM, "u.user": U_USER, "u.data": U_DATA}
    files.update({name.replace("_", "."): text for name, text in overrides.items()})
    return files


def _recbole_files(**overrides: str) -> dict[str, str]:
    files = {
        "ml-100k.inter": RB_INTER,
        "ml-100k.user": RB_USER,
        "ml-100k.item": RB_ITEM,
    }
    files.update({f"ml-100k.{name}": text for name, text in overrides.items()})
    return files


@pytest.fixture
def grouplens_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    directory = tmp_path / "grouplens"
    _write(directory, _grouplens_files(), "latin-1")
    return directory


@pytest.fixture
def recbole_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    directory = tmp_path / "recbole"
    _write(directory, _recbole_files(), "utf-8")
    return directory


def _to_python(value: tf.Tensor):
    array = value.numpy()
    if isinstance(array, np.ndarray):
        return array.tolist()
    return array.item() if isinstance(array, np.generic) else array


def _rows(dataset: tf.data.Dataset) -> list[dict]:
    return [{k: _to_python(v) for k, v in el.items()} for el in dataset]


def _assert_fixture_dataset(dataset: tf.data.Dataset) -> None:
    assert set(dataset.element_spec) == set(EXPECTED_DTYPES)
    assert int(dataset.cardinality()) == len(EXPECTED_ROWS)
    for element in dataset:
        for name, dtype in EXPECTED_DTYPES.items():
            assert element[name].dtype == dtype, name
            expected_rank = 1 if name == "movie_genres" else 0
            assert element[name].shape.rank == expected_rank, name
    assert _rows(dataset) == EXPECTED_ROWS


# ---------------------------------------------------------------------------
# Loading local files.
# ---------------------------------------------------------------------------


def test_grouplens_layout_values_and_dtypes(grouplens_dir: pathlib.Path) -> None:
    _assert_fixture_dataset(data.load_movielens_100k(grouplens_dir, source="files"))


def test_recbole_layout_values_and_dtypes(recbole_dir: pathlib.Path) -> None:
    _assert_fixture_dataset(data.load_movielens_100k(recbole_dir, source="files"))


def test_both_layouts_give_identical_datasets(
    grouplens_dir: pathlib.Path, recbole_dir: pathlib.Path
) -> None:
    from_grouplens = data.load_movielens_100k(str(grouplens_dir))
    from_recbole = data.load_movielens_100k(recbole_dir, source="auto")
    assert from_grouplens.element_spec == from_recbole.element_spec
    assert _rows(from_grouplens) == _rows(from_recbole)


def test_batching_gives_ragged_genres(recbole_dir: pathlib.Path) -> None:
    batch = next(iter(data.load_movielens_100k(recbole_dir).batch(5)))
    assert isinstance(batch["movie_genres"], tf.RaggedTensor)
    assert batch["movie_genres"].to_list() == [r["movie_genres"] for r in EXPECTED_ROWS]


def test_recbole_title_quirks_match_grouplens(tmp_path: pathlib.Path) -> None:
    # RecBole moves a title's last "(...)" into release_year, including the
    # "(V)" of video releases, and misspells movie 267's "unknown" title.
    grouplens = tmp_path / "g"
    _write(
        grouplens,
        _grouplens_files(
            u_item="267|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
            "1412|Land Before Time III: The Time of the Great Giving (1995) (V)"
            "|01-Jan-1995||url|0|0|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n",
            u_data="196\t267\t3\t881250949\n7\t1412\t4\t891717742\n",
        ),
        "latin-1",
    )
    recbole = tmp_path / "r"
    _write(
        recbole,
        _recbole_files(
            item="item_id:token\tmovie_title:token_seq\trelease_year:token"
            "\tclass:token_seq\n"
            "267\tunkonwn\tunkonwn\tunknown\n"
            "1412\tLand Before Time III: The Time of the Great Giving (1995)"
            "\tV\tAnimation Children's\n",
            inter="user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
            "196\t267\t3\t881250949\n7\t1412\t4\t891717742\n",
        ),
        "utf-8",
    )
    rows = _rows(data.load_movielens_100k(recbole))
    assert _rows(data.load_movielens_100k(grouplens)) == rows
    assert [(r["movie_title"], r["movie_genres"]) for r in rows] == [
        (b"unknown", [17]),
        (b"Land Before Time III: The Time of the Great Giving (1995) (V)", [2, 3]),
    ]


# ---------------------------------------------------------------------------
# Errors.
# ---------------------------------------------------------------------------


def test_missing_file_is_named(grouplens_dir: pathlib.Path) -> None:
    (grouplens_dir / "u.genre").unlink()
    with pytest.raises(FileNotFoundError, match=r"u\.genre") as info:
        data.load_movielens_100k(grouplens_dir, source="files")
    message = str(info.value)
    assert str(grouplens_dir) in message
    assert "ml-100k.inter" in message  # the other layout's files too


def test_missing_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        data.load_movielens_100k(tmp_path / "does-not-exist")


def test_truncated_grouplens_line_names_file_and_line(tmp_path: pathlib.Path) -> None:
    truncated = U_DATA.replace("42\t89\t1\t878887116\n", "42\t89\t1\n")
    _write(tmp_path, _grouplens_files(u_data=truncated), "latin-1")
    with pytest.raises(ValueError, match=r"u\.data, line 3: expected 4 "):
        data.load_movielens_100k(tmp_path)


def test_truncated_recbole_line_names_file_and_line(tmp_path: pathlib.Path) -> None:
    truncated = RB_ITEM.replace("\tFilm-Noir Sci-Fi\n", "")
    _write(tmp_path, _recbole_files(item=truncated), "utf-8")
    with pytest.raises(ValueError, match=r"ml-100k\.item, line 4: expected 4 "):
        data.load_movielens_100k(tmp_path)


def test_unknown_genre_name(tmp_path: pathlib.Path) -> None:
    bad = RB_ITEM.replace("Drama Musical", "Drama Romantic")
    _write(tmp_path, _recbole_files(item=bad), "utf-8")
    with pytest.raises(ValueError, match=r"ml-100k\.item, line 3: unknown genre 'Ro"):
        data.load_movielens_100k(tmp_path)


def test_unknown_genre_in_u_genre(tmp_path: pathlib.Path) -> None:
    _write(
        tmp_path, _grouplens_files(u_genre=U_GENRE.replace("War|", "Wars|")), "latin-1"
    )
    with pytest.raises(ValueError, match=r"u\.genre, line 18: unknown genre 'Wars'"):
        data.load_movielens_100k(tmp_path)


def test_unparsable_number(tmp_path: pathlib.Path) -> None:
    bad = RB_INTER.replace("\t891717742\n", "\t8917x7742\n")
    _write(tmp_path, _recbole_files(inter=bad), "utf-8")
    with pytest.raises(
        ValueError, match=r"ml-100k\.inter, line 3: column 'timestamp' .*'8917x7742'"
    ):
        data.load_movielens_100k(tmp_path)


def test_rating_of_unknown_user(tmp_path: pathlib.Path) -> None:
    _write(tmp_path, _grouplens_files(u_data=U_DATA + "999\t1\t3\t5\n"), "latin-1")
    with pytest.raises(ValueError, match=r"u\.data, line 6: .*unknown user id '999'"):
        data.load_movielens_100k(tmp_path)


def test_rating_of_unknown_item(tmp_path: pathlib.Path) -> None:
    _write(tmp_path, _recbole_files(inter=RB_INTER + "7\t2\t3\t5\n"), "utf-8")
    with pytest.raises(
        ValueError, match=r"ml-100k\.inter, line 7: .*unknown item id '2'"
    ):
        data.load_movielens_100k(tmp_path)


def test_bad_source() -> None:
    with pytest.raises(ValueError, match=r"source must be one of .*got 'web'"):
        data.load_movielens_100k("/nonexistent", source="web")


def test_files_source_needs_data_dir() -> None:
    with pytest.raises(ValueError, match="data_dir is required"):
        data.load_movielens_100k(source="files")


def test_tfds_source_calls_tfds_load(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    fake_tfds = types.ModuleType("tensorflow_datasets")
    fake_tfds.load = lambda *args, **kwargs: calls.append((args, kwargs)) or "ds"
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds)
    assert data.load_movielens_100k(source="tfds") == "ds"
    assert calls == [
        (("movielens/100k-ratings",), {"split": "train", "data_dir": None})
    ]


# ---------------------------------------------------------------------------
# Derived features.
# ---------------------------------------------------------------------------


def _expected_time_features(timestamp: int) -> tuple[int, int]:
    moment = time.gmtime(timestamp)  # tm_wday: Monday is 0
    return moment.tm_hour, moment.tm_wday


def test_known_timestamp_by_hand() -> None:
    # 881250949 s = 10199 days + 57349 s; 57349 s = 15 h 55 min 49 s.
    # Day 10199 after Thursday 1970-01-01: 10199 % 7 = 0, so also a Thursday.
    assert _expected_time_features(881250949) == (15, 3)
    out = data.add_derived_features(
        {
            "user_zip_code": tf.constant("55105"),
            "movie_title": tf.constant("Kolya (1996)"),
            "timestamp": tf.constant(881250949, tf.int64),
        }
    )
    assert out["hour_of_day"].numpy() == 15
    assert out["weekday"].numpy() == 3
    assert out["hour_of_day"].dtype == tf.int64
    assert out["weekday"].dtype == tf.int64
    assert out["user_zip_prefix"].numpy() == b"551"
    assert out["movie_release_year"].numpy() == b"1996"


def _check_derived(rows: list[dict]) -> None:
    assert [r["user_zip_prefix"] for r in rows] == [
        b"551",
        b"052",
        b"T8H",
        b"551",
        b"052",
    ]
    assert [r["movie_release_year"] for r in rows] == [
        b"1995",
        b"1995",
        b"1982",
        b"1982",
        b"1995",
    ]
    for row, expected in zip(rows, EXPECTED_ROWS, strict=True):
        hour, weekday = _expected_time_features(expected["timestamp"])
        assert (row["hour_of_day"], row["weekday"]) == (hour, weekday)
        assert row["movie_genres"] == expected["movie_genres"]
        assert {k: row[k] for k in expected} == expected


def test_derived_features_unbatched(recbole_dir: pathlib.Path) -> None:
    dataset = data.load_movielens_100k(recbole_dir).map(data.add_derived_features)
    spec = dataset.element_spec
    assert spec["user_zip_prefix"].dtype == tf.string
    assert spec["movie_release_year"].dtype == tf.string
    assert spec["hour_of_day"] == tf.TensorSpec([], tf.int64)
    assert spec["weekday"] == tf.TensorSpec([], tf.int64)
    _check_derived(_rows(dataset))


def test_derived_features_batched(grouplens_dir: pathlib.Path) -> None:
    dataset = data.load_movielens_100k(grouplens_dir).batch(5)
    batch = next(iter(dataset.map(data.add_derived_features)))
    assert batch["hour_of_day"].shape == [5]
    assert isinstance(batch["movie_genres"], tf.RaggedTensor)
    columns = {
        k: v.to_list() if isinstance(v, tf.RaggedTensor) else v.numpy().tolist()
        for k, v in batch.items()
    }
    _check_derived([{k: columns[k][i] for k in columns} for i in range(5)])


def test_derived_features_edge_cases() -> None:
    features = {
        "user_zip_code": tf.constant(["12", "T8H1N", ""]),
        "movie_title": tf.constant(
            [
                "unknown",
                "Land Before Time III: The Time of the Great Giving (1995) (V)",
                "Seven (Se7en) (1995)",
            ]
        ),
        "timestamp": tf.constant([-1, 86399, 86400 * 4], tf.int64),
        "movie_genres": tf.ragged.constant([[17], [2, 3], []], dtype=tf.int64),
    }
    out = data.add_derived_features(features)
    assert set(features) < set(out)  # input not modified, all keys kept
    assert out["movie_genres"] is features["movie_genres"]
    assert out["user_zip_prefix"].numpy().tolist() == [b"12", b"T8H", b""]
    assert out["movie_release_year"].numpy().tolist() == [b"", b"", b"1995"]
    expected = [_expected_time_features(t) for t in (-1, 86399, 86400 * 4)]
    assert expected == [(23, 2), (23, 3), (0, 0)]
    assert out["hour_of_day"].numpy().tolist() == [h for h, _ in expected]
    assert out["weekday"].numpy().tolist() == [w for _, w in expected]


def test_derived_features_in_graph_mode() -> None:
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def year(title: tf.Tensor) -> tf.Tensor:
        features = {
            "user_zip_code": title,
            "movie_title": title,
            "timestamp": tf.zeros_like(title, dtype=tf.int64),
        }
        return data.add_derived_features(features)["movie_release_year"]

    result = year(tf.constant(["Heat (1995)", "Heat", "Heat (1995) "]))
    assert result.numpy().tolist() == [b"1995", b"", b"1995"]


def test_derived_features_missing_key() -> None:
    with pytest.raises(ValueError, match=r"missing \['timestamp'\]"):
        data.add_derived_features(
            {"user_zip_code": tf.constant("1"), "movie_title": tf.constant("x")}
        )


# ---------------------------------------------------------------------------
# Splitting.
# ---------------------------------------------------------------------------


def _values(dataset: tf.data.Dataset) -> list[int]:
    return [int(x) for x in dataset]


def test_split_is_a_deterministic_partition() -> None:
    dataset = tf.data.Dataset.range(100)
    train, val, test = data.train_val_test_split(dataset, seed=7)
    parts = [_values(train), _values(val), _values(test)]
    assert [len(p) for p in parts] == [80, 10, 10]
    assert sorted(parts[0] + parts[1] + parts[2]) == list(range(100))
    assert parts[0] != sorted(parts[0])  # actually shuffled
    # Same order on re-iteration and on a fresh call with the same seed.
    assert [_values(train), _values(val), _values(test)] == parts
    again = data.train_val_test_split(dataset, seed=7)
    assert [_values(d) for d in again] == parts
    other = data.train_val_test_split(dataset, seed=8)
    assert [_values(d) for d in other] != parts


def test_split_custom_fractions_and_unknown_cardinality() -> None:
    dataset = tf.data.Dataset.range(20).filter(lambda x: x % 2 == 0)
    first, second = data.train_val_test_split(dataset, seed=0, fractions=(0.3, 0.7))
    a, b = _values(first), _values(second)
    assert (len(a), len(b)) == (3, 7)
    assert sorted(a + b) == list(range(0, 20, 2))


@pytest.mark.parametrize(
    "fractions",
    [(0.5, 0.5, 0.1), (1.0, 0.0), (-0.2, 0.6, 0.6), (), (0.8, 0.1, "0.1")],
)
def test_bad_fractions(fractions: tuple) -> None:
    with pytest.raises(ValueError, match="fractions must be") as info:
        data.train_val_test_split(
            tf.data.Dataset.range(10), seed=0, fractions=fractions
        )
    assert repr(fractions) in str(info.value)


# ---------------------------------------------------------------------------
# Fetching (pip is faked here; the real download is tested at the end).
# ---------------------------------------------------------------------------


def _fake_pip(monkeypatch: pytest.MonkeyPatch, inter_rows: int) -> list[list[str]]:
    """Makes pip "download" a fake recbole wheel with `inter_rows` ratings."""
    calls: list[list[str]] = []

    def run(command, **kwargs):
        calls.append(command)
        download_dir = pathlib.Path(command[command.index("-d") + 1])
        member = "recbole/dataset_example/ml-100k/ml-100k"
        with zipfile.ZipFile(download_dir / "recbole-1.2.1-py3-none-any.whl", "w") as z:
            z.writestr(f"{member}.inter", "h\n" + "1\t1\t3\t5\n" * inter_rows)
            z.writestr(f"{member}.user", "h\n" + "1\t20\tM\tother\t1\n" * 943)
            z.writestr(f"{member}.item", "h\n" + "1\tt\t1995\tDrama\n" * 1682)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(data.subprocess, "run", run)
    return calls


def test_fetch_installs_and_then_uses_the_cache(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fake_pip(monkeypatch, 100_000)
    monkeypatch.setenv("SEQATTN_TFRS_CACHE", str(tmp_path))
    # An incomplete earlier copy is replaced.
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "ml-100k.inter").write_text("h\n1\t1\t3\t5\n")
    path = data.fetch_movielens_100k()
    assert path == tmp_path / "ml-100k"
    assert sorted(p.name for p in path.iterdir()) == sorted(data._RECBOLE_FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-100k"]
    assert len(calls) == 1
    command = calls[0]
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in command
    assert "recbole==1.2.1" in command
    assert data.fetch_movielens_100k(tmp_path) == path
    assert len(calls) == 1  # cached: no second download


def test_fetch_rejects_incomplete_wheel_without_leaving_files(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_pip(monkeypatch, 99_999)
    with pytest.raises(RuntimeError, match="has 99999 data rows, expected 100000"):
        data.fetch_movielens_100k(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_fetch_reports_pip_failure(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def run(command, **kwargs):
        raise subprocess.CalledProcessError(
            1, command, "", "Looking in indexes\nERROR: No matching distribution\n"
        )

    monkeypatch.setattr(data.subprocess, "run", run)
    with pytest.raises(RuntimeError, match="No matching distribution") as info:
        data.fetch_movielens_100k(tmp_path / "cache")
    assert "grouplens.org" in str(info.value)
    assert list((tmp_path / "cache").iterdir()) == []


# ---------------------------------------------------------------------------
# The real data (downloads the ~2 MB recbole wheel once; never skipped).
# ---------------------------------------------------------------------------


def test_real_movielens_100k() -> None:
    path = data.fetch_movielens_100k()
    assert (path / "ml-100k.inter").is_file()
    dataset = data.load_movielens_100k()  # source="auto": the same cache
    assert int(dataset.cardinality()) == 100_000
    batch = next(iter(dataset.batch(200_000)))
    assert batch["user_id"].shape == [100_000]
    assert len(set(batch["user_id"].numpy().tolist())) == 943
    assert len(set(batch["movie_id"].numpy().tolist())) == 1682
    ratings = batch["user_rating"].numpy()
    assert ratings.min() == 1.0
    assert ratings.max() == 5.0
    assert set(ratings.tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    # First row of ml-100k.inter: "196  242  3  881250949".
    matches = np.flatnonzero(
        (batch["user_id"].numpy() == b"196")
        & (batch["movie_id"].numpy() == b"242")
        & (batch["timestamp"].numpy() == 881250949)
    )
    assert matches.tolist() == [0]
    assert ratings[0] == 3.0
    assert batch["movie_title"][0].numpy() == b"Kolya (1996)"
    assert batch["movie_genres"][0].numpy().tolist() == [4]  # Comedy
