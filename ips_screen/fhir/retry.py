"""When and how long to retry a FHIR request that failed in a transient way.

Only 408/429/500/502/503/504 answers, connection errors and timeouts are transient. The delay
after the n-th failed attempt is the exponential backoff 1, 2, 4, ... s up to a maximum, or the
server's `Retry-After` (seconds or an HTTP date) when it sends one, both capped. A 401 is
answered by re-authenticating once (an extra attempt, not a retry). Retries are logged to the
`ips_screen.fhir` logger with the method and path only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

import requests

from ips_screen.errors import ServerError
from ips_screen.fhir.outcome import raise_for_status

log = logging.getLogger("ips_screen.fhir")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a request that failed in a transient way."""

    max_attempts: int = 5
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    retry_after_cap: float = 60.0

    def backoff(self, attempt: int) -> float:
        """Delay after the `attempt`-th (1-based) failed attempt: 1, 2, 4, ... up to the max."""
        return min(self.backoff_max, self.backoff_initial * 2 ** (attempt - 1))

    def delay(self, retry_after: float | None, attempt: int) -> float:
        """The server's Retry-After if it sent one, else the backoff; at most the cap."""
        delay = retry_after if retry_after is not None else self.backoff(attempt)
        return min(delay, self.retry_after_cap)


def transient_reason(exc: BaseException) -> str:
    """'timed out' or 'connection failed', for one of the TRANSIENT_ERRORS."""
    return "timed out" if isinstance(exc, requests.Timeout) else "connection failed"


def retry_after_seconds(resp: requests.Response, *, now: float) -> float | None:
    """The response's Retry-After in seconds from `now`; None when absent or unreadable."""
    return parse_retry_after(resp.headers.get("Retry-After"), now=now)


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or
    unreadable. A date in the past gives 0."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def send_with_retries(
    send: Callable[[], requests.Response],
    what: str,
    *,
    policy: RetryPolicy,
    retry: bool,
    reauthenticate: Callable[[], bool],
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> requests.Response:
    """Call `send` until it answers, retrying transient failures by `policy` when `retry`, and
    once more after a 401 when `reauthenticate()` renewed the credentials.

    Returns the final response (any status other than a transient one given up on, or a 401 after
    re-authenticating, which raise ServerError); `what` is the "METHOD /path" for messages.
    `clock` is the wall clock for Retry-After dates.
    """
    attempts = policy.max_attempts if retry else 1
    attempt = 0
    reauthenticated = False
    while True:
        attempt += 1
        started = time.monotonic()
        try:
            resp = send()
        except TRANSIENT_ERRORS as exc:
            reason = transient_reason(exc)
            if attempt < attempts:
                delay = policy.backoff(attempt)
                log.warning(
                    "%s %s; retrying in %.1f s (attempt %d of %d)",
                    what,
                    reason,
                    delay,
                    attempt + 1,
                    attempts,
                )
                sleep(delay)
                continue
            tries = f" (gave up after {attempt} attempts)" if attempt > 1 else ""
            raise ServerError(f"{what}: {reason}{tries}") from exc
        except requests.RequestException as exc:
            raise ServerError(f"{what}: request failed ({type(exc).__name__})") from exc
        elapsed_ms = (time.monotonic() - started) * 1000
        log.debug("%s -> %d in %.0f ms", what, resp.status_code, elapsed_ms)

        if resp.status_code == 401:
            if not reauthenticated and reauthenticate():
                reauthenticated = True
                attempt -= 1  # the re-authenticated retry is extra, not a transient retry
                log.info("%s -> 401; re-authenticating once", what)
                continue
            if reauthenticated:
                raise_for_status(resp, what, hint="still unauthorized after re-authenticating")
        if resp.status_code in RETRY_STATUSES and retry:
            if attempt < attempts:
                delay = policy.delay(retry_after_seconds(resp, now=clock()), attempt)
                log.warning(
                    "%s -> %d; retrying in %.1f s (attempt %d of %d)",
                    what,
                    resp.status_code,
                    delay,
                    attempt + 1,
                    attempts,
                )
                sleep(delay)
                continue
            raise_for_status(
                resp, what, hint=f"gave up after {attempt} attempts" if attempt > 1 else None
            )
        return resp
