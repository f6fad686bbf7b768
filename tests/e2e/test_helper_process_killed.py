"""A helper process killed mid-run (the system's out-of-memory killer, an operator's `kill -9`)
ends the command with one line saying so and exit 11, not a traceback; nothing half-written is
left, and for the nightly job the run is recorded as failed and the next one succeeds. A helper
whose start fails (a bug, a broken installation) is not said to be killed: the command ends on
its error, with the helper's traceback.

The helpers are forked, so they run the functions these tests put in place of the real ones."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from ips_screen.cli.main import main
from ips_screen.errors import EXIT_CODES, HelperDied
from ips_screen.nightly import deciding, proposal_maker
from ips_screen.sources import chunks, parallel
from ips_screen.sources.parallel import HelperStartFailed
from ips_screen.store import StateStore
from tests.support.bulk_files import as_bulk, resources_in
from tests.support.paths import FIXTURES, FROZEN_NOW

PARENT = os.getpid()
_real_read, _real_decide, _real_template = (
    parallel._read,
    deciding._decide_batch,
    proposal_maker._template,
)


def _killed() -> None:
    assert os.getpid() != PARENT  # only ever a helper
    os.kill(os.getpid(), signal.SIGKILL)


def _read_killed_at_observations(chunk):  # in a reading process
    if Path(chunk.path).name.startswith("Observation") and chunk.part == 1:
        _killed()
    return _real_read(chunk)


def _decide_killed(piece):  # in a deciding process
    _killed()
    return _real_decide(piece)


def _template_killed(decision):  # in the proposal maker's process
    _killed()
    return _real_template(decision)


def _said_helper_died(err: str) -> None:
    assert err.startswith("ips-screen: error: a helper process ended abruptly"), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "--jobs" in err and "memory" in err


def test_a_reading_process_killed_ends_the_screen_with_one_line_and_nothing_written(
    capsys, tmp_path, monkeypatch
):
    data = as_bulk(resources_in([FIXTURES]), tmp_path / "in")
    monkeypatch.setattr(chunks, "RANGE_BYTES", 4096)  # Observation.000.ndjson in several parts
    assert [c.part for c in chunks.plan(sorted(data.iterdir())) if "Observation" in c.path][1] == 1
    monkeypatch.setattr(parallel, "_read", _read_killed_at_observations)
    out = tmp_path / "out"
    code = main(
        ["-q", "screen", str(data), "--out", str(out), "--jobs", "2", "--as-of", "2026-11-26"]
    )
    assert code == HelperDied.exit_code == 11 and 11 in EXIT_CODES
    _said_helper_died(capsys.readouterr().err)
    assert not out.exists()


def _config(work: Path, data: Path, incremental: bool = False) -> Path:
    config = work / "practice.toml"
    config.write_text(
        f'[source]\nkind = "files"\npath = "{data}"\njobs = 2\n'
        f"incremental = {str(incremental).lower()}\n"
        f'[screen]\nwrite = false\njobs = 2\n[output]\nstate_dir = "{work / "state"}"\n',
        encoding="utf-8",
    )
    return config


def _night(config: Path) -> int:
    return main(
        ["-q", "nightly", "--config", str(config), "--as-of", FROZEN_NOW.date().isoformat()]
    )


def _runs(work: Path) -> list[tuple[str, str]]:
    """(status, errors) of the runs, oldest first."""
    with StateStore(work / "state" / "store.sqlite") as store:
        return [(run["status"], " ".join(run["errors"])) for run in store.ledger.recent_runs(5)]


def test_a_deciding_process_killed_fails_the_night_in_one_line_and_the_next_night_runs(
    capsys, tmp_path, monkeypatch
):
    data = as_bulk(resources_in([FIXTURES]), tmp_path / "in")
    config = _config(tmp_path, data)
    monkeypatch.setattr(deciding, "PARALLEL_MIN", 1)  # decided on worker processes
    monkeypatch.setattr(deciding, "_decide_batch", _decide_killed)
    assert _night(config) == 11
    _said_helper_died(capsys.readouterr().err)
    assert not (tmp_path / "state" / "runs" / "latest").exists()
    [(status, errors)] = _runs(tmp_path)
    assert status == "failed" and errors.startswith("a helper process ended abruptly")

    monkeypatch.setattr(deciding, "_decide_batch", _real_decide)
    assert _night(config) == 0
    capsys.readouterr()
    assert (tmp_path / "state" / "runs" / "latest" / "decisions.ndjson").stat().st_size
    assert [status for status, _ in _runs(tmp_path)] == ["failed", "ok"]


def test_the_proposal_makers_process_killed_fails_the_night_in_one_line(
    capsys, tmp_path, monkeypatch
):
    """The maker makes proposals on an incremental night: the first night loads, the second
    proposes (from the fixtures: a patient to propose) with its maker killed."""
    data = tmp_path / "in"
    data.mkdir()
    config = _config(tmp_path, data, incremental=True)
    patients = FIXTURES / "patients"
    (data / "04.json").write_bytes(
        (patients / "04-fit-notes-no-employment-status.json").read_bytes()
    )
    assert _night(config) == 0
    (data / "01.json").write_bytes((patients / "01-unemployed-recent.json").read_bytes())
    monkeypatch.setattr(proposal_maker, "_template", _template_killed)
    code = _night(config)
    err = capsys.readouterr().err
    assert code == 11, err
    _said_helper_died(err)
    assert [status for status, _ in _runs(tmp_path)] == ["ok", "failed"]


BROKEN = r"ImportError\('fhir.resources is broken in this installation'\)"


def _start_fails(*args) -> None:  # a helper's initializer
    assert os.getpid() != PARENT
    raise ImportError("fhir.resources is broken in this installation")


def test_a_reading_process_that_fails_to_start_is_shown_as_its_error_not_as_killed(
    capsys, tmp_path, monkeypatch
):
    data = as_bulk(resources_in([FIXTURES]), tmp_path / "in")
    monkeypatch.setattr(parallel, "_init", _start_fails)
    out = tmp_path / "out"
    with pytest.raises(HelperStartFailed, match=BROKEN):
        main(["-q", "screen", str(data), "--out", str(out), "--jobs", "2", "--as-of", "2026-11-26"])
    assert "helper process ended abruptly" not in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("helper", ["deciding", "proposal maker"])
def test_a_nightly_helper_that_fails_to_start_fails_the_night_on_its_error(
    capsys, tmp_path, monkeypatch, helper
):
    """The maker runs on incremental nights: the first night loads, the second fails."""
    data = as_bulk(resources_in([FIXTURES]), tmp_path / "in")
    config = _config(tmp_path, data, incremental=True)
    assert _night(config) == 0
    if helper == "deciding":
        monkeypatch.setattr(deciding, "PARALLEL_MIN", 1)  # decided on worker processes
        monkeypatch.setattr(deciding, "_init", _start_fails)
    else:
        monkeypatch.setattr(proposal_maker, "_init", _start_fails)
    with pytest.raises(HelperStartFailed, match=BROKEN):
        _night(config)
    assert "helper process ended abruptly" not in capsys.readouterr().err
    assert [run for run in _runs(tmp_path)] == [("ok", ""), ("failed", "HelperStartFailed")]


@pytest.mark.parametrize("command", [["--help"], ["nightly", "--help"]])
def test_the_help_lists_exit_11(capsys, command):
    with pytest.raises(SystemExit):
        main(command)
    assert "  11  a helper process was killed" in capsys.readouterr().out
