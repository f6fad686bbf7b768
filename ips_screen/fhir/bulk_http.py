"""Requests of a Bulk Data export (kick-off, status polls, file downloads, clean-up).

`BulkHttp` sends through the FhirClient's session: every request asks the client's auth afresh (a
renewed token is used at once), credentials go only to the FHIR server's origin (also on
redirects; none at all with `send_auth=False`), a 401 re-authenticates once, and timeouts,
connection errors and 408/429/5xx are retried with the client's RetryPolicy (Retry-After honoured
up to its cap) via `sleep`. Logs name the method and path only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import requests

from ips_screen.errors import ServerError
from ips_screen.fhir.client import FhirClient
from ips_screen.fhir.outcome import error_detail, request_label
from ips_screen.fhir.retry import (
    RETRY_STATUSES,
    TRANSIENT_ERRORS,
    retry_after_seconds,
    transient_reason,
)

log = logging.getLogger("ips_screen.fhir.bulk")

T = TypeVar("T")


class TransientError(ServerError):
    """A failure worth retrying; `retry_after` is the server's Retry-After, if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ExportDamaged(ServerError):
    """A file of the export is damaged (fewer lines than its manifest count, a truncated or
    corrupt stream, a line that is not a resource of the file's type, a line over the size cap):
    the export is unusable as a whole, and the job is not resumed."""


def failure(resp: requests.Response, what: str) -> str:
    """'HTTP 500 from GET /path: <OperationOutcome summary>'."""
    detail = error_detail(resp)
    return f"HTTP {resp.status_code} from {what}" + (f": {detail}" if detail else "")


class BulkHttp:
    """Requests through a FhirClient's session (its auth, timeouts, headers and retry policy)."""

    def __init__(self, client: FhirClient, sleep: Callable[[float], None]) -> None:
        self.client = client
        self.sleep = sleep

    def now(self) -> float:
        """Wall-clock time for Retry-After dates: the client's (injectable) clock."""
        return self.client.now()

    def retry_after(self, resp: requests.Response) -> float | None:
        return retry_after_seconds(resp, now=self.now())

    def send(
        self,
        method: str,
        url: str,
        *,
        params: Sequence[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        stream: bool = False,
        send_auth: bool = True,
    ) -> requests.Response:
        """One request (plus one re-authenticated retry after a 401); any status is returned."""
        what = request_label(method, url)
        reauthenticated = False
        while True:
            try:
                resp = self.client.raw_request(
                    method,
                    url,
                    params=params,
                    headers=headers,
                    body=body,
                    stream=stream,
                    send_auth=send_auth,
                )
            except TRANSIENT_ERRORS as exc:
                raise TransientError(f"{what}: {transient_reason(exc)}") from exc
            except requests.RequestException as exc:
                raise ServerError(f"{what}: request failed ({type(exc).__name__})") from exc
            if (
                resp.status_code == 401
                and send_auth
                and not reauthenticated
                and self.client.auth.reauthenticate()
            ):
                resp.close()
                reauthenticated = True
                log.info("%s -> 401; re-authenticating once", what)
                continue
            return resp

    def transient(self, resp: requests.Response, what: str) -> TransientError | None:
        if resp.status_code not in RETRY_STATUSES:
            return None
        # the server's own words (an OperationOutcome's text) survive the last retry
        return TransientError(failure(resp, what), self.retry_after(resp))

    def retrying(self, what: str, attempt: Callable[[], T]) -> T:
        """Call `attempt` until it does not raise TransientError, at most max_attempts times."""
        policy = self.client.retry
        tries = 0
        while True:
            tries += 1
            try:
                return attempt()
            except TransientError as exc:
                if tries >= policy.max_attempts:
                    raise ServerError(f"{exc} (gave up after {tries} attempts)") from exc
                delay = policy.delay(exc.retry_after, tries)
                log.warning("%s; retry %d in %.1f s", exc, tries, delay)
                self.sleep(delay)

    def call(self, method: str, url: str, what: str, **kwargs: Any) -> requests.Response:
        """`send`, retrying timeouts, connection errors and 408/429/5xx answers."""

        def attempt() -> requests.Response:
            resp = self.send(method, url, **kwargs)
            transient = self.transient(resp, what)
            if transient is not None:
                resp.close()
                raise transient
            return resp

        return self.retrying(what, attempt)
