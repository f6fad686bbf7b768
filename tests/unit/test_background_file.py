"""`outputs.background.BackgroundFile`: decisions.ndjson written on a thread of its own keeps
its bytes in order, and a failed write (a full disk) fails the screen instead of being lost."""

from __future__ import annotations

import errno
import fcntl
import io
import mmap
import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ips_screen.outputs.background import ALIGN, STAGE, BackgroundFile
from ips_screen.outputs.file_slice import FileSlice, SourceFile
from tests.support.hypothesis_profile import examples


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


# -- around the page cache (O_DIRECT) ------------------------------------------------------------


def _takes_o_direct(folder) -> bool:
    """Whether this file system takes O_DIRECT writes (Linux ext4 and xfs do; tmpfs may not)."""
    if not getattr(os, "O_DIRECT", 0):
        return False
    probe = folder / "probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    except OSError:
        return False
    buffer = mmap.mmap(-1, ALIGN)
    try:
        os.write(fd, buffer)
    except OSError:
        return False
    finally:
        os.close(fd)
        buffer.close()
        probe.unlink()
    return True


def _pieces(sizes: list[int], folder=None) -> list:
    """Pieces of these sizes, of each kind `write` takes: bytes, a bytearray, a list of
    buffers and (with a folder for its file) bytes of another file with a date written over
    every 100th byte and over the last bytes, as nightly/last_lines.py gives them."""
    out: list = []
    for n, size in enumerate(sizes):
        data = bytes([65 + n % 26]) * size
        kind = n % 4 if folder is not None else n % 3
        if kind == 3:
            path = folder / f"source-{n}"
            path.write_bytes(b"head" + data)
            marks = sorted({*range(0, size - 9, 100), *([size - 10] if size >= 10 else [])})
            source = SourceFile(os.open(path, os.O_RDONLY))
            out.append(FileSlice(source, 4, size, marks, b"2026-11-27"))
        else:
            out.append(data if kind == 0 else bytearray(data) if kind == 1 else [memoryview(data)])
    return out


def _patched(piece: FileSlice) -> bytes:
    """What a slice's bytes are, the plain way."""
    data = bytearray(os.pread(piece.source.fd, piece.size, piece.offset))
    for mark in piece.marks:
        data[mark : mark + len(piece.patch)] = piece.patch
    return bytes(data)


def _joined(pieces: list) -> bytes:
    return b"".join(
        b"".join(map(bytes, p))
        if isinstance(p, list)
        else _patched(p)
        if isinstance(p, FileSlice)
        else bytes(p)
        for p in pieces
    )


@settings(max_examples=examples(0.2), deadline=None)
@given(
    sizes=st.lists(
        st.sampled_from([0, 1, 17, ALIGN - 1, ALIGN, ALIGN + 1, STAGE - 3, STAGE]), max_size=8
    )
)
def test_bytes_written_around_the_page_cache_are_the_bytes_given(sizes, tmp_path_factory):
    """Whole staged blocks around the cache, the tail through it: the same file either way."""
    folder = tmp_path_factory.mktemp("direct")
    pieces = _pieces(sizes, folder)
    path = folder / "decisions.ndjson"
    out = BackgroundFile(path.open("wb", buffering=1 << 20), depth=2)
    direct = out.direct
    assert (direct is not None) == _takes_o_direct(folder)
    for piece in pieces:
        out.write(piece)
    out.finish()
    out.wait()
    assert path.read_bytes() == _joined(pieces)
    if direct is not None and sum(sizes) >= STAGE:  # a whole block went around the cache
        assert direct.buffer.closed


def test_a_file_system_that_refuses_o_direct_gets_the_bytes_through_the_cache(
    tmp_path, monkeypatch
):
    if not _takes_o_direct(tmp_path):
        pytest.skip("this file system does not take O_DIRECT")
    real_write = os.write
    refused: list[int] = []

    def write(fd: int, data) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(len(data))
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    pieces = _pieces([STAGE, 5, STAGE + 7, STAGE * 2 + 3], tmp_path)
    path = tmp_path / "decisions.ndjson"
    out = BackgroundFile(path.open("wb"), depth=1)
    for piece in pieces:
        out.write(piece)
    out.close()
    assert refused == [STAGE]  # refused once, then through the cache
    assert path.read_bytes() == _joined(pieces)


def test_a_short_write_around_the_cache_carries_on_through_it(tmp_path, monkeypatch):
    if not _takes_o_direct(tmp_path):
        pytest.skip("this file system does not take O_DIRECT")
    real_write = os.write
    calls: list[bool] = []

    def write(fd: int, data) -> int:
        direct = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)
        calls.append(direct)
        if direct and len(calls) == 1:
            return real_write(fd, data[: ALIGN * 3])  # short, still aligned
        if direct and len(calls) == 2:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)
            done = real_write(fd, data[:100])  # short and unaligned
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_DIRECT)
            return done
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    pieces = _pieces([STAGE * 2 + 9])
    path = tmp_path / "decisions.ndjson"
    out = BackgroundFile(path.open("wb"), depth=1)
    for piece in pieces:
        out.write(piece)
    out.close()
    assert calls[:2] == [True, True] and not any(calls[2:])
    assert path.read_bytes() == _joined(pieces)


def test_a_failed_write_around_the_cache_is_raised(tmp_path, monkeypatch):
    if not _takes_o_direct(tmp_path):
        pytest.skip("this file system does not take O_DIRECT")

    def write(fd: int, data) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", write)
    out = BackgroundFile((tmp_path / "decisions.ndjson").open("wb"), depth=1)
    with pytest.raises(OSError, match="No space left"):
        for _ in range(4):
            out.write(b"x" * STAGE)
        out.close()
    out.abort()
    assert out.handle.closed
