"""Fault injection for the server write lease with `responses`: a lease created by another writer
between our read and our write, an If-Match answer lost, a lease taken over while we stalled."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
import requests
import responses

from ips_screen.errors import LockHeld
from ips_screen.fhir.client import FhirClient, RetryPolicy
from ips_screen.writeback.lease import LEASE_ID, LEASE_SECONDS, ServerLease, lease_state
from tests.conftest import FROZEN_NOW

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


@pytest.fixture
def server() -> Iterator[FakeLeaseServer]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeLeaseServer(mock)


@pytest.fixture
def client() -> Iterator[FhirClient]:
    with FhirClient(BASE, retry=RetryPolicy(max_attempts=2), sleep=lambda s: None) as c:
        yield c


def test_a_lease_created_by_another_writer_meanwhile_is_given_back(server, client):
    server.answer_put = 200  # our "create" updated a lease someone else had just created
    with pytest.raises(LockHeld, match=r"created the write lease .* at the same time"):
        ServerLease(client, holder="us", clock=lambda: NOW).acquire()
    (first_match, _), (release_match, released) = server.puts
    assert first_match is None and release_match == 'W/"1"'
    assert lease_state(released) == ("us", NOW)  # expired at once: not held by anyone


def test_a_lost_answer_to_our_take_is_not_a_refusal(server, client):
    server.held_by("them", expires=NOW - 1)  # expired
    lease = ServerLease(client, holder="us", clock=lambda: NOW)
    real_put = server.put

    def applied_then_412(request):
        real_put(request)  # applied...
        return 412, {}, b""  # ...but the answer says conflict (a retry of a lost answer)

    server.put = applied_then_412  # type: ignore[method-assign]
    lease.acquire()
    assert lease.held and lease_state(server.resource or {})[0] == "us"
    assert len(server.puts) == 1  # taken once, not retried


def test_a_lease_taken_over_while_we_stalled_stops_the_writer(server, client):
    clock = [NOW]
    lease = ServerLease(client, holder="us", clock=lambda: clock[0])
    lease.acquire()
    clock[0] += LEASE_SECONDS + 5  # stalled past the term; another machine took it over
    server.held_by("them", expires=clock[0] + LEASE_SECONDS)
    with pytest.raises(LockHeld, match=r"another ips-screen writer \(them\) holds"):
        lease.renew()
    assert not lease.held
    lease.release()  # nothing to give back
    assert lease_state(server.resource or {})[0] == "them"
