"""Each patient's last decision, kept so that a night re-evaluates only the patients that need it.

    decision_cache  patient id -> as_of (the day it was decided for), valid_until (its horizon,
                    `engine.horizon.valid_until`: the first day it might differ with the same
                    facts), digest (`ledger.decision_digest`), summary (orjson: its
                    `outputs.summary.SummaryKey` and the patient's proposal counts), data (the
                    line of decisions.ndjson without its newline: orjson of `Decision.to_dict()`
                    with sorted keys) and proposal (when proposed: its proposals.json entries,
                    `outputs.formats.proposals_json.proposal_template`)
    meta 'decisions_fingerprint'   what the cached decisions were made with (ruleset, codelists,
                    tool version): another value empties the cache

A patient's row is removed in the same transaction as any change to their facts (`FactsStore`
`apply` and `delete`, including a record that moves from one patient to another), and every row
goes on `reset`: a patient without a row is "dirty" and is evaluated again. Rows hold decisions
(clinical data), like the rest of the database.

The digests of a run are staged in a temporary table while screening and become the `decisions`
table of the ledger only once the run's outputs are written (`commit_digests`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from itertools import islice
from typing import Protocol

CACHE_SCHEMA = """
CREATE TABLE IF NOT EXISTS decision_cache (
    patient_id TEXT PRIMARY KEY,
    as_of TEXT NOT NULL,
    valid_until TEXT NOT NULL,
    digest TEXT NOT NULL,
    summary BLOB NOT NULL,
    data BLOB NOT NULL,
    proposal BLOB
);
"""
_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS digest_stage "
    "(patient_id TEXT PRIMARY KEY, digest TEXT NOT NULL) WITHOUT ROWID"
)
FINGERPRINT_KEY = "decisions_fingerprint"
ROWS_PER_QUERY = 500  # ids per `IN (...)` query (well under SQLite's parameter limit)

# (patient id, as_of, valid_until, digest, summary, data, digest after the last run, proposal):
# the cached columns are None for a patient without a cache row, the last digest for a new one.
ScreenRow = tuple[
    str, str | None, str | None, str | None, bytes | None, bytes | None, str | None, bytes | None
]
# (patient id, as_of, valid_until, digest, summary, data, proposal)
CacheRow = tuple[str, str, str, str, bytes, bytes, bytes | None]


class _HasDb(Protocol):
    _db: sqlite3.Connection

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def get_meta(self, key: str) -> str | None: ...


def in_chunks(values: Iterable[str], size: int = ROWS_PER_QUERY) -> Iterator[list[str]]:
    items = iter(values)
    while chunk := list(islice(items, size)):
        yield chunk


class DecisionCacheMixin:
    """The decision-cache half of `FactsStore` (which owns the connection)."""

    _db: sqlite3.Connection

    def prepare_decision_cache(self: _HasDb, fingerprint: str) -> bool:
        """Empty the cache unless it was made with `fingerprint`, which is then recorded.
        Returns whether the cached rows (if any) may be used."""
        if self.get_meta(FINGERPRINT_KEY) == fingerprint:
            return True
        with self._transaction() as db:
            db.execute("DELETE FROM decision_cache")
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (FINGERPRINT_KEY, fingerprint),
            )
        return False

    def has_cached_decisions(self) -> bool:
        return self._db.execute("SELECT 1 FROM decision_cache LIMIT 1").fetchone() is not None

    def screen_rows(self, after: str | None, limit: int) -> list[ScreenRow]:
        """The next `limit` patients after id `after` (from the first when None), in id order,
        with their cached decision and their digest after the last run."""
        where = "" if after is None else "WHERE p.id > ?"
        return self._db.execute(
            "SELECT p.id, c.as_of, c.valid_until, c.digest, c.summary, c.data, d.digest, "  # noqa: S608 (constant fragments)
            "c.proposal FROM patients p LEFT JOIN decision_cache c ON c.patient_id = p.id "
            f"LEFT JOIN decisions d ON d.patient_id = p.id {where} ORDER BY p.id LIMIT ?",
            (limit,) if after is None else (after, limit),
        ).fetchall()

    def cached_decision(self, patient_id: str) -> CacheRow | None:
        return self._db.execute(
            "SELECT patient_id, as_of, valid_until, digest, summary, data, proposal "
            "FROM decision_cache "
            "WHERE patient_id = ?",
            (patient_id,),
        ).fetchone()

    def put_decisions(self: _HasDb, rows: Sequence[CacheRow]) -> None:
        """Cache the decisions just made (replacing earlier ones)."""
        if not rows:
            return
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO decision_cache "
                "(patient_id, as_of, valid_until, digest, summary, data, proposal) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    # -- invalidation (called inside FactsStore's write transactions) ----------------------------

    @staticmethod
    def _forget_patients(db: sqlite3.Connection, patient_ids: Iterable[str | None]) -> None:
        ids = sorted({pid for pid in patient_ids if pid is not None})
        db.executemany("DELETE FROM decision_cache WHERE patient_id = ?", [(p,) for p in ids])

    @staticmethod
    def _forget_owners(db: sqlite3.Connection, refs: Iterable[str]) -> None:
        """Forget the decisions of the patients the stored records `refs` now belong to."""
        db.executemany(
            "DELETE FROM decision_cache WHERE patient_id = "
            "(SELECT patient_id FROM records WHERE ref = ?)",
            [(ref,) for ref in refs],
        )

    # -- the run's digests -----------------------------------------------------------------------

    def stage_digests(self: _HasDb, items: Iterable[tuple[str, str]]) -> None:
        """Digests of tonight's decisions that differ from the last run's (or were re-made after
        writing proposals); they replace the ledger's on `commit_digests`."""
        rows = list(items)
        if not rows:
            return
        with self._transaction() as db:
            db.execute(_STAGE)
            db.executemany("INSERT OR REPLACE INTO digest_stage VALUES (?, ?)", rows)

    def clear_staged_digests(self: _HasDb) -> None:
        with self._transaction() as db:
            db.execute(_STAGE)
            db.execute("DELETE FROM digest_stage")

    def digest_count(self) -> int:
        """Patients with a digest after the last run."""
        return self._db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]

    def commit_digests(self: _HasDb, *, drop_gone: bool = True) -> None:
        """Make the ledger's digests those of tonight's screen: the staged ones replace theirs
        and (`drop_gone`: some may be left) the digests of patients no longer in the store go,
        in one transaction."""
        with self._transaction() as db:
            db.execute(_STAGE)
            db.execute(
                "INSERT INTO decisions (patient_id, digest) SELECT patient_id, digest "
                "FROM digest_stage WHERE true "
                "ON CONFLICT (patient_id) DO UPDATE SET digest = excluded.digest"
            )
            if drop_gone:
                db.execute(
                    "DELETE FROM decisions WHERE NOT EXISTS "
                    "(SELECT 1 FROM patients p WHERE p.id = decisions.patient_id)"
                )
            db.execute("DELETE FROM digest_stage")
