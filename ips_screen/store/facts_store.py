"""Per-patient facts in SQLite, updated resource by resource, read back patient by patient.

    patients   id -> the PatientFacts without records (orjson)
    records    "Type/id" -> patient id (NULL: no resolvable patient) and the Record (orjson);
               indexed by patient id
    meta       fingerprint (of what the facts were extracted with), since (the transactionTime of
               the last Bulk export applied), source (which server or folder the facts came from)

The same SQLite file (`database.Database`, opened by `state.StateStore`) holds the decision cache
(decision_cache.py) and the run ledger (ledger.py).

`apply` has the semantics of `PopulationBuilder.add` (the last copy of a resource wins, a copy the
rules cannot use removes the earlier one), so facts built from a first load plus later updates
equal the facts of one read of the updated data; `iter_patients` then gives the same
`PatientFacts` as `collect` would. One connection, WAL, explicit transactions of at most
APPLY_BATCH_ROWS rows: a crash leaves whole batches, and applying the same changes again is
harmless. Every change to a patient's facts removes their cached decision in the same transaction
(`DecisionCache.forget_patients` / `forget_owners`) and notes the patient ids it touches for the
orphan counts (orphan_counts.py).

A load into an empty store (a full load) runs with `synchronous = OFF` and a larger page cache,
then checkpoints the write-ahead log (durable from there). A crash of the job during it loses only
a load that is redone in full (`since` is set after a complete load); an operating-system crash or
power loss during it may leave the file unreadable: delete it and the next run loads everything.
The cyclic garbage collector is paused while applying. A full load from rows made in parts
(`full_load`) gathers them in a staging file and writes them in key order at the end
(full_load.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from itertools import islice
from pathlib import Path

import orjson

from ips_screen.facts.extract import SUBJECT_FIELD, CodeIndex
from ips_screen.facts.model import PatientFacts, Record
from ips_screen.reading import HasCodelists, Item, ReadReport, gc_paused
from ips_screen.store.database import Database
from ips_screen.store.decision_cache import DecisionCache, in_chunks
from ips_screen.store.full_load import RECORDS_PATIENT_INDEX, FullLoad
from ips_screen.store.ledger import BATCH_ROWS
from ips_screen.store.orphan_counts import ORPHANS_SCHEMA, OrphanCounts
from ips_screen.store.rows import (
    ApplyStats,
    Batch,
    KeptRefs,
    add_record,
    deleted_refs,
    facts_from,
    patient_data,
    ruleset_fingerprint,
)

__all__ = ["ApplyStats", "FactsReader", "FactsStore", "FullLoad", "ruleset_fingerprint"]

APPLY_BATCH_ROWS = 50_000  # rows (kept, replaced or dropped) per transaction while applying
BULK_CACHE_KIB = 131_072  # SQLite page cache during a full load (the default is 2 MiB)
FACTS_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS patients (id TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    ref TEXT PRIMARY KEY, patient_id TEXT, data BLOB NOT NULL
) WITHOUT ROWID;
"""
    + RECORDS_PATIENT_INDEX
    + ";\n"
    + ORPHANS_SCHEMA
)


class FactsStore:
    """The facts of one practice's population (the patients and records tables); every change
    forgets the changed patients' cached decisions in `cache` and notes them in `counted`."""

    def __init__(self, db: Database, cache: DecisionCache) -> None:
        self.db, self.cache = db, cache
        self.counted = OrphanCounts(db)
        self.sql = db.sql

    # -- meta -------------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        return self.db.get_meta(key)

    def set_meta(self, key: str, value: str | None) -> None:
        self.db.set_meta(key, value)

    def get_since(self) -> str | None:
        """The transactionTime of the last export applied in full (None: load everything)."""
        return self.get_meta("since")

    def set_since(self, value: str | None) -> None:
        self.set_meta("since", value)

    def fingerprint_matches(self, ruleset: HasCodelists) -> bool:
        return self.get_meta("fingerprint") == ruleset_fingerprint(ruleset)

    def reset(self, ruleset: HasCodelists, *, source: str | None = None) -> None:
        """Drop every fact (and `since`), and record the ruleset's fingerprint and the source.
        The run ledger and the last decisions' digests are kept; cached decisions are not."""
        with self.db.transaction() as db:
            db.execute("DELETE FROM patients")
            db.execute("DELETE FROM records")
            self.cache.clear(db)
            self.counted.stale(db)
            db.execute("DELETE FROM meta WHERE key IN ('since', 'source', 'fingerprint')")
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('fingerprint', ?)",
                (ruleset_fingerprint(ruleset),),
            )
            if source is not None:
                db.execute("INSERT INTO meta (key, value) VALUES ('source', ?)", (source,))

    # -- writing ----------------------------------------------------------------------------------

    def apply(
        self,
        resources: Iterable[Item],
        ruleset: HasCodelists,
        *,
        report: ReadReport | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ApplyStats:
        """Upsert what the rules can use of each `(resource, where, resolve)` (as
        `files.iter_resources` yields them): a Patient replaces its row, a usable record its row,
        and a record the rules cannot use (any more: e.g. now entered-in-error) removes its row.
        Problems (a resource without an id) go to `report` (by default: raise `InputError`).
        `progress` is called with 1 for every resource."""
        index = CodeIndex(ruleset.codelists.values())
        report = report if report is not None else ReadReport()
        stats = ApplyStats()
        batch = Batch()
        full_load = self._empty()
        kept = KeptRefs() if full_load else None
        forget = self.cache.has_rows()
        with gc_paused(), self._bulk_load(full_load):
            for resource, where, resolve in resources:
                stats.resources += 1
                rtype = resource["resourceType"]
                stats.by_type[rtype] = stats.by_type.get(rtype, 0) + 1
                if progress is not None:
                    progress(1)
                if rtype == "Patient":
                    if resource.get("id") is None:
                        report.problem(where, "Patient has no id")
                        continue
                    batch.patients[str(resource["id"])] = patient_data(resource, resolve)
                elif rtype in SUBJECT_FIELD:
                    add_record(batch, stats, report, resource, where, resolve, index)
                else:
                    stats.ignored += 1
                if len(batch) >= APPLY_BATCH_ROWS:
                    self._flush(batch, stats, forget, kept, full_load)
            self._flush(batch, stats, forget, kept, full_load)
        return stats

    @contextmanager
    def full_load(self, threads: int = 1) -> Iterator[FullLoad]:
        """Load the empty store from rows made elsewhere (`nightly.part_load`), written in key
        order when all are given (store/full_load.py; `threads`: for SQLite's sorter). Nothing
        is written to the store's tables if the block raises."""
        if not self.is_empty():
            raise ValueError("a full load needs an empty store")
        with gc_paused(), self._bulk_load(True), closing(FullLoad(self.db, threads)) as load:
            yield load
            load.finish()

    def is_empty(self) -> bool:
        """Whether the store holds no facts (a load into it is a full load)."""
        return self._empty()

    def _empty(self) -> bool:
        return (
            self.sql.execute("SELECT 1 FROM records LIMIT 1").fetchone() is None
            and self.sql.execute("SELECT 1 FROM patients LIMIT 1").fetchone() is None
        )

    @contextmanager
    def _bulk_load(self, bulk: bool) -> Iterator[None]:
        if not bulk:
            yield
            return
        with self.db.transaction() as db:  # a full load notes no touched patients
            self.counted.stale(db)
        self.sql.execute("PRAGMA synchronous=OFF")
        self.sql.execute(f"PRAGMA cache_size=-{BULK_CACHE_KIB}")
        try:
            yield
        finally:
            self.sql.execute("PRAGMA synchronous=NORMAL")
            self.sql.execute("PRAGMA cache_size=-2000")
            self.sql.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _flush(
        self,
        batch: Batch,
        stats: ApplyStats,
        forget: bool,
        kept: KeptRefs | None,
        full: bool,
    ) -> None:
        """Write a batch in one transaction. `kept`: the refs stored so far by a full load;
        `full`: a load into an empty store (its orphan counts are stale: nothing is touched)."""
        if not batch:
            return
        upserts = [(ref, v[0], v[1]) for ref, v in batch.records.items() if v is not None]
        drops = [(ref,) for ref, v in batch.records.items() if v is None]
        if kept is not None:  # a full load: only refs stored earlier in it can need a DELETE
            drops = [d for d in drops if d[0] in kept]
            for row in upserts:
                kept.add(row[0])
        with self.db.transaction() as db:
            if forget:  # the patients whose facts change: before (records moving) and after
                self.cache.forget_owners(db, batch.records)
                self.cache.forget_patients(db, [*batch.patients, *(row[1] for row in upserts)])
            if not full:
                self.counted.touch_owners(db, batch.records)
                self.counted.touch(db, [*batch.patients, *(row[1] for row in upserts)])
            db.executemany(
                "INSERT INTO patients (id, data) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET data = excluded.data",
                batch.patients.items(),
            )
            db.executemany(
                "INSERT INTO records (ref, patient_id, data) VALUES (?, ?, ?) ON CONFLICT (ref) "
                "DO UPDATE SET patient_id = excluded.patient_id, data = excluded.data",
                upserts,
            )
            removed = db.executemany("DELETE FROM records WHERE ref = ?", drops).rowcount
        stats.patients += len(batch.patients)
        stats.records += len(upserts)
        stats.removed += max(removed, 0)
        batch.patients.clear()
        batch.records.clear()

    def delete(self, refs: Iterable[str]) -> int:
        """Remove resources by "Type/id"; a Patient takes its records with it. Returns the number
        of rows removed."""
        removed = 0
        items = iter(refs)
        while chunk := list(islice(items, BATCH_ROWS)):
            patients = [(ref[8:],) for ref in chunk if ref.startswith("Patient/")]
            records = [(ref,) for ref in chunk if not ref.startswith("Patient/")]
            with self.db.transaction() as db:
                self.cache.forget_owners(db, (ref for (ref,) in records))
                self.cache.forget_patients(db, (pid for (pid,) in patients))
                self.counted.touch_owners(db, (ref for (ref,) in records))
                self.counted.touch(db, (pid for (pid,) in patients))
                removed += db.executemany("DELETE FROM records WHERE ref = ?", records).rowcount
                removed += db.executemany(
                    "DELETE FROM records WHERE patient_id = ?", patients
                ).rowcount
                removed += db.executemany("DELETE FROM patients WHERE id = ?", patients).rowcount
        return removed

    def apply_deleted_files(self, paths: Iterable[Path]) -> int:
        """Apply Bulk export `deleted` files: NDJSON of Bundles whose entries have request.method
        DELETE and request.url "Type/id". Returns the number of rows removed."""
        return self.delete(deleted_refs(paths))

    # -- reading ----------------------------------------------------------------------------------

    def iter_patients(self) -> Iterator[PatientFacts]:
        """Every patient's facts in id order, streamed (one patient's rows in memory at a time)."""
        yield from self._patients("", ())

    def get_patient(self, patient_id: str) -> PatientFacts | None:
        return next(self._patients("WHERE p.id = ?", (patient_id,)), None)

    def facts_of(self, patient_ids: Iterable[str]) -> Iterator[PatientFacts]:
        """The facts of the given patients (those in the store), in id order within each query
        of up to ROWS_PER_QUERY ids."""
        for chunk in in_chunks(sorted(patient_ids)):
            marks = ",".join("?" * len(chunk))
            yield from self._patients(f"WHERE p.id IN ({marks})", tuple(chunk))

    def _patients(self, where: str, params: tuple) -> Iterator[PatientFacts]:
        return _patients(self.sql, where, params)

    def orphans(self) -> dict[str, int]:
        """Patient id -> number of records kept for a patient the store has no Patient row for,
        in id order (counted as the facts changed: orphan_counts.py)."""
        return self.counted.counts()

    def unlinked(self) -> int:
        """Records that name no resolvable patient."""
        return self.sql.execute("SELECT COUNT(*) FROM records WHERE patient_id IS NULL").fetchone()[
            0
        ]

    def counts(self) -> dict[str, int]:
        patients = self.sql.execute("SELECT COUNT(*) FROM patients").fetchone()[0]
        records = self.sql.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        return {"patients": patients, "records": records}


def _patients(sql: sqlite3.Connection, where: str, params: tuple) -> Iterator[PatientFacts]:
    cursor = sql.execute(
        "SELECT p.id, p.data, r.data FROM patients p "  # noqa: S608 (constant fragments)
        f"LEFT JOIN records r ON r.patient_id = p.id {where} ORDER BY p.id",
        params,
    )
    current: str | None = None
    data = b""
    records: list[Record] = []
    for pid, pdata, rdata in cursor:
        if pid != current:
            if current is not None:
                yield facts_from(data, records)
            current, data, records = pid, pdata, []
        if rdata is not None:
            records.append(Record.from_dict(orjson.loads(rdata)))
    if current is not None:
        yield facts_from(data, records)


class FactsReader:
    """The facts of a store read by another process (one that decides patients while the job
    writes decisions): its own read-only connection, which sees the facts as last committed."""

    def __init__(self, path: Path) -> None:
        self.sql = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)

    def facts_of(self, patient_ids: Iterable[str]) -> Iterator[PatientFacts]:
        """The facts of the given patients (those in the store), in id order."""
        for chunk in in_chunks(sorted(patient_ids)):
            marks = ",".join("?" * len(chunk))
            yield from _patients(self.sql, f"WHERE p.id IN ({marks})", tuple(chunk))

    def close(self) -> None:
        self.sql.close()
