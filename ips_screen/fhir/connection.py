"""One description of a FHIR server connection, and the one function that opens a client for it.

The command-line options (`--auth`, `--token-env`, ...), the practice config (`[fhir]`) and the
service config (`[fhir]`) all produce a `FhirConnection`; `open_client` turns it into a
`FhirClient`. The same connection gives the same client whichever entry point described it.

    FhirConnection      base_url, auth, connect/read timeouts, page_size   (strict pydantic)
      auth: NoAuthSettings       method = "none"
            BearerAuthSettings   method = "bearer": token_env (the NAME of the variable)
            SmartAuthSettings    method = "smart": client_id | client_id_env | client_id_file,
                                 private_key_file, kid, scope, token_url
    open_client(connection, environ, *, retry=None, max_pages=MAX_PAGES) -> FhirClient

In TOML (practice.toml and serve.toml alike):

    [fhir]
    base_url = "https://fhir.practice.example/R4"
    [fhir.auth]
    method = "smart"
    client_id = "ips-screen"
    private_key_file = "keys/ips-screen.pem"
    kid = "ips-screen-2026"

Credentials are only named (an environment variable, a key file), never held: the token and the
key are read by `open_client`. A name that looks like a secret is refused without being repeated
(`ips_screen.secret_values`), and credentials are refused over plain http except to this machine.
This module imports neither `requests` nor the crypto libraries until `open_client` is called.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from ips_screen.errors import ConfigError, tag_key
from ips_screen.secret_values import env_name_problem

if TYPE_CHECKING:
    from ips_screen.fhir.client import FhirClient, RetryPolicy

__all__ = [
    "AUTH_METHODS",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_SCOPE",
    "DEFAULT_TOKEN_ENV",
    "MAX_PAGES",
    "AuthSettings",
    "BearerAuthSettings",
    "FhirConnection",
    "NoAuthSettings",
    "SmartAuthSettings",
    "error_location",
    "error_message",
    "open_client",
]

# The same as ips_screen.fhir.auth's (a test checks); repeated so that this module stays light.
DEFAULT_TOKEN_ENV = "IPS_SCREEN_FHIR_TOKEN"  # noqa: S105 (a variable name, not a secret)
DEFAULT_SCOPE = "system/*.rs"
DEFAULT_PAGE_SIZE = 500
MAX_PAGES = 100_000  # per search; with a page size of 500, 50 million resources of one type
AUTH_METHODS = ("none", "bearer", "smart")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _env_name(value: str | None) -> str | None:
    problem = None if value is None else env_name_problem(value)
    if problem is not None:  # never repeats the value: it may be the secret itself
        raise ValueError(problem)
    return value


class NoAuthSettings(_Strict):
    """No credentials (a local test server, or one behind a trusted network boundary)."""

    method: Literal["none"] = "none"


class BearerAuthSettings(_Strict):
    """A static bearer token, read from an environment variable when the client is opened."""

    method: Literal["bearer"]
    token_env: str = Field(
        DEFAULT_TOKEN_ENV,
        description="the NAME of the environment variable holding the token "
        f"(default {DEFAULT_TOKEN_ENV})",
    )

    @field_validator("token_env")
    @classmethod
    def _check_env(cls, value: str) -> str:
        return _env_name(value) or value


class SmartAuthSettings(_Strict):
    """SMART Backend Services: client_credentials with a JWT signed by a private key file."""

    method: Literal["smart"]
    client_id: str | None = Field(
        None,
        min_length=1,
        description="the registered client id (not a secret: any form the server issues, "
        "JWT-shaped ones included); or give client_id_env or client_id_file instead",
    )
    client_id_env: str | None = Field(
        None, description="the NAME of an environment variable holding the client id"
    )
    client_id_file: ConfigPath | None = Field(
        None, description="a file holding the client id (surrounding whitespace ignored)"
    )
    private_key_file: ConfigPath | None = Field(
        None, description="the PEM private key file (RS384 or ES384), readable by this process"
    )
    kid: str | None = Field(None, min_length=1, description="the key id registered with the key")
    scope: str = Field(DEFAULT_SCOPE, min_length=1, description="the scopes asked for")
    token_url: str | None = Field(
        None, description="the token endpoint, when .well-known/smart-configuration lacks it"
    )

    @field_validator("client_id_env")
    @classmethod
    def _check_env(cls, value: str | None) -> str | None:
        return _env_name(value)

    @model_validator(mode="after")
    def _complete(self) -> SmartAuthSettings:
        ids = [n for n in ("client_id", "client_id_env", "client_id_file") if getattr(self, n)]
        if len(ids) > 1:
            raise ValueError("give one of client_id, client_id_env or client_id_file")
        missing = [] if ids else ["client_id"]
        missing += [n for n in ("private_key_file", "kid") if getattr(self, n) is None]
        if missing:
            raise ValueError(f"method = 'smart' needs {', '.join(missing)}")
        return self

    def client_id_value(self, environ: Mapping[str, str]) -> str:
        """The client id: as written, or read from its environment variable or file."""
        if self.client_id is not None:
            return self.client_id
        if self.client_id_env is not None:
            value = environ.get(self.client_id_env, "").strip()
            if not value:
                raise ConfigError(
                    f"[fhir.auth] client_id_env: the environment variable {self.client_id_env} "
                    "is not set"
                )
            return value
        assert self.client_id_file is not None
        try:
            value = self.client_id_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise ConfigError(
                f"[fhir.auth] client_id_file: cannot read {self.client_id_file} ({reason})"
            ) from None
        if not value:
            raise ConfigError(f"[fhir.auth] client_id_file: {self.client_id_file} is empty")
        return value


AuthSettings = Annotated[
    NoAuthSettings | BearerAuthSettings | SmartAuthSettings, Field(discriminator="method")
]


class FhirConnection(_Strict):
    """How to reach one FHIR R4 server: where, with which credentials, how patiently."""

    base_url: str = Field(
        description="the FHIR base URL (https; http only on this machine when credentials are sent)"
    )
    auth: AuthSettings = Field(
        NoAuthSettings(),
        description="[fhir.auth]: method = 'none' (default), 'bearer' or 'smart'",
    )
    connect_timeout_seconds: float = Field(
        5.0, gt=0, le=120, description="how long to wait for a connection to the server"
    )
    read_timeout_seconds: float = Field(
        60.0, gt=0, le=600, description="how long to wait for each response from the server"
    )
    page_size: int = Field(
        DEFAULT_PAGE_SIZE,
        ge=1,
        le=10_000,
        description="resources per page of search results (servers may send fewer)",
    )

    @field_validator("base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        parts = urlsplit(value)
        shown = without_secrets(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"a FHIR base URL starts with http:// or https://: {shown!r}")
        if "@" in parts.netloc:  # sent as Basic auth by requests, and kept wherever it is named
            raise ValueError(
                f"a FHIR base URL holds no user name or password ({shown!r}): give credentials "
                "with the auth settings"
            )
        if parts.query or parts.fragment:
            raise ValueError(f"a FHIR base URL has no query or fragment: {shown!r} had one")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _credentials_over_https(self) -> FhirConnection:
        parts = urlsplit(self.base_url)
        local = (parts.hostname or "").lower() in LOOPBACK_HOSTS
        if self.auth.method != "none" and parts.scheme != "https" and not local:
            raise ValueError(f"{self.base_url}: refusing to send credentials without https")
        return self

    def rebased(self, folder: Path) -> FhirConnection:
        """Relative file paths (the key and client id files) made relative to `folder`."""
        if not isinstance(self.auth, SmartAuthSettings):
            return self

        def fix(value: Path | None) -> Path | None:
            return None if value is None else (folder / value.expanduser()).resolve()

        auth = self.auth.model_copy(
            update={
                "private_key_file": fix(self.auth.private_key_file),
                "client_id_file": fix(self.auth.client_id_file),
            }
        )
        return self.model_copy(update={"auth": auth})


def without_secrets(url: str) -> str:
    """`url` as it may be shown: no user name or password, query or fragment (each may carry a
    credential)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else host + parts.path


def _not_empty(value: object) -> object:
    """A path written as "" (or spaces) is a slip, not this folder (pydantic reads "" as ".")."""
    if isinstance(value, str) and not value.strip():
        raise ValueError('an empty path; write "." for the config file\'s own folder')
    return value


def _a_path(value: object) -> object:
    """A path as a config file writes it, text, made a `Path` (also where a file is checked
    strictly); a number, switch or list there is a slip, said as such."""
    if isinstance(value, Path):
        return value
    if not isinstance(value, str):
        raise ValueError("a path is written as text, in quotes")
    return Path(_not_empty(value))


# A path in a config file: an empty one refused (relative ones are taken from the file's folder)
ConfigPath = Annotated[Path, BeforeValidator(_a_path)]
ConfigPathText = Annotated[str, BeforeValidator(_not_empty)]


def error_message(error: Mapping[str, Any]) -> str:
    """The message of one pydantic error in a connection, with the auth method's in plain words."""
    if error["type"] in ("union_tag_not_found", "union_tag_invalid"):
        return "method must be one of 'none', 'bearer' or 'smart'"
    return str(error["msg"]).removeprefix("Value error, ")


def error_key(error: Mapping[str, Any]) -> tuple[str, ...]:
    """Where one pydantic error in a connection is, as the keys a user writes: its location
    (`error_location`), and for the auth method's own error its `method` key."""
    where = error_location(tuple(error["loc"]))
    key = tag_key(error)
    return (*where, key) if key else where


def error_location(loc: tuple[Any, ...]) -> tuple[str, ...]:
    """A pydantic error location without the union's tag ("auth", "smart", "kid" -> "auth",
    "kid"), so that messages name the keys a user writes."""
    parts = [str(p) for p in loc]
    tags = {i for i, p in enumerate(parts) if i and parts[i - 1] == "auth" and p in AUTH_METHODS}
    return tuple(p for i, p in enumerate(parts) if i not in tags)


def open_client(
    connection: FhirConnection,
    environ: Mapping[str, str],
    *,
    retry: RetryPolicy | None = None,
    max_pages: int = MAX_PAGES,
) -> FhirClient:
    """A client for `connection`, reading its credentials now (from `environ` and files). It asks
    the server to refuse search parameters it does not know (`Prefer: handling=strict`) rather
    than ignore them. Close it (or use it as a context manager) when done."""
    from ips_screen.fhir.auth import BearerTokenAuth, FhirAuth, NoAuth, SmartBackendAuth
    from ips_screen.fhir.client import FhirClient

    base = connection.base_url
    settings = connection.auth
    auth: FhirAuth
    if isinstance(settings, BearerAuthSettings):
        auth = BearerTokenAuth(base, settings.token_env, environ)
    elif isinstance(settings, SmartAuthSettings):
        assert settings.private_key_file is not None and settings.kid is not None
        auth = SmartBackendAuth(
            base,
            client_id=settings.client_id_value(environ),
            private_key_path=settings.private_key_file,
            kid=settings.kid,
            scope=settings.scope,
            token_url=settings.token_url,
        )
    else:
        auth = NoAuth(base)
    return FhirClient(
        base,
        auth=auth,
        timeout=(connection.connect_timeout_seconds, connection.read_timeout_seconds),
        headers={"Prefer": "handling=strict"},
        retry=retry,
        max_pages=max_pages,
    )
