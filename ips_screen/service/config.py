"""The service's configuration (`ips-screen serve --config serve.toml`), and review-page passwords.

Strict: unknown keys, wrong types and inline secrets are errors (`ConfigError`, naming the file,
the line and the key).
Secrets live in environment variables or files the configuration names, never in the file:
the backend's bearer token (`fhir.auth.token_env`), its SMART private key
(`fhir.auth.private_key_file`), the
session-signing secret (`review_page.session_secret_env`) and the users file's password hashes.

    public_base_url = "https://ips.practice.example"   # what EHRs call: the JWT `aud` is built
                                                       # from it, never from the Host header
    rules = "rules/ips-chronic-pain.yaml"              # optional; relative to this file
    state_dir = "/var/lib/ips-screen/serve"            # shared by workers; required unless loopback
    ehr_fhir_servers = [...]                           # allowed fhirServer URLs (required
                                                       # unless public_base_url is loopback)
    ehr_fhir_deadline_seconds = 5.0                    # all fhirServer reads of one call
    ehr_fhir_max_bytes = 20971520                      # all fhirServer reads of one call
    demo_trust_public_sandbox = false                  # demos only: trust the public CDS Hooks
                                                       # sandbox, and turn every write off
    cds_cors_origins = []                              # browser CDS clients allowed (CORS)
    [fhir]            a FhirConnection as in practice.toml (read timeout 20 s by default):
                      base_url...; [fhir.auth] method = none|bearer|smart, token_env | client_id,
                      private_key_file, kid... (the 0.1 keys load with a deprecation line)
    [ehr_auth]        disabled (loopback public_base_url only), leeway_seconds, [[ehr_auth.issuers]]
    [referral]        ips_service = "HealthcareService/<id>" (or Organization/<id>): the
                      performer of accepted proposals' orders; accepting needs it
    [leaflet]         practice_name, practice_contact, service_name, service_contact: printed
                      on the patient's leaflet (optional; every key required when present)
    [review_page]     users_file [+ client_address_header + trusted_proxy_ips]
                      | proxy_header + proxy_users + trusted_proxy_ips;
                      session_secret_env (the NAME of the variable holding the secret that
                      derives signed-out visitors' CSRF tokens); session_max_age_seconds,
                      session_idle_seconds

Users file lines: ``username:scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>:Practitioner/ID`` (blank
lines and ``#`` comments skipped); make a hash with ``ips-screen serve hash-password``
(`hash_password`, `verify_password` and `load_users` live in passwords.py).
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ips_screen.errors import ConfigError
from ips_screen.fhir.connection import (
    ConfigPathText,
    FhirConnection,
    error_key,
    error_location,
    error_message,
)
from ips_screen.fhir.connection_keys import (
    Moved,
    log_deprecations,
    old_key_label,
    old_key_path,
    upgrade_serve_keys,
)
from ips_screen.secret_values import env_name_problem
from ips_screen.service.backend_connection import with_backend_defaults
from ips_screen.service.ehr_auth_config import EhrAuthConfig
from ips_screen.service.ehr_reader import ReadLimits
from ips_screen.service.passwords import UserEntry, hash_password, load_users, verify_password
from ips_screen.toml_lines import located
from ips_screen.writeback.referral_config import ReferralConfig

__all__ = [
    "FhirConnection",
    "LeafletConfig",
    "ReviewPageConfig",
    "ServeConfig",
    "UserEntry",
    "hash_password",
    "load_config",
    "load_users",
    "parse_config",
    "verify_password",
]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
SANDBOX_HOST = "sandbox.cds-hooks.org"  # the public CDS Hooks sandbox (tokens minted in browsers)
_PRACTITIONER = re.compile(r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$")
_HEADER = re.compile(r"^[A-Za-z0-9\-]{1,64}$")


def is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "").lower() in LOOPBACK_HOSTS


def _http_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"{what} must be an http(s) URL with no query or fragment: {value!r}")
    return value.rstrip("/")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ReviewPageConfig(_Strict):
    """Sign-in for the review page: a users file, or a header set by a trusted proxy."""

    users_file: ConfigPathText | None = None
    proxy_header: str | None = None
    proxy_users: dict[str, str] = Field(default_factory=dict)
    trusted_proxy_ips: list[str] = Field(default_factory=list)
    session_secret_env: str = "IPS_SCREEN_SESSION_SECRET"  # noqa: S105 (a variable name)
    session_max_age_seconds: int = Field(default=8 * 3600, ge=300, le=7 * 24 * 3600)
    session_idle_seconds: int = Field(default=30 * 60, ge=60, le=7 * 24 * 3600)
    # The header in which a proxy in trusted_proxy_ips passes the client's address (the last entry
    # of e.g. X-Forwarded-For), for the sign-in throttle; otherwise the direct peer's address.
    client_address_header: str | None = None

    @field_validator("session_secret_env")
    @classmethod
    def _env(cls, value: str) -> str:
        problem = env_name_problem(value)
        if problem is not None:  # never repeats the value: it may be the secret itself
            raise ValueError(problem)
        return value

    @field_validator("proxy_header", "client_address_header")
    @classmethod
    def _header(cls, value: str | None) -> str | None:
        if value is not None and not _HEADER.match(value):
            raise ValueError(f"not an HTTP header name: {value!r}")
        return value

    @field_validator("proxy_users")
    @classmethod
    def _users(cls, value: dict[str, str]) -> dict[str, str]:
        for user, ref in value.items():
            if not _PRACTITIONER.match(ref):
                raise ValueError(f"{user}: expected Practitioner/<id> or PractitionerRole/<id>")
        return value

    @field_validator("trusted_proxy_ips")
    @classmethod
    def _ips(cls, value: list[str]) -> list[str]:
        for ip in value:
            try:
                ipaddress.ip_network(ip, strict=False)
            except ValueError:
                raise ValueError(f"not an IP address or network: {ip!r}") from None
        return value

    @model_validator(mode="after")
    def _one_method(self) -> ReviewPageConfig:
        if (self.users_file is None) == (self.proxy_header is None):
            raise ValueError("give exactly one of users_file or proxy_header")
        if self.proxy_header is not None and not (self.proxy_users and self.trusted_proxy_ips):
            raise ValueError("proxy_header needs proxy_users and trusted_proxy_ips")
        if self.users_file is not None and self.proxy_users:
            raise ValueError("proxy_users only apply with proxy_header")
        if self.proxy_header is None and (self.client_address_header is None) != (
            not self.trusted_proxy_ips
        ):
            raise ValueError(
                "with users_file, trusted_proxy_ips and client_address_header go together"
            )
        if self.session_idle_seconds > self.session_max_age_seconds:
            raise ValueError("session_idle_seconds cannot exceed session_max_age_seconds")
        return self

    def is_trusted_proxy(self, host: str | None) -> bool:
        try:
            address = ipaddress.ip_address(host or "")
        except ValueError:
            return False
        nets = (ipaddress.ip_network(n, strict=False) for n in self.trusted_proxy_ips)
        return any(address in net for net in nets)


class LeafletConfig(_Strict):
    """Who the patient's printed leaflet names (the review page's printout): the practice and the
    service offered, each with how to contact them. Words for print only; the order's performer
    (a FHIR reference) is configured apart from these."""

    practice_name: str = Field(min_length=1, max_length=200)
    practice_contact: str = Field(min_length=1, max_length=300)
    service_name: str = Field(min_length=1, max_length=200)
    service_contact: str = Field(min_length=1, max_length=300)


class ServeConfig(_Strict):
    public_base_url: str
    rules: ConfigPathText | None = None
    fhir: FhirConnection  # the practice FHIR server, read and written with the service's OWN
    # credentials ([fhir] + [fhir.auth], the same shape as practice.toml's)
    ehr_auth: EhrAuthConfig | None  # None only when [ehr_auth] disabled = true
    review_page: ReviewPageConfig | None = None
    # The practice's IPS service ([referral] ips_service): the performer of the order an accepted
    # proposal creates (review page, card feedback); without it accepting is refused.
    referral: ReferralConfig | None = None
    leaflet: LeafletConfig | None = None  # None: the printout names no practice or service
    # The folder of the state every worker shares (cards shown, EHR token ids, review-page
    # sessions, sign-in failures): required unless public_base_url is loopback (then, when
    # missing, that state is in memory: one worker, lost on restart).
    state_dir: ConfigPathText | None = None
    # EHR FHIR servers the service may read with the user's token when prefetch lacks data
    # (required unless public_base_url is loopback). Empty (loopback development only): any https
    # server whose host has only public addresses. A listed server may be http on loopback, or on
    # a private address.
    ehr_fhir_servers: list[str] = Field(default_factory=list)
    # Each call's reads from fhirServer: one total deadline and one size cap (all keys, pages).
    ehr_fhir_deadline_seconds: float = Field(default=5.0, gt=0, le=60)
    ehr_fhir_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, le=512 * 1024 * 1024)
    # Trust the public CDS Hooks sandbox's issuer (anyone can mint its tokens): demos only, and
    # it turns every write off.
    demo_trust_public_sandbox: bool = False
    # Browser-based CDS clients (e.g. the public CDS Hooks sandbox) call the service from a web
    # page: list their origins to allow cross-origin calls (CORS) to /cds-services only.
    cds_cors_origins: list[str] = Field(default_factory=list)

    @field_validator("ehr_fhir_servers")
    @classmethod
    def _ehr_servers(cls, value: list[str]) -> list[str]:
        urls = [_http_url(url, "ehr_fhir_servers") for url in value]
        for url in urls:
            if not url.startswith("https://") and not is_loopback(url):
                raise ValueError(f"ehr_fhir_servers: {url} must be https (http only on loopback)")
        return urls

    @field_validator("public_base_url")
    @classmethod
    def _public(cls, value: str) -> str:
        url = _http_url(value, "public_base_url")
        if not url.startswith("https://") and not is_loopback(url):
            raise ValueError("public_base_url must be https (http only on a loopback address)")
        return url

    @property
    def ehr_read_limits(self) -> ReadLimits:
        """The limits on one call's reads from the EHR's fhirServer."""
        return ReadLimits(
            allowed_servers=tuple(self.ehr_fhir_servers),
            deadline_seconds=self.ehr_fhir_deadline_seconds,
            max_bytes=self.ehr_fhir_max_bytes,
        )

    @property
    def writes_enabled(self) -> bool:
        """False when the public CDS Hooks sandbox is trusted (demo_trust_public_sandbox)."""
        return not self.demo_trust_public_sandbox

    @property
    def auth_disabled(self) -> bool:
        return self.ehr_auth is None

    @property
    def secure_cookies(self) -> bool:
        return self.public_base_url.startswith("https://")

    @property
    def base_path(self) -> str:
        """The path prefix of public_base_url ("" at the root), for links and cookies."""
        return urlsplit(self.public_base_url).path.rstrip("/")

    def endpoint(self, path: str) -> str:
        """The exact URL an EHR calls for `path`: the `aud` its JWT must carry."""
        return self.public_base_url + path


def _ehr_auth(section: object, public_base_url: object) -> EhrAuthConfig | None:
    if not isinstance(section, dict):
        raise ConfigError(
            "ehr_auth: missing (a table with issuers, or disabled = true)", key=("ehr_auth",)
        )
    data = dict(section)
    disabled = data.pop("disabled", False)
    if not isinstance(disabled, bool):
        raise ConfigError("ehr_auth: disabled: must be true or false", key=("ehr_auth", "disabled"))
    if disabled:
        if not (isinstance(public_base_url, str) and is_loopback(public_base_url)):
            raise ConfigError(
                "ehr_auth: disabled = true is allowed only on a loopback address",
                key=("ehr_auth", "disabled"),
            )
        unknown = sorted(set(data) - set(EhrAuthConfig.model_fields))
        if unknown:  # its own settings may stay (unread); another key is a slip, said
            raise ConfigError(
                f"ehr_auth: {', '.join(unknown)}: unknown key (a top-level setting written "
                "below the [ehr_auth] table belongs above it)",
                key=("ehr_auth", unknown[0]),
            )
        return None
    return EhrAuthConfig.from_dict(data)


def trusts_public_sandbox(ehr_auth: EhrAuthConfig | None) -> bool:
    """True when an issuer is the public CDS Hooks sandbox (its iss, JWKS or jku host)."""
    for issuer in ehr_auth.issuers if ehr_auth else ():
        urls = [issuer.iss, issuer.jwks_url or "", *issuer.jku_allowlist]
        if any((urlsplit(url).hostname or "").lower() == SANDBOX_HOST for url in urls):
            return True
    return False


def _check_ehr_side(config: ServeConfig) -> None:
    if not config.ehr_fhir_servers and not is_loopback(config.public_base_url):
        raise ConfigError(
            "ehr_fhir_servers: list the EHR FHIR servers (fhirServer) the service may read; it "
            "is required unless public_base_url is a loopback address",
            key=("ehr_fhir_servers",),
        )
    if trusts_public_sandbox(config.ehr_auth) and not config.demo_trust_public_sandbox:
        raise ConfigError(
            f"ehr_auth: {SANDBOX_HOST} signs its tokens with a key published in its source, so "
            "anyone can mint them: trust it only for a demo, with demo_trust_public_sandbox = "
            "true (which turns every write off)",
            key=("ehr_auth",),
        )


def _resolve(path: str | None, folder: Path) -> str | None:
    if path is None:
        return None
    candidate = Path(path).expanduser()
    return str(candidate if candidate.is_absolute() else (folder / candidate).resolve())


def _problem(exc: ValidationError, moved: list[Moved]) -> ConfigError:
    first = exc.errors()[0]
    loc = error_location(tuple(first["loc"]))
    where = old_key_label(loc, moved) or ".".join(loc) or "(top level)"
    message = "unknown key" if first["type"] == "extra_forbidden" else error_message(first)
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return ConfigError(f"{where}: {message}{more}", key=old_key_path(error_key(first), moved))


def parse_config(
    data: dict[str, Any], folder: Path | None = None, *, moved: list[Moved] | None = None
) -> ServeConfig:
    """Validate a configuration mapping; relative paths are taken from `folder` (default cwd).
    The 0.1 `[fhir]` keys are read (`moved` collects them, for the deprecation line)."""
    folder = folder or Path.cwd()
    data, renamed = upgrade_serve_keys(dict(data))
    if moved is not None:
        moved.extend(renamed)
    data = with_backend_defaults(data)
    ehr_auth = _ehr_auth(data.pop("ehr_auth", None), data.get("public_base_url"))
    try:
        config = ServeConfig.model_validate({**data, "ehr_auth": None})
    except ValidationError as exc:
        raise _problem(exc, renamed) from None
    if config.state_dir is None and not is_loopback(config.public_base_url):
        raise ConfigError(
            "state_dir: required (the folder of the state the service's workers share) unless "
            "public_base_url is a loopback address",
            key=("state_dir",),
        )
    fhir = config.fhir.rebased(folder)
    page = config.review_page
    if page is not None:
        page = page.model_copy(update={"users_file": _resolve(page.users_file, folder)})
    config = config.model_copy(
        update={
            "ehr_auth": ehr_auth,
            "rules": _resolve(config.rules, folder),
            "state_dir": _resolve(config.state_dir, folder),
            "fhir": fhir,
            "review_page": page,
        }
    )
    _check_ehr_side(config)
    return config


def load_config(path: Path | str) -> ServeConfig:
    """Read and validate a TOML configuration file; `ConfigError` names the file, line and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read: not UTF-8 text ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    moved: list[Moved] = []
    try:
        config = parse_config(data, path.resolve().parent, moved=moved)
    except ConfigError as exc:
        raise ConfigError(f"{located(path, text, exc.key)}: {exc}") from None
    log_deprecations(path, moved)
    return config
