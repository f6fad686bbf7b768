"""The records kept for patients the store has no Patient row for, counted once and then kept up
to date patient by patient (the summary's `patients_absent` and `resources_for_absent_patients`).

    orphan_counts   patient id -> records kept for that id while no Patient row has it
    orphan_touched  patient ids whose count may have changed since it was last counted

Counting every record each night reads the whole records index (at 1,000,000 patients about a
second and a half); an incremental night changes a few patients. So every change to the facts
(`facts_store.FactsStore`) notes the patient ids it touches, in the same transaction: a Patient
row added or removed, a record's owner before and after it moved, a record dropped. `counts`
recounts only those. A load into an empty store touches nothing and marks the counts stale
instead (meta `orphans`): the next `counts` counts every record, as it did before this table.
Both tables are ordinary ones, so a crash between a change and the next count loses nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from ips_screen.store.database import Database

ORPHANS_SCHEMA = """
CREATE TABLE IF NOT EXISTS orphan_counts (
    patient_id TEXT PRIMARY KEY, records INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS orphan_touched (patient_id TEXT PRIMARY KEY) WITHOUT ROWID;
"""
COUNTED_KEY = "orphans"  # meta: "counted" while orphan_counts holds every orphan
_COUNT_ALL = (
    "INSERT INTO orphan_counts (patient_id, records) "
    "SELECT patient_id, COUNT(*) FROM records r WHERE patient_id IS NOT NULL "
    "GROUP BY patient_id "  # each patient looked up once, not once per record
    "HAVING NOT EXISTS (SELECT 1 FROM patients p WHERE p.id = r.patient_id)"
)
_COUNT_TOUCHED = (
    "INSERT INTO orphan_counts (patient_id, records) "
    "SELECT t.patient_id, COUNT(*) FROM orphan_touched t "
    "JOIN records r ON r.patient_id = t.patient_id "
    "WHERE NOT EXISTS (SELECT 1 FROM patients p WHERE p.id = t.patient_id) "
    "GROUP BY t.patient_id"
)


class OrphanCounts:
    """The orphan counts of one store (see the module). The `touch` methods and `stale` run
    inside the facts store's write transactions."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def touch(db: sqlite3.Connection, patient_ids: Iterable[str | None]) -> None:
        """Note patient ids whose Patient row or records change."""
        ids = sorted({pid for pid in patient_ids if pid is not None})
        db.executemany(
            "INSERT OR IGNORE INTO orphan_touched (patient_id) VALUES (?)", [(p,) for p in ids]
        )

    @staticmethod
    def touch_owners(db: sqlite3.Connection, refs: Iterable[str]) -> None:
        """Note the patients the stored records `refs` belong to now (before they change)."""
        db.executemany(
            "INSERT OR IGNORE INTO orphan_touched (patient_id) "
            "SELECT patient_id FROM records WHERE ref = ? AND patient_id IS NOT NULL",
            [(ref,) for ref in refs],
        )

    def stale(self, db: sqlite3.Connection) -> None:
        """Forget the counts: the next `counts` counts every record (a full load, a reset)."""
        db.execute("DELETE FROM orphan_counts")
        db.execute("DELETE FROM orphan_touched")
        self.db.put_meta(db, COUNTED_KEY, None)

    def counts(self) -> dict[str, int]:
        """Patient id -> number of records kept for a patient the store has no Patient row for,
        in id order: the touched patients recounted, or every record when the counts are stale."""
        with self.db.transaction() as db:
            if self.db.get_meta(COUNTED_KEY) != "counted":
                db.execute("DELETE FROM orphan_counts")
                db.execute(_COUNT_ALL)
                self.db.put_meta(db, COUNTED_KEY, "counted")
            else:
                db.execute(
                    "DELETE FROM orphan_counts WHERE patient_id IN "
                    "(SELECT patient_id FROM orphan_touched)"
                )
                db.execute(_COUNT_TOUCHED)
            db.execute("DELETE FROM orphan_touched")
            rows = db.execute("SELECT patient_id, records FROM orphan_counts ORDER BY patient_id")
            return dict(rows.fetchall())
