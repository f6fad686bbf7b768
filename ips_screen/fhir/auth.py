"""Authentication strategies for `FhirClient`.

Each strategy is a `requests` `AuthBase` bound to one FHIR base URL. It attaches credentials only to
requests whose scheme, host and port equal that base URL's, so a redirect or a paging link to any
other origin never carries them (the client re-applies the strategy on every redirect hop).

    NoAuth              no credentials
    BearerTokenAuth     a static bearer token read from an environment variable
    SmartBackendAuth    SMART Backend Services: client_credentials with a signed JWT assertion

A strategy whose credentials can be renewed answers `reauthenticate()` with True; the client then
retries a request that got 401 once, with fresh credentials.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import orjson
import requests
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from requests.auth import AuthBase

from ips_screen.errors import ConfigError, ServerError
from ips_screen.secret_values import env_name_problem

log = logging.getLogger("ips_screen.fhir")

DEFAULT_TOKEN_ENV = "IPS_SCREEN_FHIR_TOKEN"  # noqa: S105 (a variable name, not a secret)
DEFAULT_SCOPE = "system/*.rs"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = 300  # seconds; SMART Backend Services allows at most 5 minutes
DEFAULT_EXPIRES_IN = 300  # assumed when a token response has no expires_in

_DEFAULT_PORTS = {"http": 80, "https": 443}
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}

Origin = tuple[str, str, int]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def origin_of(url: str) -> Origin:
    """(scheme, host, port) of an absolute URL, with the scheme's default port filled in.

    Raises ValueError for a URL with no scheme or host, or a malformed port.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not scheme or not host:
        raise ValueError("not an absolute URL")
    port = parts.port  # ValueError when malformed
    if port is None:
        port = _DEFAULT_PORTS.get(scheme, -1)
    return scheme, host, port


def describe_origin(origin: Origin) -> str:
    scheme, host, port = origin
    return f"{scheme}://{host}:{port}"


class FhirAuth(AuthBase):
    """Base strategy: credentials go only to the configured FHIR server's origin."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        try:
            self.origin = origin_of(self.base_url)
        except ValueError as exc:
            raise ConfigError(f"not a usable FHIR base URL: {base_url!r}") from exc

    def applies_to(self, url: str) -> bool:
        try:
            return origin_of(url) == self.origin
        except ValueError:
            return False

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers.pop("Authorization", None)
        if r.url and self.applies_to(r.url):
            header = self.authorization()
            if header:
                r.headers["Authorization"] = header
        return r

    def authorization(self) -> str | None:
        """The Authorization header value for a request to the FHIR server, if any."""
        return None

    def reauthenticate(self) -> bool:
        """Drop cached credentials after a 401; True when a retry may succeed."""
        return False

    def __repr__(self) -> str:  # never shows credentials
        return f"{type(self).__name__}(base_url={self.base_url!r})"


class NoAuth(FhirAuth):
    """No credentials (a local test server, or one behind a trusted network boundary)."""


class BearerTokenAuth(FhirAuth):
    """A static bearer token, read once from an environment variable."""

    def __init__(
        self,
        base_url: str,
        env_var: str = DEFAULT_TOKEN_ENV,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(base_url)
        problem = env_name_problem(env_var)
        if problem is not None:  # never repeats the value: it may be the token itself
            raise ConfigError(f"the bearer token setting: {problem}")
        env = os.environ if environ is None else environ
        token = env.get(env_var, "").strip()
        if not token:
            raise ConfigError(f"no FHIR access token: environment variable {env_var} is not set")
        self.env_var = env_var
        self._token = token

    def authorization(self) -> str:
        return f"Bearer {self._token}"


def load_private_key(path: str | Path) -> tuple[PrivateKey, str]:
    """Read an unencrypted PEM private key; return it with its JWT algorithm (RS384 or ES384)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read private key file {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(
            f"{path} is not an unencrypted PEM private key (RSA or EC P-384)"
        ) from exc
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise ConfigError(f"{path}: RSA key of {key.key_size} bits; use 2048 or more")
        return key, "RS384"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP384R1):
            raise ConfigError(f"{path}: ES384 needs an EC key on curve P-384, not {key.curve.name}")
        return key, "ES384"
    raise ConfigError(f"{path}: unsupported key type; use RSA (RS384) or EC P-384 (ES384)")


@dataclass(frozen=True)
class _Token:
    value: str
    renew_at: float


class SmartBackendAuth(FhirAuth):
    """SMART Backend Services (OAuth 2.0 client_credentials with a private_key_jwt assertion).

    The token endpoint comes from `{base}/.well-known/smart-configuration`, or `token_url` when
    discovery fails. The access token is cached and renewed `renew_margin` seconds before it
    expires (by the injectable `clock`). The assertion is only ever POSTed to the token endpoint,
    without following redirects.
    """

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str,
        private_key_path: str | Path,
        kid: str,
        scope: str = DEFAULT_SCOPE,
        token_url: str | None = None,
        clock: Callable[[], float] = time.time,
        renew_margin: float = 60.0,
        assertion_lifetime: int = MAX_ASSERTION_LIFETIME,
        timeout: tuple[float, float] = (5.0, 30.0),
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(base_url)
        if not client_id or not kid:
            raise ConfigError("SMART Backend Services needs a client_id and a key id (kid)")
        self.client_id = client_id
        self.kid = kid
        self.scope = scope
        self.configured_token_url = token_url
        self.key, self.algorithm = load_private_key(private_key_path)
        self._clock = clock
        self._renew_margin = renew_margin
        self._lifetime = max(1, min(int(assertion_lifetime), MAX_ASSERTION_LIFETIME))
        self._timeout = timeout
        self._session = session or requests.Session()
        self._token_url: str | None = None
        self._token: _Token | None = None
        self._lock = threading.Lock()

    # -- token endpoint ---------------------------------------------------------------------------

    @property
    def token_url(self) -> str:
        if self._token_url is None:
            self._token_url = self._discover_token_url()
        return self._token_url

    def _discover_token_url(self) -> str:
        url = f"{self.base_url}/.well-known/smart-configuration"
        found: str | None = None
        try:
            resp = self._session.get(
                url, headers={"Accept": "application/json"}, timeout=self._timeout
            )
            if resp.status_code == 200:
                config = orjson.loads(resp.content)
                endpoint = config.get("token_endpoint") if isinstance(config, dict) else None
                if isinstance(endpoint, str) and endpoint:
                    found = endpoint
            if found is None:
                log.info("SMART discovery gave no token_endpoint (HTTP %d)", resp.status_code)
        except (requests.RequestException, orjson.JSONDecodeError) as exc:
            log.info("SMART discovery failed (%s)", type(exc).__name__)
        token_url = found or self.configured_token_url
        if not token_url:
            raise ServerError(
                f"cannot find the token endpoint: {url} does not name one and no token URL is "
                "configured"
            )
        _check_token_url(token_url)
        return token_url

    def client_assertion(self) -> str:
        """A freshly signed client assertion JWT for the token endpoint."""
        now = int(self._clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "exp": now + self._lifetime,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(
            claims, self.key, algorithm=self.algorithm, headers={"kid": self.kid, "typ": "JWT"}
        )

    def _fetch_token(self) -> _Token:
        token_url = self.token_url
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.client_assertion(),
        }
        what = f"token request to {urlsplit(token_url).path or '/'}"
        try:
            resp = self._session.post(
                token_url,
                data=form,
                headers={"Accept": "application/json"},
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise ServerError(f"{what} failed: {type(exc).__name__}") from exc
        body = _json_or_none(resp.content)
        if resp.status_code != 200:
            detail = ""
            if isinstance(body, dict) and body.get("error"):
                detail = f": {body['error']}"
                if body.get("error_description"):
                    detail += f" ({_one_line(str(body['error_description']))})"
            raise ServerError(f"{what} was refused: HTTP {resp.status_code}{detail}")
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise ServerError(f"{what}: the response has no access_token")
        token_type = str(body.get("token_type", "bearer"))
        if token_type.lower() != "bearer":
            raise ServerError(f"{what}: unsupported token_type {token_type!r}")
        expires_in = _positive_float(body.get("expires_in")) or DEFAULT_EXPIRES_IN
        margin = min(self._renew_margin, expires_in / 2)
        log.info("obtained an access token valid for %.0f s", expires_in)
        return _Token(body["access_token"], self._clock() + expires_in - margin)

    # -- FhirAuth ---------------------------------------------------------------------------------

    def access_token(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._token.renew_at:
                self._token = self._fetch_token()
            return self._token.value

    def authorization(self) -> str:
        return f"Bearer {self.access_token()}"

    def reauthenticate(self) -> bool:
        with self._lock:
            self._token = None
        return True


def _check_token_url(url: str) -> None:
    try:
        scheme, host, _ = origin_of(url)
    except ValueError as exc:
        raise ServerError(f"the token endpoint is not an absolute URL: {url!r}") from exc
    if scheme != "https" and not (scheme == "http" and host in _LOOPBACK_HOSTS):
        raise ServerError(f"refusing to send credentials to a token endpoint without https: {url}")


def _json_or_none(content: bytes) -> Any:
    try:
        return orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        return None


def _positive_float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
