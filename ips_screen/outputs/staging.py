"""An output folder written atomically: every file in a temporary sibling folder first.

Each file is created 0600 (`private_dir.private_open`: it holds patient data; the folder's own
mode is left as the user made it) in a temporary sibling folder, written in full, and only on
`commit` flushed to disk and moved into place with `os.replace` (atomic on one file system), so a
crash never leaves a half-written file in the output folder, and a failed run leaves the folder
as it was (a folder it made is removed again: an empty run folder of a failed night would count
as one of the runs the nightly job keeps).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from ips_screen.errors import UserError, disk_failed, note_outputs_written
from ips_screen.private_dir import private_open


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM held back from this thread while inside, delivered when it ends (where
    the system allows it)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _sync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _sync_dir(path: Path) -> None:
    """Make the renames durable (POSIX; elsewhere a no-op)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_folder(out_dir: Path) -> None:
    """Refuse (`UserError`) an output folder whose name a file already has."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: a file is there, not a folder: name a folder for the outputs")


def make_folder(out_dir: Path) -> None:
    """Make an output folder (and its parents): a file of its name refused (`check_folder`),
    and a folder the system will not make said as a `UserError` naming it (but a full disk,
    which `errors.environment_failure` says)."""
    check_folder(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_make(out_dir, exc) from None


def _cannot_make(out_dir: Path, exc: OSError) -> OSError | UserError:
    if disk_failed(exc) is not None:
        return exc
    return UserError(f"{out_dir}: cannot make the output folder ({exc.strerror or exc})")


class StagedFolder:
    """An output folder written in a temporary sibling folder first: files are created there
    (`open`, `write_bytes`), and `commit` moves them into place, each with `os.replace`.
    `discard` removes the temporary folder, and the output folder when it made it and nothing
    was committed to it (a no-op after `commit`)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.made = not self.out_dir.exists()
        self.committed = False
        make_folder(self.out_dir)
        parent = self.out_dir.parent
        try:
            self.staging = Path(
                tempfile.mkdtemp(prefix=f".{self.out_dir.name}.", suffix=".tmp", dir=parent)
            )
        except OSError as exc:
            if self.made:
                with contextlib.suppress(OSError):
                    self.out_dir.rmdir()
            raise _cannot_make(self.out_dir, exc) from None

    def path(self, name: str) -> Path:
        return self.staging / name

    def open(self, name: str, mode: str = "wb", **kwargs: Any) -> IO[Any]:
        """A new file of the staging folder, readable by its owner only."""
        return private_open(self.path(name), mode, **kwargs)

    def write_bytes(self, name: str, data: bytes) -> None:
        with self.open(name) as handle:
            handle.write(data)

    def commit(self, names: Iterable[str], remove: Iterable[str] = ()) -> None:
        """Flush `names` to disk and move them into the output folder, remove `remove` from it,
        make it durable. A Ctrl-C or SIGTERM while they move is held until all have: the folder
        never holds some of this run's files beside some of the last one's."""
        names = list(names)
        try:
            for name in names:
                _sync_file(self.path(name))  # the slow part, before anything moves
            with _signals_held():
                for name in names:
                    os.replace(self.path(name), self.out_dir / name)
                for name in remove:
                    (self.out_dir / name).unlink(missing_ok=True)
                self.committed = True
                note_outputs_written()
            _sync_dir(self.out_dir)
        finally:
            self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        if self.made and not self.committed:
            with contextlib.suppress(OSError):  # only while empty: what a failed commit moved stays
                self.out_dir.rmdir()
