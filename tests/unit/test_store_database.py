"""The store's SQLite file: the write-ahead log copied into the file early, on a thread of its
own, while the nightly job finishes its outputs (`Database.checkpoint_soon`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

from ips_screen.store import database
from ips_screen.store.database import Database

TABLE = "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB NOT NULL);"
ROWS = 1_000  # of 1 kB: about 250 pages of log a batch, under SQLite's automatic checkpoint


def _write(db: Database, start: int) -> None:
    with db.transaction() as sql:
        rows = ((start + i, bytes(1024)) for i in range(ROWS))
        sql.executemany("INSERT INTO t VALUES (?, ?)", rows)


def _rows(path: Path) -> int:
    with sqlite3.connect(path) as sql:
        return sql.execute("SELECT count(*) FROM t").fetchone()[0]


def test_an_early_checkpoint_copies_the_log_and_later_writes_are_kept(tmp_path: Path):
    path = tmp_path / "store.sqlite"
    db = Database(path, [TABLE])
    _write(db, 0)
    before = path.stat().st_size
    db.checkpoint_soon()
    db.checkpoint_soon()  # once is enough: a second call starts nothing more
    _write(db, ROWS)  # while it may still run: a passive checkpoint holds up no transaction
    assert db._checkpoint is not None
    db._checkpoint.join()
    assert path.stat().st_size > before + ROWS * 1024  # the first batch is in the file now
    db.close()
    assert not db._checkpoint.is_alive()
    assert not Path(f"{path}-wal").exists()  # closing copied the rest, and removed the log
    assert _rows(path) == 2 * ROWS


def test_a_failed_early_checkpoint_leaves_closing_to_copy_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    path = tmp_path / "store.sqlite"
    db = Database(path, [TABLE])
    _write(db, 0)

    def unopenable(*args: object, **kwargs: object) -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    stand_in = SimpleNamespace(connect=unopenable, Error=sqlite3.Error)
    monkeypatch.setattr(database, "sqlite3", stand_in)
    caplog.set_level("DEBUG", logger="ips_screen.store")
    db.checkpoint_soon()
    db.close()
    assert "early checkpoint failed: unable to open database file" in caplog.text
    assert not Path(f"{path}-wal").exists()
    assert _rows(path) == ROWS


def test_a_screens_generation_is_past_the_lines_files_whatever_the_counter_says(tmp_path: Path):
    """A screen's decisions must never count as being in the recorded decisions.ndjson: its
    generation is past that file's even when the counter was lost or edited by hand."""
    from ips_screen.store import StateStore

    with StateStore(tmp_path / "store.sqlite") as state:
        cache = state.cache
        assert [cache.next_generation(), cache.next_generation()] == [1, 2]
        assert cache.next_generation(after=7) == 8  # the recorded file's was 7
        state.db.set_meta("screen_generation", None)
        assert cache.next_generation(after=8) == 9
        state.db.set_meta("screen_generation", "not a number")
        assert cache.next_generation() == 1
        assert cache.next_generation(after=9) == 10
