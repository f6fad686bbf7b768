"""Read one part of the input (a file, or a byte range of a large NDJSON file) into facts.

    plan(files)            the parts to read, in input order: whole files, large NDJSON files cut
                           into ranges at line ends (RANGE_BYTES each, whatever the number of
                           processes, so the parts never depend on --jobs)
    read_chunk(chunk, o)   one part's `ChunkFacts` (any process may run it)
    read_ndjson_lines(...) the same from any iterable of NDJSON lines (with a name and the number
                           of the first line): the entry point for engines that split the input
                           themselves
    read_json_bytes(...)   the same from a JSON file's bytes read elsewhere

Most lines are never parsed (`facts.prefilter`): a file whose Bulk manifest entry or name says a
type no rule reads (``Claim.000.ndjson``) and whose first line is of that type is only counted;
in other files a line whose type no rule reads is counted, and a Condition, Observation, Procedure
or DocumentReference line that carries no code of any codelist is counted and dropped. Patient,
ServiceRequest and Task lines are always parsed, and so is every line in doubt.

Line numbers in a range other than a file's first are counted from the range's start; the merge
(`sources.collect`) adds the lines of the ranges before it. A skipped line whose ids match a
record this part kept is parsed (it may replace that record); its ids are also kept
(`ChunkFacts.skipped_ids`), so that the merge can tell when it may replace a record an earlier
part kept, and then read this part again with every line parsed.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import threading
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from pathlib import Path
from typing import BinaryIO

import orjson

from ips_screen.facts.extract import SUBJECT_FIELD, CodeIndex, PatientInfo
from ips_screen.facts.model import Record
from ips_screen.facts.prefilter import (
    Block,
    Prefilter,
    candidate_ids,
    plain_lines,
    resource_type,
)
from ips_screen.limits import DEFAULT_MAX_LINE
from ips_screen.reading import MAX_SKIPPED, ReadReport, Skipped, gc_paused
from ips_screen.sources.files import NOT_DATA, Reader, file_kind
from ips_screen.sources.population import PopulationBuilder
from ips_screen.sources.resource_types import R4_RESOURCE_TYPES

# NDJSON files larger than this are read in ranges of about this size (the buffer each process
# reads a part into, `_read_block`, is about as large).
RANGE_BYTES = 16 << 20
NEEDED_TYPES = frozenset(SUBJECT_FIELD) | {"Patient"}
ALWAYS_PARSED = frozenset({"Patient", "ServiceRequest", "Task"})  # never dropped unparsed
_BULK_NAME = re.compile(r"^([A-Z][A-Za-z]{0,63})(?:\.\d+)?\.ndjson(?:\.gz)?$")
_BOM = b"\xef\xbb\xbf"
_NEWLINE_SEARCH = 1 << 16


@dataclass(frozen=True)
class Chunk:
    """One part of the input: a whole file, or bytes [start, end) of an NDJSON file."""

    path: str
    declared: str | None = None  # the type the Bulk manifest or the file name says it holds
    start: int = 0
    end: int | None = None  # None: to the end of the file
    part: int = 0  # 0: the file's first part (its line numbers are the file's)


@dataclass(frozen=True)
class ReadOptions:
    index: CodeIndex
    skip_invalid: bool = False
    max_line: int = DEFAULT_MAX_LINE
    shortcuts: bool = True  # False: parse every line (the exact path the shortcuts must equal)


@dataclass
class ChunkFacts:
    """What one part of the input holds: the facts (as `PopulationBuilder` keeps them), counts,
    problems with the line each was met on, and the hashes of the refs skipped lines may carry."""

    chunk: Chunk
    patients: dict[str, PatientInfo] = field(default_factory=dict)
    records: dict[str, tuple[str | None, Record]] = field(default_factory=dict)
    dropped: set[str] = field(default_factory=set)
    skipped_ids: list[bytes] = field(default_factory=list)  # ids of the lines not parsed
    skipped_blob: bytes = b""  # the same, one per line (one bytes object: cheap to send)
    lines: int = 0
    files_read: int = 0
    resources_read: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    problems: list[tuple[Skipped, int | None]] = field(default_factory=list)
    problem_count: int = 0
    fatal: tuple[Skipped, int | None] | None = None  # refused whatever --skip-invalid says


def id_of(ref: str) -> bytes:
    """The id of a "Type/id", as the bytes of a line hold it (`ChunkFacts.skipped_ids`)."""
    return ref.split("/", 1)[1].encode()


# --- planning -----------------------------------------------------------------------------------


def declared_types(files: Iterable[Path]) -> dict[Path, str]:
    """The type each NDJSON file says it holds: its entry in a Bulk ``manifest.json`` beside it,
    else its name (``Type.ndjson``, ``Type.000.ndjson``, ``.gz``)."""
    out: dict[Path, str] = {}
    manifests: dict[Path, dict[str, str]] = {}
    for path in files:
        if file_kind(path) == "json":
            continue
        folder = path.parent
        if folder not in manifests:
            manifests[folder] = _manifest_types(folder / "manifest.json")
        rtype = manifests[folder].get(path.name)
        if rtype is None:
            found = _BULK_NAME.match(path.name)
            rtype = found[1] if found else None
        if rtype in R4_RESOURCE_TYPES and rtype != "Bundle":
            out[path] = rtype
    return out


def declared_type_of_name(name: str) -> str | None:
    """The type a Bulk file's name says it holds (``Type.ndjson``, ``Type.000.ndjson``, ``.gz``),
    when it names one: what `declared_types` falls back to, for files known by name only (read
    elsewhere, e.g. by Spark from a URI)."""
    found = _BULK_NAME.match(name)
    rtype = found[1] if found else None
    return rtype if rtype in R4_RESOURCE_TYPES and rtype != "Bundle" else None


def _manifest_types(path: Path) -> dict[str, str]:
    assert path.name in NOT_DATA
    try:
        manifest = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    outputs = manifest.get("output") if isinstance(manifest, dict) else None
    found: dict[str, str] = {}
    for entry in outputs if isinstance(outputs, list) else ():
        if isinstance(entry, dict):
            rtype, url = entry.get("type"), entry.get("url")
            if isinstance(rtype, str) and isinstance(url, str):
                found[url.rstrip("/").rsplit("/", 1)[-1]] = rtype
    return found


def plan(
    files: list[Path],
    range_bytes: int | None = None,
    declared: Mapping[Path, str] | None = None,
) -> list[Chunk]:
    """The parts to read, in input order (ranges of `range_bytes`, default RANGE_BYTES);
    `declared`: the type of files the caller knows (e.g. from the manifest of a Bulk export it
    downloaded), over what `declared_types` finds."""
    range_bytes = range_bytes or RANGE_BYTES
    known = {p: t for p, t in (declared or {}).items() if t in R4_RESOURCE_TYPES and t != "Bundle"}
    declared = {**declared_types(files), **known}
    chunks: list[Chunk] = []
    for path in files:
        rtype = declared.get(path)
        if file_kind(path) != "ndjson":
            chunks.append(Chunk(str(path), rtype))
            continue
        cuts = _line_cuts(path, range_bytes)
        for part, (start, end) in enumerate(zip([0, *cuts], [*cuts, None], strict=True)):
            chunks.append(Chunk(str(path), rtype, start, end, part))
    return chunks


def _line_cuts(path: Path, range_bytes: int) -> list[int]:
    """Offsets just after a newline, about every `range_bytes` bytes (none for a small file)."""
    try:
        size = path.stat().st_size
    except OSError:
        return []  # reading it reports the problem
    cuts: list[int] = []
    with path.open("rb") as handle:
        target = range_bytes
        while target < size:
            handle.seek(target - 1)
            block = handle.read(_NEWLINE_SEARCH)
            at = block.find(b"\n")
            if at == -1:
                target += _NEWLINE_SEARCH  # a long line: look further
                continue
            cut = target + at
            if cut >= size:
                break
            cuts.append(cut)
            target = cut + range_bytes
    return cuts


# --- reading ------------------------------------------------------------------------------------


class _Stop(Exception):
    """The first problem when problems are not skipped: the part stops there."""


class _ChunkReport(ReadReport):
    """A read report that notes the line of each problem, and stops at the first one unless
    problems are skipped."""

    def __init__(self, skip: bool) -> None:
        super().__init__(skip_invalid=True)
        self.skip = skip
        self.line: int | None = None
        self.lines: list[int | None] = []

    def problem(self, where: str, problem: str) -> None:
        if len(self.skipped) < MAX_SKIPPED:
            self.lines.append(self.line)
        super().problem(where, problem)
        if not self.skip:
            raise _Stop


def read_chunk(chunk: Chunk, options: ReadOptions) -> ChunkFacts:
    """Read one part of the input into its facts."""
    path = Path(chunk.path)
    report = _ChunkReport(options.skip_invalid)
    builder = PopulationBuilder(None, report, index=options.index, track_drops=True)
    facts = ChunkFacts(chunk)
    reader = Reader(report, options.max_line)
    with gc_paused(), suppress(_Stop):
        if file_kind(path) == "json":
            for resource, where, resolve in reader.json_file(path):
                builder.add(resource, where, resolve)
        else:
            _read_ndjson(chunk, options, report, builder, facts, reader)
    if facts.skipped_ids and builder.records:
        kept = {id_of(ref) for ref in builder.records}
        if not kept.isdisjoint(facts.skipped_ids):  # a skipped line may be a copy of a kept record
            return read_chunk(chunk, replace(options, shortcuts=False))
    return _finish(facts, report, builder)


def read_ndjson_lines(
    lines: Iterable[bytes],
    name: str,
    options: ReadOptions,
    *,
    first_line: int = 1,
    declared: str | None = None,
) -> ChunkFacts:
    """The facts of NDJSON lines read elsewhere: `name` and `first_line` (the number of the
    first line in its file; 1: they start the file) locate problems, `declared` is the type the
    file says it holds (see `declared_types`). Merge the parts of an input, in input order, with
    `sources.parallel.merge`."""
    chunk = Chunk(name, declared)
    report = _ChunkReport(options.skip_invalid)
    builder = PopulationBuilder(None, report, index=options.index, track_drops=True)
    facts = ChunkFacts(chunk)
    lines_reader = _LineReader(chunk, options, report, builder, facts, Reader(report))
    with gc_paused(), suppress(_Stop):
        lines_reader.run(lines, first_line)
    return _finish(facts, report, builder)


def read_json_bytes(data: bytes, name: str, options: ReadOptions) -> ChunkFacts:
    """The facts of a JSON file's bytes (a resource or a Bundle) read elsewhere: `name` locates
    problems. Merge it with the other parts with `sources.parallel.merge`."""
    report = _ChunkReport(options.skip_invalid)
    builder = PopulationBuilder(None, report, index=options.index, track_drops=True)
    facts = ChunkFacts(Chunk(name))
    with gc_paused(), suppress(_Stop):
        for resource, where, resolve in Reader(report, options.max_line).json_data(data, name):
            builder.add(resource, where, resolve)
    return _finish(facts, report, builder)


def _finish(facts: ChunkFacts, report: _ChunkReport, builder: PopulationBuilder) -> ChunkFacts:
    facts.patients, facts.records, facts.dropped = (
        builder.patients,
        builder.records,
        builder.dropped,
    )
    facts.files_read += report.files_read
    facts.resources_read += report.resources_read
    facts.by_type.update(report.by_type)
    facts.problems = list(zip(report.skipped, report.lines, strict=True))
    facts.problem_count = report.skipped_count
    if facts.skipped_ids:
        facts.skipped_blob = b"\n".join(facts.skipped_ids)
        facts.skipped_ids = []
    return facts


def _read_ndjson(
    chunk: Chunk,
    options: ReadOptions,
    report: _ChunkReport,
    builder: PopulationBuilder,
    facts: ChunkFacts,
    reader: Reader,
) -> None:
    path = Path(chunk.path)
    gz = file_kind(path) == "ndjson.gz"
    lines = _LineReader(chunk, options, report, builder, facts, reader, check_kept=False)
    try:
        with gzip.open(path, "rb") if gz else path.open("rb") as handle:
            if chunk.part == 0:
                report.files_read += 1
            source: BinaryIO = handle
            if not gz:  # a range (or a file) of at most about RANGE_BYTES: read in one go
                data = _read_block(handle, chunk)
                if _whole_block(data, chunk, options, report, facts, lines):
                    return
                source = io.BytesIO(data)
            lines.run(iter(partial(source.readline, options.max_line + 1), b""), 1)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        what = "cannot read the file"
        if gz and not isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            what = "not a readable gzip file"
        report.line = facts.lines + 1
        report.problem(f"{path}:{facts.lines + 1}", f"{what} ({_os_error(exc)})")


_LOCAL = threading.local()  # each thread's read buffer, reused by every part it reads


def release_buffer() -> None:
    """Give back the memory of this thread's read buffer (at the end of a read)."""
    _LOCAL.__dict__.pop("buffer", None)


def _read_block(handle: BinaryIO, chunk: Chunk) -> bytearray:
    """The bytes of a part, in a buffer reused by every part the thread reads (fresh memory for
    each part costs more than the copy itself); valid until its next call."""
    buffer = getattr(_LOCAL, "buffer", None)
    if buffer is None:
        buffer = _LOCAL.buffer = bytearray()
    handle.seek(chunk.start)
    if chunk.end is None:
        size = max(0, os.fstat(handle.fileno()).st_size - chunk.start)
    else:
        size = chunk.end - chunk.start
    if len(buffer) > size:
        del buffer[size:]  # keeps its memory unless far smaller
    elif len(buffer) < size:
        buffer.extend(bytes(size - len(buffer)))
    with memoryview(buffer) as view:
        got = handle.readinto(view)
    if got < size:
        del buffer[got:]
    elif chunk.end is None:
        buffer += handle.read()  # the file grew since its size was taken
    return buffer


def _whole_block(
    data: bytearray,
    chunk: Chunk,
    options: ReadOptions,
    report: _ChunkReport,
    facts: ChunkFacts,
    lines: _LineReader,
) -> bool:
    """Read a block of a Bulk file from the whole bytes when they leave no doubt: a file of a
    type no rule reads, only counted; or a file of a prefiltered type whose lines are all plain
    (`prefilter.Block`), parsing only the lines with a code that may be in a codelist. False:
    read it line by line."""
    rtype = chunk.declared
    if not options.shortcuts or rtype is None or not data or len(data) > options.max_line:
        return False
    if rtype not in NEEDED_TYPES:
        first = data[: data.find(b"\n") + 1 or len(data)]
        if first.startswith(_BOM) or first.isspace():
            return False
        if (resource_type(first) or _parsed_type(first)) != rtype:
            return False
        count = plain_lines(data)  # every line ends in "}": none is blank
        if count is None:
            return False
        report.resources_read += count
        report.by_type[rtype] += count
        facts.lines = count
        return True
    if rtype in ALWAYS_PARSED:
        return False
    block = Block.of(data, rtype, options.max_line)
    if block is None:
        return False
    hits = block.hits(_prefilter(options.index))
    start_of_file = chunk.part == 0
    starts, ids = block.starts, block.ids
    for n in hits:
        lineno = n + 1
        end = starts[n + 1] if n + 1 < len(starts) else len(data)
        report.line = lineno
        for resource, where, resolve in lines.reader.line(
            data[starts[n] : end], chunk.path, lineno, first=lineno == 1 and start_of_file
        ):
            lines.builder.add(resource, where, resolve)
    skipped = len(ids) - len(hits)
    report.resources_read += skipped
    report.by_type[rtype] += skipped
    if hits:
        parsed = set(hits)
        facts.skipped_ids.extend(rid for n, rid in enumerate(ids) if n not in parsed)
    else:
        facts.skipped_ids.extend(ids)
    facts.lines = len(ids)
    return True


def _os_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class _LineReader:
    """The per-line work of an NDJSON part: count, skip or parse."""

    def __init__(
        self,
        chunk: Chunk,
        options: ReadOptions,
        report: _ChunkReport,
        builder: PopulationBuilder,
        facts: ChunkFacts,
        reader: Reader,
        *,
        check_kept: bool = True,
    ) -> None:
        """`check_kept`: parse a line the prefilter would skip when its ids match a record kept
        so far (False: the caller checks the part's skipped ids once, at its end)."""
        self.check_kept = check_kept
        self.chunk, self.options, self.report = chunk, options, report
        self.builder, self.facts, self.reader = builder, facts, reader
        self.prefilter = _prefilter(options.index) if options.shortcuts else None
        self.lineno = 0

    def run(self, lines: Iterable[bytes], first_line: int) -> None:
        try:
            self._lines(lines, first_line)
        finally:
            self.facts.lines = self.lineno - first_line + 1

    def _lines(self, lines: Iterable[bytes], first_line: int) -> None:
        chunk, report, builder, facts = self.chunk, self.report, self.builder, self.facts
        max_line, name, known = self.options.max_line, chunk.path, R4_RESOURCE_TYPES
        prefilter, by_type = self.prefilter, report.by_type
        start_of_file = chunk.part == 0 and first_line == 1
        declared = chunk.declared if prefilter is not None else None
        # A file of a type no rule reads, whose first line says so, is only counted.
        count_only: bool | None = None if declared and declared not in NEEDED_TYPES else False
        records = builder.records if self.check_kept else None
        skipped_ids = facts.skipped_ids
        self.lineno = first_line - 1
        for lineno, line in enumerate(lines, first_line):
            self.lineno = lineno
            if len(line) > max_line and not line.endswith(b"\n"):
                facts.fatal = (
                    Skipped(
                        f"{name}:{lineno}",
                        f"a line longer than {max_line} bytes (the line size cap)",
                    ),
                    lineno,
                )
                raise _Stop
            if lineno == 1 and start_of_file and line.startswith(_BOM):
                line = line[3:]
            if not line or line.isspace():
                continue
            if prefilter is not None:
                if count_only:
                    report.resources_read += 1
                    by_type[declared] += 1  # type: ignore[index]
                    continue
                if count_only is None:  # the first line: is it of the declared type?
                    rtype = resource_type(line)
                    count_only = (rtype or _parsed_type(line)) == declared
                    if count_only:
                        report.resources_read += 1
                        by_type[declared] += 1  # type: ignore[index]
                        continue
                else:
                    rtype = resource_type(line, declared)
                if rtype is not None and rtype in known and rtype != "Bundle":
                    if rtype not in NEEDED_TYPES:
                        report.resources_read += 1
                        by_type[rtype] += 1
                        continue
                    if rtype not in ALWAYS_PARSED and not prefilter.maybe_shaped(line):
                        ids = candidate_ids(line)
                        if ids is not None and (not records or not _kept(rtype, ids, records)):
                            report.resources_read += 1
                            by_type[rtype] += 1
                            skipped_ids.extend(ids)
                            continue
            report.line = lineno
            for resource, where, resolve in self.reader.line(
                line, name, lineno, first=lineno == 1 and start_of_file
            ):
                builder.add(resource, where, resolve)


@lru_cache(maxsize=4)
def _prefilter(index: CodeIndex) -> Prefilter:
    return Prefilter(index)  # one per index, so its cache serves every part a process reads


def _kept(rtype: str, ids: list[bytes], records: dict) -> bool:
    """Whether a record kept so far may be the resource of a line with these ids."""
    try:
        return any(f"{rtype}/{value.decode('utf-8')}" in records for value in ids)
    except UnicodeDecodeError:
        return True


def _parsed_type(line: bytes) -> str | None:
    """The resource type of a line the bytes left in doubt, by parsing it."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    rtype = value.get("resourceType") if isinstance(value, dict) else None
    return rtype if isinstance(rtype, str) else None
