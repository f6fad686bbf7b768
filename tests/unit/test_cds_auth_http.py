"""EHR authentication as the EHR meets it, over HTTP: hostile numeric claims, and JWKS outages and
floods (the issuer's keys come from a `jwks_url` served by a counting fake; the service's clock is
the test's, so cache expiry and backoff are reached without sleeping).
"""

from __future__ import annotations

import threading
import time
import warnings
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ips_screen.service.app import create_app
from ips_screen.service.config import parse_config
from ips_screen.service.ehr_auth import EhrVerifier
from tests.support.cds import (
    ISS,
    PUBLIC,
    SERVICE,
    auth,
    fixture_resources,
    hook_request,
    prefetch_of,
    public_jwks,
    service_config,
)
from tests.support.fake_fhir import FakeFhir

with warnings.catch_warnings():  # starlette warns that httpx (not httpx2) is installed
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def card_call(client: TestClient, headers: dict[str, str]):
    body = hook_request("fx-01", prefetch_of(fixture_resources("01")))
    return client.post(SERVICE, json=body, headers=headers)


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", [10**400, -(10**400)])
def test_a_huge_numeric_claim_in_a_signed_token_is_401(
    make_client,
    ehr_key,
    claim: str,
    value: int,
):
    client, _ = make_client()
    response = card_call(client, auth(ehr_key, **{claim: value}))
    assert response.status_code == 401
    assert response.json() == {}


# --------------------------------------------------------------------------- JWKS outage and flood

JWKS_URL = "https://ehr.example.org/.well-known/jwks.json"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()  # frozen by tests/conftest.py

    def __call__(self) -> float:
        return self.now


class JwksHost:
    """The issuer's JWKS host: serves `document` while up, and counts every fetch."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document, self.up, self.fetches = document, True, 0

    def __call__(self, url: str) -> dict[str, Any]:
        assert url == JWKS_URL
        self.fetches += 1
        if not self.up:
            raise ConnectionError("JWKS host unreachable")
        return self.document


@pytest.fixture
def jwks_service(ehr_key, tmp_path):
    """(client, clock, JWKS host): an app whose issuer's keys come only from JWKS_URL."""
    data = service_config(
        ehr_key,
        ehr_auth={"issuers": [{"iss": ISS, "jwks_url": JWKS_URL}]},
        state_dir=str(tmp_path / "state"),
    )
    config = parse_config(data)
    clock, host = Clock(), JwksHost(public_jwks(ehr_key))
    assert config.ehr_auth is not None
    verifier = EhrVerifier(config.ehr_auth, fetch_jwks=host, clock=clock)
    app = create_app(config, fhir_client=FakeFhir(), verifier=verifier, environ={})  # type: ignore[arg-type]
    return TestClient(app), clock, host


def fresh(key, clock: Clock) -> dict[str, str]:
    """A valid token issued now by the service's clock."""
    return auth(key, iat=int(clock.now), exp=int(clock.now) + 300)


def test_a_forged_token_flood_makes_one_jwks_fetch_per_backoff_period(
    jwks_service,
    ehr_key,
):
    client, clock, host = jwks_service
    host.up = False
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for _ in range(30):
        assert card_call(client, fresh(forger, clock)).status_code == 401
    assert host.fetches == 1  # the failure is remembered: no fetch per forged token
    clock.now += 10  # the first backoff period has passed
    for _ in range(30):
        assert card_call(client, fresh(forger, clock)).status_code == 401
    assert host.fetches == 2
    clock.now += 19  # the backoff doubled to 20 s
    for _ in range(10):
        assert card_call(client, fresh(forger, clock)).status_code == 401
    assert host.fetches == 2
    host.up = True
    clock.now += 1
    assert card_call(client, fresh(ehr_key, clock)).status_code == 200
    assert host.fetches == 3


def test_a_jwks_outage_after_expiry_keeps_the_last_good_keys_for_the_grace_period(
    jwks_service,
    ehr_key,
):
    client, clock, host = jwks_service
    assert card_call(client, fresh(ehr_key, clock)).status_code == 200
    assert host.fetches == 1
    host.up = False
    clock.now += 301  # the cached key set has expired and the JWKS host is down
    assert card_call(client, fresh(ehr_key, clock)).status_code == 200
    assert card_call(client, fresh(ehr_key, clock)).status_code == 200
    assert host.fetches == 2  # one attempt, then backoff
    clock.now += 3600  # past TTL + grace: the old keys are no longer trusted
    assert card_call(client, fresh(ehr_key, clock)).status_code == 401


def test_one_jwks_fetch_at_a_time_per_url(ehr_key, tmp_path):
    """Concurrent verifications while the key set is being fetched share that one fetch."""
    release, started = threading.Event(), threading.Event()
    fetches: list[str] = []

    def slow_fetch(url: str) -> dict[str, Any]:
        fetches.append(url)
        started.set()
        release.wait(5)
        return public_jwks(ehr_key)

    config = parse_config(
        service_config(
            ehr_key,
            ehr_auth={"issuers": [{"iss": ISS, "jwks_url": JWKS_URL}]},
            state_dir=str(tmp_path / "state"),
        )
    )
    assert config.ehr_auth is not None
    clock = Clock()
    verifier = EhrVerifier(config.ehr_auth, fetch_jwks=slow_fetch, clock=clock)
    results: list[str] = []

    def verify() -> None:
        header = fresh(ehr_key, clock)["Authorization"]
        verifier.verify(header, PUBLIC + SERVICE)
        results.append("ok")

    threads = [threading.Thread(target=verify) for _ in range(8)]
    threads[0].start()
    assert started.wait(5)
    for thread in threads[1:]:
        thread.start()
    release.set()
    for thread in threads:
        thread.join(10)
    assert fetches == [JWKS_URL]
    assert results == ["ok"] * 8
