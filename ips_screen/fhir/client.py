"""A small FHIR R4 REST client over `requests`.

- JSON only (`Accept: application/fhir+json`), parsed with orjson into plain dicts.
- Retries with exponential backoff only on 408/429/500/502/503/504 and on connection errors and
  timeouts, and only for requests that are safe to repeat (GET, PUT, and POSTs the caller marks as
  conditional). `Retry-After` (seconds or an HTTP date) is honoured up to a cap (`retry`). `sleep`
  and `clock` are injectable so tests never sleep.
- Paging follows `Bundle.link[relation=next]` only on the base URL's own origin, stops on a loop,
  and stops after `max_pages` (`paging`).
- Every failure is a `ServerError` (a `ConflictError` for a version conflict) with a one-line
  message naming the HTTP status, the method and the URL path (never query values, which may hold
  patient data), and the OperationOutcome's diagnostics (`outcome`).
- Logs go to the `ips_screen.fhir` logger: method, path, status, timings; never headers, tokens or
  bodies.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests

from ips_screen import __version__
from ips_screen.errors import ConfigError, ServerError
from ips_screen.fhir.auth import FhirAuth, NoAuth, describe_origin, origin_of
from ips_screen.fhir.capabilities import capability_search_params
from ips_screen.fhir.outcome import (
    error_detail,
    outcome_summary,
    raise_for_status,
    request_label,
    type_name,
)
from ips_screen.fhir.paging import PageFollower
from ips_screen.fhir.response import Resource, WriteResult, resource_json, version_id, write_result
from ips_screen.fhir.retry import RETRY_STATUSES, RetryPolicy, parse_retry_after, send_with_retries
from ips_screen.fhir.session import OriginBoundSession, without_auth

__all__ = [  # with names re-exported from the modules that define them
    "FHIR_JSON",
    "RETRY_STATUSES",
    "FhirClient",
    "Resource",
    "RetryPolicy",
    "SearchParams",
    "WriteResult",
    "capability_search_params",
    "error_detail",
    "outcome_summary",
    "parse_retry_after",
    "resource_json",
]

log = logging.getLogger("ips_screen.fhir")

FHIR_JSON = "application/fhir+json"
_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

SearchParams = Mapping[str, str | int | Sequence[str]] | Sequence[tuple[str, str]]


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
        self._session = OriginBoundSession()
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
        raise_for_status(resp, what)
        resource = resource_json(resp, what)
        if resource.get("resourceType") != resource_type:
            raise ServerError(f"{what}: expected a {resource_type}, got {type_name(resource)}")
        return resource, version_id(resp, resource)

    def search_pages(
        self, resource_type: str, params: SearchParams | None = None
    ) -> Iterator[Resource]:
        """Each searchset Bundle of a search, following next links on the server's own origin."""
        return self._pages(self._url(resource_type), params)

    def history(self, resource_type: str, resource_id: str) -> Iterator[Resource]:
        """Every version of one resource (`Type/id/_history`), in the order the server sends
        them (newest first, as servers do); deleted versions, which carry no resource, are
        skipped."""
        url = f"{self._url(resource_type, resource_id)}/_history"
        for bundle in self._pages(url, None):
            for entry in bundle.get("entry") or []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(resource, dict) and resource.get("resourceType") == resource_type:
                    yield resource

    def _pages(self, url: str, params: SearchParams | None) -> Iterator[Resource]:
        page_params: SearchParams | None = params
        pages = PageFollower(self.origin, self.max_pages)
        while True:
            page = pages.start_page(url)
            resp, what = self._request("GET", url, params=page_params, retry=True)
            raise_for_status(resp, what)
            bundle = resource_json(resp, f"{what} (page {page})")
            pages.check_bundle(bundle, what)
            yield bundle
            next_url = pages.next_url(resp, bundle, what)
            if next_url is None:
                return
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
            raise_for_status(resp, what)
            statement = resource_json(resp, what)
        except ServerError as exc:
            log.warning("no CapabilityStatement (%s); carrying on without it", exc)
            return None
        if statement.get("resourceType") != "CapabilityStatement":
            log.warning(
                "GET /metadata returned %s, not a CapabilityStatement", type_name(statement)
            )
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
        headers = {"Content-Type": FHIR_JSON, "Prefer": self.prefer_header("return=representation")}
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
            raise_for_status(resp, what, hint="several resources match If-None-Exist")
        raise_for_status(resp, what)
        return write_result(resp, what)

    def update(
        self, resource: Resource, if_match: str | None = None, *, retry: bool = True
    ) -> WriteResult:
        """PUT a resource (it must have an id). With `if_match` (a versionId, or a W/"n" ETag)
        a stale version raises ConflictError (servers answer 409 or 412)."""
        resource_type = _resource_type(resource)
        resource_id = resource.get("id")
        if not isinstance(resource_id, str):
            raise ValueError("update needs a resource with an id")
        headers = {"Content-Type": FHIR_JSON, "Prefer": self.prefer_header("return=representation")}
        if if_match:
            headers["If-Match"] = _weak_etag(if_match)
        resp, what = self._request(
            "PUT",
            self._url(resource_type, resource_id),
            body=orjson.dumps(resource),
            headers=headers,
            retry=retry,
        )
        raise_for_status(
            resp, what, conflict=f"{resource_type}/{resource_id} was changed by someone else"
        )
        return write_result(resp, what)

    def transaction(self, bundle: Resource, *, retry: bool = False) -> Resource:
        """POST a transaction (or batch) Bundle to the base URL; returns the response Bundle.

        Pass `retry=True` only when every entry is safe to repeat (conditional creates, PUTs):
        a transaction whose response was lost may have been applied. A 409/412 (a stale ifMatch,
        or an ifNoneExist matching several resources) raises ConflictError: nothing was changed.
        """
        kind = bundle.get("type") if bundle.get("resourceType") == "Bundle" else None
        if kind not in ("transaction", "batch"):
            raise ValueError("transaction needs a Bundle of type transaction or batch")
        headers = {"Content-Type": FHIR_JSON, "Prefer": self.prefer_header("return=representation")}
        resp, what = self._request(
            "POST", self.base_url, body=orjson.dumps(bundle), headers=headers, retry=retry
        )
        raise_for_status(resp, what, conflict=f"the {kind} conflicted with the server's data")
        result = resource_json(resp, what)
        if result.get("resourceType") != "Bundle" or result.get("type") != f"{kind}-response":
            raise ServerError(f"{what}: expected a {kind}-response Bundle, got {type_name(result)}")
        return result

    # -- for requests of other kinds (Bulk Data downloads) -----------------------------------------

    def now(self) -> float:
        """Wall-clock time by the client's (injectable) clock, e.g. for Retry-After dates."""
        return self._clock()

    def prefer_header(self, *values: str) -> str:
        """A Prefer header value: the client's own Prefer values, then `values`."""
        return ", ".join([*self._prefer, *values])

    def raw_request(
        self,
        method: str,
        url: str,
        *,
        params: SearchParams | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        send_auth: bool = True,
    ) -> requests.Response:
        """One request through the client's session: its auth (credentials only ever go to the
        FHIR server's origin; none at all when `send_auth` is False), default headers and
        timeout. No retries and no status check; `requests` exceptions are not translated."""
        return self._session.request(
            method,
            url,
            params=params,  # type: ignore[arg-type]
            data=body,
            headers=dict(headers or {}),
            stream=stream,
            timeout=self.timeout,
            auth=None if send_auth else without_auth,
        )

    # -- plumbing ---------------------------------------------------------------------------------

    def _url(self, resource_type: str, resource_id: str | None = None) -> str:
        if not _TYPE_RE.match(resource_type):
            raise ValueError(f"not a FHIR resource type: {resource_type!r}")
        if resource_id is None:
            return f"{self.base_url}/{resource_type}"
        if not _ID_RE.match(resource_id):
            raise ValueError(f"not a FHIR resource id: {resource_id!r}")
        return f"{self.base_url}/{resource_type}/{resource_id}"

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
        what = request_label(method, url)
        request_headers = dict(headers or {})
        if "Prefer" not in request_headers and self._prefer:
            request_headers["Prefer"] = self.prefer_header()

        def send() -> requests.Response:
            return self.raw_request(method, url, params=params, body=body, headers=request_headers)

        resp = send_with_retries(
            send,
            what,
            policy=self.retry,
            retry=retry,
            reauthenticate=self.auth.reauthenticate,
            sleep=self._sleep,
            clock=self._clock,
        )
        return resp, what


def _weak_etag(version: str) -> str:
    version = version.strip()
    if version.startswith(('W/"', '"')):
        return version
    return f'W/"{version}"'


def _resource_type(resource: Mapping[str, Any]) -> str:
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise ValueError("not a FHIR resource: no resourceType")
    return resource_type
