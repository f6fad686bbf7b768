"""The service's shared store (ips_screen.service.store): private files, several processes on one
file, retention of token ids, cards and sessions."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ips_screen.errors import ConfigError
from ips_screen.service.store import DB_NAME, ServiceStore

ROOT = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_state_dir_and_its_files_are_private_whatever_was_there(tmp_path: Path):
    folder = tmp_path / "state"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    stray = folder / "old.txt"
    stray.write_text("x")
    stray.chmod(0o644)
    store = ServiceStore(str(folder))
    assert store.add("iss", "jti-1", 2000.0, 1000.0)
    assert mode(folder) == 0o700
    names = {p.name for p in folder.iterdir()}
    assert {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"} <= names
    for path in folder.iterdir():
        assert mode(path) == 0o600, path
    store.close()


def test_a_state_dir_that_is_a_file_is_a_config_error(tmp_path: Path):
    (tmp_path / "state").write_text("not a folder")
    with pytest.raises(ConfigError, match="state_dir"):
        ServiceStore(str(tmp_path / "state"))


def test_token_ids_are_seen_by_every_store_on_the_file_until_they_expire(tmp_path: Path):
    first, second = ServiceStore(str(tmp_path)), ServiceStore(str(tmp_path))
    assert first.add("iss", "jti-1", expires_at=1300.0, now=1000.0)
    assert not second.add("iss", "jti-1", expires_at=1300.0, now=1001.0)
    assert second.add("other-iss", "jti-1", expires_at=1300.0, now=1001.0)
    assert second.add("iss", "jti-1", expires_at=1700.0, now=1301.0)  # expired: may be reused


def test_one_token_id_is_accepted_once_by_several_processes_at_once(tmp_path: Path):
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from ips_screen.service.store import ServiceStore
        store = ServiceStore({str(tmp_path)!r})
        print(sum(store.add("iss", f"jti-{{n}}", 5000.0, 1000.0) for n in range(300)))
        """
    )
    ServiceStore(str(tmp_path)).close()  # the schema exists before the race
    runs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    accepted = [int(run.communicate(timeout=120)[0]) for run in runs]
    assert all(run.returncode == 0 for run in runs)
    assert sum(accepted) == 300  # every jti exactly once, whichever process won it


def test_sessions_end_when_idle_too_old_or_deleted_and_keep_no_usable_id(tmp_path: Path):
    store = ServiceStore(str(tmp_path), session_max_age=3600.0, session_idle=600.0)
    sid = "A" * 43
    store.create_session(sid, "dr", "csrf-token", now=1000.0)
    assert store.session(sid, now=1599.0).username == "dr"
    assert store.session(sid, now=2198.0) is not None  # seen at 1599: not idle yet
    assert store.session(sid, now=2799.0) is None  # idle for 601 s since 2198
    assert store.session(sid, now=2800.0) is None  # and gone for good

    store.create_session(sid, "dr", "csrf-token", now=10_000.0)
    for now in range(10_500, 13_600, 500):
        assert store.session(sid, now=float(now)) is not None
    assert store.session(sid, now=13_601.0) is None  # past the maximum age

    store.create_session(sid, "dr", "csrf-token", now=20_000.0)
    store.delete_session(sid, now=20_001.0)
    assert store.session(sid, now=20_002.0) is None

    store.create_session(sid, "dr", "csrf-token", now=30_000.0)
    raw = sqlite3.connect(tmp_path / "service.sqlite").execute("SELECT * FROM sessions").fetchall()
    assert raw and all(sid not in str(row) for row in raw)  # only a hash of the id is kept


def test_expired_rows_are_deleted(tmp_path: Path):
    store = ServiceStore(str(tmp_path), session_max_age=3600.0, session_idle=600.0)
    store.put_card("c1", b"{}", now=1000.0)
    store.add("iss", "jti-1", expires_at=1300.0, now=1000.0)
    store.create_session("B" * 43, "dr", "csrf", now=1000.0)
    assert store.sign_in_attempt("203.0.113.9", "dr", 1000.0, lambda counts: 0) == 0
    later = 1000.0 + 2 * 24 * 3600
    store.add("iss", "jti-2", expires_at=later + 300, now=later)  # a write: the cleanup runs
    db = sqlite3.connect(tmp_path / "service.sqlite")
    counts = {
        table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("cards", "jwt_ids", "sessions", "sign_in_failures")
    }
    assert counts == {"cards": 0, "jwt_ids": 1, "sessions": 0, "sign_in_failures": 0}


def test_without_a_state_dir_the_store_is_in_memory(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = ServiceStore(None)
    assert store.add("iss", "jti-1", 2000.0, 1000.0)
    assert not store.add("iss", "jti-1", 2000.0, 1000.0)
    assert os.listdir(tmp_path) == []


def test_a_sign_in_attempt_is_counted_before_its_password_is_checked(tmp_path: Path):
    """Attempts in flight together are all counted: the throttle looks at them all."""
    from ips_screen.service.signin import PAIR_FREE, throttle_wait

    store = ServiceStore(str(tmp_path))
    waits = [
        store.sign_in_attempt("203.0.113.9", "dr", 1000.0, lambda c: throttle_wait(c, 1000.0))
        for _ in range(PAIR_FREE + 1)
    ]
    assert waits == [0] * PAIR_FREE + [1]
    store.sign_in_succeeded("203.0.113.9", "dr", 1000.0)  # the right password after all
    assert store.failures("203.0.113.9", "dr", 1000.0).pair == 0
