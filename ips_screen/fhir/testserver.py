"""A real FHIR R4 server on 127.0.0.1 for the integration tests and the demo.

It is sekmet-fhir, pinned exactly, installed into its own virtual environment
(`.fhir-server/venv`, ignored by git) with the constraints file
`scripts/fhir-server-constraints.txt`, because its own dependencies are unpinned. Each server gets a
settings file with a free port, an in-memory database, the simulator off (it would otherwise
fulfil ServiceRequests and Tasks by itself) and inbound logging off.

    with FhirTestServer() as server:
        client = FhirClient(server.base_url)

`scripts/fhir-server start|stop` runs one detached server for manual use and the demo, through
`start_detached()` and `stop_detached()`.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import ipaddress
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import yaml

from ips_screen.errors import ServerError

log = logging.getLogger("ips_screen.fhir")

SEKMET_REQUIREMENT = "sekmet-fhir==0.1.1"
CONSTRAINTS_PATH = Path("scripts/fhir-server-constraints.txt")
HOME_ENV = "IPS_SCREEN_FHIR_SERVER_HOME"
HOST = "127.0.0.1"
PID_FILE = "server.pid"
URL_FILE = "server.url"

_PIP_TIMEOUT = 900.0
_NETWORK_FAILURES = re.compile(
    r"NewConnectionError|Max retries exceeded|Temporary failure in name resolution"
    r"|Name or service not known|Network is unreachable|ConnectTimeoutError|ReadTimeoutError"
    r"|ProxyError|connection error|connection broken by|No route to host|Connection refused"
)
_DETACHED: list[subprocess.Popen[bytes]] = []  # keeps released servers' handles alive


class IndexUnreachable(ServerError):
    """sekmet-fhir could not be installed because the package index could not be reached."""


def project_root() -> Path:
    """The ips-screen checkout this module belongs to (where the constraints file lives)."""
    for parent in [*Path(__file__).resolve().parents, Path.cwd(), *Path.cwd().parents]:
        if (parent / CONSTRAINTS_PATH).is_file():
            return parent
    raise ServerError(
        f"cannot find {CONSTRAINTS_PATH}: "
        "the FHIR test server runs only from an ips-screen checkout"
    )


def default_home() -> Path:
    """Where the server's venv and run folders live: $IPS_SCREEN_FHIR_SERVER_HOME or
    <checkout>/.fhir-server."""
    configured = os.environ.get(HOME_ENV)
    return Path(configured) if configured else project_root() / ".fhir-server"


# -- installation -------------------------------------------------------------------------------


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def install(home: Path | None = None, *, python: str | None = None) -> Path:
    """Install sekmet-fhir into `home`/venv unless already installed with the same pins.

    Returns the `sekmet` executable. Raises IndexUnreachable when pip cannot reach the package
    index, ServerError for any other failure (pip's full output is in `home`/install.log).
    """
    home = home or default_home()
    constraints = project_root() / CONSTRAINTS_PATH
    venv = home / "venv"
    exe = venv / "bin" / "sekmet"
    python = python or sys.executable
    want = hashlib.sha256(
        constraints.read_bytes() + SEKMET_REQUIREMENT.encode() + sys.version.encode()
    ).hexdigest()
    stamp = venv / ".ips-screen-installed"
    with _file_lock(home / "install.lock"):
        if exe.is_file() and stamp.is_file() and stamp.read_text().strip() == want:
            return exe
        log.info("installing %s into %s", SEKMET_REQUIREMENT, venv)
        if not (venv / "bin" / "python").is_file():
            _run_install_step([python, "-m", "venv", str(venv)], home, "creating its venv")
        _run_install_step(
            [
                str(venv / "bin" / "python"), "-m", "pip", "install",
                "--disable-pip-version-check", "--no-input", "--quiet",
                "-c", str(constraints), SEKMET_REQUIREMENT,
            ],
            home,
            "pip install",
        )  # fmt: skip
        if not exe.is_file():
            raise ServerError(f"installing {SEKMET_REQUIREMENT} gave no {exe}")
        stamp.write_text(want + "\n")
        return exe


def _run_install_step(command: list[str], home: Path, step: str) -> None:
    log_path = home / "install.log"
    try:
        done = subprocess.run(  # noqa: S603 (fixed command line)
            command,
            capture_output=True,
            text=True,
            timeout=_PIP_TIMEOUT,
            env=_child_env(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise IndexUnreachable(
            f"installing {SEKMET_REQUIREMENT} timed out after {_PIP_TIMEOUT:.0f} s ({step})"
        ) from exc
    output = (done.stdout or "") + (done.stderr or "")
    with log_path.open("a") as handle:
        handle.write(f"$ {' '.join(command)}\n{output}\n")
    if done.returncode == 0:
        return
    errors = [line for line in output.splitlines() if line.startswith("ERROR")]
    last = errors[-1] if errors else (output.strip().splitlines() or ["no output"])[-1]
    message = f"installing {SEKMET_REQUIREMENT} failed ({step}): {last.strip()}; see {log_path}"
    if _NETWORK_FAILURES.search(output) or (
        "(from versions: none)" in output and _index_unreachable(command[0], home)
    ):
        raise IndexUnreachable(f"package index unreachable: {message}")
    raise ServerError(message)


def _index_unreachable(python: str, home: Path) -> bool:
    """After pip found no version at all: ask pip once more, verbosely and without retries,
    whether it could reach the index (pip reports fetch failures only at debug level)."""
    with tempfile.TemporaryDirectory(prefix="probe-", dir=home) as scratch:
        command = [
            python, "-m", "pip", "download", "-vv", "--no-deps", "--no-input",
            "--disable-pip-version-check", "--retries", "0", "--timeout", "10",
            "--dest", scratch, SEKMET_REQUIREMENT,
        ]  # fmt: skip
        with subprocess.Popen(  # noqa: S603 (fixed command line)
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=_child_env(),
        ) as proc:
            assert proc.stdout is not None
            failures = [
                line.strip()
                for line in proc.stdout
                if line.startswith("Could not fetch URL http") and _NETWORK_FAILURES.search(line)
            ]
    with (home / "install.log").open("a") as handle:
        handle.write("index probe:\n" + "\n".join(failures or ["no fetch failures"]) + "\n")
    return bool(failures)


def write_constraints(home: Path | None = None, *, python: str | None = None) -> Path:
    """Regenerate the constraints file from a fresh, unconstrained install (pip freeze)."""
    home = home or default_home()
    target = project_root() / CONSTRAINTS_PATH
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="freeze-", dir=home) as scratch:
        venv = Path(scratch) / "venv"
        pip = [str(venv / "bin" / "python"), "-m", "pip"]
        _run_install_step([python or sys.executable, "-m", "venv", str(venv)], home, "venv")
        _run_install_step(
            [*pip, "install", "--disable-pip-version-check", "--quiet", SEKMET_REQUIREMENT],
            home,
            "pip install",
        )
        frozen = subprocess.run(  # noqa: S603 (fixed command line)
            [*pip, "freeze", "--disable-pip-version-check", "--exclude", "sekmet-fhir"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    header = (
        f"# Versions of {SEKMET_REQUIREMENT}'s dependencies that are known to work (pip freeze of\n"
        "# a fresh install). Regenerate with: scripts/fhir-server constraints\n"
    )
    target.write_text(header + frozen)
    return target


# -- running ------------------------------------------------------------------------------------


def _child_env() -> dict[str, str]:
    """The environment without anything that would steer sekmet (SEKMET_* overrides its settings
    file) or leak our own venv into its interpreter."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("SEKMET_")}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def write_settings(run_dir: Path, port: int) -> Path:
    """sekmet's settings file (keys as in sekmet.config.Settings) for one server in `run_dir`."""
    settings = {
        "base_url": f"http://{HOST}:{port}/fhir",
        "host": HOST,
        "port": port,
        "data_dir": str(run_dir / "data"),
        "db_path": ":memory:",
        "simulator": {"enabled": False},
        "log_inbound": False,
        "own_private_key_path": str(run_dir / "keys" / "sekmet_private.pem"),
    }
    path = run_dir / "settings.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def listening_hosts(port: int) -> set[str] | None:
    """Addresses with a TCP socket listening on `port` (Linux /proc); None if unknown."""
    found: set[str] = set()
    seen_any_table = False
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        seen_any_table = True
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != "0A":  # 0A = LISTEN
                continue
            address, _, port_hex = fields[1].partition(":")
            if int(port_hex, 16) != port or len(address) != width:
                continue
            raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, width, 8))
            found.add(str(ipaddress.ip_address(raw)))
    return found if seen_any_table else None


class FhirTestServer:
    """One sekmet-fhir server on 127.0.0.1, installed on first use. A context manager."""

    def __init__(
        self,
        home: Path | str | None = None,
        *,
        port: int | None = None,
        startup_timeout: float = 60.0,
        run_dir: Path | str | None = None,
        detached: bool = False,
    ) -> None:
        self.home = Path(home) if home else default_home()
        self.port = port
        self.startup_timeout = startup_timeout
        self.run_dir = Path(run_dir) if run_dir else None
        self.detached = detached
        self._owns_run_dir = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise ServerError("the FHIR test server is not running")
        return self._base_url

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def log_path(self) -> Path | None:
        return self.run_dir / "server.log" if self.run_dir else None

    def __enter__(self) -> FhirTestServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> str:
        """Install if needed, start the server, wait until /metadata answers; the base URL."""
        if self._proc is not None:
            return self.base_url
        exe = install(self.home)
        if self.run_dir is None:
            self.home.mkdir(parents=True, exist_ok=True)
            self.run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=self.home))
            self._owns_run_dir = True
        self.run_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self.port else 3
        for attempt in range(1, attempts + 1):
            port = self.port or free_port()
            proc = self._spawn(exe, port)
            base_url = f"http://{HOST}:{port}/fhir"
            try:
                self._wait_until_ready(proc, base_url)
            except _PortTaken:
                if attempt == attempts:
                    raise ServerError(
                        f"port {port} on {HOST} is taken; see {self.log_path}"
                    ) from None
                continue
            self._proc, self._base_url = proc, base_url
            self._check_loopback_only(port)
            if not self.detached:
                atexit.register(self.stop)
            log.info("FHIR test server (pid %d) at %s", proc.pid, base_url)
            return base_url
        raise AssertionError("unreachable")

    def _spawn(self, exe: Path, port: int) -> subprocess.Popen[bytes]:
        assert self.run_dir is not None
        settings = write_settings(self.run_dir, port)
        log_path = self.run_dir / "server.log"
        with log_path.open("ab") as log_file:
            return subprocess.Popen(  # noqa: S603 (fixed command line)
                [str(exe), "serve", "-c", str(settings), "--host", HOST, "--port", str(port)],
                cwd=self.run_dir,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=_child_env(),
                start_new_session=self.detached,
            )

    def _wait_until_ready(self, proc: subprocess.Popen[bytes], base_url: str) -> None:
        """Poll GET /metadata until it answers 200, the process dies, or the deadline passes."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if proc.poll() is not None:
                tail = self._log_tail()
                if "address already in use" in tail.lower():
                    raise _PortTaken
                raise ServerError(
                    f"the FHIR test server exited with code {proc.returncode} while starting: "
                    f"{tail.splitlines()[-1] if tail else 'no output'}; see {self.log_path}"
                )
            try:
                with opener.open(f"{base_url}/metadata", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() >= deadline:
                _terminate(proc)
                raise ServerError(
                    f"the FHIR test server did not answer GET /metadata within "
                    f"{self.startup_timeout:.0f} s; see {self.log_path}"
                )
            time.sleep(0.1)

    def _check_loopback_only(self, port: int) -> None:
        hosts = listening_hosts(port)
        if hosts is None:
            return
        exposed = sorted(h for h in hosts if not ipaddress.ip_address(h).is_loopback)
        if exposed:
            self.stop()
            raise ServerError(f"the FHIR test server listened on {', '.join(exposed)}; stopped it")

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace") if self.log_path else ""
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and remove its run folder."""
        proc, self._proc, self._base_url = self._proc, None, None
        atexit.unregister(self.stop)
        if proc is not None:
            _terminate(proc)
        if self._owns_run_dir and self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir, self._owns_run_dir = None, False

    def release(self) -> None:
        """Forget a detached server without stopping it (it keeps running after we exit)."""
        if self._proc is not None:
            _DETACHED.append(self._proc)
        self._proc = None


class _PortTaken(Exception):
    pass


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


# -- one detached server for scripts/fhir-server --------------------------------------------------


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
