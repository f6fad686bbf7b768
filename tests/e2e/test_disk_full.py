"""A disk that fills up (or a file size limit reached) while the screen or the nightly job writes
ends the command with one line saying so and exit 12, not a traceback: no output folder or
staging folder is left half-written, the store keeps what it had, and the next night runs.

The commands run as a user runs them, in a process whose files may not grow past a limit
(RLIMIT_FSIZE: the system refuses the write that would pass it, as a full disk refuses one), or,
for SQLite's own "database or disk is full", with the store's pages capped."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ips_screen.cli.main import main
from ips_screen.errors import EXIT_CODES, DiskFull, disk_failed
from ips_screen.store import database, ledger
from ips_screen.store.state import StateStore
from tests.support.paths import FIXTURES, ROOT

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")


# The command, in a process that first limits the size of the files it writes.
_LIMITED = (
    "import resource, runpy, signal, sys\n"
    "limit = int(sys.argv.pop(1))\n"
    "if limit:\n"
    "    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write, not a killed process\n"
    "    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))\n"
    "runpy.run_module('ips_screen', run_name='__main__', alter_sys=True)\n"
)


def _run(args: list[str], max_file_bytes: int | None, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    env["TZ"] = "Europe/London"
    return subprocess.run(
        [sys.executable, "-c", _LIMITED, str(max_file_bytes or 0), "-q", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
        timeout=300,
    )


def _said_disk_full(err: str) -> None:
    assert err.startswith("ips-screen: error: could not write to the disk ("), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "output files were not written" in err and "Free some space" in err


@pytest.mark.parametrize("max_file_bytes", [20_000, 100_000])  # proposals.json, decisions.ndjson
def test_a_screen_whose_outputs_do_not_fit_stops_in_one_line_leaving_nothing(
    tmp_path, max_file_bytes
):
    """decisions.ndjson is about 190 kB, proposals.json 130 kB: the first limit stops the
    proposals as they are written (and again as the failed file is closed), the second the
    decisions when they are written at the end."""
    out = tmp_path / "out"
    args = ["screen", str(FIXTURES), "--out", str(out), "--as-of", "2026-11-26"]
    done = _run(args, max_file_bytes, tmp_path)
    assert done.returncode == DiskFull.exit_code == 12 and 12 in EXIT_CODES
    _said_disk_full(done.stderr)
    assert "File too large" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no out/, no .out.*.tmp
    assert _run(args, None, tmp_path).returncode == 0  # with room: the same command works
    assert (out / "decisions.ndjson").stat().st_size > 100_000


def _config(work: Path) -> Path:
    config = work / "practice.toml"
    config.write_text(
        f'[source]\nkind = "files"\npath = "{FIXTURES}"\nincremental = true\n'
        f'[screen]\nwrite = false\n[output]\nstate_dir = "{work / "state"}"\n',
        encoding="utf-8",
    )
    return config


@pytest.mark.parametrize("max_file_bytes", [150_000, 250_000])  # the store, then the outputs
def test_a_night_that_cannot_write_stops_in_one_line_and_the_next_one_runs(
    tmp_path, max_file_bytes
):
    config = _config(tmp_path)
    args = ["nightly", "--config", str(config), "--as-of", "2026-11-26"]
    done = _run(args, max_file_bytes, tmp_path)
    assert done.returncode == 12, done.stderr
    _said_disk_full(done.stderr)
    runs = tmp_path / "state" / "runs"
    assert not (runs / "latest").exists()
    assert not [p for p in runs.glob("*") if p.name.startswith(".")]  # no staging left
    again = _run(args, None, tmp_path)
    assert again.returncode == 0, again.stderr
    assert (runs / "latest" / "decisions.ndjson").stat().st_size > 100_000
    with StateStore(tmp_path / "state" / "store.sqlite") as store:
        assert store.ledger.recent_runs(5)[-1]["status"] == "ok"


def test_a_store_that_sqlite_finds_full_stops_the_night_in_one_line(tmp_path, capsys, monkeypatch):
    """SQLite's own "database or disk is full" (here: the store's pages capped), and the failed
    run's record, which cannot be written either, does not hide it."""
    real_init = database.Database.__init__

    def capped(self, path, schemas) -> None:
        real_init(self, path, schemas)
        self.sql.execute("PRAGMA max_page_count = 40")  # 160 kB: the facts do not fit

    monkeypatch.setattr(database.Database, "__init__", capped)
    config = _config(tmp_path)
    code = main(["-q", "nightly", "--config", str(config), "--as-of", "2026-11-26"])
    err = capsys.readouterr().err
    assert code == 12, err
    _said_disk_full(err)
    assert "database or disk is full" in err


def test_a_failed_run_that_cannot_be_recorded_still_says_why_it_failed(
    tmp_path, capsys, monkeypatch
):
    """On a full disk the ledger's "failed" cannot be written either (seen on a full tmpfs):
    the run's own error is told, the unrecorded failure logged, and the next run finds the run
    unfinished (`clear_crashed_runs`)."""
    real_init, real_finish = database.Database.__init__, ledger.RunLedger.finish_run

    def capped(self, path, schemas) -> None:
        real_init(self, path, schemas)
        self.sql.execute("PRAGMA max_page_count = 40")

    def finish_run(self, run_id, **kw) -> None:
        if kw["status"] == "failed":
            raise sqlite3.OperationalError("database or disk is full")
        real_finish(self, run_id, **kw)

    monkeypatch.setattr(database.Database, "__init__", capped)
    monkeypatch.setattr(ledger.RunLedger, "finish_run", finish_run)
    config = _config(tmp_path)
    code = main(["-q", "nightly", "--config", str(config), "--as-of", "2026-11-26"])
    err = capsys.readouterr().err
    assert code == 12, err
    warning, error = err.strip().splitlines()
    assert warning.endswith(
        "WARNING run 1 failed, and could not be recorded as failed: database or disk is full"
    )
    _said_disk_full(error)
    with StateStore(tmp_path / "state" / "store.sqlite") as store:
        assert store.ledger.recent_runs(5)[-1]["status"] == "running"


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
        (OSError(errno.EDQUOT, "Disk quota exceeded", "/x/y"), "Disk quota exceeded: /x/y"),
        (OSError(errno.EFBIG, "File too large"), "File too large"),
    ],
)
def test_errors_of_a_full_disk_are_told_in_words(error, said):
    found = disk_failed(error)
    assert found is not None and f"could not write to the disk ({said})" in str(found)


def _sqlite_error(name: str) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("disk I/O error")
    error.sqlite_errorcode = getattr(sqlite3, name)  # as SQLite sets it
    return error


def test_other_errors_are_not_taken_for_a_full_disk():
    assert disk_failed(_sqlite_error("SQLITE_IOERR_WRITE")) is not None
    assert disk_failed(_sqlite_error("SQLITE_FULL")) is not None
    assert disk_failed(_sqlite_error("SQLITE_IOERR_READ")) is None  # a read: not for want of room
    assert disk_failed(OSError(errno.EACCES, "Permission denied")) is None
    assert disk_failed(ValueError("x")) is None
    assert disk_failed(sqlite3.OperationalError("no such table: x")) is None


@pytest.mark.parametrize("command", [["--help"], ["nightly", "--help"]])
def test_the_help_lists_exit_12(capsys, command):
    with pytest.raises(SystemExit):
        main(command)
    assert "  12  a write the disk refused" in capsys.readouterr().out
