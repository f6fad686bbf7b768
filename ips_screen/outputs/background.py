"""A file written on a thread of its own, for the large outputs (decisions.ndjson holds some
4.5 kB per patient: gigabytes for a large practice). A write into the page cache can wait on the
disk for as long as the screen takes to make the next lines; on its own thread that wait overlaps
the making. At most DEPTH pieces wait to be written, so memory stays bounded; the first error of
a write is raised by the next `write` or by `close`, and nothing is written after it. A piece
may be a list of buffers, written one after the other (no copy joins them), or bytes of another
file (`file_slice.FileSlice`), read on the thread.

`finish` lets the thread end the file on its own: the last pieces, then the file flushed to
disk (fsync), while the caller finishes the other outputs; `wait` then waits for it and closes
the file (the output folder's commit fsyncs every file again, which costs nothing once it is on
disk).

Where the operating system allows it (Linux, a file system that takes O_DIRECT), the file is
written around the page cache (`DirectWrites`): the bytes are gathered in one aligned buffer of
STAGE bytes and go straight to the disk, the last partial block through the page cache. A file
written once a night and read once the next need not push gigabytes of other files (the store)
out of the cache; and on a virtual machine whose free memory the host takes back, every new page
of cache is memory the guest touches for the first time: 480 MB written and flushed took 1.7 s
through the page cache and 0.45 s around it (docs/benchmarks.md, tenth round). Any file system
that refuses it (EINVAL) gets the same bytes through the page cache."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import queue
import threading
from typing import BinaryIO

from ips_screen.outputs.file_slice import FileSlice

DEPTH = 2  # pieces queued before `write` waits
Part = bytes | bytearray | memoryview | FileSlice
Piece = Part | list[Part]
STAGE = 4 << 20  # bytes gathered before a write around the page cache
ALIGN = 4096  # what O_DIRECT needs of a write's length, offset and buffer (the largest block)
_O_DIRECT = getattr(os, "O_DIRECT", 0)  # Linux only


class DirectWrites:
    """Writes to a file descriptor opened for writing at offset 0, around the page cache: whole
    STAGE-byte blocks from one page-aligned buffer, the tail through the cache (`end`). `open`
    gives None where O_DIRECT cannot be set. A write the file system refuses (EINVAL) or a short
    one that leaves the offset unaligned turns O_DIRECT off and carries on through the cache."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.direct = True
        self.buffer = mmap.mmap(-1, STAGE)  # page-aligned
        self.view = memoryview(self.buffer)
        self.used = 0

    @classmethod
    def open(cls, handle: BinaryIO) -> DirectWrites | None:
        if not _O_DIRECT:
            return None
        try:
            handle.flush()
            fd = handle.fileno()
            if os.lseek(fd, 0, os.SEEK_CUR) != 0:
                return None
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | _O_DIRECT)
        except (OSError, ValueError):  # io.UnsupportedOperation (no descriptor) is both
            return None
        return cls(fd)

    def write(self, data: Part) -> None:
        """Gather `data` in the buffer, writing it out each time it is full: bytes copied in,
        or a file's bytes read straight into it (`FileSlice.read_into`)."""
        if isinstance(data, FileSlice):
            size, fill = data.size, data.read_into
        else:
            view = memoryview(data)
            if view.ndim != 1 or view.itemsize != 1:
                view = view.cast("B")
            size = view.nbytes

            def fill(target: memoryview, at: int) -> None:
                target[:] = view[at : at + target.nbytes]

        at = 0
        while at < size:
            take = min(STAGE - self.used, size - at)
            fill(self.view[self.used : self.used + take], at)
            self.used += take
            at += take
            if self.used == STAGE:
                self._write_all(self.view)
                self.used = 0

    def end(self) -> None:
        """Write what is gathered: its whole blocks around the cache, the rest through it."""
        aligned = self.used - self.used % ALIGN
        if aligned:
            self._write_all(self.view[:aligned])
        self._buffered()
        if aligned < self.used:
            self._write_all(self.view[aligned : self.used])
        self.used = 0

    def close(self) -> None:
        """Let go of the buffer: unmapped now, or (after a failed write, whose error's traceback
        still holds a slice of it) when that error is let go."""
        self.view.release()
        with contextlib.suppress(BufferError):
            self.buffer.close()

    def _write_all(self, view: memoryview) -> None:
        while view.nbytes:
            try:
                done = os.write(self.fd, view)
            except OSError as exc:
                if not (self.direct and exc.errno == errno.EINVAL):
                    raise
                self._buffered()  # the file system does not take O_DIRECT
                continue
            view = view[done:]
            if done % ALIGN and view.nbytes:
                self._buffered()  # a short write: the offset is no longer aligned

    def _buffered(self) -> None:
        if self.direct:
            fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) & ~_O_DIRECT)
            self.direct = False


class BackgroundFile:
    def __init__(self, handle: BinaryIO, depth: int = DEPTH) -> None:
        self.handle = handle
        self.pending: queue.Queue[Piece | None] = queue.Queue(depth)
        self.error: BaseException | None = None
        self.sync = False  # set by `finish`: fsync the file once every piece is written
        self.direct = DirectWrites.open(handle)  # None: through the page cache
        self.thread = threading.Thread(target=self._drain, name="output-writer", daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        put = self._buffered_write if self.direct is None else self.direct.write
        while (data := self.pending.get()) is not None:
            if self.error is None:
                try:
                    if isinstance(data, list):
                        for part in data:
                            put(part)
                    else:
                        put(data)
                except BaseException as exc:  # raised in the caller's thread
                    self.error = exc
        if self.direct is not None:
            try:
                if self.error is None:
                    self.direct.end()
            except BaseException as exc:
                self.error = exc
            finally:
                self.direct.close()
        if self.sync and self.error is None:
            try:
                self.handle.flush()
                os.fsync(self.handle.fileno())
            except BaseException as exc:
                self.error = exc

    def _buffered_write(self, data: Part) -> None:
        if not isinstance(data, FileSlice):
            self.handle.write(data)
            return
        for chunk in data.chunks(STAGE):
            self.handle.write(chunk)

    def write(self, data: Piece) -> None:
        self._raise()
        self.pending.put(data)

    def close(self) -> None:
        """Wait for every piece to be written, close the file; the first error, if any."""
        self._stop()
        try:
            self._raise()
        finally:
            self.handle.close()

    def finish(self) -> None:
        """No more pieces: the thread writes those queued and flushes the file to disk, without
        the caller waiting (`wait`)."""
        self._raise()
        self.sync = True
        self.pending.put(None)

    def wait(self) -> None:
        """After `finish`: wait for the file to be on disk, close it; the first error, if any."""
        self.close()

    def abort(self) -> None:
        """Stop (what is queued is still written) and close the file, raising nothing."""
        self._stop()
        self.handle.close()

    def _stop(self) -> None:
        if self.thread.is_alive():
            if not self.sync:  # `finish` asked the thread to stop already
                self.pending.put(None)
            self.thread.join()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error
