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
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from ips_screen.private_dir import private_open


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


class StagedFolder:
    """An output folder written in a temporary sibling folder first: files are created there
    (`open`, `write_bytes`), and `commit` moves them into place, each with `os.replace`.
    `discard` removes the temporary folder, and the output folder when it made it and nothing
    was committed to it (a no-op after `commit`)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.made = not self.out_dir.exists()
        self.committed = False
        self.out_dir.mkdir(parents=True, exist_ok=True)
        parent = self.out_dir.parent
        self.staging = Path(
            tempfile.mkdtemp(prefix=f".{self.out_dir.name}.", suffix=".tmp", dir=parent)
        )

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
        make it durable."""
        try:
            for name in names:
                _sync_file(self.path(name))
                os.replace(self.path(name), self.out_dir / name)
            for name in remove:
                (self.out_dir / name).unlink(missing_ok=True)
            _sync_dir(self.out_dir)
            self.committed = True
        finally:
            self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        if self.made and not self.committed:
            with contextlib.suppress(OSError):  # only while empty: what a failed commit moved stays
                self.out_dir.rmdir()
