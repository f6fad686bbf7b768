"""The service's shared state: one small SQLite file in `state_dir`, shared by every worker process
and kept across restarts.

    cards             card uuid -> what feedback on that card needs (state.py's `CardState`),
                      for a day
    jwt_ids           (issuer, jti) of every EHR token accepted, until the token expires
    sessions          review-page sessions: sha256 of the cookie's random id -> user, CSRF token,
                      created, last seen, flash message; ended by logout, idleness or age
    sign_in_failures  failed sign-ins by client address and username, for the throttle window

The folder is made private (0700, files 0600) with `ensure_private_dir`, and the database file is
created 0600 before SQLite opens it (its -wal and -shm files take the same mode). WAL mode, a busy
timeout and short transactions (`BEGIN IMMEDIATE` where a row is read then written) make it safe
for several processes. Expired rows are deleted at most once a minute per process.

Without a state_dir (allowed only when public_base_url is loopback: local development) the store
is in memory: one process, lost on restart.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ips_screen.errors import ConfigError, sqlite_unreadable
from ips_screen.private_dir import PrivateDirError, ensure_private_dir, private_open

DB_NAME = "service.sqlite"
CARD_RETENTION_SECONDS = 24 * 3600.0
FAILURE_WINDOW_SECONDS = 15 * 60.0
CLEANUP_EVERY_SECONDS = 60.0
BUSY_TIMEOUT_MS = 5000
LAST_SEEN_GRANULARITY = 10.0  # seconds: a session's last-seen time is not rewritten more often

SCHEMA = """
CREATE TABLE IF NOT EXISTS cards (
    uuid TEXT PRIMARY KEY, state BLOB NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS cards_expires ON cards (expires);
CREATE TABLE IF NOT EXISTS jwt_ids (
    iss TEXT NOT NULL, jti TEXT NOT NULL, expires REAL NOT NULL, PRIMARY KEY (iss, jti));
CREATE INDEX IF NOT EXISTS jwt_ids_expires ON jwt_ids (expires);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY, username TEXT NOT NULL, csrf TEXT NOT NULL, flash TEXT,
    created REAL NOT NULL, last_seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sign_in_failures (
    address TEXT NOT NULL, username TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS failures_by_address ON sign_in_failures (address, at);
CREATE INDEX IF NOT EXISTS failures_by_username ON sign_in_failures (username, at);
CREATE INDEX IF NOT EXISTS failures_at ON sign_in_failures (at);
"""


@dataclass(frozen=True)
class SessionRow:
    username: str
    csrf: str
    flash: str | None
    created: float
    last_seen: float


@dataclass(frozen=True)
class FailureCounts:
    """Failed sign-ins in the window: for this address and username, this address, this user."""

    pair: int
    pair_last: float | None  # the latest failure for this address and username
    address: int
    address_oldest: float | None  # the oldest failure in the window for this address
    username: int


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


def open_database(state_dir: str | None) -> sqlite3.Connection:
    """The service database in `state_dir` (made private), or in memory when it is None, with
    its tables; `ConfigError` for a file SQLite cannot read."""
    if state_dir is None:
        memory = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        memory.executescript(SCHEMA)
        return memory
    folder = Path(state_dir)
    try:
        ensure_private_dir(folder)
        path = folder / DB_NAME
        with private_open(path, "ab"):
            pass  # created 0600 before SQLite opens it; its -wal and -shm files follow its mode
    except (PrivateDirError, OSError) as exc:
        raise ConfigError(f"state_dir: {exc}") from None
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(SCHEMA)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if not sqlite_unreadable(exc):
            raise
        raise ConfigError(
            f"state_dir: the service's database {path} cannot be read ({exc}). Move it aside "
            "(with any -wal and -shm file beside it): it holds only review-page sessions, "
            "recent cards and EHR token ids, so signed-in users sign in again"
        ) from None
    return conn


class ServiceStore:
    """The shared state (see the module docstring). Thread-safe: one connection per process,
    used under a lock; other processes are kept out by SQLite's own locking."""

    def __init__(
        self,
        state_dir: str | None,
        *,
        session_max_age: float = 8 * 3600.0,
        session_idle: float = 30 * 60.0,
    ) -> None:
        self.state_dir = state_dir
        self.session_max_age = session_max_age
        self.session_idle = session_idle
        self._conn = open_database(state_dir)
        self._lock = threading.Lock()
        self._cleaned_at = float("-inf")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _write(self, now: float) -> Iterator[sqlite3.Connection]:
        """A short write transaction (taking the write lock at once), with the periodic cleanup."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                if now - self._cleaned_at >= CLEANUP_EVERY_SECONDS:
                    self._cleanup(conn, now)
                    self._cleaned_at = now
                yield conn
            except BaseException:
                if conn.in_transaction:  # SQLite rolls back by itself on some errors (disk full)
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _read(self, sql: str, args: tuple) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _cleanup(self, conn: sqlite3.Connection, now: float) -> None:
        conn.execute("DELETE FROM cards WHERE expires < ?", (now,))
        conn.execute("DELETE FROM jwt_ids WHERE expires < ?", (now,))
        conn.execute(
            "DELETE FROM sessions WHERE created < ? OR last_seen < ?",
            (now - self.session_max_age, now - self.session_idle),
        )
        conn.execute("DELETE FROM sign_in_failures WHERE at < ?", (now - FAILURE_WINDOW_SECONDS,))

    # ---- cards

    def put_card(self, uuid: str, state: bytes, now: float) -> None:
        """Keep a card's state (serialised by state.py) for `CARD_RETENTION_SECONDS`."""
        with self._write(now) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO cards (uuid, state, expires) VALUES (?, ?, ?)",
                (uuid, state, now + CARD_RETENTION_SECONDS),
            )

    def get_card(self, uuid: str, now: float) -> bytes | None:
        rows = self._read("SELECT state FROM cards WHERE uuid = ? AND expires >= ?", (uuid, now))
        return bytes(rows[0][0]) if rows else None

    # ---- EHR token ids (the `ReplayStore` of ehr_auth)

    def add(self, iss: str, jti: str, expires_at: float, now: float) -> bool:
        """Record (iss, jti) until `expires_at`; False if it is already recorded and unexpired."""
        with self._write(now) as conn:
            conn.execute(
                "DELETE FROM jwt_ids WHERE iss = ? AND jti = ? AND expires < ?", (iss, jti, now)
            )
            cursor = conn.execute(
                "INSERT OR IGNORE INTO jwt_ids (iss, jti, expires) VALUES (?, ?, ?)",
                (iss, jti, expires_at),
            )
            return cursor.rowcount == 1

    # ---- review-page sessions (rows keyed by the sha256 of the cookie's id)

    def create_session(
        self, session_id: str, username: str, csrf: str, now: float, flash: str | None = None
    ) -> None:
        with self._write(now) as conn:
            conn.execute(
                "INSERT INTO sessions (id_hash, username, csrf, flash, created, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (_digest(session_id), username, csrf, flash, now, now),
            )

    def session(self, session_id: str, now: float) -> SessionRow | None:
        """The live session, its last-seen time brought up to `now`; None (and the row deleted)
        when it is unknown, idle for longer than the idle timeout, or older than the maximum."""
        key = _digest(session_id)
        rows = self._read(
            "SELECT username, csrf, flash, created, last_seen FROM sessions WHERE id_hash = ?",
            (key,),
        )
        if not rows:
            return None
        row = SessionRow(*rows[0])
        if now - row.created > self.session_max_age or now - row.last_seen > self.session_idle:
            self.delete_session(session_id, now)
            return None
        if now - row.last_seen >= LAST_SEEN_GRANULARITY:
            with self._write(now) as conn:
                conn.execute("UPDATE sessions SET last_seen = ? WHERE id_hash = ?", (now, key))
        return row

    def delete_session(self, session_id: str, now: float) -> None:
        with self._write(now) as conn:
            conn.execute("DELETE FROM sessions WHERE id_hash = ?", (_digest(session_id),))

    def set_flash(self, session_id: str, message: str | None, now: float) -> None:
        with self._write(now) as conn:
            conn.execute(
                "UPDATE sessions SET flash = ? WHERE id_hash = ?", (message, _digest(session_id))
            )

    # ---- sign-in failures

    def sign_in_attempt(
        self,
        address: str,
        username: str,
        now: float,
        wait_for: Callable[[FailureCounts], int],
    ) -> int:
        """Seconds to wait (from `wait_for` of the failures so far); when 0 the attempt is
        recorded as a failure at once, in the same transaction, so attempts made in parallel are
        all counted. A successful sign-in then clears it (`sign_in_succeeded`)."""
        with self._write(now) as conn:
            wait = wait_for(self._failures(conn, address, username, now))
            if wait == 0:
                conn.execute(
                    "INSERT INTO sign_in_failures (address, username, at) VALUES (?, ?, ?)",
                    (address, username, now),
                )
            return wait

    def sign_in_succeeded(self, address: str, username: str, now: float) -> None:
        with self._write(now) as conn:
            conn.execute(
                "DELETE FROM sign_in_failures WHERE address = ? AND username = ?",
                (address, username),
            )

    def failures(self, address: str, username: str, now: float) -> FailureCounts:
        with self._lock:
            return self._failures(self._conn, address, username, now)

    @staticmethod
    def _failures(
        conn: sqlite3.Connection, address: str, username: str, now: float
    ) -> FailureCounts:
        since = now - FAILURE_WINDOW_SECONDS
        pair, pair_last = conn.execute(
            "SELECT count(*), max(at) FROM sign_in_failures "
            "WHERE address = ? AND username = ? AND at >= ?",
            (address, username, since),
        ).fetchone()
        by_address, oldest = conn.execute(
            "SELECT count(*), min(at) FROM sign_in_failures WHERE address = ? AND at >= ?",
            (address, since),
        ).fetchone()
        (by_user,) = conn.execute(
            "SELECT count(*) FROM sign_in_failures WHERE username = ? AND at >= ?",
            (username, since),
        ).fetchone()
        return FailureCounts(pair, pair_last, by_address, oldest, by_user)
