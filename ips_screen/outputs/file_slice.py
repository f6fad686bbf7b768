"""Bytes of another file, written into an output without passing through the screen's hands:
a stretch of the last run's decisions.ndjson that a night reuses (nightly/last_lines.py), with
tonight's date written over each line's.

A night that reuses nearly every decision writes some 4.5 kB a patient of lines it takes from
the last run's file. Copied into a buffer by the screen, then into the writer's (`background`),
the bytes went through the interpreter twice and once more through a loop writing each line's
date (2.2 ms of the screen's time per 1,000 lines). A `FileSlice` names them instead: the writing
thread reads them straight into its buffer (`read_into`: `os.preadv`, which copies in the kernel
without the interpreter lock) and writes the date over each line's there.

The file stays open while a slice of it is waiting to be written (`SourceFile`: closed when the
last slice and its reader let go of it), so the caller can be done with it first. The job never
writes the file it reads; should something else change it in the meantime (cut it shorter, or
write over it), the write fails with a message (`state_file_changed`) rather than writing bytes
other than those the screen checked: every read ends by looking at the file's size,
modification time and inode again (`SourceFile.check`)."""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ips_screen.errors import ConfigError


def state_file_changed(name: str, how: str) -> ConfigError:
    """The error for a file of the state folder that changed while the night read it."""
    return ConfigError(
        f"[output] state_dir: {name} {how} while the night read it: something other than "
        "ips-screen wrote to the state folder. The night stopped and wrote no outputs; run it "
        "again"
    )


def file_stamp(file: int | os.PathLike[str]) -> tuple[int, int, int]:
    """What identifies a file's content cheaply (a path, or an open file's descriptor): its size,
    modification time (ns) and inode."""
    stat = os.stat(file)
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


class SourceFile:
    """A file descriptor open for reading, closed once nothing holds it (its reader and the
    slices of it), with what identified the file when it was opened (`file_stamp`)."""

    def __init__(self, fd: int, name: str = "the file") -> None:
        self.fd = fd  # owned: closed by this
        self.name = name  # for messages
        self.stamp = file_stamp(fd)

    def check(self) -> None:
        """Raises `state_file_changed` unless the file is as it was when opened."""
        now = file_stamp(self.fd)
        if now != self.stamp:
            raise state_file_changed(
                self.name, "was cut shorter" if now[0] < self.stamp[0] else "changed"
            )

    def __del__(self) -> None:
        fd, self.fd = getattr(self, "fd", -1), -1
        if fd >= 0:
            os.close(fd)


@dataclass(frozen=True, slots=True)
class FileSlice:
    """`size` bytes of `source` from `offset`, with `patch` written at each of `marks` (offsets
    into those bytes, ascending, each with room for the whole patch)."""

    source: SourceFile
    offset: int
    size: int
    marks: Sequence[int]
    patch: bytes

    def __len__(self) -> int:
        return self.size

    def read_into(self, view: memoryview, at: int) -> None:
        """The slice's bytes from `at`, patched, into all of `view` (writable, one byte an item);
        the error `state_file_changed` when the file is no longer as it was opened (see the
        module)."""
        size = view.nbytes
        if at < 0 or at + size > self.size:
            raise ValueError(f"bytes {at} to {at + size} are not in a slice of {self.size}")
        done = 0
        while done < size:
            got = os.preadv(self.source.fd, [view[done:]], self.offset + at + done)
            if got <= 0:
                raise state_file_changed(self.source.name, "was cut shorter")
            done += got
        self.source.check()
        patch, width, marks = self.patch, len(self.patch), self.marks
        for mark in marks[bisect.bisect_left(marks, at - width + 1) :]:
            if mark >= at + size:
                break
            start, stop = max(mark, at), min(mark + width, at + size)
            view[start - at : stop - at] = patch[start - mark : stop - mark]

    def chunks(self, size: int) -> Iterator[bytearray]:
        """The slice's bytes, patched, in pieces of at most `size`."""
        for at in range(0, self.size, size):
            piece = bytearray(min(size, self.size - at))
            with memoryview(piece) as view:
                self.read_into(view, at)
            yield piece

    def __bytes__(self) -> bytes:
        return b"".join(self.chunks(max(self.size, 1)))
