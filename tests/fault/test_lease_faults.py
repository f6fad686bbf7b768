"""Fault injection for the server write lease with `responses`: a lease created by another writer
between our read and our write, an If-Match answer lost, a lease taken over while we stalled."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses

from ips_screen.errors import LockHeld
from ips_screen.fhir.client import FhirClient, RetryPolicy
from ips_screen.writeback.lease import LEASE_SECONDS, ServerLease, lease_state
from tests.support.lease_server import (
    BASE,
    NOW,
    FakeLeaseServer,
)


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
