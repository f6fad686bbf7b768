"""The last run's decisions.ndjson changed while a night reuses its lines (something other than
ips-screen wrote to the state folder: an editor, a sync tool, a restore): the night stops with
one line naming the file and what to do (exit 4), writes no outputs, and the next night, which
finds the file no longer as recorded, evaluates its patients and succeeds. Never short or
altered lines written as if reused: the writer reads the reused stretches after the screen
checked them."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from ips_screen.cli.main import main
from ips_screen.errors import ConfigError
from ips_screen.nightly.last_lines import LastLines
from ips_screen.synth import write_bulk
from tests.support.paths import ROOT


def _night(capsys, tmp_path: Path, source: Path, day: str) -> tuple[int, str]:
    """A night of the practice in tmp_path reading `source` (a Bulk folder)."""
    config = tmp_path / "practice.toml"
    config.write_text(
        f'[source]\nkind = "files"\npath = "{source}"\nincremental = true\n'
        f'[screen]\nwrite = false\n[output]\nstate_dir = "{tmp_path / "state"}"\n',
        encoding="utf-8",
    )
    code = main(["-q", "nightly", "--config", str(config), "--as-of", day])
    return code, capsys.readouterr().err


def _cut(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _overwritten(path: Path) -> None:
    """The same size, other words: each reused patient's steps said to fail."""
    with path.open("r+b") as file:
        data = file.read()
        file.seek(0)
        file.write(data.replace(b'"status":"pass"', b'"status":"fail"'))


@pytest.mark.parametrize("change", [_cut, _overwritten], ids=["cut", "overwritten"])
def test_a_last_run_file_changed_while_read_stops_the_night_and_the_next_runs_again(
    tmp_path, capsys, monkeypatch, change
):
    write_bulk(tmp_path / "practice", 300, seed=7, as_of=date(2026, 11, 26))
    (tmp_path / "no-changes").mkdir()
    assert _night(capsys, tmp_path, tmp_path / "practice", "2026-11-26")[0] == 0
    runs = tmp_path / "state" / "runs"
    last = (runs / "latest").resolve()
    before = sorted(p.name for p in runs.iterdir())

    stretch, changed = LastLines.stretch, []

    def stretch_then_change(self, *args):
        piece = stretch(self, *args)
        if piece is not None and not changed:  # checked by the screen, not yet written
            change(last / "decisions.ndjson")
            changed.append(True)
        return piece

    monkeypatch.setattr(LastLines, "stretch", stretch_then_change)
    code, err = _night(capsys, tmp_path, tmp_path / "no-changes", "2026-11-27")
    assert changed, "the night took no stretch of the last run's lines"
    assert code == ConfigError.exit_code == 4, err
    said = f"ips-screen: error: [output] state_dir: {last / 'decisions.ndjson'} "
    assert err.startswith(said), err
    assert "run it again" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in runs.iterdir()) == before
    assert (runs / "latest").resolve() == last

    monkeypatch.undo()
    code, err = _night(capsys, tmp_path, tmp_path / "no-changes", "2026-11-27")
    assert code == 0, err
    lines = ((runs / "latest").resolve() / "decisions.ndjson").read_bytes()
    assert lines.count(b"\n") == 300 and b'"as_of":"2026-11-26"' not in lines


def test_a_named_pipe_in_place_of_the_last_run_file_is_not_waited_on(tmp_path, capsys):
    """Opened only after it was found to be the file the store recorded, or without waiting:
    a named pipe there (no writer) hung the night for good at eaa0163, which opened it first."""
    write_bulk(tmp_path / "practice", 300, seed=7, as_of=date(2026, 11, 26))
    (tmp_path / "no-changes").mkdir()
    assert _night(capsys, tmp_path, tmp_path / "practice", "2026-11-26")[0] == 0
    last = (tmp_path / "state" / "runs" / "latest").resolve() / "decisions.ndjson"
    last.unlink()
    os.mkfifo(last)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TZ": "Europe/London"}
    config = tmp_path / "practice.toml"
    config.write_text(
        config.read_text().replace(str(tmp_path / "practice"), str(tmp_path / "no-changes"))
    )
    night = ["--as-of", "2026-11-27"]
    done = subprocess.run(
        [sys.executable, "-m", "ips_screen", "-q", "nightly", "--config", str(config), *night],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = ((tmp_path / "state" / "runs" / "latest").resolve() / "decisions.ndjson").read_bytes()
    assert lines.count(b"\n") == 300 and b'"as_of":"2026-11-27"' in lines
