"""A small FHIR R4 REST client over `requests`.

- JSON only (`Accept: application/fhir+json`), parsed with orjson into plain dicts.
- Retries with exponential backoff only on 408/429/500/502/503/504 and on connection errors and
  timeouts, and only for requests that are safe to repeat (GET, PUT, and POSTs the caller marks as
  conditional). `Retry-After` (seconds or an HTTP date) is honoured up to a cap. `sleep` and
  `clock` are injectable so tests never sleep.
- Paging follows `Bundle.link[relation=next]` only on the base URL's own origin, stops on a loop,
  and stops after `max_pages`.
- Every failure is a `ServerError` (a `ConflictError` for a version conflict) with a one-line
  message naming the HTTP status, the method and the URL path (never query values, which may hold
  patient data), and the OperationOutcome's diagnostics.
- Logs go to the `ips_screen.fhir` logger: method, path, status, timings; never headers, tokens or
  bodies.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import orjson
import requests

from ips_screen import __version__
from ips_screen.errors import ConfigError, ConflictError, ServerError
from ips_screen.fhir.auth import FhirAuth, NoAuth, describe_origin, origin_of

log = logging.getLogger("ips_screen.fhir")

FHIR_JSON = "application/fhir+json"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_ETAG_RE = re.compile(r'^(?:W/)?"?([^"]*)"?$')

Resource = dict[str, Any]
SearchParams = Mapping[str, str | int | Sequence[str]] | Sequence[tuple[str, str]]


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


@dataclass(frozen=True)
class WriteResult:
    """What a create or update answered."""

    status: int
    resource: Resource | None
    version_id: str | None
    location: str | None

    @property
    def created(self) -> bool:
        return self.status == 201


class _OriginBoundSession(requests.Session):
    """A Session that, on every redirect hop, strips Authorization and re-applies the client's
    FhirAuth, which attaches credentials only for the FHIR server's own origin (no .netrc)."""

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: Any) -> None:
        prepared_request.headers.pop("Authorization", None)
        if isinstance(self.auth, FhirAuth):
            self.auth(prepared_request)


class FhirClient:
    """Talks to one FHIR R4 server. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: FhirAuth | None = None,
        timeout: float | tuple[float, float] = (5.0, 60.0),
        headers: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        max_pages: int = 1000,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise ConfigError(f"not a usable FHIR base URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.origin = origin_of(self.base_url)
        self.auth = auth or NoAuth(self.base_url)
        if self.auth.origin != self.origin:
            raise ConfigError(
                f"the authentication is configured for {describe_origin(self.auth.origin)}, "
                f"not for the FHIR server {describe_origin(self.origin)}"
            )
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.max_pages = max_pages
        self._sleep = sleep
        self._clock = clock
        self._prefer: list[str] = []
        self._session = _OriginBoundSession()
        self._session.auth = self.auth
        self._session.headers.update(
            {"Accept": FHIR_JSON, "User-Agent": f"ips-screen/{__version__}"}
        )
        for name, value in (headers or {}).items():
            if name.lower() == "authorization":
                raise ConfigError("pass credentials as an auth strategy, not as a header")
            if name.lower() == "prefer":
                self._prefer.append(value)
            else:
                self._session.headers[name] = value

    # -- lifecycle --------------------------------------------------------------------------------

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> tuple[Resource, str | None]:
        """The current version of a resource and its versionId (from ETag, else meta)."""
        url = self._url(resource_type, resource_id)
        resp, what = self._request("GET", url, retry=True)
        self._check(resp, what)
        resource = self._json(resp, what)
        if resource.get("resourceType") != resource_type:
            raise ServerError(f"{what}: expected a {resource_type}, got {_rtype(resource)}")
        return resource, _version_id(resp, resource)

    def search_pages(
        self, resource_type: str, params: SearchParams | None = None
    ) -> Iterator[Resource]:
        """Each searchset Bundle of a search, following next links on the server's own origin."""
        url: str = self._url(resource_type)
        page_params: SearchParams | None = params
        seen: set[str] = set()
        pages = 0
        while True:
            pages += 1
            if pages > self.max_pages:
                raise ServerError(
                    f"GET {urlsplit(url).path}: stopped after {self.max_pages} pages of results"
                )
            resp, what = self._request("GET", url, params=page_params, retry=True)
            self._check(resp, what)
            bundle = self._json(resp, f"{what} (page {pages})")
            if bundle.get("resourceType") != "Bundle":
                raise ServerError(f"{what}: expected a Bundle, got {_rtype(bundle)}")
            if not isinstance(bundle.get("entry") or [], list):
                raise ServerError(f"{what} (page {pages}): malformed Bundle (entry is not a list)")
            seen.add(resp.url)
            if resp.request is not None and resp.request.url:
                seen.add(resp.request.url)
            yield bundle
            next_url = _next_link(bundle)
            if next_url is None:
                return
            next_url = urljoin(resp.url, next_url)
            try:
                next_origin = origin_of(next_url)
            except ValueError as exc:
                raise ServerError(f"{what}: the next-page link is not a usable URL") from exc
            if next_origin != self.origin:
                raise ServerError(
                    f"{what}: refused to follow a next-page link to another server "
                    f"({describe_origin(next_origin)}, not {describe_origin(self.origin)})"
                )
            if next_url in seen:
                raise ServerError(
                    f"{what}: the next-page link points back to an earlier page (a paging loop) "
                    f"after {pages} pages"
                )
            url, page_params = next_url, None

    def search(self, resource_type: str, params: SearchParams | None = None) -> Iterator[Resource]:
        """Every resource a search returns (matches and includes), across all pages."""
        for bundle in self.search_pages(resource_type, params):
            for entry in bundle.get("entry") or []:
                if not isinstance(entry, dict):
                    continue
                search = entry.get("search")
                if isinstance(search, dict) and search.get("mode") == "outcome":
                    log.info("search %s: the server attached an OperationOutcome", resource_type)
                    continue
                resource = entry.get("resource")
                if isinstance(resource, dict):
                    yield resource

    def capabilities(self) -> Resource | None:
        """The server's CapabilityStatement, or None when it cannot be read or is not one.

        Servers often misstate what they support: treat the answer as a hint, not a promise.
        """
        url = f"{self.base_url}/metadata"
        try:
            resp, what = self._request("GET", url, retry=False)
            self._check(resp, what)
            statement = self._json(resp, what)
        except ServerError as exc:
            log.warning("no CapabilityStatement (%s); carrying on without it", exc)
            return None
        if statement.get("resourceType") != "CapabilityStatement":
            log.warning("GET /metadata returned %s, not a CapabilityStatement", _rtype(statement))
            return None
        version = statement.get("fhirVersion")
        if not (isinstance(version, str) and version.startswith("4.0")):
            log.warning("the server claims FHIR version %r, not R4 (4.0.x)", version)
        return statement

    # -- writing ----------------------------------------------------------------------------------

    def create(
        self,
        resource: Resource,
        if_none_exist: str | None = None,
        *,
        retry: bool | None = None,
    ) -> WriteResult:
        """POST a resource; with `if_none_exist` (e.g. "identifier=system|value") a conditional
        create that answers 201 created or 200 already there. Retried only when conditional,
        unless `retry` says otherwise."""
        resource_type = _resource_type(resource)
        headers = {"Content-Type": FHIR_JSON, "Prefer": self._prefer_with("return=representation")}
        if if_none_exist:
            headers["If-None-Exist"] = if_none_exist
        resp, what = self._request(
            "POST",
            self._url(resource_type),
            body=orjson.dumps(resource),
            headers=headers,
            retry=bool(if_none_exist) if retry is None else retry,
        )
        if if_none_exist and resp.status_code == 412:
            self._check(resp, what, hint="several resources match If-None-Exist")
        self._check(resp, what)
        return _write_result(resp, what)

    def update(
        self, resource: Resource, if_match: str | None = None, *, retry: bool = True
    ) -> WriteResult:
        """PUT a resource (it must have an id). With `if_match` (a versionId, or a W/"n" ETag)
        a stale version raises ConflictError (servers answer 409 or 412)."""
        resource_type = _resource_type(resource)
        resource_id = resource.get("id")
        if not isinstance(resource_id, str):
            raise ValueError("update needs a resource with an id")
        headers = {"Content-Type": FHIR_JSON, "Prefer": self._prefer_with("return=representation")}
        if if_match:
            headers["If-Match"] = _weak_etag(if_match)
        resp, what = self._request(
            "PUT",
            self._url(resource_type, resource_id),
            body=orjson.dumps(resource),
            headers=headers,
            retry=retry,
        )
        self._check(
            resp, what, conflict=f"{resource_type}/{resource_id} was changed by someone else"
        )
        return _write_result(resp, what)

    def transaction(self, bundle: Resource, *, retry: bool = False) -> Resource:
        """POST a transaction (or batch) Bundle to the base URL; returns the response Bundle.

        Pass `retry=True` only when every entry is safe to repeat (conditional creates, PUTs):
        a transaction whose response was lost may have been applied. A 409/412 (a stale ifMatch,
        or an ifNoneExist matching several resources) raises ConflictError: nothing was changed.
        """
        kind = bundle.get("type") if bundle.get("resourceType") == "Bundle" else None
        if kind not in ("transaction", "batch"):
            raise ValueError("transaction needs a Bundle of type transaction or batch")
        headers = {"Content-Type": FHIR_JSON, "Prefer": self._prefer_with("return=representation")}
        resp, what = self._request(
            "POST", self.base_url, body=orjson.dumps(bundle), headers=headers, retry=retry
        )
        self._check(resp, what, conflict=f"the {kind} conflicted with the server's data")
        result = self._json(resp, what)
        if result.get("resourceType") != "Bundle" or result.get("type") != f"{kind}-response":
            raise ServerError(f"{what}: expected a {kind}-response Bundle, got {_rtype(result)}")
        return result

    # -- plumbing ---------------------------------------------------------------------------------

    def _url(self, resource_type: str, resource_id: str | None = None) -> str:
        if not _TYPE_RE.match(resource_type):
            raise ValueError(f"not a FHIR resource type: {resource_type!r}")
        if resource_id is None:
            return f"{self.base_url}/{resource_type}"
        if not _ID_RE.match(resource_id):
            raise ValueError(f"not a FHIR resource id: {resource_id!r}")
        return f"{self.base_url}/{resource_type}/{resource_id}"

    def _prefer_with(self, *values: str) -> str:
        return ", ".join([*self._prefer, *values])

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: SearchParams | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool,
    ) -> tuple[requests.Response, str]:
        """Send a request, retrying transient failures when `retry`; re-authenticate once on 401.

        Returns the final response (any status) and a "METHOD /path" label for messages.
        """
        what = f"{method} {urlsplit(url).path or '/'}"
        request_headers = dict(headers or {})
        if "Prefer" not in request_headers and self._prefer:
            request_headers["Prefer"] = self._prefer_with()
        attempts = self.retry.max_attempts if retry else 1
        attempt = 0
        reauthenticated = False
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                resp = self._session.request(
                    method,
                    url,
                    params=params,  # type: ignore[arg-type]
                    data=body,
                    headers=request_headers,
                    timeout=self.timeout,
                )
            except _TRANSIENT_ERRORS as exc:
                reason = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
                if attempt < attempts:
                    delay = self.retry.backoff(attempt)
                    log.warning(
                        "%s %s; retrying in %.1f s (attempt %d of %d)",
                        what,
                        reason,
                        delay,
                        attempt + 1,
                        attempts,
                    )
                    self._sleep(delay)
                    continue
                tries = f" (gave up after {attempt} attempts)" if attempt > 1 else ""
                raise ServerError(f"{what}: {reason}{tries}") from exc
            except requests.RequestException as exc:
                raise ServerError(f"{what}: request failed ({type(exc).__name__})") from exc
            elapsed_ms = (time.monotonic() - started) * 1000
            log.debug("%s -> %d in %.0f ms", what, resp.status_code, elapsed_ms)

            if resp.status_code == 401:
                if not reauthenticated and self.auth.reauthenticate():
                    reauthenticated = True
                    attempt -= 1  # the re-authenticated retry is extra, not a transient retry
                    log.info("%s -> 401; re-authenticating once", what)
                    continue
                if reauthenticated:
                    self._check(resp, what, hint="still unauthorized after re-authenticating")
            if resp.status_code in RETRY_STATUSES and retry:
                if attempt < attempts:
                    delay = self._retry_delay(resp, attempt)
                    log.warning(
                        "%s -> %d; retrying in %.1f s (attempt %d of %d)",
                        what,
                        resp.status_code,
                        delay,
                        attempt + 1,
                        attempts,
                    )
                    self._sleep(delay)
                    continue
                self._check(
                    resp, what, hint=f"gave up after {attempt} attempts" if attempt > 1 else None
                )
            return resp, what

    def _retry_delay(self, resp: requests.Response, attempt: int) -> float:
        delay = parse_retry_after(resp.headers.get("Retry-After"), now=self._clock())
        if delay is None:
            delay = self.retry.backoff(attempt)
        return min(delay, self.retry.retry_after_cap)

    @staticmethod
    def _check(
        resp: requests.Response, what: str, *, conflict: str | None = None, hint: str | None = None
    ) -> None:
        """Raise ServerError (ConflictError for 409/412 when `conflict` is given) unless 2xx."""
        status = resp.status_code
        if 200 <= status < 300:
            return
        message = f"HTTP {status} {resp.reason or ''}".rstrip() + f" from {what}"
        if hint:
            message += f" ({hint})"
        detail = error_detail(resp)
        if detail:
            message += f": {detail}"
        if conflict and status in (409, 412):
            raise ConflictError(f"{conflict}: {message}")
        raise ServerError(message)

    @staticmethod
    def _json(resp: requests.Response, what: str) -> Resource:
        if not resp.content:
            raise ServerError(
                f"{what}: empty response (HTTP {resp.status_code}), expected FHIR JSON"
            )
        try:
            data = orjson.loads(resp.content)
        except orjson.JSONDecodeError as exc:
            content_type = resp.headers.get("Content-Type", "none")
            if "json" not in content_type.lower():
                raise ServerError(
                    f"{what}: the response is not JSON (Content-Type: {content_type})"
                ) from exc
            raise ServerError(f"{what}: malformed JSON in the response ({exc})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
            raise ServerError(f"{what}: the response is not a FHIR resource")
        return data


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


def error_detail(resp: requests.Response) -> str:
    """A one-line summary of an error body: OperationOutcome issues, an OAuth error, or what is
    wrong with the body. Never the raw body."""
    if not resp.content:
        return ""
    try:
        data = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        content_type = resp.headers.get("Content-Type", "none")
        if "json" in content_type.lower():
            return "malformed JSON in the error response"
        return f"the error response is not FHIR JSON (Content-Type: {content_type})"
    if isinstance(data, dict) and data.get("resourceType") == "OperationOutcome":
        return outcome_summary(data)
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        described = data.get("error_description")
        return _one_line(f"{data['error']}: {described}" if described else data["error"])
    return f"unexpected error response ({_rtype(data)})"


def outcome_summary(outcome: Mapping[str, Any], limit: int = 600) -> str:
    """'severity code: diagnostics [expression]; ...' for each issue of an OperationOutcome."""
    parts: list[str] = []
    issues = outcome.get("issue")
    for issue in issues if isinstance(issues, list) else []:
        if not isinstance(issue, dict):
            continue
        label = " ".join(str(issue[k]) for k in ("severity", "code") if issue.get(k))
        text = issue.get("diagnostics") or _details_text(issue.get("details"))
        where = issue.get("expression") or issue.get("location")
        piece = f"{label}: {text}" if label and text else (label or str(text or ""))
        if isinstance(where, list) and where:
            piece += f" [{', '.join(str(w) for w in where)}]"
        if piece:
            parts.append(piece)
    return _one_line("; ".join(parts), limit) if parts else "OperationOutcome without issues"


def capability_search_params(
    statement: Mapping[str, Any] | None, resource_type: str
) -> frozenset[str]:
    """Search parameter names a CapabilityStatement declares for a type; empty when it says
    nothing usable (a missing or malformed statement is not an error)."""
    names: set[str] = set()
    rests = statement.get("rest") if statement else None
    for rest in rests if isinstance(rests, list) else []:
        resources = rest.get("resource") if isinstance(rest, dict) else None
        for entry in resources if isinstance(resources, list) else []:
            if not isinstance(entry, dict) or entry.get("type") != resource_type:
                continue
            params = entry.get("searchParam")
            for param in params if isinstance(params, list) else []:
                if isinstance(param, dict) and isinstance(param.get("name"), str):
                    names.add(param["name"])
    return frozenset(names)


def _details_text(details: object) -> str:
    if not isinstance(details, dict):
        return ""
    if details.get("text"):
        return str(details["text"])
    codings = details.get("coding")
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, dict) and (coding.get("display") or coding.get("code")):
            return str(coding.get("display") or coding.get("code"))
    return ""


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    links = bundle.get("link")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            return url if isinstance(url, str) and url else None
    return None


def _version_id(resp: requests.Response, resource: Mapping[str, Any] | None) -> str | None:
    etag = resp.headers.get("ETag")
    if etag:
        match = _ETAG_RE.match(etag.strip())
        if match and match.group(1):
            return match.group(1)
    meta = resource.get("meta") if resource else None
    version = meta.get("versionId") if isinstance(meta, dict) else None
    return str(version) if version is not None else None


def _weak_etag(version: str) -> str:
    version = version.strip()
    if version.startswith(('W/"', '"')):
        return version
    return f'W/"{version}"'


def _write_result(resp: requests.Response, what: str) -> WriteResult:
    resource = FhirClient._json(resp, what) if resp.content else None
    location = resp.headers.get("Location") or resp.headers.get("Content-Location")
    return WriteResult(resp.status_code, resource, _version_id(resp, resource), location)


def _resource_type(resource: Mapping[str, Any]) -> str:
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise ValueError("not a FHIR resource: no resourceType")
    return resource_type


def _rtype(data: object) -> str:
    if isinstance(data, dict) and isinstance(data.get("resourceType"), str):
        return str(data["resourceType"])
    return type(data).__name__


def _one_line(text: str, limit: int = 600) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
