"""Each patient's last decision, kept so that a night re-evaluates only the patients that need it.

    decision_cache  patient id -> as_of (the day it was decided for), valid_until (its horizon,
                    `engine.horizon.valid_until`: the first day it might differ with the same
                    facts), digest (`ledger.decision_digest`), summary (orjson: its
                    `outputs.summary.SummaryKey` and the patient's proposal counts), data (the
                    line of decisions.ndjson without its newline: orjson of `Decision.to_dict()`
                    with sorted keys) and proposal (when proposed: its proposals.json entries,
                    `outputs.formats.proposals_json.proposal_template`)
                    and line_id (see decision_lines; data is then empty)
    decision_lines  id -> line: a decision line shared by many patients (`nightly.deciding.Shared`:
                    most patients have no records and many share a decision), kept once with the
                    stand-in patient's reference where each patient's own goes; key: its BLAKE2b
                    digest. Lines no row uses are dropped by `drop_unused_lines` (each night)
    meta 'decisions_fingerprint'   what the cached decisions were made with (ruleset, codelists,
                    tool version): another value empties the cache

A patient's row is removed in the same transaction as any change to their facts (the facts store
calls `forget_patients` / `forget_owners` / `clear` inside its own write transactions, including
for a record that moves from one patient to another): a patient without a row is "dirty" and is
evaluated again. Rows hold decisions (clinical data), like the rest of the database.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

import orjson

from ips_screen.store.database import Database

CACHE_SCHEMA = """
CREATE TABLE IF NOT EXISTS decision_cache (
    patient_id TEXT PRIMARY KEY,
    as_of TEXT NOT NULL,
    valid_until TEXT NOT NULL,
    digest TEXT NOT NULL,
    summary BLOB NOT NULL,
    data BLOB NOT NULL,
    proposal BLOB,
    line_id INTEGER
);
CREATE TABLE IF NOT EXISTS decision_lines (
    id INTEGER PRIMARY KEY,
    key BLOB NOT NULL UNIQUE,
    line BLOB NOT NULL
);
"""
# After CACHE_SCHEMA (a store made before decision_lines gets the column first: `DecisionCache`)
CACHE_INDEX = (
    "CREATE INDEX IF NOT EXISTS decision_cache_line ON decision_cache (line_id) "
    "WHERE line_id IS NOT NULL"
)
STAND_IN = "\x00stand-in\x00"  # a patient id no record can name (JSON: \u0000stand-in\u0000)
STAND_IN_REF = orjson.dumps(f"Patient/{STAND_IN}")  # where a shared line names its patient
FINGERPRINT_KEY = "decisions_fingerprint"
ROWS_PER_QUERY = 500  # ids per `IN (...)` query (well under SQLite's parameter limit)

# (patient id, as_of, valid_until, digest, summary, data, digest after the last run, proposal):
# the cached columns are None for a patient without a cache row, the last digest for a new one.
ScreenRow = tuple[
    str, str | None, str | None, str | None, bytes | None, bytes | None, str | None, bytes | None
]
# (patient id, as_of, valid_until, digest, summary, data, proposal); data: the line, or a shared
# line's parts, cut where the patient's reference goes
CacheRow = tuple[str, str, str, str, bytes, bytes | tuple[bytes, ...], bytes | None]


def in_chunks(values: Iterable[str], size: int = ROWS_PER_QUERY) -> Iterator[list[str]]:
    items = iter(values)
    while chunk := list(islice(items, size)):
        yield chunk


class DecisionCache:
    """The decision_cache table of the state database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        columns = {row[1] for row in db.sql.execute("PRAGMA table_info(decision_cache)")}
        if "line_id" not in columns:  # a store made before decision_lines
            db.sql.execute("ALTER TABLE decision_cache ADD COLUMN line_id INTEGER")
        db.sql.execute(CACHE_INDEX)
        self._ids: dict[tuple[bytes, ...], int] = {}  # shared lines' parts -> id, as met
        self._parts: dict[int, tuple[bytes, ...]] = {}  # id -> parts, as read

    def prepare(self, fingerprint: str) -> bool:
        """Empty the cache unless it was made with `fingerprint`, which is then recorded.
        Returns whether the cached rows (if any) may be used."""
        if self.db.get_meta(FINGERPRINT_KEY) == fingerprint:
            return True
        with self.db.transaction() as db:
            self.clear(db)
            self.db.put_meta(db, FINGERPRINT_KEY, fingerprint)
        return False

    def has_rows(self) -> bool:
        return self.db.sql.execute("SELECT 1 FROM decision_cache LIMIT 1").fetchone() is not None

    def get(self, patient_id: str) -> CacheRow | None:
        return self.db.sql.execute(
            "SELECT patient_id, as_of, valid_until, digest, summary, data, proposal "
            "FROM decision_cache WHERE patient_id = ?",
            (patient_id,),
        ).fetchone()

    def put(self, rows: Sequence[CacheRow]) -> None:
        """Cache the decisions just made (replacing earlier ones); a shared line once."""
        if not rows:
            return
        try:
            with self.db.transaction() as db:
                db.executemany(
                    "INSERT OR REPLACE INTO decision_cache "
                    "(patient_id, as_of, valid_until, digest, summary, data, proposal, line_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (*row[:5], row[5], row[6], None)
                        if isinstance(row[5], bytes)
                        else (*row[:5], b"", row[6], self._line_id(db, row[5]))
                        for row in rows
                    ],
                )
        except BaseException:
            self._ids.clear()  # lines stored in the transaction rolled back are not there
            raise

    def _line_id(self, db: sqlite3.Connection, parts: tuple[bytes, ...]) -> int:
        """The id of a shared line (stored when new)."""
        known = self._ids.get(parts)
        if known is None:
            line = STAND_IN_REF.join(parts)
            key = hashlib.blake2b(line, digest_size=16).digest()
            found = db.execute("SELECT id FROM decision_lines WHERE key = ?", (key,)).fetchone()
            if found is None:
                insert = "INSERT INTO decision_lines (key, line) VALUES (?, ?)"
                found = (db.execute(insert, (key, line)).lastrowid,)
            known = self._ids[parts] = found[0]
        return known

    def resolve(self, rows: list[tuple]) -> list[ScreenRow]:
        """Rows of `StateStore.screen_rows` (with the line_id last) as `ScreenRow`s: a shared
        line joined with the patient's own reference."""
        wanted = {row[8] for row in rows if row[8] is not None} - self._parts.keys()
        for chunk in in_chunks(sorted(wanted)):  # type: ignore[arg-type]
            marks = ",".join("?" * len(chunk))
            for line_id, line in self.db.sql.execute(
                f"SELECT id, line FROM decision_lines WHERE id IN ({marks})",  # noqa: S608
                chunk,
            ):
                self._parts[line_id] = tuple(line.split(STAND_IN_REF))
        resolved: list[ScreenRow] = []
        for row in rows:
            line_id = row[8]
            if line_id is None:
                resolved.append(row[:8])
            else:
                ref = orjson.dumps(f"Patient/{row[0]}")
                resolved.append((*row[:5], ref.join(self._parts[line_id]), *row[6:8]))
        return resolved

    def drop_unused_lines(self) -> int:
        """Drop the shared lines no cached decision uses any more; how many."""
        with self.db.transaction() as db:
            dropped = db.execute(
                "DELETE FROM decision_lines WHERE NOT EXISTS "
                "(SELECT 1 FROM decision_cache c WHERE c.line_id = decision_lines.id)"
            ).rowcount
        if dropped:
            self._ids.clear()
            self._parts.clear()
        return dropped

    # -- invalidation (inside the facts store's write transactions) -----------------------------

    def clear(self, db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM decision_cache")
        db.execute("DELETE FROM decision_lines")
        self._ids.clear()
        self._parts.clear()

    @staticmethod
    def forget_patients(db: sqlite3.Connection, patient_ids: Iterable[str | None]) -> None:
        ids = sorted({pid for pid in patient_ids if pid is not None})
        db.executemany("DELETE FROM decision_cache WHERE patient_id = ?", [(p,) for p in ids])

    @staticmethod
    def forget_owners(db: sqlite3.Connection, refs: Iterable[str]) -> None:
        """Forget the decisions of the patients the stored records `refs` now belong to."""
        db.executemany(
            "DELETE FROM decision_cache WHERE patient_id = "
            "(SELECT patient_id FROM records WHERE ref = ?)",
            [(ref,) for ref in refs],
        )
