"""The web application: CDS Hooks endpoints, the review page and a health check.

    create_app(config)   the FastAPI app (tests inject the FHIR client, verifier and clock)
    app_from_environment()   the same for a uvicorn worker process, from $IPS_SCREEN_SERVE_CONFIG
                             (and the CLI's logging options from $IPS_SCREEN_SERVE_LOGGING)
    run(config, host, port, environ, workers)   serve it with uvicorn (`ips-screen serve`)

The backend FHIR client (reads for the review page, writes for feedback and decisions) uses the
service's own credentials from the configuration. Each worker opens the shared store in the
configured state_dir (store.py): the cards shown, the EHR token ids (replay cache), the review
page's sessions (an opaque id in the cookie; sessions.py) and the sign-in failures, so any worker
can answer any request and a restart loses nothing. The secret from the environment variable the
configuration names derives the CSRF token of a visitor not signed in.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import orjson
from fastapi import FastAPI, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ips_screen import __version__
from ips_screen.dates import LONDON
from ips_screen.errors import ConfigError
from ips_screen.fhir.client import FhirClient
from ips_screen.ruleset.loader import load_ruleset
from ips_screen.service import cds, review_page
from ips_screen.service.backend_connection import open_backend
from ips_screen.service.config import ServeConfig, load_users
from ips_screen.service.ehr_auth import EhrVerifier
from ips_screen.service.guarded_http import guarded_get
from ips_screen.service.read_only import ReadOnlyBackend
from ips_screen.service.sessions import SessionCookieMiddleware
from ips_screen.service.state import ServiceState
from ips_screen.service.store import ServiceStore

log = logging.getLogger("ips_screen.service")

CONFIG_ENV = "IPS_SCREEN_SERVE_CONFIG"  # the configuration file, for worker processes
LOGGING_ENV = "IPS_SCREEN_SERVE_LOGGING"  # the CLI's logging options, for worker processes
MIN_SECRET_LENGTH = 32
MAX_JWKS_BYTES = 256 * 1024
JWKS_DEADLINE_SECONDS = 3.0


def fetch_jwks(url: str) -> dict[str, Any]:
    """GET a JWKS document (https only, no redirects, size-capped, a total deadline)."""
    if not url.startswith("https://"):
        raise ValueError("JWKS URLs must be https")
    fetched = guarded_get(
        url,
        headers={"Accept": "application/json"},
        deadline=time.monotonic() + JWKS_DEADLINE_SECONDS,
        max_bytes=MAX_JWKS_BYTES,
        allow_private=True,  # configured or allowlisted URLs only
    )
    if fetched.status != 200:
        raise ValueError(f"HTTP {fetched.status}")
    document = orjson.loads(fetched.body)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document


def _session_secret(config: ServeConfig, environ: Mapping[str, str]) -> str:
    assert config.review_page is not None
    name = config.review_page.session_secret_env
    secret = environ.get(name, "")
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"review_page: set the environment variable {name} to a random secret of at least "
            f"{MIN_SECRET_LENGTH} characters (it protects the sign-in form)"
        )
    return secret


def _backend(config: ServeConfig, client: FhirClient) -> FhirClient:
    """The backend client; read-only (with a loud warning) when the public sandbox is trusted."""
    if config.writes_enabled:
        return client
    log.warning(
        "demo_trust_public_sandbox = true: the public CDS Hooks sandbox is trusted and anyone "
        "can mint its tokens; every write to %s is OFF. Never run this against a real practice.",
        config.fhir.base_url,
    )
    return cast(FhirClient, ReadOnlyBackend(client))


def create_app(
    config: ServeConfig,
    *,
    fhir_client: FhirClient | None = None,
    verifier: EhrVerifier | None = None,
    clock: Callable[[], datetime] | None = None,
    environ: Mapping[str, str] | None = None,
) -> FastAPI:
    """The service for `config`; `fhir_client`, `verifier`, `clock` and `environ` for tests."""
    environ = os.environ if environ is None else environ
    now = clock or (lambda: datetime.now(tz=LONDON))
    ruleset = load_ruleset(config.rules)
    page = config.review_page
    store = ServiceStore(
        config.state_dir,
        session_max_age=page.session_max_age_seconds if page else 8 * 3600,
        session_idle=page.session_idle_seconds if page else 30 * 60,
    )
    if verifier is None and config.ehr_auth is not None:
        verifier = EhrVerifier(
            config.ehr_auth,
            fetch_jwks=fetch_jwks,
            clock=lambda: now().timestamp(),
            replay_cache=store,
        )
    if config.ehr_auth is None:
        log.warning("EHR authentication is DISABLED (local demo on %s)", config.public_base_url)
    if config.state_dir is None:
        log.warning("no state_dir: cards, token ids and sessions are in memory (one worker)")
    users = load_users(page.users_file) if page is not None and page.users_file else {}
    secret = _session_secret(config, environ) if page is not None else None
    state = ServiceState(
        config=config,
        ruleset=ruleset,
        backend=_backend(config, fhir_client or open_backend(config.fhir, environ)),
        verifier=verifier,
        clock=now,
        environ=environ,
        store=store,
        users=users,
        session_secret=secret,
    )

    app = FastAPI(
        title="ips-screen", version=__version__, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.service = state
    app.include_router(cds.router)
    if config.cds_cors_origins:
        app.add_middleware(CdsCors, origins=config.cds_cors_origins)
    if page is not None and secret is not None:
        app.include_router(review_page.router)
        app.add_middleware(
            SessionCookieMiddleware,
            cookie_path=f"{config.base_path}/review",
            secure=config.secure_cookies,
            max_age=page.session_max_age_seconds,
            prefix="/review",
        )

    @app.get("/healthz")
    def healthz() -> Response:
        tag = f"{ruleset.id}@{ruleset.version}"
        body = {"status": "ok", "version": __version__, "ruleset": tag}
        return Response(orjson.dumps(body), media_type="application/json")

    return app


class CdsCors:
    """CORS for /cds-services only, for the configured browser-based CDS clients.

    The review page never answers cross-origin requests; no cookies are allowed (the EHR's JWT
    travels in the Authorization header)."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        from starlette.middleware.cors import CORSMiddleware

        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            allow_credentials=False,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.endswith("/cds-services") or "/cds-services/" in path:
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def app_from_environment() -> FastAPI:
    """The app of one uvicorn worker process (`serve --workers N`): the configuration file named
    by $IPS_SCREEN_SERVE_CONFIG, secrets from this process's environment."""
    from ips_screen.log_setup import configure_logging
    from ips_screen.service.config import load_config

    logging_args = orjson.loads(os.environ.get(LOGGING_ENV, "{}"))
    configure_logging(
        argparse.Namespace(
            verbose=logging_args.get("verbose", False),
            quiet=logging_args.get("quiet", False),
            log_format=logging_args.get("log_format", "text"),
        )
    )
    return create_app(load_config(os.environ[CONFIG_ENV]), environ=os.environ)


def run(
    config: ServeConfig,
    host: str,
    port: int,
    environ: Mapping[str, str],
    *,
    workers: int = 1,
    config_path: str | None = None,
    logging_options: dict[str, Any] | None = None,
) -> None:
    """Serve until interrupted. The peer address is the direct one (no X-Forwarded-For), so
    `trusted_proxy_ips` checks the real proxy. With several workers each process builds its own
    app from `config_path` (they share the state in state_dir)."""
    import uvicorn

    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "proxy_headers": False,
        "server_header": False,
    }
    if workers == 1:
        app = create_app(config, environ=environ)
    else:
        assert config_path is not None and config.state_dir is not None
        # Configuration problems as one message before any worker starts; workers read os.environ.
        create_app(config, environ=os.environ).state.service.store.close()
    log.info(
        "serving %s on %s:%d with %d worker(s) (public URL %s)",
        __version__,
        host,
        port,
        workers,
        config.public_base_url,
    )
    if workers == 1:
        uvicorn.run(app, **options)
        return
    os.environ[CONFIG_ENV] = str(Path(config_path).resolve())
    os.environ[LOGGING_ENV] = orjson.dumps(logging_options or {}).decode()
    uvicorn.run(
        "ips_screen.service.app:app_from_environment", factory=True, workers=workers, **options
    )
