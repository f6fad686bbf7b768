"""The `ehr_auth` section of the service configuration: the EHRs trusted to call the CDS Hooks
service and where their public keys come from (an inline JWKS, a `jwks_url`, or `jku` URLs on an
allowlist; https only, public keys only), and the token time limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jwt
from jwt import PyJWKSet
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ips_screen.errors import ConfigError, problem_key, validation_problem


def _check_url(url: str) -> str:
    if not url.startswith("https://") or len(url) <= len("https://"):
        raise ValueError(f"must be an https:// URL, got {url!r}")
    return url


def _check_jwks(jwks: dict[str, Any]) -> dict[str, Any]:
    keys = jwks.get("keys")
    if not isinstance(keys, list) or not keys:
        raise ValueError('a JWKS must be an object with a non-empty "keys" list')
    for index, key in enumerate(keys):
        if not isinstance(key, dict):
            raise ValueError(f"keys[{index}] is not an object")
        if key.get("kty") == "oct":
            raise ValueError(f"keys[{index}] is a symmetric (oct) key: only public keys allowed")
        if "d" in key:
            raise ValueError(f"keys[{index}] holds private key material (d): public keys only")
        if not isinstance(key.get("kid"), str) or not key["kid"]:
            raise ValueError(f"keys[{index}] has no kid")
    try:
        PyJWKSet.from_dict(jwks)
    except jwt.PyJWTError as exc:
        raise ValueError(f"unusable JWKS: {exc}") from None
    return jwks


class TrustedIssuer(BaseModel):
    """One EHR allowed to call the service, and where its public keys come from."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    iss: str = Field(min_length=1)
    jwks: dict[str, Any] | None = None
    jwks_url: str | None = None
    jku_allowlist: tuple[str, ...] = ()

    @field_validator("jku_allowlist", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: object) -> object:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("jku_allowlist")
    @classmethod
    def _check_allowlist(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_url(url) for url in value)

    @field_validator("jwks_url")
    @classmethod
    def _check_jwks_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    @field_validator("jwks")
    @classmethod
    def _check_inline_jwks(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _check_jwks(value)

    @model_validator(mode="after")
    def _has_a_key_source(self) -> TrustedIssuer:
        if self.jwks is None and self.jwks_url is None and not self.jku_allowlist:
            raise ValueError(f"issuer {self.iss!r} needs jwks, jwks_url or jku_allowlist")
        return self


class EhrAuthConfig(BaseModel):
    """The `ehr_auth` section of the service configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    issuers: list[TrustedIssuer] = Field(min_length=1)
    leeway_seconds: int = Field(default=30, ge=0, le=300)
    max_lifetime_seconds: int = Field(default=3600, gt=0)

    @model_validator(mode="after")
    def _unique_issuers(self) -> EhrAuthConfig:
        seen: set[str] = set()
        for issuer in self.issuers:
            if issuer.iss in seen:
                raise ValueError(f"issuer {issuer.iss!r} is listed twice")
            seen.add(issuer.iss)
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EhrAuthConfig:
        """Validate a plain mapping (e.g. from the service's YAML config); raise `ConfigError`."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(
                f"ehr_auth: {validation_problem(exc)}", key=("ehr_auth", *problem_key(exc))
            ) from None
