"""The nightly job's state dir stays private and clean: modes after a run over a world-readable
folder, Bulk downloads removed after use and after a crash, crashed runs marked interrupted; the
files of `screen --out` are private too."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import orjson
import pytest

from ips_screen.cli.main import main
from ips_screen.errors import ServerError
from ips_screen.nightly.run import run_nightly
from ips_screen.store import StateStore
from tests.helpers import AS_OF
from tests.support.fake_bulk import FakeBulkServer, fake_config
from tests.support.paths import FIXTURES, FROZEN_NOW

SECRET_RECORD = b'{"resourceType":"Patient","id":"left-over","name":[{"family":"Leftover"}]}\n'


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def files_config(tmp_path: Path) -> Path:
    config = tmp_path / "practice.toml"
    config.write_text(
        f'[source]\nkind = "files"\npath = "{FIXTURES}"\n'
        '[screen]\nwrite = false\n[output]\nstate_dir = "state"\nkeep_runs = 5\n'
    )
    return config


def nightly(config: Path) -> int:
    return main(["-q", "nightly", "--config", str(config), "--as-of", AS_OF.isoformat()], {})


def world_readable_state(state: Path) -> None:
    """A state dir as an earlier version (or a careless admin) left it: 0755 folders, 0644 files,
    a store, a run folder, and the Bulk downloads of a run that crashed."""
    for folder in ("runs/0", "locks", "exports/current/files"):
        (state / folder).mkdir(parents=True, exist_ok=True)
    with StateStore(state / "store.sqlite"):
        pass
    (state / "runs" / "0" / "worklist.csv").write_text("Patient/fx-01,chronic pain\n")
    (state / "exports" / "current" / "files" / "Patient.000.ndjson").write_bytes(SECRET_RECORD)
    (state / "exports" / "current" / "files" / "Condition.000.ndjson.part").write_bytes(b"{")
    (state / "exports" / "current" / "export-state.json").write_text('{"status_url": "x"}')
    for root, _dirs, files in os.walk(state):
        Path(root).chmod(0o755)
        for name in files:
            (Path(root) / name).chmod(0o644)


def assert_private(state: Path) -> list[Path]:
    """Every folder under `state` is 0700 and every file 0600 (links are not followed)."""
    seen = []
    assert mode(state) == 0o700
    for path in state.rglob("*"):
        if path.is_symlink():
            continue
        assert mode(path) == (0o700 if path.is_dir() else 0o600), (path, oct(mode(path)))
        seen.append(path)
    return seen


def test_a_run_over_a_world_readable_state_dir_leaves_it_private(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    state = tmp_path / "state"
    world_readable_state(state)
    assert nightly(files_config(tmp_path)) == 0

    seen = assert_private(state)
    names = {p.relative_to(state).as_posix() for p in seen}
    assert {"store.sqlite", "runs/1/report.html", "runs/1/worklist.csv", "locks/nightly.lock"} <= (
        names
    )
    assert "runs/1/decisions.ndjson" in names and "runs/0/worklist.csv" in names
    # The crashed run's downloads are gone; its resume file (no patient data) is kept.
    assert not (state / "exports" / "current" / "files").exists()
    assert (state / "exports" / "current" / "export-state.json").is_file()
    assert all(SECRET_RECORD not in p.read_bytes() for p in seen if p.is_file())


def test_a_state_dir_that_cannot_be_made_private_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    (tmp_path / "state").write_text("not a folder")
    assert nightly(files_config(tmp_path)) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ips-screen: error: [output] state_dir: {tmp_path / 'state'}: cannot create "
                   "the state folder (File exists)"]  # fmt: skip


def test_bulk_downloads_are_private_and_removed_even_when_the_run_fails(tmp_path: Path):
    server = FakeBulkServer()
    api = server.api()
    modes: list[int] = []
    export = api.export

    def export_then_fail(client, request, work_dir: Path, **options):
        result = export(client, request, work_dir / "files", **options)
        (work_dir / "export-state.json").write_text("{}")
        modes.extend(mode(path) for _, path in result.files)
        raise ServerError("GET /files/3: connection reset (the export resumes next run)")

    failing = api.__class__(api.supports_export, export_then_fail, api.request, api.unsupported)
    config = fake_config(tmp_path)
    with pytest.raises(ServerError):
        run_nightly(config, now=FROZEN_NOW, as_of=AS_OF, environ={}, bulk_api=failing)
    work = tmp_path / "state" / "exports" / "current"
    assert modes and set(modes) == {0o600}  # written under the run's umask 077
    assert sorted(p.name for p in work.iterdir()) == ["export-state.json"]


def test_a_crashed_run_is_marked_interrupted_and_the_report_shows_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    state = tmp_path / "state"
    config = files_config(tmp_path)
    assert nightly(config) == 0
    # A run killed mid-way: its ledger row says `running`, its run folder is empty and its
    # staging folder holds half its outputs.
    with StateStore(state / "store.sqlite") as store:
        crashed = store.ledger.start_run(
            started=FROZEN_NOW, as_of=AS_OF, ruleset="r@1", mode="full"
        )
    (state / "runs" / str(crashed)).mkdir()
    staging = state / "runs" / f".{crashed}.k1ll3d.tmp"
    staging.mkdir()
    (staging / "decisions.ndjson").write_text('{"patient": "Patient/fx-01"}\n')
    capsys.readouterr()

    assert nightly(config) == 0
    err = capsys.readouterr().err
    assert f"run {crashed} (started {FROZEN_NOW.isoformat()}, pid {os.getpid()}" in err
    assert "did not finish: marked interrupted" in err
    with StateStore(state / "store.sqlite") as store:
        runs = store.ledger.recent_runs(5)
    assert [r["status"] for r in runs] == ["ok", "interrupted", "ok"]
    message = runs[1]["errors"][0]
    assert message.startswith(f"interrupted: the run (pid {os.getpid()} on ")
    assert not (state / "runs" / str(crashed)).exists() and not staging.exists()
    html = (state / "runs" / "latest" / "report.html").read_text()
    assert "Runs that did not finish" in html
    assert f"Run {crashed} (started 26 November 2026 at 09:30): interrupted: " in html

    assert nightly(config) == 0  # marked once: the next run finds nothing to mark
    with StateStore(state / "store.sqlite") as store:
        assert [r["status"] for r in store.ledger.recent_runs(5)] == [
            "ok",
            "interrupted",
            "ok",
            "ok",
        ]
    assert "marked interrupted" not in capsys.readouterr().err


def test_an_old_ledger_gains_the_pid_and_host_columns(tmp_path: Path):
    """A ledger made before the pid and host columns gains them when a run starts."""
    import sqlite3

    from ips_screen.store.ledger import LEDGER_SCHEMA

    path = tmp_path / "store.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(LEDGER_SCHEMA)
        db.execute(
            "INSERT INTO runs (started, status, as_of, ruleset, mode) "
            "VALUES ('2026-11-25T02:00:00+00:00', 'running', '2026-11-25', 'r@1', 'full')"
        )
    db.close()
    with StateStore(path) as store:
        marked = store.ledger.interrupt_unfinished(finished=FROZEN_NOW)
        assert [(m["id"], m["pid"], m["host"]) for m in marked] == [(1, None, None)]
        assert store.ledger.recent_runs(1)[0]["errors"] == [
            "interrupted: the run (pid unknown on unknown host) stopped without finishing"
        ]
        store.ledger.start_run(started=FROZEN_NOW, as_of=AS_OF, ruleset="r@1", mode="full")
        row = store.db.sql.execute("SELECT pid FROM runs WHERE id = 2").fetchone()
    assert row == (os.getpid(),)
    assert orjson.loads(orjson.dumps(marked))  # plain values, for the log and the report


def test_screen_out_files_are_private_in_the_folder_the_user_chose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "out"
    out.mkdir(mode=0o755)
    out.chmod(0o755)
    (out / "worklist.csv").write_text("from an earlier screen\n")
    (out / "worklist.csv").chmod(0o644)
    assert main(["-q", "screen", str(FIXTURES), "--out", str(out), "--as-of", "2026-11-26"]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert "decisions.ndjson" in written and "worklist.csv" in written
    assert {p.name: mode(p) for p in out.iterdir()} == dict.fromkeys(written, 0o600)
    assert mode(out) == 0o755  # the folder is the user's choice


def test_the_resume_file_kept_is_the_bulk_clients():
    from ips_screen.fhir.bulk import STATE_FILE
    from ips_screen.nightly.state_cleanup import RESUME_FILE

    assert RESUME_FILE == STATE_FILE
