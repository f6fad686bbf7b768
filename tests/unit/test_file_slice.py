"""`outputs.file_slice.FileSlice`: lines of the last run's decisions.ndjson that a night reuses,
read by the output's writing thread straight into its buffer with tonight's date written over
each line's, wherever its buffer happens to cut them."""

from __future__ import annotations

import gc
import os
import re
from pathlib import Path

import pytest

from ips_screen.errors import UserError
from ips_screen.outputs import background
from ips_screen.outputs.background import BackgroundFile
from ips_screen.outputs.file_slice import FileSlice, SourceFile

DATA = bytes(range(48, 48 + 60))  # "0123...": 60 distinct bytes
MARKS = [0, 7, 17, 50]  # 17 right after 7's patch ends; 50 at the very end
PATCH = b"ABCDEFGHIJ"


def expected(offset: int, size: int, marks: list[int]) -> bytes:
    data = bytearray(DATA[offset : offset + size])
    for mark in marks:
        data[mark : mark + len(PATCH)] = PATCH
    return bytes(data)


@pytest.fixture
def source(tmp_path: Path) -> SourceFile:
    path = tmp_path / "decisions.ndjson"
    path.write_bytes(DATA)
    os.utime(path, (1_700_000_000, 1_700_000_000))  # written long ago, as the last run's file
    return SourceFile(os.open(path, os.O_RDONLY), str(path))


def test_a_slice_read_in_two_parts_cut_anywhere_is_the_patched_bytes(source):
    piece = FileSlice(source, 0, 60, MARKS, PATCH)
    want = expected(0, 60, MARKS)
    for cut in range(61):  # through every patch, its first and last byte included
        buffer = bytearray(60)
        with memoryview(buffer) as view:
            piece.read_into(view[:cut], 0)
            piece.read_into(view[cut:], cut)
        assert bytes(buffer) == want, cut


def test_a_slice_from_inside_the_file_in_chunks_of_any_size_is_the_patched_bytes(source):
    piece = FileSlice(source, 5, 30, [3, 20], PATCH)
    for size in range(1, 32):
        assert b"".join(piece.chunks(size)) == expected(5, 30, [3, 20]), size
    assert bytes(piece) == expected(5, 30, [3, 20]) and len(piece) == 30


def test_a_file_shorter_than_its_slice_is_an_error_not_short_output(source, tmp_path):
    os.truncate(tmp_path / "decisions.ndjson", 40)
    with pytest.raises(UserError, match=r"decisions.ndjson was cut shorter while the night"):
        bytes(FileSlice(source, 0, 60, [], PATCH))


@pytest.mark.parametrize("offset", [0, 30])  # the slice itself written over, or the file beside
def test_a_file_written_over_since_it_was_opened_is_an_error_not_other_bytes(
    source, tmp_path, offset
):
    """The same size, other bytes: the screen checked lines the writer would not write."""
    with (tmp_path / "decisions.ndjson").open("r+b") as file:
        file.seek(offset)
        file.write(b"X" * 10)
    with pytest.raises(UserError, match=r"decisions.ndjson changed while the night read it"):
        bytes(FileSlice(source, 0, 20, [], PATCH))


def test_the_writer_writes_a_slice_after_its_reader_let_go_and_the_file_was_removed(
    tmp_path, monkeypatch
):
    """The night's cleanup may remove the last run's folder while its lines wait to be written:
    the slices hold the file open, and close it once written."""
    path = tmp_path / "old.ndjson"
    path.write_bytes(DATA)
    source = SourceFile(os.open(path, os.O_RDONLY))
    fd = source.fd
    pieces = [FileSlice(source, 0, 20, [0], PATCH), b"|", FileSlice(source, 20, 40, [30], PATCH)]
    del source
    path.unlink()
    for direct in (True, False):  # around the page cache, and through it
        if not direct:
            monkeypatch.setattr(background, "_O_DIRECT", 0)
        out_path = tmp_path / f"decisions-{direct}.ndjson"
        out = BackgroundFile(out_path.open("wb"), depth=1)
        assert direct or out.direct is None
        for piece in pieces:
            out.write(piece)
        out.finish()
        out.wait()
        assert out_path.read_bytes() == expected(0, 20, [0]) + b"|" + expected(20, 40, [30])
    os.fstat(fd)  # still open while the slices are held
    del pieces, piece
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)  # closed with the last slice of it


def test_a_slice_the_file_no_longer_holds_fails_the_write_with_a_message_naming_it(
    source, tmp_path
):
    """Raised where the job finishes its outputs, as one line for the user (errors.UserError)."""
    os.truncate(tmp_path / "decisions.ndjson", 10)
    out = BackgroundFile((tmp_path / "out.ndjson").open("wb"), depth=1)
    out.write(FileSlice(source, 0, 60, MARKS, PATCH))
    with pytest.raises(UserError, match=re.escape(f"{tmp_path / 'decisions.ndjson'} was cut")):
        out.close()
