"""Polling a Bulk Data export job's status URL until its manifest is ready.

202 waits Retry-After (seconds or HTTP date) else 1, 2, 4 ... s, within 1..120 s; X-Progress is
logged. 429 doubles the interval for the rest of the job. 408/5xx (unless an OperationOutcome says
the job failed) are retried, `max_attempts` in a row at most. A 404/410 is `JobGone`, a failure
the server reports is `JobFailed`. After `max_wait` s (by `clock`) a ServerError names the status
URL (without its query), so that the next run can resume the job.

`manifest_pages` follows a paged manifest (Bulk Data 2.0: `link` with relation `next`) on the
status URL's origin only, at most `max_pages` pages, refusing a loop; every page must keep the
first page's transactionTime.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import orjson
import requests

from ips_screen.errors import ServerError
from ips_screen.fhir.auth import origin_of
from ips_screen.fhir.bulk_http import BulkHttp, TransientError, failure
from ips_screen.fhir.outcome import issue_codes, request_label
from ips_screen.fhir.retry import RETRY_STATUSES

log = logging.getLogger("ips_screen.fhir.bulk")

POLL_WAIT_MIN, POLL_WAIT_CAP, POLL_BACKOFF_MAX = 1.0, 120.0, 60.0
MAX_MANIFEST_PAGES = 1000
# IssueType "transient" and its children: the poll failed, not necessarily the job.
TRANSIENT_ISSUES = frozenset(
    {"transient", "lock-error", "no-store", "exception", "timeout", "incomplete", "throttled"}
)


class JobGone(ServerError):
    """The server does not know the status URL (404/410)."""


class JobFailed(ServerError):
    """The server reported that the export job failed."""


@dataclass
class StatusPoller:
    """Polls one export job's status URL (see the module notes)."""

    http: BulkHttp
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    notify: Callable[[str, dict], None]
    max_wait: float

    def __post_init__(self) -> None:
        self.deadline = self.clock() + self.max_wait

    def manifest(self, status_url: str) -> dict:
        """Poll until the manifest; raises JobGone, JobFailed or ServerError."""
        what = f"{request_label('GET', status_url)} (export status)"
        retry = self.http.client.retry
        floor, waits, failures, last = 0.0, 0, 0, POLL_WAIT_MIN
        while True:
            status: int | None = None
            text: str | None = None
            try:
                resp = self.http.send("GET", status_url, headers={"Accept": "application/json"})
            except TransientError as exc:
                failures += 1
                if failures >= retry.max_attempts:
                    raise ServerError(f"{exc} (gave up after {failures} attempts)") from exc
                log.warning("%s; polling again", exc)
                delay = retry.backoff(failures)
            else:
                status, after = resp.status_code, self.http.retry_after(resp)
                codes = issue_codes(resp)
                if status == 200:
                    return manifest_json(resp, what)
                if status == 202:
                    failures, waits = 0, waits + 1
                    backoff = min(POLL_BACKOFF_MAX, 2.0 ** (waits - 1))
                    delay = max(after if after is not None else backoff, floor)
                    text = " ".join(resp.headers.get("X-Progress", "").split())[:100] or None
                    log.info("export in progress (%s)", text or "no X-Progress")
                elif status == 429:
                    floor = delay = min(POLL_WAIT_CAP, max(after or 0.0, 2 * max(last, floor)))
                    log.warning("%s -> 429; slowing down to one poll per %.0f s", what, delay)
                elif status in (404, 410):
                    raise JobGone(f"HTTP {status} from {what}")
                elif status in RETRY_STATUSES and (not codes or codes & TRANSIENT_ISSUES):
                    failures += 1
                    if failures >= retry.max_attempts:
                        failed = JobFailed if codes else ServerError
                        raise failed(f"{failure(resp, what)} (gave up after {failures} attempts)")
                    delay = after if after is not None else retry.backoff(failures)
                    log.warning("%s -> %d; polling again", what, status)
                else:
                    raise JobFailed(failure(resp, what))
            last = delay = min(max(delay, POLL_WAIT_MIN), POLL_WAIT_CAP)
            self.notify("poll", {"status": status, "progress": text, "wait": delay})
            remaining = self.deadline - self.clock()
            if remaining <= 0:
                raise ServerError(
                    f"the bulk export at {without_query(status_url)} did not finish within "
                    f"{self.max_wait:.0f} s; the next run resumes it"
                )
            self.sleep(min(delay, remaining))


def manifest_pages(
    http: BulkHttp, first: dict, status_url: str, max_pages: int = MAX_MANIFEST_PAGES
) -> list[tuple[str, dict]]:
    """(URL, manifest) of every page, the first being `first` (from `status_url`)."""
    pages = [(status_url, first)]
    seen = {status_url}
    origin = _origin(status_url)
    page = first
    while (url := _next_link(page, pages[-1][0])) is not None:
        where = f"the export manifest's next link (page {len(pages) + 1})"
        if _origin(url) != origin:
            raise ServerError(f"{where} leaves the server ({without_query(url)}): not followed")
        if url in seen:
            raise ServerError(f"{where} points back to an earlier page: a loop")
        if len(pages) >= max_pages:
            raise ServerError(f"the export manifest has more than {max_pages} pages")
        seen.add(url)
        what = f"{request_label('GET', url)} (export manifest page {len(pages) + 1})"
        resp = http.call("GET", url, what, headers={"Accept": "application/json"})
        if resp.status_code != 200:
            raise ServerError(failure(resp, what))
        page = manifest_json(resp, what)
        if page.get("transactionTime") != first.get("transactionTime"):
            raise ServerError(f"{what}: its transactionTime differs from the first page's")
        pages.append((url, page))
    if len(pages) > 1:
        log.info("the export manifest has %d pages", len(pages))
    return pages


def _next_link(manifest: dict, base: str) -> str | None:
    links = manifest.get("link")
    if links is None:
        return None
    if not isinstance(links, list):
        raise ServerError("the export manifest's link is not a list")
    for link in links:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            if not isinstance(url, str) or not url:
                raise ServerError("the export manifest's next link has no url")
            return urljoin(base, url)
    return None


def _origin(url: str) -> object:
    try:
        return origin_of(url)
    except ValueError as exc:
        raise ServerError("the export manifest's next link is not a usable URL") from exc


def manifest_json(resp: requests.Response, what: str) -> dict:
    """The export manifest in a 200 answer (a JSON object that is not a FHIR resource)."""
    try:
        manifest = orjson.loads(resp.content)
    except orjson.JSONDecodeError as exc:
        raise ServerError(f"{what}: the export manifest is not valid JSON") from exc
    if not isinstance(manifest, dict) or "resourceType" in manifest:
        raise ServerError(f"{what}: 200 OK but the body is not an export manifest")
    return manifest


def without_query(url: str) -> str:
    """The URL without its query and fragment, for messages."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
