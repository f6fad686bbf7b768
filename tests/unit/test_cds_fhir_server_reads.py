"""The CDS service's reads from the EHR's `fhirServer`, against small HTTP servers on 127.0.0.1:
no redirect is followed (nothing is fetched from where it points), internal addresses are refused
unless listed, the 412 says nothing about the upstream, and one deadline and one size cap hold
each call however slowly or largely the server answers.
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler

import orjson
import pytest

from ips_screen.service.ehr_reader import EhrReader, ReadLimits
from ips_screen.service.guarded_http import FetchRefused, is_public
from ips_screen.service.prefetch import UNREADABLE
from tests.support.cds import (
    SERVICE,
    call,
    fixture_resources,
    hook_request,
)
from tests.support.local_server import Handler, answer

LOCAL = "http://127.0.0.1:8080"
SECRET_BODY = b'{"resourceType": "Patient", "id": "fx-01", "note": "internal-only secret"}'


def fhir_handler(resources: list[dict]) -> Handler:
    """A tiny FHIR server: Patient/<id> reads and <Type>?patient=<id> searches, one page."""

    def handle(handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.removeprefix("/fhir/")
        rtype, _, rest = path.partition("?") if "?" in path else path.partition("/")
        if rtype == "Patient" and "?" not in path:
            found = [r for r in resources if r["resourceType"] == "Patient" and r["id"] == rest]
            body = orjson.dumps(found[0]) if found else b""
            answer(handler, 200 if found else 404, body)
            return
        matches = [r for r in resources if r["resourceType"] == rtype]
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": r} for r in matches],
        }
        answer(handler, 200, orjson.dumps(bundle), Content_Type="application/fhir+json")

    return handle


def test_a_redirect_to_an_internal_address_is_refused_and_never_fetched(
    make_client,
    ehr_key,
    servers,
):
    internal = servers(lambda h: answer(h, 200, SECRET_BODY))
    ehr = servers(lambda h: answer(h, 302, Location=f"{internal.base}{h.path[5:]}"))
    client, _ = make_client(ehr_fhir_servers=[ehr.base])
    body = hook_request("fx-01", fhir_server=ehr.base, access_token="user-token")
    response = call(client, ehr_key, body)
    assert response.status_code == 412
    assert response.json() == {"error": UNREADABLE}  # nothing about the upstream
    assert ehr.paths  # the listed server was asked ...
    assert internal.paths == []  # ... and nothing was fetched from where it pointed


def test_the_412_never_carries_the_upstream_answer(make_client, ehr_key, servers):
    ehr = servers(lambda h: answer(h, 500, b'{"resourceType":"OperationOutcome","x":"db at 10.1"}'))
    client, _ = make_client(ehr_fhir_servers=[ehr.base])
    response = call(client, ehr_key, hook_request("fx-01", fhir_server=ehr.base))
    assert response.status_code == 412
    assert response.json() == {"error": UNREADABLE}


def test_an_unlisted_server_on_an_internal_address_is_never_contacted(
    make_client,
    ehr_key,
):
    """Loopback development with no ehr_fhir_servers: any https server, but public ones only."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    port = listener.getsockname()[1]
    client, _ = make_client(public_base_url=LOCAL, ehr_fhir_servers=[])
    for server in (f"https://localhost:{port}/fhir", f"https://127.0.0.1:{port}/fhir"):
        body = hook_request("fx-01", fhir_server=server, access_token="user-token")
        response = call(client, ehr_key, body, aud=LOCAL + SERVICE)
        assert response.status_code == 412
        assert response.json() == {"error": UNREADABLE}
    with pytest.raises(TimeoutError):
        listener.accept()  # no connection was ever made
    listener.close()


@pytest.mark.parametrize(
    "addresses",
    [["10.0.0.7"], ["93.184.216.34", "10.0.0.7"], ["169.254.169.254"], ["::1"], ["fd00::1"]],
)
def test_every_resolved_address_must_be_public(addresses: list[str]):
    asked: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return addresses

    reader = EhrReader("https://ehr.example.org/fhir", "t", ReadLimits(), resolver=resolver)
    with pytest.raises(FetchRefused, match="non-public address"):
        reader.read_patient("fx-01")
    assert asked == ["ehr.example.org"]


def test_public_and_private_addresses_are_told_apart():
    assert is_public("93.184.216.34") and is_public("2606:2800:220:1::1")
    for address in ("127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                    "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fd00::1", "::ffff:10.0.0.1",
                    "224.0.0.1", "not-an-ip"):  # fmt: skip
        assert not is_public(address), address


def test_a_listed_server_is_read_and_gives_a_card(make_client, ehr_key, servers):
    ehr = servers(fhir_handler(fixture_resources("01")))
    client, _ = make_client(ehr_fhir_servers=[ehr.base])
    response = call(client, ehr_key, hook_request("fx-01", fhir_server=ehr.base))
    assert response.status_code == 200
    assert len(response.json()["cards"]) == 1


def trickle(handler: BaseHTTPRequestHandler) -> None:
    """Headers at once, then the body one byte every 0.1 s for about 3 s."""
    body = b" " * 30 + b"{}"
    handler.send_response(200)
    handler.send_header("Content-Type", "application/fhir+json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    try:
        for byte in body:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            threading.Event().wait(0.1)
    except OSError:
        pass  # the service hung up: what the test wants


def test_a_slow_server_is_cut_off_at_the_deadline(make_client, ehr_key, servers):
    ehr = servers(trickle)
    client, _ = make_client(ehr_fhir_servers=[ehr.base], ehr_fhir_deadline_seconds=0.3)
    started = time.monotonic()
    response = call(client, ehr_key, hook_request("fx-01", fhir_server=ehr.base))
    elapsed = time.monotonic() - started
    assert response.status_code == 412
    assert response.json() == {"error": UNREADABLE}
    assert elapsed < 1.5  # the server would take 3 s; every key shares the one 0.3 s deadline


def test_a_large_answer_is_cut_off_at_the_size_cap(make_client, ehr_key, servers):
    resources = fixture_resources("01")
    condition = next(r for r in resources if r["resourceType"] == "Condition")
    padded = [*resources, {**condition, "id": "padded", "note": [{"text": "x" * 20_000}]}]
    ehr = servers(fhir_handler(padded))
    client, _ = make_client(ehr_fhir_servers=[ehr.base], ehr_fhir_max_bytes=8192)
    response = call(client, ehr_key, hook_request("fx-01", fhir_server=ehr.base))
    assert response.status_code == 412
    assert response.json() == {"error": UNREADABLE}


def test_a_slow_name_resolution_counts_against_the_deadline():
    release = threading.Event()

    def stuck_resolver(host: str, port: int) -> list[str]:
        release.wait(5)
        return ["93.184.216.34"]

    limits = ReadLimits(deadline_seconds=0.2)
    reader = EhrReader("https://ehr.example.org/fhir", None, limits, resolver=stuck_resolver)
    started = time.monotonic()
    with pytest.raises(FetchRefused, match="deadline"):
        reader.read_patient("fx-01")
    assert time.monotonic() - started < 1.5
    release.set()
