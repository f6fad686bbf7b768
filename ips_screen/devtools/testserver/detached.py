"""One detached FHIR test server for `scripts/fhir-server start|stop|status` (manual use and
the demo): it keeps running after the starting process exits. Its pid and base URL are kept in
`server.pid` and `server.url` in the server home, its run folder is `server/`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from ips_screen.devtools.testserver.install import default_home
from ips_screen.devtools.testserver.process import FhirTestServer

PID_FILE = "server.pid"
URL_FILE = "server.url"


def _detached_settings(home: Path) -> Path:
    return home / "server" / "settings.yaml"


def _is_our_server(pid: int, settings: Path) -> bool:
    """True when `pid` is a live sekmet process started with `settings` (not a recycled pid)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it was our own child
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(settings).encode() in cmdline and any(b"sekmet" in part for part in cmdline)


def _read_pid(home: Path) -> int | None:
    try:
        return int((home / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def running_detached(home: Path | None = None) -> str | None:
    """The base URL of the detached server, if it is running."""
    home = home or default_home()
    pid = _read_pid(home)
    if pid is None or not _is_our_server(pid, _detached_settings(home)):
        return None
    try:
        return (home / URL_FILE).read_text().strip() or None
    except OSError:
        return None


def start_detached(home: Path | None = None, *, startup_timeout: float = 60.0) -> str:
    """Start the detached server unless it runs already; write server.pid and server.url."""
    home = home or default_home()
    url = running_detached(home)
    if url:
        return url
    for name in (PID_FILE, URL_FILE):
        (home / name).unlink(missing_ok=True)
    server = FhirTestServer(
        home, run_dir=home / "server", startup_timeout=startup_timeout, detached=True
    )
    url = server.start()
    (home / PID_FILE).write_text(f"{server.pid}\n")
    (home / URL_FILE).write_text(f"{url}\n")
    server.release()
    return url


def stop_detached(home: Path | None = None, *, timeout: float = 10.0) -> bool:
    """Stop the detached server; False when none was running."""
    home = home or default_home()
    pid = _read_pid(home)
    stopped = False
    if pid is not None and _is_our_server(pid, _detached_settings(home)):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _is_our_server(pid, _detached_settings(home)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _is_our_server(pid, _detached_settings(home)):
            os.kill(pid, signal.SIGKILL)
        stopped = True
    for name in (PID_FILE, URL_FILE):
        (home / name).unlink(missing_ok=True)
    return stopped
