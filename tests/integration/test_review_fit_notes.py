"""One fit note recorded twice (its coded entry and its document, same class, same day) is shown
once wherever a clinician sees the evidence: `review show` (text and JSON), the review page, and
the CDS card fetched from the real FHIR server; and fit notes are a list
of their own, apart from the employment evidence, each in the ruleset's words
("Fit note: not fit for work, 1 May 2026"). The proposal keeps linking both records.
"""

from __future__ import annotations

import warnings
from datetime import datetime

import orjson
import pytest

from ips_screen.cli.main import main
from ips_screen.dates import LONDON
from ips_screen.devtools.testserver import FhirTestServer
from ips_screen.fhir.client import FhirClient
from ips_screen.writeback import review
from tests.fhir_support import unique_patient_id, write_proposal
from tests.helpers import (
    CHRONIC_PAIN,
    MAY_BE_FIT,
    NOT_FIT,
    UNEMPLOYED,
    condition,
    default_ruleset,
    employment,
    fit_note,
    patient,
    ref,
)
from tests.support.cds import PASSWORD, hook, hook_request

with warnings.catch_warnings():  # starlette warns that httpx (not httpx2) is installed
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 26, 9, 30, tzinfo=LONDON)
TWICE = "Fit note: not fit for work, 1 May 2026"
LATER = "Fit note: may be fit for work, 1 August 2026"


def _load(client: FhirClient, *, employed: bool) -> tuple[str, str, str]:
    """A patient whose not-fit fit note of 1 May is both an Observation and a DocumentReference,
    with a later may-be-fit one; out of work by a recorded status, or (not `employed`) by the
    fit-note proxy. (pid, Task id, proposal id)."""
    pid = unique_patient_id("fn")
    resources = [
        patient(pid, "1980-01-01", generalPractitioner=[ref(f"Practitioner/gp-{pid}")]),
        condition(CHRONIC_PAIN, id=f"{pid}-pain", subject=pid),
        fit_note(NOT_FIT, "2026-05-01", id=f"{pid}-fit1", subject=pid),
        fit_note(NOT_FIT, "2026-05-01", "DocumentReference", id=f"{pid}-fit1doc", subject=pid),
        fit_note(MAY_BE_FIT, "2026-08-01", id=f"{pid}-fit2", subject=pid),
    ]
    if employed:
        resources.append(employment(UNEMPLOYED, "2026-06-01", id=f"{pid}-emp", subject=pid))
    for resource in resources:
        client.update(resource)
    task_id, sr_id = write_proposal(client, pid, resources, now=NOW)
    return pid, task_id, sr_id


@pytest.mark.parametrize("employed", [True, False], ids=["status-recorded", "fit-note-proxy"])
def test_a_fit_note_recorded_twice_is_shown_once_apart_from_employment(
    fhir_client: FhirClient, fhir_server: FhirTestServer, capsys, employed: bool
):
    pid, task_id, sr_id = _load(fhir_client, employed=employed)
    proposal, _ = fhir_client.read("ServiceRequest", sr_id)
    linked = {s["reference"] for s in proposal["supportingInfo"]}
    assert {f"Observation/{pid}-fit1", f"DocumentReference/{pid}-fit1doc"} <= linked

    detail = review.review_detail(fhir_client, task_id, ruleset=default_ruleset())
    assert [(e.words, e.ref, e.same_as) for e in detail.fit_notes] == [
        (TWICE, f"Observation/{pid}-fit1", (f"DocumentReference/{pid}-fit1doc",)),
        (LATER, f"Observation/{pid}-fit2", ()),
    ]
    employment_refs = [e.ref for e in detail.employment]
    assert employment_refs == ([f"Observation/{pid}-emp"] if employed else [])

    url = fhir_server.base_url
    assert main(["review", "show", task_id, "--server", url]) == 0
    shown = capsys.readouterr().out
    timeline = shown.split("Fit notes timeline\n")[1].split("\n\n")[0].splitlines()
    assert timeline == [
        f"  - {TWICE} (Observation/{pid}-fit1, DocumentReference/{pid}-fit1doc): "
        "eMED3 (2010) new statement issued, not fit for work",
        f"  - {LATER} (Observation/{pid}-fit2): "
        "eMED3 (2010) new statement issued, may be fit for work",
    ]
    employment_section = shown.split("\nEmployment\n")[1].split("\n\n")[0]
    assert "fit1" not in employment_section and "fit2" not in employment_section

    assert main(["review", "show", task_id, "--json", "--server", url]) == 0
    as_json = orjson.loads(capsys.readouterr().out)
    assert [n["words"] for n in as_json["supporting"]] == [TWICE, LATER]


def test_the_card_shows_a_fit_note_recorded_twice_once(
    fhir_client: FhirClient, fhir_server: FhirTestServer, service: TestClient, ehr_key
):
    pid, _, _ = _load(fhir_client, employed=False)
    body = hook_request(pid, fhir_server=fhir_server.base_url, access_token="ehr-user-token")
    (card,) = hook(service, ehr_key, body)["cards"]
    lines = card["detail"].splitlines()  # a count and the latest date (issue 8), not a list
    assert [line for line in lines if line.startswith("- Fit note")] == [
        "- Fit notes in the last 12 months: 2, latest 1 August 2026."
    ]


def test_the_review_page_shows_a_fit_note_recorded_twice_once(
    fhir_client: FhirClient, service: TestClient
):
    pid, task_id, _ = _load(fhir_client, employed=True)
    page = TestClient(service.app, base_url="https://testserver", follow_redirects=False)
    form = page.get("/review/login").text
    csrf = form.split('name="csrf_token" value="')[1].split('"')[0]
    login = {"username": "dr.cds", "password": PASSWORD, "csrf_token": csrf}
    assert page.post("/review/login", data=login).status_code == 303
    shown = page.get(f"/review/task/{task_id}")
    assert shown.status_code == 200, shown.text
    timeline = shown.text.split('id="timeline"')[1].split("</section>")[0]
    rows = [row for row in timeline.split("<tr>")[2:] if "Fit note:" in row]
    assert len(rows) == 2
    assert TWICE in rows[0] and LATER in rows[1]
    assert f"Observation/{pid}-fit1, DocumentReference/{pid}-fit1doc" in rows[0]
    assert timeline.count(f"{pid}-fit1doc") == 1
