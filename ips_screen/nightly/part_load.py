"""A full load of the facts store from input read in parts (`sources.chunks`), on several
processes.

Each part of the input (a file, or a range of a large NDJSON file) is read where it is read, in a
worker process (`sources.parallel.read_parts`), and turned there into store rows (`part_rows`):
the Patient rows, the record rows, the refs its last copies dropped, and 32-bit hashes of the
ids of the records it kept and of the lines it skipped unparsed (`ChunkFacts.skipped_blob`).
`load_parts` gives them to the store in input order (`FactsStore.full_load`), so the last copy of
a resource wins, as when the input is read resource by resource (`FactsStore.apply`):

- a dropped ref (a copy the rules cannot use) needs a DELETE only when an earlier part may have
  kept that resource (`IdFilter`: a Bloom filter of the kept ids, only false positives);
- a line skipped unparsed (it carries no code of any codelist) may be a later copy of a record
  an earlier part kept. When one of its ids may be kept (the filter) and one of the refs it may
  be may be kept too (`RefFilter`: a Bloom filter of 64-bit hashes of the kept refs with at
  least 64 bits a ref, so that a false "may" is about one in 25 million refs), the
  part is read again with every line parsed, in this process, so that its copy removes the
  record as the exact reading would. A false "may" only costs that reading. The same resource
  in two parts is rare (one Bulk export holds each resource once).

Only for a load into an empty store: a store with earlier facts is updated resource by resource.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import orjson

from ips_screen.facts.extract import SUBJECT_FIELD
from ips_screen.reading import ReadReport
from ips_screen.sources.chunks import ALWAYS_PARSED, Chunk, ChunkFacts
from ips_screen.sources.parallel import take_counts
from ips_screen.store.facts_store import ApplyStats, FactsStore
from ips_screen.store.rows import patient_row

log = logging.getLogger("ips_screen.nightly")

FILTER_BITS = 1 << 29  # 64 MiB: about 0.4% false positives at 2,000,000 kept records
REF_FILTER_BITS_PER_REF = 64  # at least; with 8 probes a false "may" is about 4e-8 a ref
REF_FILTER_PROBES = 8
PREFILTERED = tuple(sorted(set(SUBJECT_FIELD) - ALWAYS_PARSED))  # types a line may be skipped of


@dataclass
class PartRows:
    """What the store keeps of one part of the input (see the module)."""

    part: ChunkFacts  # its counts, problems and place; facts moved to the fields below
    patients: list[tuple[str, bytes]] = field(default_factory=list)
    records: list[tuple[str, str | None, bytes]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    dropped_hashes: bytes = b""  # array('I') of crc32 of each dropped ref's id
    kept_hashes: bytes = b""  # array('I') of crc32 of each kept record's id
    kept_refs: bytes = b""  # 64-bit hashes (`ref_hashes`) of each kept record's ref
    skipped_hashes: bytes = b""  # array('I') of crc32 of each id of the lines skipped unparsed
    skipped_ids: bytes = b""  # those ids, one per line (only when checking needs them)


def part_rows(part: ChunkFacts) -> PartRows:
    """A part's store rows (run in the process that read the part)."""
    patients = [(pid, patient_row(info)) for pid, info in part.patients.items()]
    records = [
        (ref, pid, orjson.dumps(record.to_dict())) for ref, (pid, record) in part.records.items()
    ]
    dropped = sorted(part.dropped)
    skipped = part.skipped_blob
    rows = PartRows(part, patients, records, dropped, _id_hashes(dropped), _id_hashes(part.records))
    rows.kept_refs = ref_hashes(part.records)
    if skipped:
        rows.skipped_hashes = array("I", map(zlib.crc32, skipped.split(b"\n"))).tobytes()
        rows.skipped_ids = skipped
    part.patients, part.records, part.dropped, part.skipped_blob = {}, {}, set(), b""
    return rows


def _id_hashes(refs: Iterable[str]) -> bytes:
    return array("I", (zlib.crc32(ref.split("/", 1)[1].encode()) for ref in refs)).tobytes()


def ref_hashes(refs: Iterable[str]) -> bytes:
    """64-bit hashes of refs, 8 bytes each (the same in every process)."""
    return b"".join(hashlib.blake2b(ref.encode(), digest_size=8).digest() for ref in refs)


class RefFilter:
    """Kept refs as a Bloom filter of REF_FILTER_PROBES bits each, from their 64-bit hashes
    (two 32-bit halves, double hashing): "certainly not kept" or "may be". It has at least
    REF_FILTER_BITS_PER_REF bits a ref: it keeps the hashes, and is built again twice the size
    when it grows past that (16 bytes a ref in all: 34 MB at 2,000,000 records)."""

    def __init__(self, probes: int = REF_FILTER_PROBES) -> None:
        import numpy as np

        self.np = np
        self.probes = np.arange(probes, dtype=np.uint64)
        self.hashes: list = []  # numpy arrays of uint64
        self.count = 0
        self._build(1 << 16)

    def _build(self, bits: int) -> None:
        np = self.np
        self.mask = np.uint64(bits - 1)
        self.bits = np.zeros(bits // 8, dtype=np.uint8)
        for hashes in self.hashes:
            self._set(hashes)

    def _positions(self, hashes) -> tuple:
        np = self.np
        low, high = hashes & np.uint64(0xFFFFFFFF), (hashes >> np.uint64(32)) | np.uint64(1)
        places = (low[:, None] + self.probes[None, :] * high[:, None]) & self.mask
        return places >> np.uint64(3), np.left_shift(1, places & np.uint64(7)).astype(np.uint8)

    def _set(self, hashes) -> None:
        byte, bit = self._positions(hashes)
        self.np.bitwise_or.at(self.bits, byte, bit)

    def add(self, hashes: bytes) -> None:
        if not hashes:
            return
        found = self.np.frombuffer(hashes, dtype=self.np.uint64)
        self.hashes.append(found)
        self.count += len(found)
        if self.count * REF_FILTER_BITS_PER_REF > len(self.bits) * 8:
            bits = len(self.bits) * 8
            while self.count * REF_FILTER_BITS_PER_REF > bits:
                bits *= 2
            self._build(bits)
        else:
            self._set(found)

    def may_hold_any(self, refs: list[str]) -> bool:
        """Whether any of these refs may have been added (False: certainly none)."""
        if not refs:
            return False
        hashes = self.np.frombuffer(ref_hashes(refs), dtype=self.np.uint64)
        byte, bit = self._positions(hashes)
        return bool((self.bits[byte] & bit).all(axis=1).any())


class IdFilter:
    """The ids of the records kept so far in a load, as a Bloom filter of one 32-bit hash."""

    def __init__(self, bits: int = FILTER_BITS) -> None:
        import numpy as np  # only a full load needs it

        self.np = np
        self.mask = bits - 1
        self.bits = np.zeros(bits // 8, dtype=np.uint8)

    def _positions(self, hashes: bytes) -> tuple:
        h = self.np.frombuffer(hashes, dtype=self.np.uint32) & self.np.uint32(self.mask)
        return h >> 3, self.np.left_shift(1, h & 7).astype(self.np.uint8)

    def add(self, hashes: bytes) -> None:
        if hashes:
            byte, bit = self._positions(hashes)
            self.np.bitwise_or.at(self.bits, byte, bit)

    def maybe(self, hashes: bytes) -> list[int]:
        """The places, in `hashes`, of those that may be of a kept id."""
        if not hashes:
            return []
        byte, bit = self._positions(hashes)
        return self.np.flatnonzero(self.bits[byte] & bit).tolist()


def skipped_candidates(rows: PartRows, ids: IdFilter) -> list[str]:
    """The ids of the part's skipped lines that may be of a record kept earlier in the load."""
    places = ids.maybe(rows.skipped_hashes)
    if not places:
        return []
    lines = rows.skipped_ids.split(b"\n")
    return [lines[n].decode("utf-8", "replace") for n in places]


def refs_of(rid: str) -> list[str]:
    """The refs a skipped line with this id may be (the types whose lines are skipped)."""
    return [f"{rtype}/{rid}" for rtype in PREFILTERED]


def load_parts(
    store: FactsStore,
    parts: Iterable[PartRows],
    reread: Callable[[Chunk], PartRows],
    report: ReadReport,
    progress: Callable[[int], None] | None = None,
    threads: int = 1,
) -> ApplyStats:
    """Load the empty store from the rows of the parts of the input, in input order (see the
    module); `reread` reads a part again with every line parsed. Problems are located in their
    file and line, and raised or skipped as `report` says. `progress` is called with the number
    of resources of each part; `threads`: for sorting the rows at the end (`FullLoad`)."""
    ids, refs = IdFilter(), RefFilter()
    lines_before: dict[str, int] = {}
    with store.full_load(threads) as load:
        stats = load.stats
        for given in parts:
            rows = given
            if rows.skipped_hashes and _skipped_kept(rows, ids, refs):
                chunk = rows.part.chunk
                log.info("%s from byte %d: read again, every line parsed", chunk.path, chunk.start)
                rows = reread(chunk)
            part = rows.part
            take_counts(part, lines_before, report)
            stats.resources += part.resources_read
            for rtype, count in part.by_type.items():
                stats.by_type[rtype] = stats.by_type.get(rtype, 0) + count
                if rtype != "Patient" and rtype not in SUBJECT_FIELD:
                    stats.ignored += count
            # a dropped ref needs a DELETE only when an earlier part may have kept it
            dropped = [rows.dropped[n] for n in ids.maybe(rows.dropped_hashes)]
            load.put(rows.patients, rows.records, dropped)
            ids.add(rows.kept_hashes)
            refs.add(rows.kept_refs)
            if progress is not None:
                progress(part.resources_read)
    return stats


def _skipped_kept(rows: PartRows, ids: IdFilter, kept: RefFilter) -> bool:
    """Whether a line the part skipped unparsed may be a later copy of a record kept so far."""
    return kept.may_hold_any([ref for rid in skipped_candidates(rows, ids) for ref in refs_of(rid)])
