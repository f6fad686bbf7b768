"""`nightly.last_lines.LastLines`: the last run's decisions.ndjson read forward in patient order,
as the nightly screen asks for the lines of the decisions it reuses, a run of patients at a
time."""

from __future__ import annotations

import mmap
from pathlib import Path

import orjson
import pytest

from ips_screen.nightly import last_lines
from ips_screen.nightly.last_lines import LastLines
from ips_screen.outputs.file_slice import FileSlice, file_stamp
from ips_screen.store.decision_cache import LinesFile

DAY, TONIGHT = "2026-11-26", "2026-11-27"
NEW = b'{"as_of":"2026-11-27"'


def line(pid: str, filler: str = "x", day: str = DAY) -> bytes:
    decision = {
        "as_of": day,
        "flags": ['"patient":"Patient/zz","priority":'],  # the key's words inside a value
        "outcome": "excluded",
        "patient": f"Patient/{pid}",
        "priority": None,
        "trace": [filler * 50],
    }
    return orjson.dumps(decision, option=orjson.OPT_SORT_KEYS)


def reader(lines: list[bytes], folder: Path | None = None, tail: bytes = b"") -> LastLines:
    """A reader of these lines: in memory, or (`folder`) of a file, mapped as `open` maps it."""
    data = b"".join(x + b"\n" for x in lines) + tail
    if folder is None:
        return LastLines(data, DAY)
    (folder / "decisions.ndjson").write_bytes(data)
    opened = LastLines.open(folder, recorded(folder / "decisions.ndjson"))
    assert opened is not None
    return opened


def recorded(path: Path) -> LinesFile:
    size, mtime_ns, inode = file_stamp(path)
    return LinesFile(path.name, DAY, size, mtime_ns, inode)


@pytest.fixture(params=["in memory", "mapped"])
def folder(request, tmp_path: Path) -> Path | None:
    return tmp_path if request.param == "mapped" else None


def taken(lines: FileSlice | bytes | bytearray | None) -> bytes:
    """A stretch's bytes: copied in memory, or named in the mapped file for the writer to read."""
    assert lines is not None
    return bytes(lines)


def tonight(*lines: bytes) -> bytes:
    return b"".join(x.replace(DAY.encode(), TONIGHT.encode(), 1) + b"\n" for x in lines)


PIDS = ["a", "b", "d\\e", "f", 'q"uote', "r", "s", "é"]  # in id order, as the file is


def test_runs_of_patients_get_their_lines_with_tonights_date_and_others_are_passed_over(folder):
    lines = [line(pid, str(n)) for n, pid in enumerate(PIDS)]
    last = reader(lines, folder)
    assert last.lines_of(["a"], NEW) == tonight(lines[0])
    # b was evaluated tonight: its line is passed over
    assert last.lines_of(["d\\e", "f", 'q"uote'], NEW) == tonight(*lines[2:5])
    assert last.lines_of(["s", "é"], NEW) == tonight(*lines[6:])  # r passed over
    assert last.used == 6 and not last.broken


def test_a_stretch_with_a_line_of_someone_else_inside_is_read_line_by_line():
    """c was removed from the practice since the last run: its line lies between b's and d's."""
    lines = [line(pid) for pid in ("a", "b", "c", "d", "e")]
    last = reader(lines)
    assert last.lines_of(["a", "b", "d", "e"], NEW) == tonight(*lines[:2], *lines[3:])


@pytest.mark.parametrize(
    "bad",
    [
        line("c", day="2026-11-25"),  # another night's line
        b'{"as_of":"2026-11-26","outcome":"excluded"}',  # no patient where the format puts it
        b'{"as_of":"2026-11-26","patient":"Patient/\\x","priority":null}',  # not JSON
    ],
)
def test_a_line_not_shaped_as_written_stops_the_reading(bad):
    last = reader([line("a"), line("b"), bad, line("d")])
    assert last.lines_of(["a", "b"], NEW) is not None
    assert last.lines_of(["d"], NEW) is None and last.broken  # the screen evaluates d
    assert last.lines_of(["d"], NEW) is None


def test_a_stretch_whose_middle_line_has_another_date_is_not_taken_whole():
    lines = [line("a"), line("b", day="2026-11-25"), line("c")]
    last = reader(lines)
    assert last.lines_of(["a", "b", "c"], NEW) is None and last.broken


def test_a_patient_the_file_lacks_stops_the_reading():
    last = reader([line("a"), line("c")])
    assert last.lines_of(["b", "c"], NEW) is None and last.broken


def test_a_last_line_without_its_line_end_is_not_used():
    last = reader([line("a")], tail=line("b"))
    assert last.lines_of(["a"], NEW) is not None
    assert last.lines_of(["b"], NEW) is None and last.broken


def test_a_stretch_known_by_its_ends_and_count_gets_its_lines_in_one_piece(folder):
    lines = [line(pid, str(n)) for n, pid in enumerate(PIDS)]
    last = reader(lines, folder)
    assert taken(last.stretch("a", "a", 1, NEW)) == tonight(lines[0])
    assert taken(last.stretch("d\\e", 'q"uote', 3, NEW)) == tonight(*lines[2:5])  # b passed
    assert taken(last.stretch("s", "é", 2, NEW)) == tonight(*lines[6:])
    assert last.used == 6 and not last.broken


def test_a_stretch_with_a_line_of_someone_else_inside_is_not_taken_and_then_read_by_id():
    """c was removed from the practice since the last run: the store's three patients from b to
    e are b, d and e, but the file has four lines there. Nothing is taken, and nothing lost."""
    lines = [line(pid) for pid in ("a", "b", "c", "d", "e")]
    last = reader(lines)
    assert last.stretch("a", "a", 1, NEW) == tonight(lines[0])
    assert last.stretch("b", "e", 3, NEW) is None and not last.broken
    assert last.lines_of(["b", "d", "e"], NEW) == tonight(lines[1], *lines[3:])


@pytest.mark.parametrize(
    ("first", "last_id", "count"),
    [
        ("b", "c", 2),  # the second line is e's
        ("a", "b", 2),  # no line for a: the file starts at b
        ("b", "f", 4),  # the file ends first
        ("b", "e", 3),  # d's line is another night's
    ],
)
def test_a_stretch_the_file_does_not_hold_as_asked_is_not_taken(first, last_id, count):
    lines = [line("b"), line("d", day="2026-11-25"), line("e")] if count == 3 else []
    last = reader(lines or [line("b"), line("e")])
    assert last.stretch(first, last_id, count, NEW) is None


def test_the_pages_of_a_mapped_file_passed_over_are_let_go_and_the_lines_still_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(last_lines, "DROP_BYTES", mmap.PAGESIZE)
    pids = [f"p{n:04d}" for n in range(400)]
    lines = [line(pid, str(n)) for n, pid in enumerate(pids)]
    last = reader(lines, tmp_path)
    got = [last.stretch(pids[n], pids[n + 9], 10, NEW) for n in range(0, 200, 10)]
    got.append(last.lines_of(pids[200:], NEW))
    assert b"".join(map(taken, got)) == tonight(*lines)
    assert last.dropped > len(b"".join(lines)) // 2
    last.close()


def test_an_empty_file_of_a_practice_with_no_patients_is_read_as_empty(tmp_path: Path):
    last = reader([], tmp_path)
    assert last.lines_of(["a"], NEW) is None
    last.close()


def test_a_stretch_of_a_mapped_file_is_named_not_copied_and_read_after_the_reader_closes(
    tmp_path: Path,
):
    lines = [line(pid, str(n)) for n, pid in enumerate(PIDS)]
    last = reader(lines, tmp_path)
    piece = last.stretch("b", "f", 3, NEW)
    assert isinstance(piece, FileSlice) and piece.size == sum(len(x) + 1 for x in lines[1:4])
    last.close()
    (tmp_path / "decisions.ndjson").unlink()
    assert bytes(piece) == tonight(*lines[1:4])
