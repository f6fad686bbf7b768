"""A load into an empty store: rows gathered in input order, then written in key order.

Patient ids and record refs are random strings, so rows inserted as they come land in random
places of the tables' B-trees and of the patient index, and each transaction rewrites pages the
one before wrote: at 1,000,000 patients (3.1 million rows) that took 88 s on the benchmark VM,
and in a full night the job's process spent 81 of the load's 87 s writing them. Instead
`FullLoad` appends the rows to a staging file beside the store (`<store>-load`, its own SQLite
file, removed when the load ends, or by the next night's clean-up if the job was killed:
`nightly.state_cleanup`), and `finish` writes them into the store's tables in one transaction,
each table in its key order, and builds the patient index afterwards: 23 s for the same rows.
SQLite sorts them in memory up to the load's page cache (`BULK_CACHE_KIB`) and beyond that in
its temporary files (in SQLITE_TMPDIR, else /var/tmp: removed from the folder as they are made,
readable by the job's user only), about as much as the store's facts at most (700 MB at
1,000,000 patients).

The last row given for a key wins, as in `FactsStore.apply`: rows are ordered by key, then by
the order given, and each replaces the one before it. A ref given as dropped (a copy the rules
cannot use) is staged as a row without data; if it is the last for its ref, the record is
removed. Nothing is in the store's tables until `finish` commits: a load that fails leaves the
store empty (the next run loads again in full, as after any interrupted load).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ips_screen.store.database import Database
from ips_screen.store.rows import ApplyStats

STAGE_SUFFIX = "-load"  # the staging file: <store>-load
RECORDS_PATIENT_INDEX = "CREATE INDEX IF NOT EXISTS records_patient ON records (patient_id)"
_STAGE_SCHEMA = """
CREATE TABLE stage.patients (id TEXT NOT NULL, data BLOB NOT NULL);
CREATE TABLE stage.records (ref TEXT NOT NULL, patient_id TEXT, data BLOB);
"""
_DROPPED = b""  # a record row's data while it stands for a dropped copy (real rows are JSON)


def stage_path(store: Path) -> Path:
    return store.with_name(store.name + STAGE_SUFFIX)


def remove_stage(store: Path) -> None:
    """Remove the staging file of a load that was killed (and its rollback journal)."""
    path = stage_path(store)
    for suffix in ("", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


class FullLoad:
    """Rows given in input order to an empty store (see the module); `stats` counts them.
    `close` removes the staging file (`FactsStore.full_load` calls it however the load ends)."""

    def __init__(self, db: Database, threads: int = 1) -> None:
        self.db, self.sql, self.threads = db, db.sql, max(1, threads)
        self.stats = ApplyStats()
        self.dropped = 0
        self.path = stage_path(db.path)
        remove_stage(db.path)  # left by a load that was killed
        os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
        self.sql.execute("ATTACH DATABASE ? AS stage", (str(self.path),))
        self.attached = True
        self.sql.execute("PRAGMA stage.journal_mode=MEMORY")
        self.sql.execute("PRAGMA stage.synchronous=OFF")
        self.sql.executescript(_STAGE_SCHEMA)

    def put(
        self,
        patients: Iterable[tuple[str, bytes]],
        records: Iterable[tuple[str, str | None, bytes]],
        dropped: Iterable[str],
    ) -> None:
        """Patient rows, record rows (ref, patient id or None, data), and refs to remove (a
        later copy the rules cannot use), in the order of the input."""
        patients, records = list(patients), list(records)
        drops = [(ref,) for ref in dropped]
        with self.db.transaction() as db:  # only the staging file is written
            db.executemany("INSERT INTO stage.patients (id, data) VALUES (?, ?)", patients)
            db.executemany(
                "INSERT INTO stage.records (ref, patient_id, data) VALUES (?, ?, ?)", records
            )
            db.executemany("INSERT INTO stage.records (ref) VALUES (?)", drops)
        stats = self.stats
        stats.patients += len(patients)
        stats.records += len(records)
        stats.unlinked += sum(1 for row in records if row[1] is None)
        self.dropped += len(drops)

    def finish(self) -> None:
        """Write the staged rows into the store's tables, in one transaction."""
        sql = self.sql
        sql.execute(f"PRAGMA threads={self.threads}")  # SQLite's sorter on as many threads
        try:
            with self.db.transaction() as db:
                db.execute("DROP INDEX IF EXISTS records_patient")  # built after, in one sort
                db.execute(
                    "INSERT INTO patients (id, data) SELECT id, data FROM stage.patients "
                    "ORDER BY id, rowid ON CONFLICT (id) DO UPDATE SET data = excluded.data"
                )
                db.execute(
                    "INSERT INTO records (ref, patient_id, data) "
                    "SELECT ref, patient_id, ifnull(data, ?) FROM stage.records "
                    "ORDER BY ref, rowid ON CONFLICT (ref) DO UPDATE SET "
                    "patient_id = excluded.patient_id, data = excluded.data",
                    (_DROPPED,),
                )
                if self.dropped:
                    self.stats.removed += db.execute(
                        "DELETE FROM records WHERE data = ? AND ref IN "
                        "(SELECT ref FROM stage.records WHERE data IS NULL)",
                        (_DROPPED,),
                    ).rowcount
                db.execute(RECORDS_PATIENT_INDEX)
        finally:
            sql.execute("PRAGMA threads=0")

    def close(self) -> None:
        """Detach and remove the staging file."""
        if self.attached:
            if self.sql.in_transaction:
                self.sql.execute("ROLLBACK")
            self.sql.execute("DETACH DATABASE stage")
            self.attached = False
        remove_stage(self.db.path)
