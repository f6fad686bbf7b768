"""Authentication of the calling EHR on every CDS Hooks 2.0 request.

The EHR sends `Authorization: Bearer <JWT>`, signed with its own private key. `EhrVerifier.verify`
accepts the token only if every one of these holds, and otherwise raises `AuthRejected` (its reason
is for the server log; the HTTP layer answers 401 with no detail):

- the header is `Bearer <token>` and the token is a compact JWS of sane size;
- the JOSE header (read without trusting it) has `alg` RS384 or ES384 (never none or HMAC), a `kid`,
  no `crit`, and, if present, a `jku` that is in the issuer's allowlist (exact match; a `jku`
  outside the allowlist is never fetched);
- the `iss` claim (read unverified, then verified) is a configured trusted issuer;
- the key is found by `kid` in that issuer's configured JWKS, its `jwks_url`, or the allowed `jku`,
  and its type matches `alg` (RSA for RS384, EC P-384 for ES384);
- the signature verifies; `aud` is the exact endpoint URL (a string, or a list containing it);
- `exp` and `iat` are present and finite, `exp` is not past and `iat` not in the future (both
  within the leeway), `nbf` if present is not in the future, and `exp - iat` is at most the
  configured maximum lifetime;
- `jti` is present and has not been seen before from that issuer (the replay cache keeps it until
  `exp` plus leeway). The `jti` is recorded only after every other check passed.

`endpoint_url` must come from the service's configured public base URL, never from the request's
Host header: otherwise a token minted for another service could be replayed here.

JWKS documents are fetched only through the injected `fetch_jwks`, by a `jwks_cache.JwksCache`:
cached per URL for a TTL, re-fetched early (at most once per `jwks_min_refetch_seconds`) when a
`kid` is not found, failures remembered with a growing backoff, the last good key set kept for a
grace period while the JWKS host is down, and at most one fetch per URL at a time. Time comes only
from the injected `clock` (seconds since the epoch), never from PyJWT's own wall clock.

The configuration models are in `ehr_auth_config`. The default `ReplayCache` (`replay_cache`) is
in-memory, so it protects one process: a service run with several worker processes needs a shared
store implementing `ReplayStore` (app.py passes the SQLite store in state_dir, store.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import jwt
from jwt import PyJWK

from ips_screen.service.ehr_auth_config import EhrAuthConfig, TrustedIssuer
from ips_screen.service.jwks_cache import JwksCache, JwksUnavailable
from ips_screen.service.replay_cache import ReplayCache, ReplayCacheFull, ReplayStore

__all__ = [  # with the configuration and replay cache names, re-exported from their modules
    "ALLOWED_ALGORITHMS",
    "MAX_TOKEN_LENGTH",
    "AuthRejected",
    "EhrAuthConfig",
    "EhrVerifier",
    "ReplayCache",
    "ReplayCacheFull",
    "ReplayStore",
    "TrustedIssuer",
]

ALLOWED_ALGORITHMS: tuple[str, ...] = ("RS384", "ES384")
"""The only signature algorithms accepted (CDS Hooks 2.0 requires the client to support both)."""

MAX_TOKEN_LENGTH = 8192
"""Longer bearer tokens are rejected before any parsing."""

_KEY_TYPE_FOR_ALG: dict[str, tuple[str, str | None]] = {
    "RS384": ("RSA", None),
    "ES384": ("EC", "P-384"),
}


class AuthRejected(Exception):
    """The request is not authenticated. `reason` is for the server log only, never the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- verifier


class EhrVerifier:
    """Verifies the EHR's bearer JWT on each CDS Hooks request (see the module docstring)."""

    def __init__(
        self,
        config: EhrAuthConfig,
        *,
        fetch_jwks: Callable[[str], dict[str, Any]],
        clock: Callable[[], float],
        replay_cache: ReplayStore | None = None,
        jwks_ttl_seconds: float = 300.0,
        jwks_min_refetch_seconds: float = 60.0,
        jwks_grace_seconds: float = 3600.0,
        jwks_backoff_seconds: float = 10.0,
        jwks_backoff_max_seconds: float = 300.0,
        jwks_wait_seconds: float = 5.0,
    ) -> None:
        self._config = config
        self._issuers = {issuer.iss: issuer for issuer in config.issuers}
        self._clock = clock
        self._replay: ReplayStore = replay_cache if replay_cache is not None else ReplayCache()
        self._jwks = JwksCache(
            fetch_jwks,
            ttl=jwks_ttl_seconds,
            min_refetch=jwks_min_refetch_seconds,
            grace=jwks_grace_seconds,
            backoff_initial=jwks_backoff_seconds,
            backoff_max=jwks_backoff_max_seconds,
            wait_seconds=jwks_wait_seconds,
        )

    def verify(self, authorization_header: str | None, endpoint_url: str) -> dict[str, Any]:
        """Return the verified claims, or raise `AuthRejected`."""
        now = self._clock()
        token = _bearer_token(authorization_header)
        header, unverified = _read_unverified(token)
        alg, kid, jku = _check_header(header)

        iss = unverified.get("iss")
        if not isinstance(iss, str):
            raise AuthRejected("iss claim missing or not a string")
        issuer = self._issuers.get(iss)
        if issuer is None:
            raise AuthRejected(f"issuer not trusted: {iss!r}")

        key = self._resolve_key(issuer, alg, kid, jku, now)
        leeway = self._config.leeway_seconds
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=list(ALLOWED_ALGORITHMS),
                audience=endpoint_url,
                issuer=issuer.iss,
                options={
                    "verify_signature": True,
                    "verify_aud": True,
                    "verify_iss": True,
                    # Time claims are checked below against the injected clock.
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["iss", "aud", "exp", "iat", "jti"],
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as exc:
            raise AuthRejected(f"verification failed: {type(exc).__name__}: {exc}") from None

        _check_audience(claims.get("aud"), endpoint_url)
        exp = _numeric_claim(claims, "exp")
        iat = _numeric_claim(claims, "iat")
        if now > exp + leeway:
            raise AuthRejected(f"token expired at {exp} (now {now})")
        if iat > now + leeway:
            raise AuthRejected(f"token issued in the future: iat {iat} (now {now})")
        if "nbf" in claims and _numeric_claim(claims, "nbf") > now + leeway:
            raise AuthRejected("token not valid yet (nbf)")
        if exp < iat:
            raise AuthRejected("exp is before iat")
        if exp - iat > self._config.max_lifetime_seconds:
            raise AuthRejected(
                f"token lifetime {exp - iat}s exceeds {self._config.max_lifetime_seconds}s"
            )
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise AuthRejected("jti claim missing or empty")
        try:
            fresh = self._replay.add(issuer.iss, jti, exp + leeway, now)
        except ReplayCacheFull as exc:
            raise AuthRejected(f"replay cache full: {exc}") from None
        if not fresh:
            raise AuthRejected(f"replayed jti {jti!r} from {issuer.iss!r}")
        return claims

    # ---- keys

    def _resolve_key(
        self, issuer: TrustedIssuer, alg: str, kid: str, jku: str | None, now: float
    ) -> PyJWK:
        jwk: dict[str, Any] | None = None
        if jku is not None:
            if jku not in issuer.jku_allowlist:
                raise AuthRejected(f"jku not in the allowlist of {issuer.iss!r}: {jku!r}")
            jwk = self._find_in_url(jku, kid, now)
        elif issuer.jwks is None and issuer.jwks_url is None:
            raise AuthRejected(f"issuer {issuer.iss!r} has keys only via jku, and none was sent")
        else:
            if issuer.jwks is not None:
                jwk = _find_kid(issuer.jwks["keys"], kid)
            if jwk is None and issuer.jwks_url is not None:
                jwk = self._find_in_url(issuer.jwks_url, kid, now)
        if jwk is None:
            raise AuthRejected(f"no key with kid {kid!r} for issuer {issuer.iss!r}")
        return _build_key(jwk, alg, kid)

    def _find_in_url(self, url: str, kid: str, now: float) -> dict[str, Any] | None:
        try:
            keys = self._jwks.keys(url, now, want_kid=kid)
        except JwksUnavailable as exc:
            raise AuthRejected(str(exc)) from None
        return _find_kid(keys, kid)


# --------------------------------------------------------------------------- helpers


def _bearer_token(authorization_header: str | None) -> str:
    if not authorization_header:
        raise AuthRejected("no Authorization header")
    if len(authorization_header) > MAX_TOKEN_LENGTH + len("Bearer "):
        raise AuthRejected("Authorization header too long")
    parts = authorization_header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise AuthRejected("Authorization header is not 'Bearer <token>'")
    return parts[1]


def _read_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    if token.count(".") != 2:
        raise AuthRejected("bearer token is not a compact JWS")
    try:
        decoded = jwt.decode_complete(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise AuthRejected(f"bearer token cannot be parsed: {exc}") from None
    header, payload = decoded["header"], decoded["payload"]
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise AuthRejected("bearer token header or payload is not a JSON object")
    return header, payload


def _check_header(header: Mapping[str, Any]) -> tuple[str, str, str | None]:
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise AuthRejected(f"alg not allowed: {alg!r}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise AuthRejected("kid header missing or empty")
    if "crit" in header:
        raise AuthRejected("crit header not supported")
    jku = header.get("jku")
    if jku is not None and not isinstance(jku, str):
        raise AuthRejected("jku header is not a string")
    return str(alg), kid, jku


def _find_kid(keys: tuple[dict[str, Any], ...] | list[Any], kid: str) -> dict[str, Any] | None:
    matches = [key for key in keys if isinstance(key, dict) and key.get("kid") == kid]
    if len(matches) > 1:
        raise AuthRejected(f"JWKS has {len(matches)} keys with kid {kid!r}")
    return matches[0] if matches else None


def _build_key(jwk: Mapping[str, Any], alg: str, kid: str) -> PyJWK:
    kty, crv = _KEY_TYPE_FOR_ALG[alg]
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        raise AuthRejected(f"key {kid!r} ({jwk.get('kty')}/{jwk.get('crv')}) does not fit {alg}")
    if "alg" in jwk and jwk["alg"] != alg:
        raise AuthRejected(f"key {kid!r} is for {jwk['alg']!r}, token uses {alg}")
    if "use" in jwk and jwk["use"] != "sig":
        raise AuthRejected(f"key {kid!r} is not a signing key (use={jwk['use']!r})")
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        raise AuthRejected(f"key {kid!r} does not allow verify (key_ops={key_ops!r})")
    try:
        return PyJWK(dict(jwk), algorithm=alg)
    except jwt.PyJWTError as exc:
        raise AuthRejected(f"key {kid!r} is unusable: {exc}") from None


def _check_audience(aud: object, endpoint_url: str) -> None:
    if isinstance(aud, str) and aud == endpoint_url:
        return
    if isinstance(aud, list) and endpoint_url in aud and all(isinstance(a, str) for a in aud):
        return
    raise AuthRejected(f"aud {aud!r} is not the endpoint {endpoint_url!r}")


def _numeric_claim(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthRejected(f"{name} claim missing or not a number")
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float, e.g. 10**400
        raise AuthRejected(f"{name} claim is out of range") from None
    if not math.isfinite(number):
        raise AuthRejected(f"{name} claim is not finite")
    return number
