"""Per-patient facts in SQLite, updated resource by resource, read back patient by patient.

    patients   id -> the PatientFacts without records (orjson)
    records    "Type/id" -> patient id (NULL: no resolvable patient) and the Record (orjson);
               indexed by patient id
    meta       fingerprint (of what the facts were extracted with), since (the transactionTime of
               the last Bulk export applied), source (which server or folder the facts came from)
    runs, decisions   the run ledger (store/ledger.py)

`apply` has the semantics of `PopulationBuilder.add` (the last copy of a resource wins, a copy the
rules cannot use removes the earlier one), so facts built from a first load plus later updates
equal the facts of one read of the updated data; `iter_patients` then gives the same
`PatientFacts` as `collect` would. One connection, WAL, explicit transactions of at most
BATCH_ROWS rows: a crash leaves whole batches, and applying the same changes again is harmless.
The database holds clinical facts: it is created readable by its owner only.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path

import orjson

from ips_screen.facts.extract import SUBJECT_FIELD, CodeIndex
from ips_screen.facts.model import PatientFacts, Record
from ips_screen.sources.files import Item, ReadReport
from ips_screen.sources.population import HasCodelists
from ips_screen.store.ledger import BATCH_ROWS, LEDGER_SCHEMA, LedgerMixin
from ips_screen.store.rows import (
    ApplyStats,
    Batch,
    add_record,
    deleted_refs,
    facts_from,
    patient_data,
    ruleset_fingerprint,
)

__all__ = ["ApplyStats", "FactsStore", "ruleset_fingerprint"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS patients (id TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    ref TEXT PRIMARY KEY, patient_id TEXT, data BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_patient ON records (patient_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""


class FactsStore(LedgerMixin):
    """The facts of one practice's population in one SQLite file. Use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA + LEDGER_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FactsStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- meta -------------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        with self._transaction() as db:
            if value is None:
                db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )

    def get_since(self) -> str | None:
        """The transactionTime of the last export applied in full (None: load everything)."""
        return self.get_meta("since")

    def set_since(self, value: str | None) -> None:
        self.set_meta("since", value)

    def fingerprint_matches(self, ruleset: HasCodelists) -> bool:
        return self.get_meta("fingerprint") == ruleset_fingerprint(ruleset)

    def reset(self, ruleset: HasCodelists, *, source: str | None = None) -> None:
        """Drop every fact (and `since`), and record the ruleset's fingerprint and the source.
        The run ledger and the last decisions are kept."""
        with self._transaction() as db:
            db.execute("DELETE FROM patients")
            db.execute("DELETE FROM records")
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
            if len(batch) >= BATCH_ROWS:
                self._flush(batch, stats)
        self._flush(batch, stats)
        return stats

    def _flush(self, batch: Batch, stats: ApplyStats) -> None:
        if not batch:
            return
        upserts = [(ref, v[0], v[1]) for ref, v in batch.records.items() if v is not None]
        drops = [(ref,) for ref, v in batch.records.items() if v is None]
        with self._transaction() as db:
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
            with self._transaction() as db:
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

    def _patients(self, where: str, params: tuple) -> Iterator[PatientFacts]:
        cursor = self._db.execute(
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

    def orphans(self) -> dict[str, int]:
        """Patient id -> number of records kept for a patient the store has no Patient row for."""
        return dict(
            self._db.execute(
                "SELECT patient_id, COUNT(*) FROM records r WHERE patient_id IS NOT NULL AND NOT "
                "EXISTS (SELECT 1 FROM patients p WHERE p.id = r.patient_id) "
                "GROUP BY patient_id ORDER BY patient_id"
            )
        )

    def unlinked(self) -> int:
        """Records that name no resolvable patient."""
        return self._db.execute("SELECT COUNT(*) FROM records WHERE patient_id IS NULL").fetchone()[
            0
        ]

    def counts(self) -> dict[str, int]:
        patients = self._db.execute("SELECT COUNT(*) FROM patients").fetchone()[0]
        records = self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        return {"patients": patients, "records": records}

    def size_bytes(self) -> int:
        """The database's size on disk, with its write-ahead log."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            candidate = self.path.with_name(self.path.name + suffix)
            if candidate.exists():
                total += candidate.stat().st_size
        return total
