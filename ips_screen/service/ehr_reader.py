"""Reads from the EHR's FHIR server (`fhirServer`) during one CDS Hooks call.

`EhrReader` is made per call. It refuses a `fhirServer` that is not allowed (one of the configured
`ehr_fhir_servers` when they are listed; otherwise an https URL whose host has only public
addresses), sends the EHR user's token (`fhirAuthorization`) only to that server's origin, never
follows redirects, follows a search's `next` links only on that origin (no loops, at most
`max_pages` pages), and holds the whole call to one deadline and one byte budget. Every read goes
through `guarded_http.guarded_get`.

Failures raise `FetchRefused` with a reason for the log; the caller answers the EHR with a
generic message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode, urljoin

import orjson

from ips_screen.fhir.auth import origin_of
from ips_screen.fhir.paging import next_link
from ips_screen.service.guarded_http import FetchRefused, Resolver, guarded_get, resolve

FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class ReadLimits:
    """How much one CDS Hooks call may read from the EHR's FHIR server, and from where."""

    allowed_servers: tuple[str, ...] = ()  # exact base URLs; empty: any https public server
    deadline_seconds: float = 5.0  # for the whole call (all keys, all pages)
    max_bytes: int = 20 * 1024 * 1024  # for the whole call
    max_pages: int = 20  # per search


class EhrReader:
    """The EHR's FHIR server for one call (see the module docstring)."""

    def __init__(
        self,
        fhir_server: str,
        access_token: str | None,
        limits: ReadLimits,
        *,
        resolver: Resolver = resolve,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = fhir_server.rstrip("/")
        listed = self.base in limits.allowed_servers
        if limits.allowed_servers and not listed:
            raise FetchRefused("fhirServer is not one of the configured ehr_fhir_servers")
        try:
            self.origin = origin_of(self.base)
        except ValueError:
            raise FetchRefused("fhirServer is not an absolute URL") from None
        if not listed and self.origin[0] != "https":
            raise FetchRefused("fhirServer must be https unless listed in ehr_fhir_servers")
        if self.origin[0] not in ("http", "https"):
            raise FetchRefused("fhirServer must be an http(s) URL")
        self._allow_private = listed  # a listed origin may be on the practice's own network
        self._token = access_token
        self._limits = limits
        self._resolver = resolver
        self._clock = clock
        self._deadline = clock() + limits.deadline_seconds
        self._budget = limits.max_bytes
        self._lock = threading.Lock()

    # ---- reads

    def read_patient(self, patient_id: str) -> list[dict]:
        """[the Patient], or [] when the server has none (404/410)."""
        status, resource = self._get(f"{self.base}/Patient/{patient_id}", missing_ok=True)
        if status in (404, 410) or resource is None:
            return []
        if resource.get("resourceType") != "Patient":
            raise FetchRefused("the Patient read did not return a Patient")
        return [resource]

    def search(self, resource_type: str, patient_id: str) -> list[dict]:
        """Every `resource_type` resource of the patient, across the search's pages."""
        url = f"{self.base}/{resource_type}?{urlencode({'patient': patient_id})}"
        return [r for r in self.pages(url) if r.get("resourceType") == resource_type]

    def pages(self, url: str, *, seen: Sequence[str] = ()) -> list[dict]:
        """The resources of the searchset page at `url` and of every page after it."""
        visited = set(seen)
        out: list[dict] = []
        for number in range(1, self._limits.max_pages + 1):
            visited.add(url)
            _, bundle = self._get(url)
            if bundle is None or bundle.get("resourceType") != "Bundle":
                raise FetchRefused(f"page {number} of a search is not a Bundle")
            out.extend(bundle_resources(bundle))
            following = self.next_url(bundle, url)
            if following is None:
                return out
            if following in visited:
                raise FetchRefused("a next-page link points back to an earlier page")
            url = following
        raise FetchRefused(f"a search has more than {self._limits.max_pages} pages")

    def next_url(self, bundle: dict, page_url: str) -> str | None:
        """The absolute next-page link of `bundle` (read from `page_url`); refused off-origin."""
        link = next_link(bundle)
        if link is None:
            return None
        url = urljoin(page_url if "://" in page_url else self.base + "/", link)
        if not self.on_origin(url):
            raise FetchRefused("a next-page link points to another server")
        return url

    def next_url_of(self, link: str) -> str | None:
        """A prefetch Bundle's next-page link made absolute, or None when it is not on the
        fhirServer's origin (the key is then searched again instead)."""
        url = urljoin(self.base + "/", link)
        return url if self.on_origin(url) else None

    def on_origin(self, url: str) -> bool:
        try:
            return origin_of(url) == self.origin
        except ValueError:
            return False

    # ---- plumbing

    def _get(self, url: str, *, missing_ok: bool = False) -> tuple[int, dict | None]:
        if not self.on_origin(url):  # the token must never leave the fhirServer's origin
            raise FetchRefused("refused to read outside the fhirServer's origin")
        headers = {"Accept": FHIR_JSON}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        with self._lock:
            budget = self._budget
        if budget <= 0:
            raise FetchRefused(f"read more than {self._limits.max_bytes} bytes")
        fetched = guarded_get(
            url,
            headers=headers,
            deadline=self._deadline,
            max_bytes=budget,
            allow_private=self._allow_private,
            resolver=self._resolver,
            clock=self._clock,
        )
        with self._lock:
            self._budget -= len(fetched.body)
            if self._budget < 0:
                raise FetchRefused(f"read more than {self._limits.max_bytes} bytes")
        if fetched.status != 200:
            if missing_ok and fetched.status in (404, 410):
                return fetched.status, None
            raise FetchRefused(f"HTTP {fetched.status} from the fhirServer")
        try:
            data = orjson.loads(fetched.body)
        except orjson.JSONDecodeError:
            raise FetchRefused("the fhirServer answered something that is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
            raise FetchRefused("the fhirServer answered something that is not a FHIR resource")
        return 200, data


def bundle_resources(bundle: dict) -> list[dict]:
    """The resources of a searchset Bundle's entries (no OperationOutcomes)."""
    out = []
    entries = bundle.get("entry")
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict):
            continue
        search = entry.get("search")
        if isinstance(search, dict) and search.get("mode") == "outcome":
            continue
        resource = entry.get("resource")
        if isinstance(resource, dict) and resource.get("resourceType") != "OperationOutcome":
            out.append(resource)
    return out
