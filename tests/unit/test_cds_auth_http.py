"""EHR authentication as the EHR meets it, over HTTP: hostile numeric claims, and JWKS outages and
floods (the issuer's keys come from a `jwks_url` served by a counting fake; the service's clock is
the test's, so cache expiry and backoff are reached without sleeping).
"""

from __future__ import annotations

import warnings

import pytest

from tests.unit.test_cds_service import (
    SERVICE,
    auth,
    ehr_key,  # noqa: F401 (fixture)
    fixture_resources,
    hook_request,
    make_client,  # noqa: F401 (fixture)
    prefetch_of,
)

with warnings.catch_warnings():  # starlette warns that httpx (not httpx2) is installed
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def card_call(client: TestClient, headers: dict[str, str]):
    body = hook_request("fx-01", prefetch_of(fixture_resources("01")))
    return client.post(SERVICE, json=body, headers=headers)


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", [10**400, -(10**400)])
def test_a_huge_numeric_claim_in_a_signed_token_is_401(
    make_client,  # noqa: F811
    ehr_key,  # noqa: F811
    claim: str,
    value: int,
):
    client, _ = make_client()
    response = card_call(client, auth(ehr_key, **{claim: value}))
    assert response.status_code == 401
    assert response.json() == {}
