"""The versioned export directory TF Serving watches, written atomically.

TF Serving loads any new numeric directory under a model's base path, so a
half-written version would be an outage: a version is written under a hidden
temporary name and renamed into place when complete, one export per base path
at a time (a lock file). Needs no TensorFlow.
"""

from __future__ import annotations

import contextlib
import fcntl
import numbers
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from typing import Any


def check_base_path(export_base_path: Any) -> str:
    if not isinstance(export_base_path, (str, os.PathLike)):
        raise TypeError(
            "`export_base_path` must be a path, got "
            f"{type(export_base_path).__name__}: {export_base_path!r}."
        )
    base = os.path.abspath(os.fspath(export_base_path))
    if os.path.exists(base) and not os.path.isdir(base):
        raise NotADirectoryError(
            f"`export_base_path` {base!r} is a file; expected a directory (the "
            "model base path TF Serving watches) or a path to create."
        )
    existing = base
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NotADirectoryError(
            f"`export_base_path` {base!r} cannot be created: {existing!r} is a file."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(
            f"`export_base_path` {base!r} is not writable: no write permission on "
            f"{existing!r}."
        )
    return base


def parse_version(version: Any) -> int | None:
    if version is None:
        return None
    if isinstance(version, str) and version.isascii() and version.isdigit():
        return int(version)
    if (
        isinstance(version, numbers.Integral)
        and not isinstance(version, bool)
        and version >= 0
    ):
        return int(version)
    raise ValueError(
        f"`version` must be a non-negative int (or a string of digits) naming the "
        f"version directory, got {version!r}."
    )


LOCK_FILE = ".seqattn_tfrs_export.lock"
_TEMP_NAME = re.compile(r"\.tmp-\d+-[0-9a-f]{12}")


@contextlib.contextmanager
def export_lock(base: str) -> Iterator[None]:
    """Holds an exclusive lock on ``<base>/.seqattn_tfrs_export.lock``.

    Exports to one base path, from any process, run one at a time: each picks
    its version only when the previous one has been renamed into place, so two
    concurrent exports get distinct versions. The operating system drops the
    lock when a process dies, killed or not.
    """
    try:
        fd = os.open(os.path.join(base, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError as err:
        raise PermissionError(
            f"`export_base_path` {base!r} is not writable: {err}."
        ) from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def remove_abandoned_temp_dirs(base: str) -> None:
    """Removes temporary version directories of exports that died midway.

    Called with the lock held, so no live export owns one. Only names this
    module creates (``.tmp-<version>-<12 hex digits>``) are touched.
    """
    for entry in os.scandir(base):
        if entry.is_dir(follow_symlinks=False) and _TEMP_NAME.fullmatch(entry.name):
            shutil.rmtree(entry.path)


def make_temp_dir(base: str, number: int) -> str:
    """Creates ``<base>/.tmp-<number>-<random>``, hidden from TF Serving.

    Unlike ``tempfile.mkdtemp`` (mode 0o700) it gets the usual permissions
    (0o777 minus the umask), which the renamed version directory keeps, so a
    model server running as another user can read it.
    """
    for _ in range(100):
        path = os.path.join(base, f".tmp-{number}-{secrets.token_hex(6)}")
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        except PermissionError as err:
            raise PermissionError(
                f"`export_base_path` {base!r} is not writable: {err}."
            ) from err
        return path
    raise FileExistsError(f"Could not create a temporary directory in {base!r}.")


def _versions(base: str) -> dict[int, str]:
    if not os.path.isdir(base):
        return {}
    return {
        int(entry.name): entry.name
        for entry in os.scandir(base)
        if entry.name.isascii() and entry.name.isdigit()
    }


def next_version(base: str) -> int:
    return max(_versions(base), default=0) + 1


def check_version_free(base: str, number: int) -> None:
    existing = _versions(base).get(number)
    if existing is not None:
        raise FileExistsError(
            f"Version {number} already exists in `export_base_path` {base!r} "
            f"({os.path.join(base, existing)!r}); expected a new version number "
            "(or leave `version` unset for the next one)."
        )


def write_version(
    base: str, requested: int | None, write: Callable[[str, int], None]
) -> str:
    """Writes version ``requested`` (default: the next) under ``base`` atomically.

    Creates ``base`` if needed, then, holding the base path's lock, removes
    temporary directories of exports that were killed, picks the version,
    calls ``write(temporary_directory, version)`` and renames the directory
    into place. On any failure the temporary directory is removed and the
    error re-raised, so TF Serving never sees a half-written version.

    Returns:
      The path of the new version directory.

    Raises:
      FileExistsError: the version exists.
      PermissionError: ``base`` cannot be created.

    Example:
      >>> import tempfile, pathlib
      >>> base = tempfile.mkdtemp()
      >>> write = lambda path, n: pathlib.Path(path, "model").write_text(str(n))
      >>> [os.path.basename(write_version(base, None, write)) for _ in range(2)]
      ['1', '2']
      >>> sorted(os.listdir(base))  # the lock file is hidden from TF Serving
      ['.seqattn_tfrs_export.lock', '1', '2']
    """
    try:
        os.makedirs(base, exist_ok=True)
    except PermissionError as err:
        raise PermissionError(
            f"`export_base_path` {base!r} cannot be created: {err}."
        ) from err
    with export_lock(base):  # one export per base path at a time
        remove_abandoned_temp_dirs(base)
        number = requested if requested is not None else next_version(base)
        check_version_free(base, number)
        tmp = make_temp_dir(base, number)
        try:
            write(tmp, number)
            final = os.path.join(base, str(number))
            check_version_free(base, number)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final
