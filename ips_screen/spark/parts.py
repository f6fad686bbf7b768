"""The read stage's steps on one part of the input, plain Python: what the Spark read tasks and
the driver run (the tests call them directly too).

A part is read by the single machine's fast reader (`sources.chunks`): a local file or a byte
range of a large NDJSON file (`chunks.plan`, `chunks.read_chunk`), or a whole file whose bytes
Spark read from a URI (`read_uri_file`, through `chunks.read_ndjson_lines` or, for a JSON file,
`chunks.read_json_bytes`). Each part has
its place in the input order (its index); from its `ChunkFacts`:

- `states` tells, for every patient and every resource ("Type/id") the part touched, its last
  state in the part: a `Patient`'s facts, or a record kept for a patient, a record without a
  resolvable patient (unlinked), or gone (a later copy the rules cannot use).
- `outline` is the part without its facts (counts, problems with their lines, the number of
  lines): the driver merges the outlines in input order with `sources.parallel.merge`, which
  makes every problem's line absolute and raises the first one, as on one machine.
- `kept_ids` and `skipped_ids` are what the exactness rule of `parallel.merge` compares: a part
  whose skipped lines may be a later copy of a record an earlier part kept is read again with
  every line parsed (`spark.read`).
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import PurePosixPath

from ips_screen.reading import MAX_SKIPPED, Skipped
from ips_screen.sources.chunks import (
    ChunkFacts,
    ReadOptions,
    declared_type_of_name,
    id_of,
    read_json_bytes,
    read_ndjson_lines,
)
from ips_screen.sources.files import file_kind
from ips_screen.spark.reduce import GONE, KEPT, UNLINKED, Event, PatientState, RecordState

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")  # not a drive letter (C://)


def is_uri(source: str) -> bool:
    """Whether a SOURCE names a URI (file://, hdfs://, s3a://, abfss://, gs://, ...)."""
    return bool(_URI.match(source))


@dataclass(frozen=True)
class UriFile:
    """An NDJSON file read through Spark: `key` as Spark names it (`binaryFiles`), `name` as
    problems name it (the URI given, then the path under it)."""

    key: str
    name: str
    size: int = 0  # bytes as stored (from the listing)

    @property
    def declared(self) -> str | None:
        """The type the file's Bulk name says it holds (a Bulk manifest is not read)."""
        return declared_type_of_name(self.name.rsplit("/", 1)[-1])


def read_uri_file(file: UriFile, data: bytes, options: ReadOptions) -> ChunkFacts:
    """The facts of a file's bytes (JSON, NDJSON or NDJSON.gz); a gzip file that cannot be read
    to its end is a problem at the line after the last one read, as for a local file."""
    kind = file_kind_of(file.name)
    if kind == "json":
        return read_json_bytes(data, file.name, options)
    gz = kind == "ndjson.gz"
    failed: list[BaseException] = []

    def lines() -> Iterator[bytes]:
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) if gz else io.BytesIO(data) as handle:
                yield from iter(partial(handle.readline, options.max_line + 1), b"")
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            failed.append(exc)

    facts = read_ndjson_lines(lines(), file.name, options, declared=file.declared)
    facts.files_read += 1
    if failed and facts.fatal is None:
        line = facts.lines + 1
        what = f"not a readable gzip file ({_os_error(failed[0])})"
        if len(facts.problems) < MAX_SKIPPED:
            facts.problems.append((Skipped(f"{file.name}:{line}", what), line))
        facts.problem_count += 1
    return facts


def file_kind_of(name: str) -> str | None:
    """`sources.files.file_kind` of a URI's last segment."""
    return file_kind(PurePosixPath(name.rsplit("/", 1)[-1]))  # type: ignore[arg-type]


def _os_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def exact(options: ReadOptions) -> ReadOptions:
    """The options of a read again with every line parsed."""
    return replace(options, shortcuts=False)


def states(index: int, facts: ChunkFacts) -> Iterator[Event]:
    """("patient", id, PatientState) and ("record", "Type/id", RecordState) events: the last
    state of each patient and resource in the part."""
    for pid, info in facts.patients.items():
        yield "patient", pid, PatientState(index, info)
    for ref, (pid, record) in facts.records.items():
        if pid is None:
            yield "record", ref, RecordState(index, UNLINKED)
        else:
            yield "record", ref, RecordState(index, KEPT, pid, record)
    for ref in facts.dropped - facts.records.keys():
        yield "record", ref, RecordState(index, GONE)


@dataclass(frozen=True)
class Outline:
    """A part as the driver sees it: its place, its facts stripped (`outline`), and whether it
    kept records or skipped lines (the exactness check is needed only when some part skipped
    lines after a part that kept records)."""

    index: int
    part: ChunkFacts
    kept: bool
    skipped: bool


def outline(index: int, facts: ChunkFacts) -> Outline:
    stripped = replace(facts, patients={}, records={}, dropped=set(), skipped_blob=b"")
    return Outline(index, stripped, bool(facts.records), bool(facts.skipped_blob))


def kept_ids(facts: ChunkFacts) -> set[bytes]:
    """The ids of the records a part kept (`parallel.merge` compares ids, not types)."""
    return {id_of(ref) for ref in facts.records}


def skipped_ids(facts: ChunkFacts) -> set[bytes]:
    """The ids the lines a part skipped unparsed may carry."""
    return set(facts.skipped_blob.split(b"\n")) if facts.skipped_blob else set()


def needs_exact(outlines: Iterable[Outline]) -> int | None:
    """The index of the first part that kept records, when a later part skipped lines (only then
    may a skipped line be a later copy of a kept record); None when no part needs checking."""
    ordered = sorted(outlines, key=lambda o: o.index)
    first = next((o.index for o in ordered if o.kept), None)
    if first is None or not any(o.skipped and o.index > first for o in ordered):
        return None
    return first
