"""FhirClient against a real FHIR R4 server on 127.0.0.1.

The assertions are what the FHIR specification allows (e.g. 409 or 412 for a stale version), not
one server's particular answers. The server is shared by the whole session, so every test makes
its own identifiers.
"""

from __future__ import annotations

import ipaddress
import uuid
from urllib.parse import urlsplit

import pytest

from ips_screen.devtools.testserver import FhirTestServer, listening_hosts
from ips_screen.errors import ConflictError, ServerError
from ips_screen.fhir.client import FhirClient

pytestmark = pytest.mark.integration

SYSTEM = "https://ips-screen.test/id"


def unique() -> str:
    return uuid.uuid4().hex


def new_patient(value: str, family: str = "Testperson") -> dict[str, object]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": SYSTEM, "value": value}],
        "name": [{"family": family, "given": ["Alex"]}],
        "gender": "unknown",
    }


def count(client: FhirClient, resource_type: str, params: dict[str, str]) -> int:
    return sum(1 for _ in client.search(resource_type, params))


def test_server_listens_on_loopback_only(fhir_server: FhirTestServer):
    port = urlsplit(fhir_server.base_url).port
    assert port is not None
    hosts = listening_hosts(port)
    if hosts is None:
        pytest.skip("no /proc/net/tcp on this system")
    assert hosts, "nothing listens on the server's port"
    assert all(ipaddress.ip_address(h).is_loopback for h in hosts), hosts


def test_capabilities(fhir_client: FhirClient):
    statement = fhir_client.capabilities()
    assert statement is not None
    assert statement["fhirVersion"].startswith("4.0")


def test_create_then_read(fhir_client: FhirClient):
    value = unique()
    created = fhir_client.create(new_patient(value))
    assert created.created
    assert created.resource is not None
    resource_id = created.resource["id"]

    resource, version = fhir_client.read("Patient", resource_id)
    assert resource["identifier"][0]["value"] == value
    assert version == created.version_id


def test_read_missing_resource(fhir_client: FhirClient):
    with pytest.raises(ServerError, match=r"HTTP 404 .*from GET /fhir/Patient/"):
        fhir_client.read("Patient", unique())


def test_conditional_create_201_then_200_with_one_resource(fhir_client: FhirClient):
    value = unique()
    condition = f"identifier={SYSTEM}|{value}"
    first = fhir_client.create(new_patient(value), if_none_exist=condition)
    second = fhir_client.create(new_patient(value), if_none_exist=condition)
    assert (first.status, second.status) == (201, 200)
    assert first.resource is not None and second.resource is not None
    assert second.resource["id"] == first.resource["id"]
    assert count(fhir_client, "Patient", {"identifier": f"{SYSTEM}|{value}"}) == 1


def test_transaction_applies_all_entries(fhir_client: FhirClient):
    values = [unique(), unique()]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": new_patient(v),
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"identifier={SYSTEM}|{v}",
                },
            }
            for v in values
        ],
    }
    result = fhir_client.transaction(bundle, retry=True)
    assert [e["response"]["status"][:3] for e in result["entry"]] == ["201", "201"]
    again = fhir_client.transaction(bundle, retry=True)  # conditional: nothing new
    assert [e["response"]["status"][:3] for e in again["entry"]] == ["200", "200"]
    for v in values:
        assert count(fhir_client, "Patient", {"identifier": f"{SYSTEM}|{v}"}) == 1


def test_transaction_rolls_back_when_an_entry_fails(fhir_client: FhirClient):
    existing = fhir_client.create(new_patient(unique()))
    assert existing.resource is not None
    stale = dict(existing.resource, active=False)
    fresh_value = unique()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": new_patient(fresh_value),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": f"{fhir_client.base_url}/Patient/{stale['id']}",
                "resource": stale,
                "request": {
                    "method": "PUT",
                    "url": f"Patient/{stale['id']}",
                    "ifMatch": 'W/"999"',  # a version that does not exist: the entry must fail
                },
            },
        ],
    }
    with pytest.raises(ServerError) as caught:
        fhir_client.transaction(bundle)
    assert "POST /fhir" in str(caught.value)
    # Nothing of the transaction was applied: no new patient, the existing one unchanged.
    assert count(fhir_client, "Patient", {"identifier": f"{SYSTEM}|{fresh_value}"}) == 0
    current, version = fhir_client.read("Patient", stale["id"])
    assert version == existing.version_id
    assert "active" not in current


def test_paging_across_several_pages(fhir_client: FhirClient):
    family = f"Paging{unique()[:12]}"
    values = [unique() for _ in range(7)]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": new_patient(v, family=family),
                "request": {"method": "POST", "url": "Patient"},
            }
            for v in values
        ],
    }
    fhir_client.transaction(bundle)

    pages = list(fhir_client.search_pages("Patient", {"family": family, "_count": "3"}))
    assert len(pages) == 3
    found = [
        r["identifier"][0]["value"]
        for r in fhir_client.search("Patient", {"family": family, "_count": "3"})
    ]
    assert sorted(found) == sorted(values)


def test_stale_if_match_is_a_conflict(fhir_client: FhirClient):
    created = fhir_client.create(new_patient(unique()))
    assert created.resource is not None and created.version_id is not None
    original = created.resource

    updated = fhir_client.update(dict(original, active=True), if_match=created.version_id)
    assert updated.version_id != created.version_id

    with pytest.raises(ConflictError) as caught:
        fhir_client.update(dict(original, active=False), if_match=created.version_id)
    message = str(caught.value)
    assert "HTTP 409" in message or "HTTP 412" in message
    current, version = fhir_client.read("Patient", original["id"])
    assert version == updated.version_id
    assert current["active"] is True


def test_strict_handling_rejects_unknown_search_parameters(fhir_client: FhirClient):
    with pytest.raises(ServerError, match=r"HTTP 400 .*from GET /fhir/Patient"):
        list(fhir_client.search("Patient", {"no-such-parameter": "x"}))
