"""Ctrl-C while the command is still loading (its imports take a few tenths of a second after
Enter) is said in one line with exit 130, as later, not as a KeyboardInterrupt traceback; a
Ctrl-C the shell has the command ignore (a background job) stays ignored."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.support.paths import FIXTURES, ROOT

WHILE_LOADING = """
import importlib.abc, os, runpy, signal, sys


class CtrlCWhileImporting(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "ips_screen.cli.main":  # the command's own code, loading
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None


sys.meta_path.insert(0, CtrlCWhileImporting())
runpy.run_module("ips_screen", run_name="__main__")
"""
ARGV = ["-q", "screen", str(FIXTURES / "patients"), "--as-of", "2026-11-26"]


def run(tmp_path, ignore_sigint: bool = False) -> subprocess.CompletedProcess:
    def setup() -> None:
        if ignore_sigint:
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    return subprocess.run(
        [sys.executable, "-c", WHILE_LOADING, *ARGV, "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        preexec_fn=setup,
    )


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_while_the_command_loads_is_one_line(tmp_path):
    done = run(tmp_path)
    assert (done.returncode, done.stderr) == (130, "ips-screen: interrupted\n")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_command_run_with_ctrl_c_ignored_keeps_it_ignored(tmp_path):
    done = run(tmp_path, ignore_sigint=True)
    assert (done.returncode, done.stderr) == (0, "")
    assert (tmp_path / "out" / "summary.json").exists()
