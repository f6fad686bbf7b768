"""Folders and files only the tool's own user may read: state dirs, run outputs, Bulk downloads.

A state dir holds patient data (Bulk downloads with whole records, decisions, worklists) or the
service's sessions and card map. Whatever existed before, `ensure_private_dir` leaves the folder
0700 and every file below it 0600 (folders below it 0700), and refuses with `PrivateDirError`
(a user error: one line, naming the path) when that cannot be done, e.g. a folder owned by
another user. New files are created with `private_open` / `write_private_bytes` so they are never
readable by others, not even for a moment; code that creates files by other means (SQLite, the
Bulk downloader) runs under `private_umask`.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "PrivateDirError",
    "ensure_private_dir",
    "private_open",
    "private_umask",
    "write_private_bytes",
]


class PrivateDirError(Exception):
    """A state folder that cannot be made private to this user."""


def _fix(path: Path, mode: int) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        return  # links are not followed: their targets are not ours to change
    if hasattr(os, "getuid") and st.st_uid != os.getuid() and os.getuid() != 0:
        raise PrivateDirError(
            f"{path}: owned by another user; the state folder must belong to the user "
            "that runs ips-screen"
        )
    if stat.S_IMODE(st.st_mode) != mode:
        try:
            path.chmod(mode)
        except OSError as exc:
            raise PrivateDirError(f"{path}: cannot make it private ({exc.strerror})") from exc


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) if needed; make it 0700 and everything below it 0700/0600."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    except OSError as exc:
        raise PrivateDirError(f"{path}: cannot create the state folder ({exc.strerror})") from exc
    if not path.is_dir():
        raise PrivateDirError(f"{path}: is not a folder")
    _fix(path, DIR_MODE)
    for root, dirs, files in os.walk(path):
        base = Path(root)
        for name in dirs:
            _fix(base / name, DIR_MODE)
        for name in files:
            _fix(base / name, FILE_MODE)
    return path


def private_open(path: Path, mode: str = "w", **kwargs):
    """open() that creates a new file as 0600 (and leaves an existing one 0600)."""
    path = Path(path)
    flags = os.O_CREAT | (os.O_RDWR if "+" in mode else os.O_WRONLY)
    if "a" in mode:
        flags |= os.O_APPEND
    elif "w" in mode:
        flags |= os.O_TRUNC
    elif "x" in mode:
        flags |= os.O_EXCL
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def write_private_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` as a 0600 file."""
    with private_open(path, "wb") as fh:
        fh.write(data)


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Files and folders created meanwhile, by any code of this process, are private to this
    user (umask 077); the previous umask is restored after. The umask is per process: use it
    around a whole job (the nightly run), not in a server handling other requests."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)
