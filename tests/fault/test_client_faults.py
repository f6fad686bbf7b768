"""Fault injection for FhirClient with `responses`: retries, Retry-After, bad bodies, paging
guards, conflicts, re-authentication, and where the Authorization header may go.

No test sleeps: the client's sleep records the delays it was asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from urllib.parse import parse_qs

import orjson
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from responses import matchers

from ips_screen.errors import ConflictError, ServerError
from ips_screen.fhir.auth import BearerTokenAuth, SmartBackendAuth
from ips_screen.fhir.client import FhirClient, RetryPolicy, capability_search_params
from ips_screen.fhir.retry import parse_retry_after

BASE = "https://fhir.example.org/r4"
OTHER = "https://elsewhere.example.net/r4"
TOKEN_URL = "https://auth.example.org/token"
NOW = 1_900_000_000.0
FHIR_JSON = "application/fhir+json"


def fhir(body: object, status: int = 200, **headers: str) -> dict[str, object]:
    """Keyword arguments for responses.add: a FHIR JSON response."""
    return {
        "body": orjson.dumps(body),
        "status": status,
        "content_type": FHIR_JSON,
        "headers": headers,
    }


def patient(pid: str = "p1", version: str = "1") -> dict[str, object]:
    return {"resourceType": "Patient", "id": pid, "meta": {"versionId": version}}


def outcome(diagnostics: str, code: str = "invalid") -> dict[str, object]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }


def searchset(*ids: str, next_url: str | None = None) -> dict[str, object]:
    links = [{"relation": "self", "url": f"{BASE}/Patient"}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [{"resource": patient(i), "search": {"mode": "match"}} for i in ids],
    }


@pytest.fixture
def client(delays: list[float]) -> Iterator[FhirClient]:
    with FhirClient(BASE, sleep=delays.append, clock=lambda: NOW) as c:
        yield c


# -- retries --------------------------------------------------------------------------------------


def test_429_with_retry_after_seconds_then_success(mock, client, delays):
    mock.get(f"{BASE}/Patient/p1", status=429, headers={"Retry-After": "7"})
    mock.get(f"{BASE}/Patient/p1", **fhir(patient()))
    resource, version = client.read("Patient", "p1")
    assert resource["id"] == "p1"
    assert version == "1"
    assert delays == [7.0]


def test_503_with_retry_after_http_date(mock, client, delays):
    mock.get(
        f"{BASE}/Patient/p1", status=503, headers={"Retry-After": formatdate(NOW + 30, usegmt=True)}
    )
    mock.get(f"{BASE}/Patient/p1", **fhir(patient()))
    client.read("Patient", "p1")
    assert delays == [30.0]


def test_retry_after_is_capped(mock, client, delays):
    mock.get(f"{BASE}/Patient/p1", status=429, headers={"Retry-After": "3600"})
    mock.get(
        f"{BASE}/Patient/p1",
        status=503,
        headers={"Retry-After": formatdate(NOW + 86400, usegmt=True)},
    )
    mock.get(f"{BASE}/Patient/p1", **fhir(patient()))
    client.read("Patient", "p1")
    assert delays == [60.0, 60.0]


def test_exponential_backoff_without_retry_after(mock, client, delays):
    for status in (500, 502, 504, 408):
        mock.get(f"{BASE}/Patient/p1", status=status)
    mock.get(f"{BASE}/Patient/p1", **fhir(patient()))
    client.read("Patient", "p1")
    assert delays == [1.0, 2.0, 4.0, 8.0]


def test_timeout_and_connection_reset_then_success(mock, client, delays):
    mock.get(f"{BASE}/Patient/p1", body=requests.exceptions.ReadTimeout("read timed out"))
    reset = requests.exceptions.ConnectionError(
        ConnectionResetError(104, "Connection reset by peer")
    )
    mock.get(f"{BASE}/Patient/p1", body=reset)
    mock.get(f"{BASE}/Patient/p1", **fhir(patient()))
    resource, _ = client.read("Patient", "p1")
    assert resource["id"] == "p1"
    assert delays == [1.0, 2.0]


def test_gives_up_after_max_attempts_with_clear_error(mock, client, delays):
    mock.get(f"{BASE}/Patient/p1", **fhir(outcome("database is being restarted", "transient"), 503))
    with pytest.raises(ServerError) as caught:
        client.read("Patient", "p1")
    message = str(caught.value)
    assert "HTTP 503" in message
    assert "GET /r4/Patient/p1" in message
    assert "gave up after 5 attempts" in message
    assert "database is being restarted" in message
    assert len(mock.calls) == 5
    assert delays == [1.0, 2.0, 4.0, 8.0]


def test_gives_up_on_repeated_connection_errors(mock, delays):
    mock.get(f"{BASE}/Patient/p1", body=requests.exceptions.ConnectionError("refused"))
    expected = r"GET /r4/Patient/p1: connection failed \(gave up after 3 attempts\)"
    with (
        FhirClient(BASE, sleep=delays.append, retry=RetryPolicy(max_attempts=3)) as c,
        pytest.raises(ServerError, match=expected),
    ):
        c.read("Patient", "p1")
    assert delays == [1.0, 2.0]


def test_no_retry_on_other_client_errors(mock, client, delays):
    mock.get(f"{BASE}/Patient/p1", **fhir(outcome("Patient/p1 not found", "not-found"), 404))
    with pytest.raises(ServerError, match="HTTP 404"):
        client.read("Patient", "p1")
    assert len(mock.calls) == 1
    assert delays == []


def test_plain_create_is_not_retried_but_conditional_create_is(mock, client, delays):
    mock.post(f"{BASE}/Patient", status=503)
    with pytest.raises(ServerError, match="HTTP 503"):
        client.create({"resourceType": "Patient"})
    assert len(mock.calls) == 1

    mock.replace(responses.POST, f"{BASE}/Patient", status=503)
    mock.post(f"{BASE}/Patient", **fhir(patient(), 201, Location=f"{BASE}/Patient/p1/_history/1"))
    result = client.create({"resourceType": "Patient"}, if_none_exist="identifier=urn:x|1")
    assert result.created
    assert result.version_id == "1"
    assert mock.calls[-1].request.headers["If-None-Exist"] == "identifier=urn:x|1"
    assert delays == [1.0]


def test_plain_create_connection_error_is_not_retried(mock, client, delays):
    mock.post(f"{BASE}/Patient", body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(ServerError, match=r"POST /r4/Patient: timed out$"):
        client.create({"resourceType": "Patient"})
    assert delays == []


def test_transaction_retry_is_a_parameter(mock, client, delays):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    mock.post(BASE, status=502)
    with pytest.raises(ServerError, match="HTTP 502"):
        client.transaction(bundle)
    assert len(mock.calls) == 1
    mock.replace(responses.POST, BASE, status=502)
    mock.post(BASE, **fhir({"resourceType": "Bundle", "type": "transaction-response", "entry": []}))
    result = client.transaction(bundle, retry=True)
    assert result["type"] == "transaction-response"
    assert delays == [1.0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12", 12.0),
        (" 0 ", 0.0),
        (formatdate(NOW + 45, usegmt=True), 45.0),
        (formatdate(NOW - 45, usegmt=True), 0.0),
        ("-3", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, now=NOW) == expected


# -- bodies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 422])
def test_operation_outcome_becomes_one_line_message(mock, client, status):
    body = outcome("Patient.gender: 'blah' is not in the value set\nAdministrativeGender")
    mock.post(f"{BASE}/Patient", **fhir(body, status))
    with pytest.raises(ServerError) as caught:
        client.create({"resourceType": "Patient", "gender": "blah"})
    message = str(caught.value)
    assert message.startswith(f"HTTP {status} ")
    assert "from POST /r4/Patient" in message
    assert (
        "error invalid: Patient.gender: 'blah' is not in the value set AdministrativeGender"
        in message
    )
    assert "\n" not in message


def test_outcome_details_text_and_expression_are_used(mock, client):
    body = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "required",
                "details": {"coding": [{"code": "MSG_REQUIRED", "display": "Missing element"}]},
                "expression": ["Observation.code"],
            }
        ],
    }
    mock.post(f"{BASE}/Observation", **fhir(body, 422))
    with pytest.raises(ServerError, match=r"error required: Missing element \[Observation.code\]"):
        client.create({"resourceType": "Observation"})


def test_error_message_names_the_path_but_not_query_values(mock, client):
    mock.get(f"{BASE}/Patient", **fhir(outcome("bad search"), 400))
    with pytest.raises(ServerError) as caught:
        list(client.search("Patient", {"family": "Smith", "birthdate": "1970-01-01"}))
    message = str(caught.value)
    assert "GET /r4/Patient" in message
    assert "Smith" not in message
    assert "1970" not in message


def test_page_of_malformed_json(mock, client):
    mock.get(f"{BASE}/Patient", **fhir(searchset("a", next_url=f"{BASE}/Patient?page=2")))
    mock.get(
        f"{BASE}/Patient?page=2",
        body=b'{"resourceType": "Bundle", "entry": [',
        content_type=FHIR_JSON,
    )
    found = []
    with pytest.raises(ServerError, match=r"GET /r4/Patient \(page 2\): malformed JSON"):
        found.extend(r["id"] for r in client.search("Patient"))
    assert found == ["a"]


def test_html_body_is_not_json(mock, client):
    mock.get(f"{BASE}/Patient/p1", body="<html>Welcome</html>", content_type="text/html")
    with pytest.raises(ServerError, match=r"not JSON \(Content-Type: text/html\)"):
        client.read("Patient", "p1")


def test_html_error_body(mock, client):
    mock.get(
        f"{BASE}/Patient/p1", status=403, body="<html>Forbidden</html>", content_type="text/html"
    )
    with pytest.raises(
        ServerError, match=r"HTTP 403 Forbidden from GET /r4/Patient/p1: .*not FHIR JSON"
    ):
        client.read("Patient", "p1")


def test_json_that_is_not_a_resource(mock, client):
    mock.get(f"{BASE}/Patient/p1", body=b"[1, 2]", content_type=FHIR_JSON)
    with pytest.raises(ServerError, match="not a FHIR resource"):
        client.read("Patient", "p1")


# -- paging ---------------------------------------------------------------------------------------


def test_paging_follows_next_links(mock, client):
    mock.get(f"{BASE}/Patient", **fhir(searchset("a", "b", next_url=f"{BASE}/Patient?page=2")))
    mock.get(f"{BASE}/Patient?page=2", **fhir(searchset("c", next_url="Patient?page=3")))
    mock.get(f"{BASE}/Patient?page=3", **fhir(searchset("d")))
    assert [r["id"] for r in client.search("Patient", {"_count": 2})] == ["a", "b", "c", "d"]
    assert parse_qs(mock.calls[0].request.url.split("?", 1)[1]) == {"_count": ["2"]}


def test_next_link_to_another_host_is_refused(mock, client):
    mock.get(f"{BASE}/Patient", **fhir(searchset("a", next_url=f"{OTHER}/Patient?page=2")))
    with pytest.raises(ServerError, match="refused to follow a next-page link to another server"):
        list(client.search("Patient"))
    assert [c.request.url.split("?")[0] for c in mock.calls] == [f"{BASE}/Patient"]


@pytest.mark.parametrize(
    "next_url",
    [
        "http://fhir.example.org/r4/Patient?page=2",  # scheme downgrade
        "https://fhir.example.org:8443/r4/Patient?page=2",  # another port
    ],
)
def test_next_link_to_another_scheme_or_port_is_refused(mock, client, next_url):
    mock.get(f"{BASE}/Patient", **fhir(searchset("a", next_url=next_url)))
    with pytest.raises(ServerError, match="another server"):
        list(client.search("Patient"))
    assert len(mock.calls) == 1


def test_next_link_loop_is_refused(mock, client):
    mock.get(f"{BASE}/Patient?page=1", **fhir(searchset("a", next_url=f"{BASE}/Patient?page=2")))
    mock.get(f"{BASE}/Patient?page=2", **fhir(searchset("b", next_url=f"{BASE}/Patient?page=1")))
    with pytest.raises(ServerError, match="paging loop"):
        list(client.search("Patient", {"page": "1"}))
    assert len(mock.calls) == 2


def test_max_pages(mock, delays):
    for page in range(1, 5):
        mock.get(
            f"{BASE}/Patient?page={page}",
            **fhir(searchset(str(page), next_url=f"{BASE}/Patient?page={page + 1}")),
        )
    with (
        FhirClient(BASE, sleep=delays.append, max_pages=3) as c,
        pytest.raises(ServerError, match="stopped after 3 pages"),
    ):
        list(c.search("Patient", [("page", "1")]))
    assert len(mock.calls) == 3


def test_outcome_entries_are_not_yielded(mock, client):
    bundle = searchset("a")
    bundle["entry"].append(
        {"resource": outcome("partial results", "incomplete"), "search": {"mode": "outcome"}}
    )
    mock.get(f"{BASE}/Patient", **fhir(bundle))
    assert [r["resourceType"] for r in client.search("Patient")] == ["Patient"]


# -- conflicts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [409, 412])
def test_stale_if_match_update_is_a_conflict(mock, client, status):
    mock.put(f"{BASE}/Patient/p1", **fhir(outcome("version conflict", "conflict"), status))
    with pytest.raises(ConflictError) as caught:
        client.update(patient("p1", "3"), if_match="3")
    assert "Patient/p1 was changed by someone else" in str(caught.value)
    assert f"HTTP {status}" in str(caught.value)
    assert mock.calls[0].request.headers["If-Match"] == 'W/"3"'
    assert len(mock.calls) == 1


def test_update_returns_new_version(mock, client):
    mock.put(f"{BASE}/Patient/p1", **fhir(patient("p1", "4"), 200, ETag='W/"4"'))
    result = client.update(patient("p1", "3"), if_match='W/"3"')
    assert (result.status, result.version_id) == (200, "4")
    assert mock.calls[0].request.headers["If-Match"] == 'W/"3"'


def test_multiple_matches_on_conditional_create(mock, client):
    mock.post(f"{BASE}/Patient", **fhir(outcome("2 resources match", "duplicate"), 412))
    with pytest.raises(ServerError, match="several resources match If-None-Exist") as caught:
        client.create({"resourceType": "Patient"}, if_none_exist="identifier=urn:x|1")
    assert not isinstance(caught.value, ConflictError)


# -- capabilities ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 500},
        {"body": "<html>nope</html>", "content_type": "text/html"},
        fhir(patient()),
        {"body": requests.exceptions.ConnectionError("refused")},
    ],
)
def test_capabilities_falls_back_to_none(mock, client, answer):
    mock.get(f"{BASE}/metadata", **answer)
    assert client.capabilities() is None


def test_capabilities_that_lie_do_not_crash(mock, client):
    statement = {
        "resourceType": "CapabilityStatement",
        "fhirVersion": "5.0.0",
        "rest": "everything",
    }
    mock.get(f"{BASE}/metadata", **fhir(statement))
    assert client.capabilities() == statement
    assert capability_search_params(statement, "Patient") == frozenset()
    assert capability_search_params(None, "Patient") == frozenset()
    good = {"rest": [{"resource": [{"type": "Patient", "searchParam": [{"name": "family"}, {}]}]}]}
    assert capability_search_params(good, "Patient") == {"family"}


# -- authentication -------------------------------------------------------------------------------


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP384R1())
    path = tmp_path / "key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.fixture
def smart(mock, key_path) -> SmartBackendAuth:
    mock.get(f"{BASE}/.well-known/smart-configuration", json={"token_endpoint": TOKEN_URL})
    return SmartBackendAuth(
        BASE, client_id="ips-screen", private_key_path=key_path, kid="k1", clock=lambda: NOW
    )


def bearer(token: str) -> list[object]:
    return [matchers.header_matcher({"Authorization": f"Bearer {token}"})]


def token_calls(mock: responses.RequestsMock) -> int:
    return sum(1 for c in mock.calls if c.request.url == TOKEN_URL)


def test_expired_token_401_reauthenticates_once_then_succeeds(mock, smart, delays):
    mock.post(TOKEN_URL, json={"access_token": "old", "token_type": "Bearer", "expires_in": 300})
    mock.post(TOKEN_URL, json={"access_token": "new", "token_type": "Bearer", "expires_in": 300})
    mock.get(
        f"{BASE}/Patient/p1", match=bearer("old"), **fhir(outcome("token expired", "login"), 401)
    )
    mock.get(f"{BASE}/Patient/p1", match=bearer("new"), **fhir(patient()))
    with FhirClient(BASE, auth=smart, sleep=delays.append) as c:
        resource, _ = c.read("Patient", "p1")
    assert resource["id"] == "p1"
    assert token_calls(mock) == 2
    assert delays == []


def test_second_401_is_a_server_error(mock, smart, delays):
    mock.post(TOKEN_URL, json={"access_token": "t1", "token_type": "bearer", "expires_in": 300})
    mock.post(TOKEN_URL, json={"access_token": "t2", "token_type": "bearer", "expires_in": 300})
    mock.get(f"{BASE}/Patient/p1", **fhir(outcome("not allowed", "security"), 401))
    with (
        FhirClient(BASE, auth=smart, sleep=delays.append) as c,
        pytest.raises(ServerError) as caught,
    ):
        c.read("Patient", "p1")
    message = str(caught.value)
    assert "HTTP 401" in message
    assert "still unauthorized after re-authenticating" in message
    assert "not allowed" in message
    fhir_calls = [c for c in mock.calls if c.request.url == f"{BASE}/Patient/p1"]
    assert len(fhir_calls) == 2
    assert token_calls(mock) == 2


def test_static_token_401_is_not_retried(mock, delays):
    auth = BearerTokenAuth(BASE, environ={"IPS_SCREEN_FHIR_TOKEN": "s3cret"})
    mock.get(f"{BASE}/Patient/p1", status=401)
    with (
        FhirClient(BASE, auth=auth, sleep=delays.append) as c,
        pytest.raises(ServerError, match="HTTP 401") as caught,
    ):
        c.read("Patient", "p1")
    assert "s3cret" not in str(caught.value)
    assert len(mock.calls) == 1
    assert mock.calls[0].request.headers["Authorization"] == "Bearer s3cret"


def test_authorization_is_not_forwarded_on_redirect_to_another_host(mock, delays):
    auth = BearerTokenAuth(BASE, environ={"IPS_SCREEN_FHIR_TOKEN": "s3cret"})
    mock.get(f"{BASE}/Patient/p1", status=302, headers={"Location": f"{OTHER}/Patient/p1"})
    mock.get(f"{OTHER}/Patient/p1", **fhir(patient()))
    with FhirClient(BASE, auth=auth, sleep=delays.append) as c:
        c.read("Patient", "p1")
    assert [c.request.url for c in mock.calls] == [f"{BASE}/Patient/p1", f"{OTHER}/Patient/p1"]
    assert mock.calls[0].request.headers["Authorization"] == "Bearer s3cret"
    assert "Authorization" not in mock.calls[1].request.headers


def test_authorization_is_not_forwarded_on_redirect_to_another_port(mock, delays):
    auth = BearerTokenAuth(BASE, environ={"IPS_SCREEN_FHIR_TOKEN": "s3cret"})
    elsewhere = "https://fhir.example.org:8443/r4/Patient/p1"
    mock.get(f"{BASE}/Patient/p1", status=307, headers={"Location": elsewhere})
    mock.get(elsewhere, **fhir(patient()))
    with FhirClient(BASE, auth=auth, sleep=delays.append) as c:
        c.read("Patient", "p1")
    assert "Authorization" not in mock.calls[1].request.headers


def test_authorization_kept_on_same_origin_redirect(mock, delays):
    auth = BearerTokenAuth(BASE, environ={"IPS_SCREEN_FHIR_TOKEN": "s3cret"})
    mock.get(
        f"{BASE}/Patient/p1", status=301, headers={"Location": f"{BASE}/Patient/p1/_history/1"}
    )
    mock.get(f"{BASE}/Patient/p1/_history/1", **fhir(patient()))
    with FhirClient(BASE, auth=auth, sleep=delays.append) as c:
        c.read("Patient", "p1")
    assert mock.calls[1].request.headers["Authorization"] == "Bearer s3cret"


def test_no_authorization_on_next_link_elsewhere(mock, smart, delays):
    mock.post(TOKEN_URL, json={"access_token": "t1", "token_type": "bearer", "expires_in": 300})
    mock.get(f"{BASE}/Patient", **fhir(searchset("a", next_url=f"{OTHER}/Patient?page=2")))
    with (
        FhirClient(BASE, auth=smart, sleep=delays.append) as c,
        pytest.raises(ServerError, match="another server"),
    ):
        list(c.search("Patient"))
    assert not any(c.request.url.startswith(OTHER) for c in mock.calls)
    token_posts = [c for c in mock.calls if c.request.url == TOKEN_URL]
    assert all("Authorization" not in c.request.headers for c in token_posts)
    assert all(
        "client_assertion=" not in (c.request.body or "")
        for c in mock.calls
        if c.request.url != TOKEN_URL
    )


def test_extra_headers_are_sent_and_prefer_values_are_combined(mock):
    mock.get(f"{BASE}/Patient", **fhir(searchset()))
    mock.post(f"{BASE}/Patient", **fhir(patient(), 201))
    with FhirClient(BASE, headers={"Prefer": "handling=strict", "X-Trace": "abc"}) as c:
        list(c.search("Patient"))
        c.create({"resourceType": "Patient"})
    get, post = (call.request.headers for call in mock.calls)
    assert get["Prefer"] == "handling=strict"
    assert get["Accept"] == FHIR_JSON
    assert get["X-Trace"] == "abc"
    assert post["Prefer"] == "handling=strict, return=representation"
    assert post["Content-Type"] == FHIR_JSON
