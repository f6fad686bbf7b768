"""A file written on a thread of its own, for the large outputs (decisions.ndjson holds some
4.5 kB per patient: gigabytes for a large practice). A write into the page cache can wait on the
disk for as long as the screen takes to make the next lines; on its own thread that wait overlaps
the making. At most DEPTH pieces wait to be written, so memory stays bounded; the first error of
a write is raised by the next `write` or by `close`, and nothing is written after it. A piece
may be a list of buffers, written one after the other (no copy joins them)."""

from __future__ import annotations

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

    def abort(self) -> None:
        """Stop (what is queued is still written) and close the file, raising nothing."""
        self._stop()
        self.handle.close()

    def _stop(self) -> None:
        if self.thread.is_alive():
            self.pending.put(None)
            self.thread.join()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error
