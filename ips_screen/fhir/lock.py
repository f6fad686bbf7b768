"""One ips-screen writer per FHIR server: an exclusive, non-blocking `flock` on a lock file.

    with PracticeLock(default_lock_path(client.base_url), base_url=client.base_url):
        ...  # screen and write

The lock file is <state dir>/locks/<sha256(base URL)[:16]>.lock, the state dir being
$IPS_SCREEN_STATE_DIR or ~/.local/state/ips-screen. It records the holder's pid and start time
for the message a second run gets (`LockHeld`, exit 7). The kernel drops a `flock` when its holder
dies, so a file left behind by a killed run never blocks the next one. The file is kept (unlinking
a lock file races with a process that has just opened it) and emptied on release. Local to one
machine: writers on several machines need a shared lock this does not give.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from ips_screen.errors import LockHeld, UserError

STATE_DIR_ENV = "IPS_SCREEN_STATE_DIR"


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$IPS_SCREEN_STATE_DIR, else ~/.local/state/ips-screen."""
    configured = (os.environ if environ is None else environ).get(STATE_DIR_ENV)
    return Path(configured) if configured else Path.home() / ".local" / "state" / "ips-screen"


def default_lock_path(base_url: str, environ: Mapping[str, str] | None = None) -> Path:
    """<state dir>/locks/<first 16 hex digits of sha256(base URL)>.lock"""
    digest = hashlib.sha256(base_url.rstrip("/").encode()).hexdigest()[:16]
    return state_dir(environ) / "locks" / f"{digest}.lock"


class PracticeLock:
    """An exclusive, non-blocking `flock` on `path`, held from `acquire` (or `with`) to `release`.

    The file records the holder's pid and start time, for the message a second run gets. The
    kernel drops the lock when its holder dies, so a file left by a dead run does not block."""

    def __init__(self, path: Path, *, base_url: str | None = None) -> None:
        self.path = Path(path)
        self.base_url = base_url
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: already held by this object")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise UserError(f"cannot create the lock file {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            os.close(fd)
            target = self.base_url or "this FHIR server"
            raise LockHeld(
                f"another ips-screen run is writing to {target} (lock {self.path}, pid {pid})"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        started = datetime.now(UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid={os.getpid()}\nstarted={started}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.ftruncate(fd, 0)  # still held: nobody else can have written to it
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> PracticeLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _holder(fd: int) -> str:
    text = os.pread(fd, 256, 0).decode(errors="replace")
    match = re.search(r"^pid=(\d+)$", text, re.MULTILINE)
    return match.group(1) if match else "unknown"
