"""How resources become store rows and rows become facts (the store's serialisation).

A Patient row is the `PatientFacts` without records, a record row the `Record`, both as orjson;
rows carry only what `facts.extract` keeps of a resource.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import orjson

from ips_screen import __version__
from ips_screen.errors import InputError
from ips_screen.facts.extract import (
    CodeIndex,
    PatientInfo,
    Resolver,
    extract_patient,
    extract_record,
    patient_of,
    reference_to,
)
from ips_screen.facts.model import PatientFacts, Record
from ips_screen.reading import HasCodelists, ReadReport

BLOOM_BITS = 1 << 26  # 8 MiB: "might this ref have been stored during this full load?"
# Bump when what is stored per resource changes: an older store's fingerprint no longer matches,
# so the next run resets it and loads everything. 2: Task.statusReason is kept (deferrals).
STORE_FORMAT = "2"


def ruleset_fingerprint(ruleset: HasCodelists) -> str:
    """sha256 of what the stored facts depend on: the ruleset's id and version, the sha256 of every
    codelist file (the facts keep only coded records in them), and the store format and tool
    version (the extraction code)."""
    digest = hashlib.sha256()
    head = [STORE_FORMAT, __version__, getattr(ruleset, "id", ""), getattr(ruleset, "version", "")]
    digest.update("\n".join(head).encode())
    for name in sorted(ruleset.codelists):
        content = hashlib.sha256(Path(ruleset.codelists[name].path).read_bytes()).hexdigest()
        digest.update(f"\n{name}={content}".encode())
    return digest.hexdigest()


@dataclass
class ApplyStats:
    """What `apply` did."""

    resources: int = 0  # resources given
    patients: int = 0  # Patient rows written
    records: int = 0  # record rows written
    removed: int = 0  # records that were stored and are no longer usable (deleted rows)
    ignored: int = 0  # resources of types the rules never read
    unlinked: int = 0  # records written with no resolvable patient
    by_type: dict[str, int] = field(default_factory=dict)


@dataclass
class Batch:
    patients: dict[str, bytes] = field(default_factory=dict)
    records: dict[str, tuple[str | None, bytes] | None] = field(default_factory=dict)  # None: drop

    def __len__(self) -> int:
        return len(self.patients) + len(self.records)


class KeptRefs:
    """The refs written during a full load, as a Bloom filter of one hash: a resource the rules
    cannot use needs a DELETE only if an earlier copy of it might have been stored (false
    positives only cost a DELETE that finds nothing)."""

    def __init__(self) -> None:
        self.bits = bytearray(BLOOM_BITS // 8)

    def add(self, ref: str) -> None:
        h = hash(ref) & (BLOOM_BITS - 1)
        self.bits[h >> 3] |= 1 << (h & 7)

    def __contains__(self, ref: str) -> bool:
        h = hash(ref) & (BLOOM_BITS - 1)
        return bool(self.bits[h >> 3] & (1 << (h & 7)))


def record_order(record: Record) -> tuple[date, str]:
    return (record.date or date.min, record.ref)  # the order PopulationBuilder.finish gives


def as_date(value: object) -> date | None:
    return value if isinstance(value, date) else None


def add_record(
    batch: Batch,
    stats: ApplyStats,
    report: ReadReport,
    resource: dict,
    where: str,
    resolve: Resolver | None,
    index: CodeIndex,
) -> None:
    rid = resource.get("id")
    record = extract_record(resource, index, resolve)
    if record is None:
        if rid is not None:
            batch.records[f"{resource['resourceType']}/{rid}"] = None
        return
    if rid is None:
        report.problem(where, f"{resource['resourceType']} has no id")
        return
    pid = patient_of(resource, resolve)
    batch.records[record.ref] = (pid, orjson.dumps(record.to_dict()))
    if pid is None:
        stats.unlinked += 1


def patient_data(resource: dict, resolve: Resolver | None) -> bytes:
    return patient_row(extract_patient(resource, resolve))


def patient_row(info: PatientInfo) -> bytes:
    """A Patient row: the patient's facts without records."""
    facts = PatientFacts(
        id=info.id,
        birth_date=as_date(info.birth_date),
        deceased=info.deceased,
        deceased_date=as_date(info.deceased_date),
        general_practitioners=info.general_practitioners,
    )
    data = facts.to_dict()
    del data["records"]
    return orjson.dumps(data)


def facts_from(data: bytes, records: list[Record]) -> PatientFacts:
    return PatientFacts.from_dict(orjson.loads(data), tuple(sorted(records, key=record_order)))


def deleted_refs(paths: Iterable[Path]) -> Iterator[str]:
    """ "Type/id" of every DELETE entry in Bulk `deleted` files (NDJSON, or NDJSON.gz by name);
    `InputError` naming the file (and line) for one that cannot be read."""
    for path in paths:
        path = Path(path)
        try:
            yield from _deleted_in(path)
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            raise InputError(f"{path}: cannot read the file ({exc})") from None


def _deleted_in(path: Path) -> Iterator[str]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as lines:
        for lineno, line in enumerate(lines, 1):
            if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if not line.strip():
                continue
            try:
                bundle = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
                raise InputError(f"{path}:{lineno}: expected a Bundle of deletions")
            entries = bundle.get("entry") or []
            if not isinstance(entries, list):
                raise InputError(f"{path}:{lineno}: Bundle.entry is not a list")
            for entry in entries:
                request = entry.get("request") if isinstance(entry, dict) else None
                if not isinstance(request, dict):
                    continue
                if str(request.get("method", "")).upper() != "DELETE":
                    continue
                ref = reference_to(str(request.get("url") or "").split("?", 1)[0])
                if ref:
                    yield ref
