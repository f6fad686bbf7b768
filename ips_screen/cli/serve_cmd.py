"""`ips-screen serve`: the CDS Hooks service and the review page.

    serve --config serve.toml [--host 127.0.0.1] [--port 8080] [--workers N]
    serve hash-password [--user NAME --practitioner Practitioner/ID]

`hash-password` reads the password from stdin when it is not a terminal (one line), else asks
twice without echo, and prints the ``scrypt$...`` hash (or a whole users-file line).

With --workers N (more than 1) uvicorn runs N processes on the same port; each builds the app
from the configuration file and the process environment, and they share the state in the
configuration's state_dir (required then).
"""

from __future__ import annotations

import argparse
import getpass
import importlib.util
import re
import sys
from collections.abc import Mapping

from ips_screen.errors import PortInUse, UserError

MIN_PASSWORD = 12
MAX_WORKERS = 64
_USERNAME = re.compile(r"^[A-Za-z0-9._@\-]{1,128}$")
_PRACTITIONER = re.compile(r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$")


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}")
    return port


def _workers(value: str) -> int:
    try:
        workers = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of workers: {value!r}") from None
    if not 1 <= workers <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"workers must be 1 to {MAX_WORKERS}")
    return workers


def add_serve_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add `serve` (and `serve hash-password`) to the top-level subparsers."""
    serve = subparsers.add_parser(
        "serve",
        help="run the CDS Hooks service and the review page",
        description="Run the CDS Hooks 2.0 patient-view service and the clinicians' review page.",
    )
    serve.add_argument("--config", metavar="FILE", help="service configuration (TOML)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument("--port", type=_port, default=8080, help="port (default 8080)")
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="worker processes (default 1; more need state_dir in the configuration)",
    )
    actions = serve.add_subparsers(dest="serve_command", metavar="ACTION")
    hashing = actions.add_parser(
        "hash-password", help="print a password hash for the review page's users file"
    )
    hashing.add_argument("--user", help="also print the whole users-file line for this username")
    hashing.add_argument("--practitioner", metavar="Practitioner/ID", help="with --user")


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise UserError("the two passwords differ")
    return first


def run_serve(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.serve_command == "hash-password":
        return _hash_password(args)
    if not args.config:
        raise UserError("serve needs --config FILE (see docs/serve.example.toml)")
    _check_serve_extra()
    from ips_screen.service.app import run
    from ips_screen.service.config import load_config

    config = load_config(args.config)
    if args.workers > 1 and config.state_dir is None:
        raise UserError(
            f"{args.config}: --workers {args.workers} needs state_dir (the state the workers "
            "share; see docs/serve.example.toml)"
        )
    check_port_free(args.host, args.port)
    run(
        config,
        args.host,
        args.port,
        environ,
        workers=args.workers,
        config_path=args.config,
        logging_options={
            "verbose": args.verbose,
            "quiet": args.quiet,
            "log_format": args.log_format,
        },
    )
    return 0


def check_port_free(host: str, port: int) -> None:
    """PortInUse (exit 10) when something already listens on host:port, in one line rather than
    the server's log and traceback; any other failure to bind is a UserError."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"{host}:{port} is already in use: stop the other server or choose "
                    "another --port"
                ) from None
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


# The `serve` extra (pyproject.toml): module to import -> package to install.
SERVE_MODULES = {
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "python_multipart": "python-multipart",
}


def _check_serve_extra() -> None:
    """Refuse in one line when the web service's packages are not installed."""
    missing = [package for module, package in SERVE_MODULES.items() if not _importable(module)]
    if missing:
        raise UserError(
            f"serve needs {', '.join(missing)}: install ips-screen[serve] "
            "(pip install 'ips-screen[serve]')"
        )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _hash_password(args: argparse.Namespace) -> int:
    from ips_screen.service.config import hash_password

    if (args.user is None) != (args.practitioner is None):
        raise UserError("give --user and --practitioner together")
    if args.user is not None and not _USERNAME.match(args.user):
        raise UserError("usernames use letters, digits and . _ @ - only")
    if args.practitioner is not None and not _PRACTITIONER.match(args.practitioner):
        raise UserError("--practitioner must be Practitioner/<id> or PractitionerRole/<id>")
    password = _read_password()
    if len(password) < MIN_PASSWORD:
        raise UserError(f"use a password of at least {MIN_PASSWORD} characters")
    hashed = hash_password(password)
    print(f"{args.user}:{hashed}:{args.practitioner}" if args.user else hashed)
    return 0
