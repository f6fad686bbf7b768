"""The nightly job's state database (state_dir/store.sqlite), opened once, in three parts:

    facts    `FactsStore`: each patient's facts, updated resource by resource (facts_store.py)
    cache    `DecisionCache`: each patient's last decision and how long it holds
             (decision_cache.py)
    ledger   `RunLedger`: the runs, and the digest of each patient's decision after the last run
             (ledger.py)

Each part has its own tables and interface; they share one file and connection
(`database.Database`), so a change to the facts forgets the cached decisions in the same
transaction. `screen_rows` is the one query over all three.

A screen marks the cached decisions it can reuse without looking at them ("plain", see
`learn_plain`): `screen_rows` gives such a patient's id and a number, and nothing else, so that a
night whose patients are nearly all reused does not turn every cached column into Python values.
"""

from __future__ import annotations

from pathlib import Path

from ips_screen.store.database import Database
from ips_screen.store.decision_cache import (
    CACHE_SCHEMA,
    ROWS_PER_QUERY,
    DecisionCache,
    PlainRow,
    ScreenRow,
)
from ips_screen.store.facts_store import FACTS_SCHEMA, FactsStore
from ips_screen.store.ledger import LEDGER_SCHEMA, RunLedger


class StateStore:
    """The facts, the decision cache and the run ledger of one state dir. Use as a context
    manager."""

    def __init__(self, path: Path) -> None:
        self.db = Database(path, [FACTS_SCHEMA, LEDGER_SCHEMA, CACHE_SCHEMA])
        self.cache = DecisionCache(self.db)
        self.facts = FactsStore(self.db, self.cache)
        self.ledger = RunLedger(self.db)
        self.db.sql.execute(_PLAIN_TABLE)

    @property
    def path(self) -> Path:
        return self.db.path

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def size_bytes(self) -> int:
        """The database's size on disk, with its write-ahead log."""
        return self.db.size_bytes()

    def screen_rows(
        self, after: str | None, limit: int, day: str = "", generation: int = 0
    ) -> list[ScreenRow | PlainRow]:
        """The next `limit` patients of the facts after id `after` (from the first when None),
        in id order, with their cached decision, their digest after the last run, None, their
        cached decision's words (`outputs.proposed`) and its generation (0: older than any).

        With `day`, a patient whose cached decision is plain on that day is a `PlainRow`: their
        id and the number `learn_plain` gave its summary. Plain: no line kept (not proposed),
        decided on or before `day` and valid after it, the same digest as after the last run,
        of `generation` or older, and a summary learned since `forget_plain`.

        Once summaries are learned (a night that reuses decisions), the ids and numbers come
        first, and the other columns only for the patients who are not plain, when they are few:
        reading every cached column of every patient cost 10 of the 25 ms of SQLite's work
        over 10,000 patients who are nearly all plain."""
        bounds = (day, day, generation) if after is None else (day, day, generation, after)
        where = "" if after is None else "WHERE p.id > ?"
        if not self._learned():
            return self._full_rows(f"{where} ORDER BY p.id LIMIT ?", (*bounds, limit))
        found = self.db.sql.execute(
            f"SELECT p.id, s.n {_SCREEN_JOINS} {where} ORDER BY p.id LIMIT ?",
            (*bounds, limit),
        ).fetchall()
        others = [pid for pid, n in found if n is None]
        if not others:
            return found
        if len(others) > ROWS_PER_QUERY:
            return self._full_rows(f"{where} ORDER BY p.id LIMIT ?", (*bounds, limit))
        marks = ",".join("?" * len(others))
        full = {
            row[0]: row
            for row in self._full_rows(f"WHERE p.id IN ({marks})", (day, day, generation, *others))
        }
        return [row if row[1] is not None else full[row[0]] for row in found]

    def _full_rows(self, tail: str, params: tuple) -> list[ScreenRow | PlainRow]:
        cached = ("c.as_of", "c.valid_until", "c.digest", "c.summary", "c.data", "d.digest")
        columns = ", ".join(f"iif(s.n IS NULL, {c}, NULL)" for c in (*cached, "c.proposal"))
        after_n = ", ".join(
            f"iif(s.n IS NULL, {c}, NULL)" for c in ("c.texts", "coalesce(c.generation, 0)")
        )
        rows = self.db.sql.execute(
            f"SELECT p.id, {columns}, s.n, {after_n} {_SCREEN_JOINS} {tail}",
            params,
        ).fetchall()
        return [row if row[8] is None else (row[0], row[8]) for row in rows]

    def _learned(self) -> bool:
        return self.db.sql.execute("SELECT 1 FROM temp.screen_plain LIMIT 1").fetchone() is not None

    def learn_plain(self, summary: bytes) -> int:
        """The number of a cached summary whose decisions the screen takes as plain (see
        `screen_rows`): only a summary of a decision that is not proposed."""
        sql = self.db.sql
        sql.execute("INSERT OR IGNORE INTO temp.screen_plain (summary) VALUES (?)", (summary,))
        found = sql.execute("SELECT n FROM temp.screen_plain WHERE summary = ?", (summary,))
        return int(found.fetchone()[0])

    def forget_plain(self) -> None:
        """No summary is plain (a new screen learns them again)."""
        self.db.sql.execute("DELETE FROM temp.screen_plain")

    def plain_between(self, first: str, last: str) -> list[tuple[str, bytes]]:
        """(id, cached summary) of the patients from `first` to `last`, in id order."""
        return self.db.sql.execute(
            "SELECT p.id, c.summary FROM patients p "
            "JOIN decision_cache c ON c.patient_id = p.id "
            "WHERE p.id BETWEEN ? AND ? ORDER BY p.id",
            (first, last),
        ).fetchall()


_SCREEN_JOINS = (
    "FROM patients p "
    "LEFT JOIN decision_cache c ON c.patient_id = p.id "
    "LEFT JOIN decisions d ON d.patient_id = p.id "
    "LEFT JOIN temp.screen_plain s ON s.summary = c.summary AND c.data = x'' "
    "AND c.as_of <= ? AND ? < c.valid_until AND c.digest = d.digest "
    "AND coalesce(c.generation, 0) <= ?"
)

_PLAIN_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS screen_plain "
    "(n INTEGER PRIMARY KEY, summary BLOB NOT NULL UNIQUE)"
)
