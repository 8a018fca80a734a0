"""The real MovieLens 100K files, fetched once from the RecBole wheel on PyPI.

:func:`fetch_movielens_100k` downloads ``recbole==1.2.1`` with ``pip
download`` (so a machine that reaches only the package registries gets the
data), extracts its three ``ml-100k.*`` files, checks them and renames them
into the cache atomically.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile

from seqattn_tfrs.movielens.parsing import RECBOLE_FILES

__all__ = ["fetch_movielens_100k"]

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


def _manual_alternative(target: pathlib.Path) -> str:
    return (
        "Alternatively, get the data by hand: download the MovieLens 100K zip "
        "from https://grouplens.org/datasets/movielens/100k/, unzip it and pass "
        "its ml-100k directory (holding u.data, u.user, u.item, u.genre) as "
        "--data_dir to seqattn-tfrs (data_dir to load_movielens_100k()); or copy "
        "ml-100k.inter, ml-100k.user "
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
            for name in RECBOLE_FILES:
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
