"""Ctrl-C or SIGTERM while a command moves its output files into place: the folder ends with all
of them or none, never some of this run's beside some of the last one's, and the line says
which (before, a signal between two moves left, e.g., a new worklist.csv beside the old
proposals.json, and said "no output files written")."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from ips_screen import errors
from ips_screen.cli.main import main
from ips_screen.outputs import staging
from ips_screen.outputs.registry import filenames
from tests.support.paths import FIXTURES

SCREEN = ["screen", str(FIXTURES / "patients"), "--as-of", "2026-11-26", "-q"]


@pytest.mark.parametrize(
    ("signum", "code", "line"),
    [
        (signal.SIGINT, 130, "ips-screen: interrupted after its output files were written"),
        (
            signal.SIGTERM,
            143,
            "ips-screen: terminated (SIGTERM): stopped after its output files were written",
        ),
    ],
    ids=["ctrl-c", "SIGTERM"],
)
def test_a_signal_while_outputs_move_into_place_leaves_them_all(
    tmp_path: Path, monkeypatch, capsys, signum: int, code: int, line: str
):
    monkeypatch.setattr(errors, "_TERMINATING", False)  # put back after the test
    out = tmp_path / "out"
    assert main([*SCREEN, "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real, moved = os.replace, []

    def replace_then_signal(source, target):
        real(source, target)
        moved.append(target)
        if len(moved) == 1:
            os.kill(os.getpid(), signum)  # between the first move and the second

    monkeypatch.setattr(staging.os, "replace", replace_then_signal)
    capsys.readouterr()
    assert main([*SCREEN, "--as-of", "2026-11-27", "--out", str(out)]) == code
    assert capsys.readouterr().err.strip().splitlines()[-1] == line
    after = sorted(p.name for p in out.iterdir())
    assert after == sorted(filenames()) == sorted(before)
    assert sorted(Path(target).name for target in moved) == after  # this run's, every one
    assert b'"as_of": "2026-11-27"' in (out / "summary.json").read_bytes()
