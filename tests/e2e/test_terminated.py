"""A nightly run stopped from outside while its helper processes decide patients: by SIGTERM (a
cron or systemd timeout) it stops as Ctrl-C stops it, in one line with exit 143, its helpers
ended, nothing half-written; killed outright (SIGKILL, the out-of-memory killer) its helpers end
with it. Either way the practice lock is free and the next night runs; before, the helpers lived
on holding the lock, and every later night was refused as "another run".

The job runs in a subprocess whose deciding helper blocks at its first piece until the test lets
it go, on named pipes (no timing): the test knows the night is mid-screen when it signals."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from ips_screen.store import StateStore
from tests.support.bulk_files import as_bulk, resources_in
from tests.support.paths import FIXTURES, FROZEN_NOW, ROOT

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="helpers end with their parent on Linux"
)

HOOKS = """
import os

from ips_screen.nightly import deciding

REAL = deciding._decide_batch


def blocked(piece):  # in a deciding helper: the first piece waits for the test
    try:
        os.close(os.open(os.environ["STARTED"] + ".claimed", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return REAL(piece)
    with open(os.environ["STARTED"], "w") as started:
        started.write(str(os.getpid()))
    with open(os.environ["GO"]) as go:
        go.read()
    return REAL(piece)


deciding._decide_batch = blocked
deciding.PARALLEL_MIN = 1  # decided on helper processes
"""
WRAPPER = "import runpy, night_hooks\nrunpy.run_module('ips_screen', run_name='__main__')\n"


def _setup(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    data = as_bulk(resources_in([FIXTURES]), tmp_path / "in")
    config = tmp_path / "practice.toml"
    config.write_text(
        f'[source]\nkind = "files"\npath = "{data}"\njobs = 2\n[screen]\nwrite = false\njobs = 2\n'
        f'[output]\nstate_dir = "{tmp_path / "state"}"\n',
        encoding="utf-8",
    )
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "night_hooks.py").write_text(HOOKS)
    for pipe in ("started", "go"):
        os.mkfifo(tmp_path / pipe)
    env = {**os.environ, "PYTHONPATH": f"{hooks}{os.pathsep}{ROOT}", "TZ": "Europe/London"}
    env.update(STARTED=str(tmp_path / "started"), GO=str(tmp_path / "go"))
    return config, env


def _night(
    config: Path, env: dict[str, str], hooked: bool, script: str = WRAPPER, **options: Any
) -> subprocess.Popen:
    """The night, started (`hooked`: by `script`) with Popen's `options`."""
    as_of = FROZEN_NOW.date().isoformat()
    command = ["-q", "nightly", "--config", str(config), "--as-of", as_of]
    start = ["-c", script] if hooked else ["-m", "ips_screen"]
    return subprocess.Popen(
        [sys.executable, *start, *command], env=env, stderr=subprocess.PIPE, text=True, **options
    )


def _helper_started(tmp_path: Path) -> int:
    with (tmp_path / "started").open() as started:  # returns once the helper has written
        return int(started.read())


def _signal_while_blocked(tmp_path: Path, send: Callable[[], None]) -> None:
    """`send` the signal while the helper waits at its piece, then let the helper go. The go
    pipe is opened first (it opens once the helper has it open to read, and the helper then
    waits to read it): opened after the signal, it could wait for good for a helper the job
    had already ended (SIGTERM ends them at once), as it once did."""
    go = os.open(tmp_path / "go", os.O_WRONLY)
    try:
        send()
        with suppress(BrokenPipeError):  # the helper was ended first: nobody reads it
            os.write(go, b"go")  # the helper's piece ends; the job stops cleanly
    finally:
        os.close(go)


def _ended(pid: int) -> bool:
    """Whether process `pid` ends (within 30 s); if not, it is killed, not left behind."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        if select.select([handle], [], [], 30)[0]:
            return True
        signal.pidfd_send_signal(handle, signal.SIGKILL)
        return False
    finally:
        os.close(handle)


def _runs(tmp_path: Path) -> list[str]:
    with StateStore(tmp_path / "state" / "store.sqlite") as store:
        return [run["status"] for run in store.ledger.recent_runs(5)]


def _next_night_runs(tmp_path: Path, config: Path, env: dict[str, str]) -> None:
    again = _night(config, env, hooked=False)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err  # not exit 7: no helper holds the practice lock
    assert (tmp_path / "state" / "runs" / "latest" / "decisions.ndjson").stat().st_size
    assert [n.name for n in (tmp_path / "state" / "runs").iterdir() if n.name.startswith(".")] == []


TERMINATED = (143, "ips-screen: terminated (SIGTERM): stopped, no output files written\n")


def _stopped_in_one_line(
    night: subprocess.Popen,
    err: str,
    tmp_path: Path,
    config: Path,
    env: dict[str, str],
    how: tuple[int, str] = TERMINATED,
) -> None:
    """The night stopped as it should (`how`: its exit code and line; by default SIGTERM's):
    that one line, no outputs, the run recorded as failed, and the next night runs."""
    assert (night.returncode, err) == how
    assert not (tmp_path / "state" / "runs" / "latest").exists()
    assert _runs(tmp_path) == ["failed"]
    _next_night_runs(tmp_path, config, env)
    assert _runs(tmp_path) == ["failed", "ok"]


@pytest.mark.parametrize(
    ("signum", "how"),
    [(signal.SIGTERM, TERMINATED), (signal.SIGINT, (130, "ips-screen: interrupted\n"))],
    ids=["SIGTERM", "ctrl-c"],
)
def test_a_signal_stops_the_night_and_its_helpers_in_one_line(
    tmp_path: Path, signum: int, how: tuple[int, str]
):
    """SIGTERM to the job alone (`kill`), or Ctrl-C in its terminal (SIGINT to the job's
    process group, which its helpers, in groups of their own, are not in)."""
    config, env = _setup(tmp_path)
    night = _night(config, env, hooked=True)
    helper = _helper_started(tmp_path)
    _signal_while_blocked(tmp_path, lambda: night.send_signal(signum))
    _, err = night.communicate(timeout=120)
    assert _ended(helper)
    _stopped_in_one_line(night, err, tmp_path, config, env, how)


def test_a_night_killed_outright_takes_its_helpers_with_it(tmp_path: Path):
    config, env = _setup(tmp_path)
    night = _night(config, env, hooked=True)
    helper = _helper_started(tmp_path)  # blocked for good: nobody lets it go
    night.kill()
    night.communicate(timeout=120)
    assert _ended(helper)  # the system ended it with its parent
    _next_night_runs(tmp_path, config, env)
    assert _runs(tmp_path) == ["interrupted", "ok"]


def test_sigterm_to_the_whole_process_group_stops_the_night_and_its_helpers_in_one_line(
    tmp_path: Path,
):
    """As `timeout` and `kill -TERM -<group>` send it, to the job's process group: the helpers,
    in a group of their own, are stopped by the job (`stop_pool`). Before, they got it too,
    printed tracebacks, and could deadlock the job's shutdown for good (a helper blocked
    writing its results, which the job had stopped reading, did not end when told to)."""
    config, env = _setup(tmp_path)
    night = _night(config, env, hooked=True, start_new_session=True)  # a group of its own
    helper = _helper_started(tmp_path)
    _signal_while_blocked(tmp_path, lambda: os.killpg(night.pid, signal.SIGTERM))
    _, err = night.communicate(timeout=120)
    assert _ended(helper)
    _stopped_in_one_line(night, err, tmp_path, config, env)


IMPORTING = """
import importlib.abc, os, runpy, signal, sys


class SignalWhileImporting(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "ips_screen.cli.commands":  # imported once the handler is in place
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGTERM)
        return None


sys.meta_path.insert(0, SignalWhileImporting())
runpy.run_module("ips_screen", run_name="__main__")
"""


def test_sigterm_while_the_command_is_still_importing_is_one_line(tmp_path: Path):
    config, env = _setup(tmp_path)
    night = _night(config, env, hooked=True, script=IMPORTING)
    _, err = night.communicate(timeout=120)
    assert (night.returncode, err) == TERMINATED


CUT_SHORT = HOOKS.replace(
    '    with open(os.environ["STARTED"], "w") as started:',
    """    import struct, sys

    frame = sys._getframe()
    while frame.f_code.co_name != "_process_worker":
        frame = frame.f_back
    results = frame.f_locals["result_queue"]._writer  # the pool's result pipe
    os.write(results.fileno(), struct.pack("!i", 1 << 20) + b"partial")  # a result cut short
    with open(os.environ["STARTED"], "w") as started:""",
)
CUT_SHORT_WRAPPER = WRAPPER.replace("night_hooks", "night_hooks_cut")
CUT_SHORT_READING = (
    CUT_SHORT.replace(
        "from ips_screen.nightly import deciding", "from ips_screen.sources import parallel"
    )
    .replace("REAL = deciding._decide_batch", "REAL = parallel._read")
    .replace("deciding._decide_batch = blocked", "parallel._read = blocked")
    .replace("deciding.PARALLEL_MIN = 1  # decided on helper processes\n", "")
)


@pytest.mark.parametrize("stage", ["deciding", "reading"])
def test_sigterm_to_the_night_and_its_helpers_at_once_stops_in_one_line(tmp_path: Path, stage: str):
    """As systemd's default stop (`KillMode=control-group`) sends it: to every process of the
    service at once, so that a helper ends in the middle of writing its results. Before, the
    job then waited for the rest of them for good (until systemd's SIGKILL, 90 s later), in its
    process pool's shutdown; now it stops in one line, exit 143, as for a SIGTERM to it alone."""
    config, env = _setup(tmp_path)
    hooks = CUT_SHORT if stage == "deciding" else CUT_SHORT_READING
    (tmp_path / "hooks" / "night_hooks_cut.py").write_text(hooks)
    night = _night(config, env, hooked=True, script=CUT_SHORT_WRAPPER)
    helper = _helper_started(tmp_path)  # it has written part of a result, and waits
    os.kill(helper, signal.SIGTERM)
    night.send_signal(signal.SIGTERM)
    try:
        _, err = night.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        night.kill()
        night.communicate()
        pytest.fail("the night did not end within 60 s of SIGTERM")
    assert _ended(helper)
    _stopped_in_one_line(night, err, tmp_path, config, env)
