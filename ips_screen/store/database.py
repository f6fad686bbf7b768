"""The SQLite file of the nightly job's state (state_dir/store.sqlite), shared by its three parts.

`Database` opens the file (created readable by its owner only: it holds clinical facts and
decisions), in WAL mode with one connection and explicit transactions (`transaction`), creates
the tables of every part, and keeps the small `meta` table of key/value settings. The parts are
`facts_store.FactsStore`, `decision_cache.DecisionCache` and `ledger.RunLedger`; `state.StateStore`
opens the file and builds them.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

log = logging.getLogger("ips_screen.store")

# SQLite's default page. A row larger than about a quarter of a page keeps only its first part on
# the page and the rest on overflow pages of its own. A cached decision is about 4.5 kB (its
# decisions.ndjson line, 15 kB and more when proposed): on 8 kB pages each took a page and a
# mostly empty overflow page, 8.5 kB a row; on 4 kB pages, 5.3 kB (measured on a 10,000-patient
# night: the store 98 MB on 8 kB pages, 67 MB on 4 kB, the night as fast). It only applies when the
# file is made; an existing store keeps its pages.
PAGE_SIZE = 4096
META_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""


class Database:
    """One SQLite file: the connection (`sql`), transactions and the `meta` table."""

    def __init__(self, path: Path, schemas: Iterable[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.sql = sqlite3.connect(self.path, isolation_level=None)
        self.sql.execute(f"PRAGMA page_size={PAGE_SIZE}")  # only takes effect on a new file
        self.sql.execute("PRAGMA journal_mode=WAL")
        self.sql.execute("PRAGMA synchronous=NORMAL")
        self.sql.executescript(META_SCHEMA + "".join(schemas))
        self._checkpoint: threading.Thread | None = None

    def close(self) -> None:
        """Close the connection (SQLite then copies what is left of the write-ahead log into
        the file), after the checkpoint `checkpoint_soon` started."""
        if self._checkpoint is not None:
            self._checkpoint.join()
        self.sql.close()

    def checkpoint_soon(self) -> None:
        """Start copying the write-ahead log into the file now, on a thread and a connection of
        its own, while the caller does other work; `close` waits for it, and then has only what
        was written since to copy. SQLite lets other threads run meanwhile, and a passive
        checkpoint does not hold up this connection's transactions. A small nightly run spends
        10 to 15 ms on it (3 MB of log, and the file synced to disk)."""
        if self._checkpoint is None:
            self._checkpoint = threading.Thread(
                target=self._checkpoint_now, name="store-checkpoint", daemon=True
            )
            self._checkpoint.start()

    def _checkpoint_now(self) -> None:  # on its thread
        try:
            with closing(sqlite3.connect(self.path, isolation_level=None)) as other:
                other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # closing the connection checkpoints again, and says why
            log.debug("the store's early checkpoint failed: %s", exc)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (unless SQLite rolled it back
        already: it does on some errors, such as a full disk, and a second ROLLBACK would fail
        and hide the error)."""
        self.sql.execute("BEGIN IMMEDIATE")
        try:
            yield self.sql
        except BaseException:
            if self.sql.in_transaction:
                self.sql.execute("ROLLBACK")
            raise
        self.sql.execute("COMMIT")

    def get_meta(self, key: str) -> str | None:
        row = self.sql.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        """Set (None: remove) a meta value, in its own transaction."""
        with self.transaction() as db:
            self.put_meta(db, key, value)

    @staticmethod
    def put_meta(db: sqlite3.Connection, key: str, value: str | None) -> None:
        """Set (None: remove) a meta value inside a transaction the caller holds."""
        if value is None:
            db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def size_bytes(self) -> int:
        """The database's size on disk, with its write-ahead log."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            candidate = self.path.with_name(self.path.name + suffix)
            if candidate.exists():
                total += candidate.stat().st_size
        return total
