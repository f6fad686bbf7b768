"""The nightly job's state database (state_dir/store.sqlite), opened once, in three parts:

    facts    `FactsStore`: each patient's facts, updated resource by resource (facts_store.py)
    cache    `DecisionCache`: each patient's last decision and how long it holds
             (decision_cache.py)
    ledger   `RunLedger`: the runs, and the digest of each patient's decision after the last run
             (ledger.py)

Each part has its own tables and interface; they share one file and connection
(`database.Database`), so a change to the facts forgets the cached decisions in the same
transaction. `screen_rows` is the one query over all three.
"""

from __future__ import annotations

from pathlib import Path

from ips_screen.store.database import Database
from ips_screen.store.decision_cache import CACHE_SCHEMA, DecisionCache, ScreenRow
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

    def screen_rows(self, after: str | None, limit: int) -> list[ScreenRow]:
        """The next `limit` patients of the facts after id `after` (from the first when None),
        in id order, with their cached decision and their digest after the last run."""
        where = "" if after is None else "WHERE p.id > ?"
        return self.db.sql.execute(
            "SELECT p.id, c.as_of, c.valid_until, c.digest, c.summary, c.data, d.digest, "  # noqa: S608 (constant fragments)
            "c.proposal FROM patients p "
            "LEFT JOIN decision_cache c ON c.patient_id = p.id "
            f"LEFT JOIN decisions d ON d.patient_id = p.id {where} ORDER BY p.id LIMIT ?",
            (limit,) if after is None else (after, limit),
        ).fetchall()
