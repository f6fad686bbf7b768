"""One ips-screen writer per FHIR server: an exclusive, non-blocking `flock` on a lock file.

    with PracticeLock(default_lock_path(client.base_url), base_url=client.base_url):
        ...  # screen and write

The lock file is <lock dir>/<sha256(lock key)[:16]>.lock. The lock dir is, in order: the one
configured (the practice config's [output] lock_dir), $IPS_SCREEN_LOCK_DIR, else
<state dir>/locks with the state dir $IPS_SCREEN_STATE_DIR or ~/.local/state/ips-screen. Set the
same lock dir for every ips-screen writing to one server from this machine (the nightly job
under cron and the service, even as different users: lock files are created readable by all,
and a user who cannot write one still locks it through a read-only descriptor; the folder must
let both users create files in it, e.g. group-writable with the setgid bit).

The lock key is the base URL normalised (`lock_key`): scheme and host in lower case, the default
port made explicit, duplicate and trailing slashes dropped, and localhost, 127.0.0.1 and [::1]
one host, so every spelling of one server shares a lock.

The file records the holder's pid and start time for the message a second run gets (`LockHeld`,
exit 7). The kernel drops a `flock` when its holder dies, so a file left behind by a killed run
never blocks the next one. The file is kept (unlinking a lock file races with a process that has
just opened it) and emptied on release. Local to one machine: writers on several machines are
kept apart by the write lease held on the server itself (`ips_screen.writeback.lease`).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from ips_screen.errors import LockHeld, UserError

STATE_DIR_ENV = "IPS_SCREEN_STATE_DIR"
LOCK_DIR_ENV = "IPS_SCREEN_LOCK_DIR"
LOCK_FILE_MODE = 0o644  # pid and start time only: readable by the other users sharing the lock
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$IPS_SCREEN_STATE_DIR, else ~/.local/state/ips-screen."""
    configured = (os.environ if environ is None else environ).get(STATE_DIR_ENV)
    return Path(configured) if configured else Path.home() / ".local" / "state" / "ips-screen"


def lock_dir(environ: Mapping[str, str] | None = None, configured: Path | None = None) -> Path:
    """`configured`, else $IPS_SCREEN_LOCK_DIR, else <state dir>/locks."""
    if configured is not None:
        return Path(configured)
    value = (os.environ if environ is None else environ).get(LOCK_DIR_ENV)
    return Path(value) if value else state_dir(environ) / "locks"


def lock_key(base_url: str) -> str:
    """The base URL as one key per server: "scheme://host:port/path", scheme and host in lower
    case, the default port explicit, no empty path segments, loopback names as "loopback"."""
    parts = urlsplit(base_url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    host = "loopback" if host in _LOOPBACK else host
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError:  # a malformed port: the URL as typed, so it still gets a lock
        return base_url.strip()
    path = "/".join(segment for segment in parts.path.split("/") if segment)
    return f"{scheme}://{host}:{port}/{path}"


def default_lock_path(
    base_url: str, environ: Mapping[str, str] | None = None, configured: Path | None = None
) -> Path:
    """<lock dir>/<first 16 hex digits of sha256(lock key)>.lock"""
    digest = hashlib.sha256(lock_key(base_url).encode()).hexdigest()[:16]
    return lock_dir(environ, configured) / f"{digest}.lock"


class PracticeLock:
    """An exclusive, non-blocking `flock` on `path`, held from `acquire` (or `with`) to `release`.

    The file records the holder's pid and start time, for the message a second run gets. The
    kernel drops the lock when its holder dies, so a file left by a dead run does not block."""

    def __init__(
        self, path: Path, *, base_url: str | None = None, mode: int = LOCK_FILE_MODE
    ) -> None:
        self.path = Path(path)
        self.base_url = base_url
        self.mode = mode  # of a new lock file: 0600 for one inside a private state dir
        self._fd: int | None = None
        self._writable = True

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: already held by this object")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, self._writable = _open_lock_file(self.path, self.mode), True
        except PermissionError:  # another user's lock file: a read-only descriptor locks too
            try:
                fd, self._writable = os.open(self.path, os.O_RDONLY), False
            except OSError as exc:
                raise UserError(f"cannot open the lock file {self.path}: {exc.strerror}") from exc
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
        if self._writable:
            started = datetime.now(UTC).isoformat(timespec="seconds")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid={os.getpid()}\nstarted={started}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            if self._writable:
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


def _open_lock_file(path: Path, mode: int) -> int:
    """Open the lock file for writing, creating it with `mode` whatever the umask."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return os.open(path, os.O_RDWR)
    try:
        os.fchmod(fd, mode)
    except OSError as exc:  # not ours to change (a shared folder's ACLs): it still locks
        if exc.errno not in (errno.EPERM, errno.EACCES):
            raise
    return fd
