"""Accept as a real referral, "not now" as a deferral, and decisions already taken, against the
real FHIR server, through the three routes a clinician uses: `ips-screen review` (CLI), the review
page (HTTP) and the CDS Hooks card's feedback. One implementation is behind all three
(`ips_screen.writeback.review`), so they write the same resources.

Every test loads its own patients (unique ids: the server is shared by the session). The clock is
frozen at 2026-11-26 09:30 London (tests/conftest.py).
"""

from __future__ import annotations

import re
import warnings
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from ips_screen import __version__
from ips_screen.cli.main import main
from ips_screen.codes import IPS_SYSTEM, PROPOSAL_ID_SYSTEM
from ips_screen.dates import LONDON
from ips_screen.devtools.testserver import FhirTestServer
from ips_screen.engine import evaluate
from ips_screen.errors import AlreadyDecided
from ips_screen.fhir.client import FhirClient
from ips_screen.sources import collect_resources
from ips_screen.writeback import review
from tests.fhir_support import Proposed, load_proposed_patient, put_people, search
from tests.helpers import default_ruleset
from tests.support.cds import DR, FEEDBACK, PASSWORD, auth, feedback_item, hook, hook_request
from tests.support.paths import FROZEN_NOW
from tests.support.people import IPS_SERVICE, IPS_SERVICE_NAME, practitioner

with warnings.catch_warnings():  # starlette warns that httpx (not httpx2) is installed
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

OTHER = "Practitioner/dr-jones"  # "Dr B Jones", who decides first in the point-5 tests
A_MINUTE_AGO = datetime(2026, 11, 26, 9, 29, tzinfo=LONDON)
AGREEMENT = f"{IPS_SYSTEM}|patient-agreed-referral"
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)")


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def people(fhir_client: FhirClient) -> None:
    put_people(fhir_client, DR)
    fhir_client.update(practitioner(OTHER, family="Jones", given="Beth"))


@pytest.fixture
def propose(fhir_client: FhirClient, people) -> Any:
    def make() -> Proposed:
        return load_proposed_patient(fhir_client, "ref", now=FROZEN_NOW)

    return make


def practice_toml(folder: Path, url: str, service: str | None = IPS_SERVICE) -> str:
    path = folder / "practice.toml"
    referral = f'[referral]\nips_service = "{service}"\n' if service else ""
    path.write_text(
        f'[source]\nkind = "server"\n[fhir]\nbase_url = "{url}"\n'
        f'[output]\nstate_dir = "{folder / "state"}"\n{referral}',
        encoding="utf-8",
    )
    return str(path)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run the command; (exit code, stdout, stderr), each stripped. What was printed before (the
    service's log lines) is dropped first."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out.strip(), err.strip()


def page(service: TestClient) -> TestClient:
    """The review page of the same app, over https (its cookies are Secure), signed in as DR."""
    client = TestClient(service.app, base_url="https://testserver", follow_redirects=False)
    form = client.get("/review/login")
    answer = client.post(
        "/review/login",
        data={"username": "dr.cds", "password": PASSWORD, "csrf_token": csrf(form.text)},
    )
    assert answer.status_code == 303
    return client


def csrf(html: str) -> str:
    (token,) = set(re.findall(r'name="csrf_token" value="([^"]+)"', html))
    return token


def card_of(service: TestClient, ehr_key, fhir_server: FhirTestServer, pid: str) -> dict:
    body = hook_request(pid, fhir_server=fhir_server.base_url, access_token="ehr-user-token")
    (card,) = hook(service, ehr_key, body)["cards"]
    return card


def send(service: TestClient, ehr_key, body: dict) -> dict:
    response = service.post(FEEDBACK, json=body, headers=auth(ehr_key, FEEDBACK))
    assert response.status_code == 200, response.text
    return response.json()


def written(client: FhirClient, proposed: Proposed) -> dict[str, dict]:
    """What an accept wrote for the patient, as the server holds it."""
    proposal = f"ServiceRequest/{proposed.sr_id}"
    (order,) = search(client, "ServiceRequest", {"based-on": proposal})
    (careplan,) = search(client, "CarePlan", {"subject": f"Patient/{proposed.pid}"})
    (agreement,) = search(client, "Observation", {"code": AGREEMENT, "subject": proposed.pid})
    (provenance,) = [
        p
        for p in search(client, "Provenance", {"target": f"Task/{proposed.task_id}"})
        if any(a["who"].get("reference") == DR for a in p["agent"])
    ]
    return {
        "agreement": agreement,
        "order": order,
        "careplan": careplan,
        "task": client.read("Task", proposed.task_id)[0],
        "proposal": client.read("ServiceRequest", proposed.sr_id)[0],
        "provenance": provenance,
    }


def normalised(resources: dict[str, dict], pid: str) -> dict:
    """The resources without ids, versions or times, the patient's id as PID."""
    ids = sorted({r["id"] for r in resources.values()}, key=len, reverse=True)
    text = orjson.dumps({k: {**v, "meta": None} for k, v in resources.items()}).decode()
    for rid in ids:
        text = text.replace(rid, "ID")
    return orjson.loads(_TIME.sub("TIME", text.replace(pid, "PID")))


def snapshot(client: FhirClient, proposed: Proposed) -> dict[str, object]:
    out: dict[str, object] = {
        rtype: len(search(client, rtype, {"subject": f"Patient/{proposed.pid}"}))
        for rtype in ("ServiceRequest", "CarePlan", "Observation")
    }
    out["provenance"] = len(search(client, "Provenance", {"target": f"Task/{proposed.task_id}"}))
    out["task"] = client.read("Task", proposed.task_id)[1]
    out["proposal"] = client.read("ServiceRequest", proposed.sr_id)[1]
    return out


def rescreen(client: FhirClient, proposed: Proposed, on: date) -> str:
    """The patient's outcome (and main reason) on `on`, from what the server holds now."""
    subject = {"subject": f"Patient/{proposed.pid}"}
    resources = [client.read("Patient", proposed.pid)[0]]
    for rtype in ("Condition", "Observation", "DocumentReference", "ServiceRequest"):
        resources += search(client, rtype, subject)
    resources += search(client, "Task", {"patient": f"Patient/{proposed.pid}"})
    ruleset = default_ruleset()
    decision = evaluate(ruleset, collect_resources(resources, ruleset).patients[proposed.pid], on)
    return " ".join([decision.outcome, *decision.reasons[:1]])


# --------------------------------------------------------------------------- point 3: a referral


def test_accept_records_the_agreement_and_refers_to_the_ips_service(
    fhir_client: FhirClient, propose
):
    proposed = propose()
    done = review.accept(
        fhir_client,
        proposed.task_id,
        by=DR,
        now=FROZEN_NOW,
        tool_version=__version__,
        ips_service=IPS_SERVICE,
        patient_agreed=True,
        ruleset=default_ruleset(),
    )
    got = written(fhir_client, proposed)
    agreement, order, careplan = got["agreement"], got["order"], got["careplan"]
    # The agreement: structured and queryable (searched above by its code and subject).
    assert f"Observation/{agreement['id']}" == done.agreement
    assert (agreement["status"], agreement["valueBoolean"]) == ("final", True)
    assert agreement["performer"] == [{"reference": DR}]
    assert agreement["subject"] == {"reference": f"Patient/{proposed.pid}"}
    assert agreement["effectiveDateTime"].startswith("2026-11-26T09:30:00")
    assert agreement["code"]["text"] == (
        "Patient agreed to be referred to Individual Placement and Support (IPS)"
    )
    assert agreement["basedOn"] == [{"reference": f"ServiceRequest/{proposed.sr_id}"}]
    # The order: to the IPS service, by the clinician, with the screen's priority.
    assert f"ServiceRequest/{order['id']}" == done.order
    assert (order["status"], order["intent"]) == ("active", "order")
    assert order["performer"] == [{"reference": IPS_SERVICE}]
    assert order["requester"] == {"reference": DR}
    assert order["priority"] == "urgent"  # an early offer
    assert {
        "system": IPS_SYSTEM,
        "code": "priority-early",
        "display": "Screen priority: early",
    } in [c for cat in order["category"] for c in cat["coding"]]
    assert {"reference": done.agreement, "type": "Observation"} in order["supportingInfo"]
    # The care plan links the order, the pain Condition and the fit notes as before.
    assert careplan["activity"][0]["reference"]["reference"] == done.order
    assert [a["reference"] for a in careplan["addresses"]] == [proposed.ref("Condition", "pain")]
    assert [s["reference"] for s in careplan["supportingInfo"]] == [
        proposed.ref("Observation", "fit1"),
        proposed.ref("DocumentReference", "fit2"),
    ]
    assert done.message == (
        f"Accepted Task/{proposed.task_id}: referral {done.order} (urgent) to {IPS_SERVICE_NAME} "
        f"and care plan {done.careplan}; the patient's agreement is recorded in {done.agreement}."
    )
    assert done.agreement in {t["reference"] for t in got["provenance"]["target"]}


def test_the_three_routes_to_accept_write_identical_resources(
    fhir_client: FhirClient,
    fhir_server: FhirTestServer,
    service: TestClient,
    ehr_key,
    propose,
    capsys,
    tmp_path: Path,
):
    by_cli, by_page, by_card = propose(), propose(), propose()
    url = fhir_server.base_url
    code, out, err = cli(
        capsys, "review", "accept", by_cli.task_id, "--by", DR, "--patient-agreed",
        "--config", practice_toml(tmp_path, url), "--server", url,
    )  # fmt: skip
    assert code == 0, err

    reviewer = page(service)
    token = csrf(reviewer.get(f"/review/task/{by_page.task_id}").text)
    answer = reviewer.post(
        f"/review/task/{by_page.task_id}/accept",
        data={"csrf_token": token, "patient_agreed": "yes"},
    )
    assert answer.status_code == 303

    card = card_of(service, ehr_key, fhir_server, by_card.pid)
    assert card["suggestions"][0]["label"] == "Patient agrees: refer to IPS"
    suggested = card["suggestions"][0]["actions"][0]["resource"]  # the draft the EHR may create
    assert suggested["performer"] == [{"reference": IPS_SERVICE}]
    assert suggested["priority"] == "urgent"
    results = send(service, ehr_key, feedback_item(card, "accepted"))["results"]
    assert results[0].startswith(f"Accepted Task/{by_card.task_id}: referral ServiceRequest/")

    shapes = [normalised(written(fhir_client, p), p.pid) for p in (by_cli, by_page, by_card)]
    assert shapes[0] == shapes[1] == shapes[2]
    assert shapes[0]["order"]["performer"] == [{"reference": IPS_SERVICE}]
    assert (shapes[0]["task"]["status"], shapes[0]["proposal"]["status"]) == (
        "completed",
        "completed",
    )
    # The confirmations are the same sentence (apart from the ids).
    flash = reviewer.get("/review/").text
    assert f"Accepted Task/{by_page.task_id}: referral ServiceRequest/" in flash
    assert out.startswith(f"Accepted Task/{by_cli.task_id}: referral ServiceRequest/")


def test_the_clinician_and_the_ips_service_must_be_on_the_server(
    fhir_client: FhirClient, fhir_server: FhirTestServer, propose, capsys, tmp_path: Path
):
    proposed = propose()
    url = fhir_server.base_url
    before = snapshot(fhir_client, proposed)
    good = practice_toml(tmp_path, url)
    accept = ["review", "accept", proposed.task_id, "--patient-agreed", "--server", url]
    code, _, err = cli(capsys, *accept, "--by", "Practitioner/nobody", "--config", good)
    assert (code, err) == (
        2,
        "ips-screen: error: Practitioner/nobody not found on the FHIR server: the clinician "
        "must be recorded there",
    )
    decline = ["review", "decline", proposed.task_id, "--reason", "not-now", "--server", url]
    code, _, err = cli(capsys, *decline, "--by", "PractitionerRole/nobody")
    assert code == 2 and "PractitionerRole/nobody not found on the FHIR server" in err
    missing = tmp_path / "missing"
    missing.mkdir()
    gone = practice_toml(missing, url, "HealthcareService/no-such-service")
    code, _, err = cli(capsys, *accept, "--by", DR, "--config", gone)
    assert (code, err) == (
        2,
        "ips-screen: error: the IPS service HealthcareService/no-such-service is not on the "
        "FHIR server",
    )
    unset = tmp_path / "unset"
    unset.mkdir()
    code, _, err = cli(capsys, *accept, "--by", DR, "--config", practice_toml(unset, url, None))
    assert code == 4 and err.startswith("ips-screen: error: no IPS service configured: set ")
    code, _, err = cli(capsys, *accept[:3], "--by", DR, "--config", good, "--server", url)
    assert code == 2 and "confirm they agreed to be referred (--patient-agreed)" in err
    assert snapshot(fhir_client, proposed) == before


# --------------------------------------------------------------------------- point 4: not now


def test_not_now_defers_for_3_months_everywhere_and_other_reasons_decline_for_12(
    fhir_client: FhirClient,
    fhir_server: FhirTestServer,
    service: TestClient,
    ehr_key,
    propose,
    capsys,
):
    by_cli, by_page, by_card, for_good = propose(), propose(), propose(), propose()
    url = fhir_server.base_url
    deferred = "deferred until 26 February 2027"

    code, out, err = cli(
        capsys, "review", "decline", by_cli.task_id, "--by", DR, "--reason", "not-now",
        "--server", url,
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith(
        f"Deferred Task/{by_cli.task_id} (Not the right time; reconsider later): {deferred}, "
        "then IPS is suggested again if they are still eligible."
    )

    reviewer = page(service)
    token = csrf(reviewer.get(f"/review/task/{by_page.task_id}").text)
    answer = reviewer.post(
        f"/review/task/{by_page.task_id}/decline", data={"csrf_token": token, "reason": "not-now"}
    )
    assert answer.status_code == 303
    assert deferred in reviewer.get("/review/").text

    card = card_of(service, ehr_key, fhir_server, by_card.pid)
    results = send(service, ehr_key, feedback_item(card, "overridden", "not-now"))["results"]
    assert len(results) == 1 and deferred in results[0]

    code, out, _ = cli(
        capsys, "review", "decline", for_good.task_id, "--by", DR, "--reason", "not-interested",
        "--server", url,
    )  # fmt: skip
    assert code == 0
    assert "not suggested again for 12 months, until 26 November 2027." in out
    assert "deferred" not in out.lower()

    for proposed in (by_cli, by_page, by_card):
        task = fhir_client.read("Task", proposed.task_id)[0]
        assert (task["status"], task["statusReason"]["coding"][0]["code"]) == (
            "rejected",
            "not-now",
        )
        # The screen applies the same window the confirmation gave.
        assert rescreen(fhir_client, proposed, date(2027, 2, 26)) == "excluded ips-declined"
        assert rescreen(fhir_client, proposed, date(2027, 2, 27)) == "propose"
    assert rescreen(fhir_client, for_good, date(2027, 11, 26)) == "excluded ips-declined"
    assert rescreen(fhir_client, for_good, date(2027, 11, 27)) == "propose"


# --------------------------------------------------------------------------- point 5: decided


def test_acting_on_a_review_already_decided_says_who_did_what_and_when(
    fhir_client: FhirClient,
    fhir_server: FhirTestServer,
    service: TestClient,
    ehr_key,
    propose,
    capsys,
    tmp_path: Path,
):
    proposed = propose()
    card = card_of(service, ehr_key, fhir_server, proposed.pid)  # shown before the decline
    reviewer = page(service)
    token = csrf(reviewer.get(f"/review/task/{proposed.task_id}").text)
    review.decline(  # Dr B Jones declines it a minute ago
        fhir_client,
        proposed.task_id,
        by=OTHER,
        reason_code="not-interested",
        now=A_MINUTE_AGO,
        tool_version=__version__,
    )
    before = snapshot(fhir_client, proposed)
    said = (
        "Dr B Jones declined this on 26 November 2026 at 09:29: Patient not interested in IPS "
        "at present."
    )

    url = fhir_server.base_url
    config = practice_toml(tmp_path, url)
    code, out, err = cli(
        capsys, "review", "accept", proposed.task_id, "--by", DR, "--patient-agreed",
        "--config", config, "--server", url,
    )  # fmt: skip
    assert (code, out, err) == (6, "", f"ips-screen: error: {said}")
    code, _, err = cli(
        capsys, "review", "decline", proposed.task_id, "--by", DR, "--reason", "not-now",
        "--server", url,
    )  # fmt: skip
    assert (code, err) == (6, f"ips-screen: error: {said}")

    answer = reviewer.post(
        f"/review/task/{proposed.task_id}/accept",
        data={"csrf_token": token, "patient_agreed": "yes"},
    )
    assert answer.status_code == 409
    warning = re.search(r'<div id="already-decided" class="warning" role="alert">(.*?)</div>',
                        answer.text, re.S)  # fmt: skip
    assert warning is not None and said in " ".join(warning.group(1).split())
    assert 'class="flash"' not in answer.text  # never styled as success
    assert 'class="flash"' not in reviewer.get("/review/").text

    results = send(service, ehr_key, feedback_item(card, "accepted"))["results"]
    assert results == [said]
    assert snapshot(fhir_client, proposed) == before


def test_a_decision_taken_while_accepting_is_reported_as_already_decided(
    fhir_client: FhirClient, propose
):
    proposed = propose()
    loaded = review.load_review(fhir_client, proposed.task_id)  # read, then Dr Jones declines
    review.decline(
        fhir_client,
        proposed.task_id,
        by=OTHER,
        reason_code="already-supported",
        now=A_MINUTE_AGO,
        tool_version=__version__,
    )
    before = snapshot(fhir_client, proposed)
    with pytest.raises(AlreadyDecided, match=r"^Dr B Jones declined this on 26 November 2026 "):
        review.accept(
            fhir_client, loaded, by=DR, now=FROZEN_NOW, tool_version=__version__,
            ips_service=IPS_SERVICE, patient_agreed=True,
        )  # fmt: skip
    assert snapshot(fhir_client, proposed) == before
    assert not search(fhir_client, "Observation", {"identifier": f"{PROPOSAL_ID_SYSTEM}|x"})
