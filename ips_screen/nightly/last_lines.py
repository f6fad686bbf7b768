"""The decisions.ndjson of the last completed run, read back in patient order: where a night
takes the lines of the decisions it reuses (but for the proposed ones, whose lines the store
keeps: store/decision_cache.py).

Every night writes every patient's decision, one line each, in patient-id order, and a reused
decision's line is its line of the night before with only its leading as-of date changed. So the
last run's file holds, for each patient whose cached decision is still in the store, that
decision's line with the last run's date. The screen asks for runs of consecutive reused patients
as it walks them in the same order: one pass over the file, mapped into memory (nothing of it is
read into the job's memory but the stretches it takes, from where the page cache holds them; the
pages passed over are let go every DROP_BYTES, so the job's memory does not grow with the file),
and a stretch of lines given in one piece with tonight's date written into each line (asked for
by id, `lines_of`: copied; or by its first and last id and its count, `stretch`: named, for the
writer of tonight's file to read on its own thread, outputs/file_slice.py). Keeping these
lines in the store as well doubled what a full night wrote to SQLite and what an incremental
night read from it.

The file is used only when it is certainly that line for every cached decision it is read for
(`LastLines.open` checks what the store recorded when the run finished, see
`store.decision_cache.LinesFile`):

- a run records its file only after its outputs are in place, with its screen's generation, and
  the file is read only for cached decisions of that generation or older: those a run that
  failed half-way cached are younger (the next night evaluates them, but the proposed ones,
  whose line the store keeps);
- the file must be where it was and have the size, modification time and inode it had, when
  it is opened and still each time lines are taken from it and written: should something else
  cut it shorter or write over it during the night, the night stops with a message
  (`outputs.file_slice.SourceFile.check`), and the next finds it changed;
- each line read must start with the recorded date, and the lines that begin and end each stretch
  taken must name their patients where the format puts it (`"patient":"Patient/<id>","priority":`);
  a line that does not, or a patient the file lacks, makes `lines_of` return None and the screen
  evaluate those patients there and then.
"""

from __future__ import annotations

import logging
import mmap
import os
from pathlib import Path

import orjson

from ips_screen.nightly.deciding import date_prefix
from ips_screen.outputs.file_slice import FileSlice, SourceFile
from ips_screen.store.decision_cache import LinesFile

log = logging.getLogger("ips_screen.nightly")

DROP_BYTES = 64 << 20  # pages of the file passed over that are let go at a time
_DATE_AT = len(date_prefix("")) - 1  # where a line's date starts (after date_prefix's quote)
_PATIENT = b'"patient":"Patient/'
_AFTER = b'","priority":'


class LastLines:
    """A forward-only reader of the last run's decisions.ndjson (see the module)."""

    def __init__(self, data: bytes | mmap.mmap, day: str, source: SourceFile | None = None) -> None:
        """`data`: the file's bytes (mapped: `open`); `source`: the file open, for the stretches
        to be read by the output's writer (`stretch`; None: copied here)."""
        self.buf = data
        self.source = source
        self.length = len(data)
        self.prefix = date_prefix(day)
        self.pos = 0  # where the next unread line starts
        self.dropped = 0  # the mapped pages before this were let go (`_drop`)
        self.broken = False  # a line not shaped as expected: nothing more is read
        self.current: tuple[str, int, int] | None = None  # (patient id, start, end) in buf
        self.used = 0

    @classmethod
    def open(cls, state_dir: Path, recorded: LinesFile | None) -> LastLines | None:
        """The reader of the file `recorded`, when it is still that file (as opened: what
        identifies it is read from the open file, then mapped); None otherwise."""
        if recorded is None:
            return None
        path = state_dir / recorded.path
        try:  # not blocking: a named pipe put in its place would wait for a writer
            source = SourceFile(os.open(path, os.O_RDONLY | os.O_NONBLOCK), str(path))
            if source.stamp != (recorded.size, recorded.mtime_ns, recorded.inode):
                log.info("the last run's decisions.ndjson changed: its patients are evaluated")
                return None
            if not recorded.size:
                return cls(b"", recorded.day)
            data = mmap.mmap(source.fd, recorded.size, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # ValueError: cut shorter since (mmap's length)
            log.info("the last run's decisions.ndjson is gone: its patients are evaluated")
            return None
        return cls(data, recorded.day, source)

    def close(self) -> None:
        """Unmap the file (the stretches still to be written hold it open)."""
        if isinstance(self.buf, mmap.mmap):
            self.buf.close()
        self.source = None

    def lines_of(self, pids: list[str], prefix: bytes) -> bytes | None:
        """The lines of these patients (consecutive in id order; lines of patients before them
        are passed over), each with `prefix` in place of its date prefix and with its line end,
        in one piece; None when the file lacks one of them (nothing more is read then).

        A stretch of lines is taken whole when its first and last lines are those of the first
        and last patient asked and it has as many lines as patients: the file's ids are unique
        and in order, and holds a line for every one of them, so the lines between are theirs."""
        self._check()
        pieces = []
        done, wanted, head = 0, len(pids), self.prefix
        while done < wanted:
            if not self._seek(pids[done]):
                self._break(f"it has no line for a patient it should ({done} of {wanted})")
                return None
            assert self.current is not None
            buf, length, start, end = self.buf, self.length, self.current[1], self.current[2]
            starts = [start]
            last_end = end
            while (
                len(starts) < wanted - done
                and (after := buf.find(b"\n", last_end + 1, length)) >= 0
            ):
                starts.append(last_end + 1)
                last_end = after
            count = len(starts)
            if count > 1 and (
                self._pid_at(starts[-1], last_end) != pids[done + count - 1]
                or not all(_starts(buf, head, at) for at in starts)
            ):
                count, last_end = 1, end  # not that stretch: one line at a time here
            self.current = None
            pieces.append(self._take(starts[:count], last_end, prefix))
            done += count
        return b"".join(pieces)

    def stretch(
        self, first: str, last: str, count: int, prefix: bytes
    ) -> FileSlice | bytearray | None:
        """The lines of `count` patients in a row, from `first` to `last`, as `lines_of` gives
        them, when the file's `count` lines from `first`'s end with `last`'s (then they are
        theirs, as in `lines_of`); None, with nothing taken, when they do not (lines of patients
        no longer in the store between them) or the file has no line for `first`: ask
        `lines_of` for them by id then. From a file (`open`), the lines are not copied here but
        named, for the output's writer to read (`outputs.file_slice`)."""
        self._check()
        if not self._seek(first):
            return None
        assert self.current is not None
        self.pos, self.current = self.current[1], None  # the first line is unread again
        ends = self._line_ends(count)
        buf, head = self.buf, self.prefix
        starts = [self.pos, *(end + 1 for end in ends[:-1])]
        if (
            len(ends) < count
            or self._pid_at(starts[-1], ends[-1]) != last
            or not all(_starts(buf, head, at) for at in starts)
        ):
            return None
        return self._take(starts, ends[-1], prefix, named=True)

    def _take(
        self, starts: list[int], last_end: int, prefix: bytes, *, named: bool = False
    ) -> FileSlice | bytearray:
        """The lines starting at `starts` (in a row, the last ending at `last_end`), each with
        tonight's date from `prefix` in place of its own, in one piece: `named` in the file for
        the output's writer to read, when it is open (`source`), else a copy; the reading goes
        on after them."""
        first, date = starts[0], prefix[_DATE_AT:-1]
        marks = [at - first + _DATE_AT for at in starts]
        if named and self.source is not None:
            piece: FileSlice | bytearray = FileSlice(
                self.source, first, last_end + 1 - first, marks, date
            )
        else:
            with memoryview(self.buf) as view:
                piece = bytearray(view[first : last_end + 1])
            for mark in marks:
                piece[mark : mark + len(date)] = date
        self.pos = last_end + 1
        self.used += len(starts)
        self._drop()
        return piece

    def _check(self) -> None:
        """Stop the night (`SourceFile.check`) when the file changed since it was opened: a
        mapped file cut shorter ends the job with SIGBUS at the next page read past its end, and
        one written over would have the screen check other lines than are written. (A file cut
        while a stretch is being looked through still ends the job so: only reading the file
        into memory, rather than mapping it, would close that, at the cost of copying it.)"""
        if self.source is not None:
            self.source.check()

    def _line_ends(self, count: int) -> list[int]:
        """Where the next `count` lines end (fewer at the end of the file)."""
        buf, at, length, ends = self.buf, self.pos, self.length, []
        while len(ends) < count and (end := buf.find(b"\n", at, length)) >= 0:
            ends.append(end)
            at = end + 1
        return ends

    def _seek(self, pid: str) -> bool:
        """Whether the current line is `pid`'s, passing over the lines of patients before."""
        while not self.broken:
            current = self.current or self._next()
            if current is None:
                return False
            if current[0] == pid:
                return True
            if current[0] > pid:
                return False
            self.current = None
        return False

    def _next(self) -> tuple[str, int, int] | None:
        buf, pos = self.buf, self.pos
        end = buf.find(b"\n", pos, self.length)
        if end < 0:
            if pos < self.length:
                self._break("its last line has no line end")
            return None
        self.pos = end + 1
        pid = self._pid_at(pos, end) if _starts(buf, self.prefix, pos) else None
        if pid is None:
            self._break("a line is not shaped as expected")
            return None
        self.current = (pid, pos, end)
        return self.current

    def _pid_at(self, start: int, end: int) -> str | None:
        """The patient id of the line at buf[start:end] (None: not where the format puts it)."""
        buf = self.buf
        mark = buf.find(_PATIENT, start, end)
        stop = buf.find(_AFTER, mark, end) if mark >= 0 else -1
        if stop < 0:
            return None
        raw = bytes(buf[mark + len(_PATIENT) : stop])
        try:
            return orjson.loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode()
        except ValueError:
            return None

    def _drop(self) -> None:
        """Let go of the mapped pages passed over, DROP_BYTES at a time (they stay in the page
        cache; only this process's hold on them goes)."""
        buf = self.buf
        if not hasattr(buf, "madvise") or self.pos - self.dropped < DROP_BYTES:
            return  # bytes, or a system without madvise
        upto = self.pos - self.pos % mmap.PAGESIZE
        buf.madvise(mmap.MADV_DONTNEED, self.dropped, upto - self.dropped)
        self.dropped = upto

    def _break(self, why: str) -> None:
        log.warning(
            "the last run's decisions.ndjson cannot be read (%s): the patients whose line it "
            "held are evaluated",
            why,
        )
        self.broken = True


def _starts(buf: bytes | mmap.mmap, head: bytes, at: int) -> bool:
    """Whether `head` is at `at` in `buf` (a mapped file has no `startswith`)."""
    return buf.find(head, at, at + len(head)) == at
