"""The CDS Hooks service against the real FHIR server: fetching from `fhirServer` when there is no
prefetch, and feedback recorded on the practice server exactly as `review accept` / `review
decline` record it (and not twice).

The service's own backend client is built from its configuration (base URL of the test server,
no auth), as `ips-screen serve` builds it; the EHR's fhirServer is the same test server here.
Each test loads its own patient (unique ids: the server is shared by the session).
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from ips_screen.codes import DECLINE_REASON_SYSTEM, PROPOSAL_ID_SYSTEM
from ips_screen.devtools.testserver import FhirTestServer
from ips_screen.fhir.client import FhirClient
from tests.fhir_support import (
    search,
)
from tests.support.cds import (
    DR,
    FEEDBACK,
    SERVICE,
    auth,
    check_card,
    feedback_item,
    hook,
    hook_request,
    prefetch_of,
)

with warnings.catch_warnings():  # starlette warns that httpx (not httpx2) is installed
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration


def snapshot(client: FhirClient, pid: str) -> dict[str, Any]:
    """Everything feedback may write for the patient, with versions."""
    out: dict[str, Any] = {}
    for rtype in ("ServiceRequest", "CarePlan", "Task"):
        for r in search(client, rtype, {"patient": f"Patient/{pid}"}):
            out[f"{rtype}/{r['id']}"] = (r["meta"]["versionId"], r.get("status"))
    for task in [k for k in out if k.startswith("Task/")]:
        out[f"provenance of {task}"] = len(search(client, "Provenance", {"target": task}))
    return out


def feedback(service: TestClient, key, body: dict) -> None:
    response = service.post(FEEDBACK, json=body, headers=auth(key, FEEDBACK))
    assert response.status_code == 200, response.text


def from_server(fhir_server: FhirTestServer, pid: str) -> dict:
    return hook_request(pid, fhir_server=fhir_server.base_url, access_token="ehr-user-token")


def test_fetches_from_the_fhir_server_and_gives_the_same_card(
    service: TestClient,
    ehr_key,
    fhir_server: FhirTestServer,
    load,
):
    loaded = load()
    fetched = hook(service, ehr_key, from_server(fhir_server, loaded.pid))
    (card,) = fetched["cards"]
    check_card(card)
    prefetched = hook(service, ehr_key, hook_request(loaded.pid, prefetch_of(loaded.resources)))
    assert fetched == prefetched
    order = card["suggestions"][0]["actions"][0]["resource"]
    assert [s["reference"] for s in order["supportingInfo"]] == [
        f"Observation/{loaded.pid}-fit1",
        f"DocumentReference/{loaded.pid}-fit2",
    ]

    # Prefetch for some keys, the server for the rest: still the same card.
    partial = prefetch_of(loaded.resources)
    for key in ("observations", "documents", "tasks"):
        del partial[key]
    body = hook_request(loaded.pid, partial, fhir_server=fhir_server.base_url)
    assert hook(service, ehr_key, body) == fetched

    missing = from_server(fhir_server, "cds-no-such-patient")
    response = service.post(SERVICE, json=missing, headers=auth(ehr_key))
    assert response.status_code == 412


def test_feedback_accepted_completes_the_review_as_review_accept_does(
    service: TestClient,
    ehr_key,
    fhir_server,
    fhir_client: FhirClient,
    load,
):
    loaded = load(proposal=True)
    (card,) = hook(service, ehr_key, from_server(fhir_server, loaded.pid))["cards"]
    assert card["links"][0]["url"].endswith(f"/review/task/{loaded.task_id}")
    suggested = card["suggestions"][0]["actions"][0]["resource"]
    assert suggested["basedOn"] == [{"reference": f"ServiceRequest/{loaded.sr_id}"}]

    feedback(service, ehr_key, feedback_item(card, "accepted"))
    task = fhir_client.read("Task", loaded.task_id)[0]
    assert task["status"] == "completed"
    assert fhir_client.read("ServiceRequest", loaded.sr_id)[0]["status"] == "completed"
    based_on = {"based-on": f"ServiceRequest/{loaded.sr_id}"}
    (order,) = search(fhir_client, "ServiceRequest", based_on)
    assert (order["intent"], order["requester"]) == ("order", {"reference": DR})
    assert order["identifier"] == suggested["identifier"]  # the card's order is the same one
    (careplan,) = search(fhir_client, "CarePlan", {"subject": f"Patient/{loaded.pid}"})
    assert careplan["activity"][0]["reference"]["reference"] == f"ServiceRequest/{order['id']}"
    signed = [
        p
        for p in search(fhir_client, "Provenance", {"target": f"Task/{loaded.task_id}"})
        if any(a["who"].get("reference") == DR for a in p["agent"])
    ]
    assert len(signed) == 1

    after = snapshot(fhir_client, loaded.pid)
    feedback(service, ehr_key, feedback_item(card, "accepted"))
    feedback(service, ehr_key, feedback_item(card, "overridden", "not-now"))
    assert snapshot(fhir_client, loaded.pid) == after  # sent again: no change

    # The order now on the server silences the card (loop guard).
    assert hook(service, ehr_key, from_server(fhir_server, loaded.pid)) == {"cards": []}


def test_feedback_overridden_declines_as_review_decline_does(
    service: TestClient,
    ehr_key,
    fhir_server,
    fhir_client: FhirClient,
    load,
):
    loaded = load(proposal=True)
    (card,) = hook(service, ehr_key, from_server(fhir_server, loaded.pid))["cards"]
    body = feedback_item(card, "overridden", "already-supported", "Sees the JCP weekly")
    feedback(service, ehr_key, body)
    task = fhir_client.read("Task", loaded.task_id)[0]
    assert task["status"] == "rejected"
    assert task["statusReason"]["coding"][0]["system"] == DECLINE_REASON_SYSTEM
    assert task["statusReason"]["coding"][0]["code"] == "already-supported"
    assert task["note"][-1]["text"] == "Sees the JCP weekly"
    assert task["note"][-1]["authorReference"] == {"reference": DR}
    assert fhir_client.read("ServiceRequest", loaded.sr_id)[0]["status"] == "revoked"

    after = snapshot(fhir_client, loaded.pid)
    feedback(service, ehr_key, body)
    assert snapshot(fhir_client, loaded.pid) == after
    assert hook(service, ehr_key, from_server(fhir_server, loaded.pid)) == {"cards": []}


def test_live_card_overridden_writes_the_proposal_declined(
    service: TestClient,
    ehr_key,
    fhir_server,
    fhir_client: FhirClient,
    load,
):
    loaded = load()
    (card,) = hook(service, ehr_key, from_server(fhir_server, loaded.pid))["cards"]
    assert card["links"][0]["url"].endswith("/review/")

    feedback(service, ehr_key, feedback_item(card, "accepted"))
    assert snapshot(fhir_client, loaded.pid) == {}  # accepted live: the EHR wrote the order

    feedback(service, ehr_key, feedback_item(card, "overridden", "not-interested"))
    value = f"ips-chronic-pain-v1-{loaded.pid}"
    (proposal,) = search(
        fhir_client, "ServiceRequest", {"identifier": f"{PROPOSAL_ID_SYSTEM}|{value}"}
    )
    assert (proposal["intent"], proposal["status"]) == ("proposal", "revoked")
    (task,) = search(fhir_client, "Task", {"patient": f"Patient/{loaded.pid}"})
    assert task["status"] == "rejected"
    assert task["statusReason"]["coding"][0]["code"] == "not-interested"

    after = snapshot(fhir_client, loaded.pid)
    feedback(service, ehr_key, feedback_item(card, "overridden", "not-interested"))
    assert snapshot(fhir_client, loaded.pid) == after
    # Declined: suppressed for 12 months.
    assert hook(service, ehr_key, from_server(fhir_server, loaded.pid)) == {"cards": []}


def test_feedback_never_decides_another_patients_proposal(
    service: TestClient,
    ehr_key,
    fhir_server,
    fhir_client: FhirClient,
    load,
    caplog,
):
    a, b = load(proposal=True), load(proposal=True)
    a_proposal = fhir_client.read("ServiceRequest", a.sr_id)[0]
    a_task = fhir_client.read("Task", a.task_id)[0]
    forged = dict(a_task, id=b.task_id)  # B's real review Task id, dressed as A's review
    prefetch = prefetch_of([*a.resources, a_proposal, forged])
    (card,) = hook(service, ehr_key, hook_request(a.pid, prefetch))["cards"]
    before = {p.pid: snapshot(fhir_client, p.pid) for p in (a, b)}

    for body in (
        feedback_item(card, "overridden", "not-interested"),
        feedback_item(card, "accepted"),
    ):
        response = service.post(FEEDBACK, json=body, headers=auth(ehr_key, FEEDBACK))
        assert response.status_code == 409, response.text
        assert "nothing was recorded" in response.json()["error"]
        assert b.task_id not in response.text  # the caller learns nothing about B's records
    assert {p.pid: snapshot(fhir_client, p.pid) for p in (a, b)} == before
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(f"Task/{b.task_id} is not for Patient/{a.pid}" in w for w in warnings)

    # The genuine card and its feedback still decline A's proposal, and only A's.
    (genuine,) = hook(service, ehr_key, from_server(fhir_server, a.pid))["cards"]
    assert genuine["uuid"] != card["uuid"]
    feedback(service, ehr_key, feedback_item(genuine, "overridden", "not-interested"))
    assert fhir_client.read("Task", a.task_id)[0]["status"] == "rejected"
    assert fhir_client.read("ServiceRequest", a.sr_id)[0]["status"] == "revoked"
    assert snapshot(fhir_client, b.pid) == before[b.pid]


def test_a_dismissed_live_card_never_links_another_patients_records(
    service: TestClient,
    ehr_key,
    fhir_server,
    fhir_client: FhirClient,
    load,
):
    a, b = load(), load()
    forged = [
        dict(r, id=f"{b.pid}-pain") if r["id"] == f"{a.pid}-pain" else r for r in a.resources
    ]  # A's pain, under the id of B's pain Condition on the practice server
    (card,) = hook(service, ehr_key, hook_request(a.pid, prefetch_of(forged)))["cards"]
    order = card["suggestions"][0]["actions"][0]["resource"]
    assert {"reference": f"Condition/{b.pid}-pain"} in order["reasonReference"]

    body = feedback_item(card, "overridden", "not-interested")
    response = service.post(FEEDBACK, json=body, headers=auth(ehr_key, FEEDBACK))
    assert response.status_code == 409, response.text
    assert snapshot(fhir_client, a.pid) == {} and snapshot(fhir_client, b.pid) == {}

    (genuine,) = hook(service, ehr_key, from_server(fhir_server, a.pid))["cards"]
    feedback(service, ehr_key, feedback_item(genuine, "overridden", "not-interested"))
    (task,) = search(fhir_client, "Task", {"patient": f"Patient/{a.pid}"})
    assert task["status"] == "rejected"
