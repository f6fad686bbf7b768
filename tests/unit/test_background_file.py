"""`outputs.background.BackgroundFile`: decisions.ndjson written on a thread of its own keeps
its bytes in order, and a failed write (a full disk) fails the screen instead of being lost."""

from __future__ import annotations

import errno
import io
import os
import threading

import pytest

from ips_screen.outputs.background import BackgroundFile


class FullDisk(io.BytesIO):
    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, data) -> int:
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)

    def close(self) -> None:
        self.kept = self.getvalue()
        super().close()


def test_pieces_are_written_in_order_and_close_waits_for_them():
    target = FullDisk(room=10**9)
    out = BackgroundFile(target, depth=2)
    pieces = [str(n).encode() * 1000 for n in range(200)]
    for piece in pieces:
        out.write(piece)
    out.close()
    assert target.kept == b"".join(pieces) and target.closed


def test_a_piece_of_several_buffers_is_written_as_they_are_in_order():
    target = FullDisk(room=10**9)
    out = BackgroundFile(target, depth=1)
    pieces = [[b"a" * 10, bytearray(b"b" * 5), memoryview(b"cdef")[1:]], b"gh", [b"i"]]
    for piece in pieces:
        out.write(piece)
    out.close()
    assert target.kept == b"a" * 10 + b"b" * 5 + b"defghi"


def test_a_failed_write_is_raised_and_nothing_is_written_after_it():
    target = FullDisk(room=2_500)
    out = BackgroundFile(target, depth=1)
    with pytest.raises(OSError, match="No space left") as raised:
        for _ in range(100):
            out.write(b"x" * 1_000)
        out.close()
    assert raised.value.errno == errno.ENOSPC
    out.abort()  # as the output folder discards its files: closes, raises nothing more
    assert target.closed and target.kept == b"x" * 2_000
    assert not [t for t in threading.enumerate() if t.name == "output-writer"]


def test_finish_flushes_the_file_to_disk_on_its_thread_and_wait_waits_for_it(tmp_path, monkeypatch):
    """The screen finishes its other outputs while decisions.ndjson goes to disk: `finish`
    returns at once, the thread writes the rest and fsyncs the file, `wait` closes it."""
    synced: list[tuple[str, bytes]] = []
    real_fsync = os.fsync
    path = tmp_path / "decisions.ndjson"

    def fsync(fd: int) -> None:
        real_fsync(fd)
        synced.append((threading.current_thread().name, path.read_bytes()))

    monkeypatch.setattr(os, "fsync", fsync)
    out = BackgroundFile(path.open("wb", buffering=1 << 20), depth=2)
    pieces = [str(n).encode() * 100 for n in range(50)]
    for piece in pieces:
        out.write(piece)
    out.finish()
    out.wait()
    assert synced == [("output-writer", b"".join(pieces))]  # every byte there when synced
    assert out.handle.closed and path.read_bytes() == b"".join(pieces)


def test_a_failed_flush_to_disk_is_raised_by_wait(tmp_path, monkeypatch):
    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    out = BackgroundFile((tmp_path / "decisions.ndjson").open("wb"), depth=1)
    out.write(b"x" * 100)
    out.finish()
    with pytest.raises(OSError, match="Input/output error"):
        out.wait()
    assert out.handle.closed
