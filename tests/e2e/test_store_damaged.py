"""A nightly store that SQLite cannot read (overwritten, or its pages damaged by a failing disk)
stops the night with one line naming the store and what to do (exit 4), not a traceback; moved
aside, the next night loads everything again."""

from __future__ import annotations

from pathlib import Path

import pytest

from ips_screen.cli.main import main
from ips_screen.errors import ConfigError
from ips_screen.store.state import StateStore
from tests.support.paths import FIXTURES


def _night(capsys, config: Path, day: str) -> tuple[int, str]:
    code = main(["-q", "nightly", "--config", str(config), "--as-of", day])
    return code, capsys.readouterr().err


@pytest.fixture
def loaded(tmp_path, capsys) -> tuple[Path, Path]:
    """A practice's config and store after a first night."""
    config = tmp_path / "practice.toml"
    config.write_text(
        f'[source]\nkind = "files"\npath = "{FIXTURES}"\nincremental = true\n'
        f'[screen]\nwrite = false\n[output]\nstate_dir = "{tmp_path / "state"}"\n',
        encoding="utf-8",
    )
    assert _night(capsys, config, "2026-11-26")[0] == 0
    store = tmp_path / "state" / "store.sqlite"
    with StateStore(store) as opened:
        opened.db.sql.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the file
    return config, store


def _said_damaged(err: str, store: Path, what: str) -> None:
    assert err.startswith(f"ips-screen: error: [output] state_dir: the store {store} cannot "), err
    assert f"({what})" in err and "move it aside" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_a_store_overwritten_stops_the_night_in_one_line_and_moved_aside_loads_again(
    loaded, capsys
):
    config, store = loaded
    store.write_bytes(b"not a database, " * 4096)
    code, err = _night(capsys, config, "2026-11-27")
    assert code == ConfigError.exit_code == 4
    _said_damaged(err, store, "file is not a database")

    store.rename(store.with_name("store.sqlite.damaged"))
    for end in ("-wal", "-shm"):
        store.with_name(store.name + end).unlink(missing_ok=True)
    assert _night(capsys, config, "2026-11-27")[0] == 0
    with StateStore(store) as again:
        assert [run["mode"] for run in again.ledger.recent_runs(5)] == ["full"]


def test_a_store_with_damaged_pages_stops_the_night_in_one_line(loaded, capsys):
    config, store = loaded
    with StateStore(store) as opened:
        pages = opened.db.sql.execute("PRAGMA page_count").fetchone()[0]
    assert pages > 20
    with store.open("r+b") as damaged:  # the second half of the tables, as a bad disk leaves it
        damaged.seek(4096 * (pages // 2))
        damaged.write(b"\xff" * 4096 * (pages - pages // 2))
    code, err = _night(capsys, config, "2026-11-27")
    assert code == 4
    _said_damaged(err, store, "database disk image is malformed")
