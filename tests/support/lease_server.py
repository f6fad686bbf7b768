"""A fake FHIR server holding the write lease (one Basic resource, or none) for the lease's
fault tests: PUTs honour If-Match unless told to answer otherwise, and another writer's lease can
be put in place as if from another machine."""

from __future__ import annotations

import orjson
import requests
import responses

from ips_screen.fhir.client import FhirClient
from ips_screen.writeback.lease import LEASE_ID, LEASE_SECONDS, ServerLease
from tests.support.paths import FROZEN_NOW

BASE = "https://fhir.example.org/r4"
LEASE_URL = f"{BASE}/Basic/{LEASE_ID}"
NOW = FROZEN_NOW.timestamp()


class FakeLeaseServer:
    """One Basic resource (or none); PUTs honour If-Match unless told to answer otherwise."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.resource: dict | None = None
        self.version = 0
        self.puts: list[tuple[str | None, dict]] = []  # (If-Match, body)
        self.answer_put: int | None = None  # force this status for the next PUT (then apply it)
        mock.add_callback("GET", f"{BASE}/Basic", callback=self.search)
        mock.add_callback("PUT", LEASE_URL, callback=lambda request: self.put(request))

    def search(self, request: requests.PreparedRequest):
        entries = [{"resource": self.resource}] if self.resource else []
        bundle = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
        return 200, {"Content-Type": "application/fhir+json"}, orjson.dumps(bundle)

    def put(self, request: requests.PreparedRequest):
        if_match = request.headers.get("If-Match")
        body = orjson.loads(request.body or b"{}")
        self.puts.append((if_match, body))
        if if_match and if_match != f'W/"{self.version}"':
            return 412, {"Content-Type": "application/fhir+json"}, b""
        created = self.resource is None
        self.version += 1
        self.resource = {**body, "meta": {"versionId": str(self.version)}}
        status = self.answer_put or (201 if created else 200)
        self.answer_put = None
        headers = {"Content-Type": "application/fhir+json", "ETag": f'W/"{self.version}"'}
        return status, headers, orjson.dumps(self.resource)

    def held_by(self, holder: str, expires: float) -> None:
        """Someone else's write, as if from another machine."""
        lease = ServerLease(FhirClient(BASE), holder=holder, clock=lambda: expires - LEASE_SECONDS)
        self.version += 1
        self.resource = {**lease._resource(expires), "meta": {"versionId": str(self.version)}}
