"""The EHRs' JWKS documents, cached per URL so that neither an outage nor a flood of forged tokens
can make the service hammer (or wait on) the issuer's JWKS host.

- A fetched key set is used for `ttl` seconds; a `kid` it lacks triggers an early re-fetch at most
  once per `min_refetch` seconds (key rotation works; unknown-`kid` tokens cannot force fetches).
- A failed fetch is remembered (negative cache): no new attempt before a backoff that doubles
  from `backoff_initial` up to `backoff_max` seconds; tokens meanwhile are judged at once.
- When the JWKS host is down after the TTL, the last good key set is still used for `grace`
  seconds: calls signed by a known key keep working through a short outage.
- Single flight: at most one fetch per URL at a time; other callers wait for it at most
  `wait_seconds`, then go on with what the cache holds. The fetch's own duration is bounded by the
  fetcher (the service's fetcher has a total deadline and a size cap).

Time comes from the `now` each caller passes (the verifier's injected clock).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from jwt import PyJWKSet


class JwksUnavailable(Exception):
    """No usable key set for a URL; the message is for the server log."""


@dataclass
class _Entry:
    keys: tuple[dict[str, Any], ...] | None = None
    fetched_at: float = 0.0  # when `keys` was fetched
    failures: int = 0  # consecutive failed fetches
    retry_at: float = 0.0  # no fetch before this time (backoff after a failure)
    error: str = ""
    in_flight: threading.Event | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class JwksCache:
    """JWKS documents by URL (see the module docstring)."""

    def __init__(
        self,
        fetch: Callable[[str], dict[str, Any]],
        *,
        ttl: float = 300.0,
        min_refetch: float = 60.0,
        grace: float = 3600.0,
        backoff_initial: float = 10.0,
        backoff_max: float = 300.0,
        wait_seconds: float = 5.0,
    ) -> None:
        self._fetch = fetch
        self._ttl, self._min_refetch, self._grace = ttl, min_refetch, grace
        self._backoff_initial, self._backoff_max = backoff_initial, backoff_max
        self._wait = wait_seconds
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def keys(self, url: str, now: float, *, want_kid: str | None = None) -> tuple[dict, ...]:
        """The key set for `url`, fetching when due; `want_kid` not in a fresh set may trigger an
        early re-fetch (rate-limited). `JwksUnavailable` when there is no usable set."""
        with self._lock:
            entry = self._entries.setdefault(url, _Entry())
        fresh = entry.keys is not None and now - entry.fetched_at < self._ttl
        if fresh:
            assert entry.keys is not None
            if want_kid is None or any(k.get("kid") == want_kid for k in entry.keys):
                return entry.keys
            if now - entry.fetched_at >= self._min_refetch:
                self._refresh(url, entry, now)
            return entry.keys
        self._refresh(url, entry, now)
        with entry.lock:
            keys, fetched_at, error = entry.keys, entry.fetched_at, entry.error
        if keys is not None and now - fetched_at < self._ttl + self._grace:
            return keys
        raise JwksUnavailable(error or f"JWKS {url} not fetched yet (another fetch in progress)")

    def _refresh(self, url: str, entry: _Entry, now: float) -> None:
        """Fetch `url` unless backing off; join a fetch in flight instead of starting one."""
        with entry.lock:
            if entry.in_flight is not None:
                waiting: threading.Event | None = entry.in_flight
            elif now < entry.retry_at:
                return
            else:
                waiting, entry.in_flight = None, threading.Event()
        if waiting is not None:
            waiting.wait(self._wait)
            return
        try:
            keys = _usable_keys(url, self._fetch)
        except JwksUnavailable as exc:
            with entry.lock:
                entry.failures += 1
                backoff = self._backoff_initial * 2 ** min(entry.failures - 1, 16)
                entry.retry_at = now + min(self._backoff_max, backoff)
                entry.error = str(exc)
        else:
            with entry.lock:
                entry.keys, entry.fetched_at = keys, now
                entry.failures, entry.retry_at, entry.error = 0, 0.0, ""
        finally:
            with entry.lock:
                done, entry.in_flight = entry.in_flight, None
            assert done is not None
            done.set()


def _usable_keys(url: str, fetch: Callable[[str], dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    try:
        document = fetch(url)
    except Exception as exc:  # the fetcher's failures are all "the JWKS host is unusable"
        raise JwksUnavailable(f"fetching JWKS {url} failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(document, dict):
        raise JwksUnavailable(f"JWKS {url} is not a JSON object")
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise JwksUnavailable(f'JWKS {url} has no "keys" list')
    try:
        PyJWKSet.from_dict(document)
    except jwt.PyJWTError as exc:
        raise JwksUnavailable(f"JWKS {url} has no usable keys: {exc}") from None
    return tuple(k for k in keys if isinstance(k, dict))
