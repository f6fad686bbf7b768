"""Running one FHIR test server (sekmet-fhir) on 127.0.0.1.

Each server gets a settings file with a free port, an in-memory database, the simulator off (it
would otherwise fulfil ServiceRequests and Tasks by itself) and inbound logging off. It is
installed on first use (`install`), must answer GET /metadata before `start()` returns, and must
listen on the loopback interface only.
"""

from __future__ import annotations

import atexit
import ipaddress
import logging
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import yaml

from ips_screen.devtools.testserver.install import child_env, default_home, install
from ips_screen.errors import ServerError

log = logging.getLogger("ips_screen.devtools")

HOST = "127.0.0.1"

_DETACHED: list[subprocess.Popen[bytes]] = []  # keeps released servers' handles alive


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
                env=child_env(),
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
                terminate(proc)
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
            terminate(proc)
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


def terminate(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
