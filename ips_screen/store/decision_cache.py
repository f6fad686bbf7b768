"""Each patient's last decision, kept so that a night re-evaluates only the patients that need it.

    decision_cache  patient id -> as_of (the day it was decided for), valid_until (its horizon,
                    `engine.horizon.valid_until`: the first day it might differ with the same
                    facts), digest (`ledger.decision_digest`), summary (orjson: its
                    `outputs.summary.SummaryKey` and the patient's proposal counts), data (for a
                    proposed decision, the line of decisions.ndjson without its newline: orjson
                    of `Decision.to_dict()` with sorted keys; b"" for the others), proposal
                    (when proposed: its proposals.json entries,
                    `outputs.formats.proposals_json.proposal_template`) and texts (when
                    proposed: the worklist's and report's words, `outputs.proposed`), and
                    generation: the screen that cached it (NULL: made before the column, older
                    than any screen that counts them)
    meta 'decisions_fingerprint'   what the cached decisions were made with (ruleset, codelists,
                    tool version): another value empties the cache
    meta 'screen_generation'  the last screen's number (`next_generation`: one more each screen)
    meta 'plain_summaries'  the summaries of the decisions not proposed that the last screen to
                    go through every patient wrote (`plain_summaries`): the next screen knows
                    them from its first patient on (nightly/screen.py)
    meta 'lines_file'  the decisions.ndjson of the last run that finished (`LinesFile`) and the
                    generation of its screen: it holds the line, with that run's date, of every
                    cached decision of that generation or older (`nightly.last_lines`), and is
                    where a night reads the lines of the decisions it reuses, but for the
                    proposed ones (whose line it needs whole). A screen that fails after caching
                    some decisions leaves it as it was: the decisions it cached are of a later
                    generation, and evaluated again if not proposed. Without it (or when the file
                    is not as recorded) the decisions without a line here are evaluated again.

A night writes some 4.5 kB of decisions.ndjson per patient; keeping that line here as well
doubled what a full night wrote to SQLite and what an incremental night read from it.

A patient's row is removed in the same transaction as any change to their facts (the facts store
calls `forget_patients` / `forget_owners` / `clear` inside its own write transactions, including
for a record that moves from one patient to another): a patient without a row is "dirty" and is
evaluated again. Rows hold decisions (clinical data), like the rest of the database.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
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
    texts BLOB,
    generation INTEGER
);
DROP INDEX IF EXISTS decision_cache_line;
DROP TABLE IF EXISTS decision_lines;
"""
FINGERPRINT_KEY = "decisions_fingerprint"
LINES_FILE_KEY = "lines_file"
GENERATION_KEY = "screen_generation"
SUMMARIES_KEY = "plain_summaries"
ROWS_PER_QUERY = 500  # ids per `IN (...)` query (well under SQLite's parameter limit)

# (patient id, as_of, valid_until, digest, summary, data, digest after the last run, proposal,
# plain summary number, texts, generation): the cached columns are None for a patient without a
# cache row, the last digest for a new one; the number None (a plain patient's row is a
# `PlainRow`); generation 0 without a row or for one made before the column.
ScreenRow = tuple[
    str,
    str | None,
    str | None,
    str | None,
    bytes | None,
    bytes | None,
    str | None,
    bytes | None,
    int | None,
    bytes | None,
    int | None,
]
# A plain patient's row (`StateStore.screen_rows`): (patient id, plain summary number)
PlainRow = tuple[str, int]
# (patient id, as_of, valid_until, digest, summary, data, proposal, texts); data: b"", proposal
# and texts None, but when proposed
CacheRow = tuple[str, str, str, str, bytes, bytes, bytes | None, bytes | None]


@dataclass(frozen=True)
class LinesFile:
    """A run's decisions.ndjson as it was when the run finished: `path` relative to the store's
    folder, `day` the run's as-of date, the file's size, modification time and inode, and the
    generation of the run's screen (0: recorded before generations were)."""

    path: str
    day: str
    size: int
    mtime_ns: int
    inode: int
    generation: int = 0


def in_chunks(values: Iterable[str], size: int = ROWS_PER_QUERY) -> Iterator[list[str]]:
    items = iter(values)
    while chunk := list(islice(items, size)):
        yield chunk


class DecisionCache:
    """The decision_cache table of the state database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def prepare(self, fingerprint: str) -> bool:
        """Empty the cache unless it was made with `fingerprint`, which is then recorded.
        Returns whether the cached rows (if any) may be used."""
        present = {row[1] for row in self.db.sql.execute("PRAGMA table_info(decision_cache)")}
        if "texts" not in present:  # a store made before the column (its rows are emptied too:
            with self.db.transaction() as db:  # `nightly.screen.CACHE_FORMAT` changed with it)
                db.execute("ALTER TABLE decision_cache ADD COLUMN texts BLOB")
        if "generation" not in present:  # a store made before the column (its rows are older
            with self.db.transaction() as db:  # than any generation: NULL)
                db.execute("ALTER TABLE decision_cache ADD COLUMN generation INTEGER")
        if self.db.get_meta(FINGERPRINT_KEY) == fingerprint:
            return True
        with self.db.transaction() as db:
            self.clear(db)
            self.db.put_meta(db, FINGERPRINT_KEY, fingerprint)
        return False

    def lines_file(self) -> LinesFile | None:
        """The last finished run's decisions.ndjson, when recorded (see the module)."""
        value = self.db.get_meta(LINES_FILE_KEY)
        if value is None:
            return None
        try:
            return LinesFile(**orjson.loads(value))
        except (ValueError, TypeError):  # written by another version: not used
            return None

    def remember_lines_file(self, lines: LinesFile) -> None:
        self.db.set_meta(LINES_FILE_KEY, orjson.dumps(asdict(lines)).decode())

    def plain_summaries(self) -> list[bytes]:
        """The summaries `keep_plain_summaries` kept (none when the value is not a list of
        strings: written by another version)."""
        value = self.db.get_meta(SUMMARIES_KEY)
        try:
            kept = orjson.loads(value) if value is not None else []
        except ValueError:
            return []
        if not isinstance(kept, list) or not all(isinstance(k, str) for k in kept):
            return []
        return [k.encode() for k in kept]

    def keep_plain_summaries(self, summaries: Iterable[bytes]) -> None:
        value = orjson.dumps(sorted(s.decode() for s in summaries)).decode()
        self.db.set_meta(SUMMARIES_KEY, value)

    def next_generation(self, after: int = 0) -> int:
        """A new screen's generation: one more than the last screen's (see the module), and
        than `after` (the recorded lines file's: a screen's decisions must never count as in
        that file, whatever became of the counter)."""
        with self.db.transaction() as db:
            found = db.execute("SELECT value FROM meta WHERE key = ?", (GENERATION_KEY,))
            row = found.fetchone()
            last = int(row[0]) if row and str(row[0]).isdigit() else 0
            generation = max(last, after) + 1
            self.db.put_meta(db, GENERATION_KEY, str(generation))
        return generation

    def has_rows(self) -> bool:
        return self.db.sql.execute("SELECT 1 FROM decision_cache LIMIT 1").fetchone() is not None

    def get(self, patient_id: str) -> CacheRow | None:
        return self.db.sql.execute(
            "SELECT patient_id, as_of, valid_until, digest, summary, data, proposal, texts "
            "FROM decision_cache WHERE patient_id = ?",
            (patient_id,),
        ).fetchone()

    def put(self, rows: Sequence[CacheRow], generation: int) -> None:
        """Cache the decisions just made by the screen of this `generation` (`next_generation`),
        replacing earlier ones."""
        if rows:
            with self.db.transaction() as db:
                db.executemany(
                    "INSERT OR REPLACE INTO decision_cache (patient_id, as_of, valid_until, "
                    "digest, summary, data, proposal, texts, generation) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(*row, generation) for row in rows],
                )

    # -- invalidation (inside the facts store's write transactions) -----------------------------

    def clear(self, db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM decision_cache")
        self.db.put_meta(db, LINES_FILE_KEY, None)
        self.db.put_meta(db, SUMMARIES_KEY, None)

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
