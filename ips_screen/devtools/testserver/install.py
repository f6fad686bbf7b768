"""Installing the FHIR test server: sekmet-fhir, pinned exactly, into its own virtual environment
(`.fhir-server/venv`, ignored by git) with the constraints file
`scripts/fhir-server-constraints.txt`, because its own dependencies are unpinned.

`install()` is idempotent (a stamp records the pins it installed with) and safe to run from
several processes at once (a file lock). A package index that cannot be reached is
`IndexUnreachable`, so that the tests needing the server can be skipped rather than failed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ips_screen.errors import ServerError

log = logging.getLogger("ips_screen.devtools")

SEKMET_REQUIREMENT = "sekmet-fhir==0.1.1"
CONSTRAINTS_PATH = Path("scripts/fhir-server-constraints.txt")
HOME_ENV = "IPS_SCREEN_FHIR_SERVER_HOME"

_PIP_TIMEOUT = 900.0
_NETWORK_FAILURES = re.compile(
    r"NewConnectionError|Max retries exceeded|Temporary failure in name resolution"
    r"|Name or service not known|Network is unreachable|ConnectTimeoutError|ReadTimeoutError"
    r"|ProxyError|connection error|connection broken by|No route to host|Connection refused"
)


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


def child_env() -> dict[str, str]:
    """The environment without anything that would steer sekmet (SEKMET_* overrides its settings
    file) or leak our own venv into its interpreter."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("SEKMET_")}


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
            env=child_env(),
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
            env=child_env(),
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
