"""A Ctrl-C that comes once the command has done its work, while the interpreter shuts down,
changes nothing: the command ends with its own exit code. Before, the interpreter had put
SIGINT's default action back by then and the process died by the signal with no message, its
outputs all written (a shell says exit 130; cron, a failed run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.paths import FIXTURES, ROOT

LATE = """
import os, signal, sys


class CtrlCAtTheEnd:
    def __del__(self):  # run as the interpreter clears this module, once the command is done
        os.kill(os.getpid(), signal.SIGINT)


at_the_end = CtrlCAtTheEnd()
from ips_screen.cli.main import entry_point

sys.argv[0] = "ips-screen"
entry_point()
"""


def test_a_ctrl_c_as_the_command_exits_leaves_its_exit_code(tmp_path: Path):
    out = tmp_path / "out"
    argv = ["-q", "screen", str(FIXTURES / "patients"), "--as-of", "2026-11-26", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-c", LATE, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert (out / "summary.json").exists()
