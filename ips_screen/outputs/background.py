"""A file written on a thread of its own, for the large outputs (decisions.ndjson holds some
4.5 kB per patient: gigabytes for a large practice). A write into the page cache can wait on the
disk for as long as the screen takes to make the next lines; on its own thread that wait overlaps
the making. At most DEPTH pieces wait to be written, so memory stays bounded; the first error of
a write is raised by the next `write` or by `close`, and nothing is written after it. A piece
may be a list of buffers, written one after the other (no copy joins them).

`finish` lets the thread end the file on its own: the last pieces, then the file flushed to
disk (fsync), while the caller finishes the other outputs; `wait` then waits for it and closes
the file (the output folder's commit fsyncs every file again, which costs nothing once it is on
disk)."""

from __future__ import annotations

import os
import queue
import threading
from typing import BinaryIO

DEPTH = 2  # pieces queued before `write` waits
Piece = bytes | bytearray | memoryview | list[bytes | bytearray | memoryview]


class BackgroundFile:
    def __init__(self, handle: BinaryIO, depth: int = DEPTH) -> None:
        self.handle = handle
        self.pending: queue.Queue[Piece | None] = queue.Queue(depth)
        self.error: BaseException | None = None
        self.sync = False  # set by `finish`: fsync the file once every piece is written
        self.thread = threading.Thread(target=self._drain, name="output-writer", daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while (data := self.pending.get()) is not None:
            if self.error is None:
                try:
                    if isinstance(data, list):
                        for part in data:
                            self.handle.write(part)
                    else:
                        self.handle.write(data)
                except BaseException as exc:  # raised in the caller's thread
                    self.error = exc
        if self.sync and self.error is None:
            try:
                self.handle.flush()
                os.fsync(self.handle.fileno())
            except BaseException as exc:
                self.error = exc

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
