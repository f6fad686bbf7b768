"""Who the patient is, their IPS history, and working the list (issue 7, points 1, 2 and 6)
against the real FHIR server: the review page (signed in as the patient's GP), `review list` and
`review show`, and `ips_screen.writeback` underneath.

Each test loads its own patients (unique ids and NHS numbers: the server is shared by the
session). An earlier decline is put on the server as the tool would have written it 14 months
ago, with the deciding clinician's Provenance.
"""

from __future__ import annotations

import re
import warnings
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ips_screen import __version__
from ips_screen.cli.main import main
from ips_screen.dates import LONDON
from ips_screen.devtools.testserver import FhirTestServer
from ips_screen.fhir.client import FhirClient
from ips_screen.presentation.nhs_number import NHS_NUMBER_SYSTEM
from ips_screen.service.app import create_app
from ips_screen.service.config import parse_config
from ips_screen.writeback import review
from ips_screen.writeback.ips_history import read_history
from ips_screen.writeback.worklist import own_refs, owner_refs, review_counts
from tests.fhir_support import (
    Proposed,
    earlier_decline,
    load_proposed_patient,
    nhs_number_for,
    proposed_patient_records,
    unique_patient_id,
    write_proposal,
)
from tests.helpers import AS_OF, default_ruleset
from tests.support.cds import PASSWORD, SECRET_ENV, users_file
from tests.support.people import IPS_SERVICE, ips_service, practitioner

with warnings.catch_warnings():  # starlette warns that httpx (not httpx2) is installed
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 26, 9, 30, tzinfo=LONDON)
RULESET = default_ruleset()


def shown(number: str) -> str:
    return f"{number[:3]} {number[3:6]} {number[6:]}"


def name_the_gp(client: FhirClient, pid: str, family: str) -> str:
    """PUT the patient's GP (the review Task's owner) as a Practitioner named Dr Grace <family>."""
    client.update(
        {
            "resourceType": "Practitioner",
            "id": f"gp-{pid}",
            "name": [{"prefix": ["Dr"], "given": ["Grace"], "family": family}],
        }
    )
    return f"Practitioner/gp-{pid}"


def patient_with_history(client: FhirClient) -> Proposed:
    """A proposed patient with an earlier decline of 14 months ago."""
    pid = unique_patient_id("id")
    resources = proposed_patient_records(pid)
    for resource in resources:
        client.update(resource)
    task_id, sr_id = write_proposal(client, pid, resources, now=NOW)
    earlier_decline(client, pid)
    return Proposed(pid, resources, task_id, sr_id)


def page_for(fhir_server: FhirTestServer, tmp_path: Path, practitioner: str) -> TestClient:
    """The review page, signed in as a user whose Practitioner is `practitioner`."""
    data = {
        "public_base_url": "https://ips.example.org",
        "fhir": {"base_url": fhir_server.base_url},
        "ehr_fhir_servers": ["https://ehr.example.org/fhir"],
        "ehr_auth": {
            "issuers": [
                {"iss": "https://ehr.example.org", "jwks_url": "https://ehr.example.org/jwks.json"}
            ]
        },
        "review_page": {"users_file": str(users_file(tmp_path, {"dr": practitioner}))},
        "state_dir": str(tmp_path / "serve-state"),
    }
    app = create_app(parse_config(data), environ=SECRET_ENV)
    client = TestClient(app, base_url="https://testserver", follow_redirects=False)
    form = client.get("/review/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    signed = client.post(
        "/review/login", data={"username": "dr", "password": PASSWORD, "csrf_token": token}
    )
    assert signed.status_code == 303
    return client


def task_ids(html: str) -> list[str]:
    return re.findall(r'data-task="([^"]+)"', html)


# --- 1. who the patient is ---------------------------------------------------------------------


def test_page_opens_on_my_patients_and_finds_a_patient_by_nhs_number(
    fhir_server: FhirTestServer, fhir_client: FhirClient, tmp_path: Path
):
    mine = load_proposed_patient(fhir_client, "id", now=NOW)
    other = load_proposed_patient(fhir_client, "id", now=NOW)
    page = page_for(fhir_server, tmp_path, f"Practitioner/gp-{mine.pid}")

    opened = page.get("/review/")
    assert opened.status_code == 200
    assert task_ids(opened.text) == [mine.task_id]  # only the signed-in clinician's patients
    row = opened.text.split(f'data-task="{mine.task_id}"')[1].split("</tr>")[0]
    for words in ("OKAFOR, Ada", "1980-01-01 (46 y)", shown(nhs_number_for(mine.pid))):
        assert words in row
    assert 'id="scope-all"' in opened.text

    everyone = page.get("/review/", params={"scope": "all"}).text
    assert {mine.task_id, other.task_id} <= set(task_ids(everyone))
    kept = page.get("/review/").text  # the list keeps the choice (e.g. back from a decision)
    assert {mine.task_id, other.task_id} <= set(task_ids(kept))
    assert task_ids(page.get("/review/", params={"scope": "mine"}).text) == [mine.task_id]

    number = shown(nhs_number_for(other.pid))  # spaces allowed
    found = page.get("/review/", params={"scope": "all", "q": number}).text
    assert task_ids(found) == [other.task_id]
    by_name = page.get("/review/", params={"scope": "all", "q": "ada okafor"}).text
    assert {mine.task_id, other.task_id} <= set(task_ids(by_name))
    nobody = page.get("/review/", params={"scope": "all", "q": "Nobody Called This"}).text
    assert task_ids(nobody) == [] and 'id="empty"' in nobody

    detail = page.get(f"/review/task/{other.task_id}").text
    assert "OKAFOR, Ada" in detail and "1980-01-01 (46 years)" in detail and number in detail


def test_an_invalid_nhs_number_is_flagged_on_the_page_and_in_the_cli(
    fhir_server: FhirTestServer, fhir_client: FhirClient, tmp_path: Path, capsys
):
    proposed = load_proposed_patient(fhir_client, "id", now=NOW)
    (patient,) = [r for r in proposed.resources if r["resourceType"] == "Patient"]
    good = nhs_number_for(proposed.pid)
    bad = good[:9] + str((int(good[9]) + 1) % 10)
    fhir_client.update({**patient, "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": bad}]})
    page = page_for(fhir_server, tmp_path, f"Practitioner/gp-{proposed.pid}")
    listed = page.get("/review/").text
    assert shown(bad) in listed and "not a valid NHS number" in listed
    assert "not a valid NHS number" in page.get(f"/review/task/{proposed.task_id}").text

    url = fhir_server.base_url
    assert main(["review", "show", proposed.task_id, "--server", url]) == 0
    out = capsys.readouterr().out
    assert f"NHS number: {shown(bad)} (NOT A VALID NHS NUMBER)" in out
    assert out.splitlines()[0] == "Name: OKAFOR, Ada"


def test_a_name_written_to_drive_the_terminal_is_shown_as_text(
    fhir_client: FhirClient, fhir_server: FhirTestServer, capsys, tmp_path: Path
):
    """Anyone who writes to the practice's server can put escape sequences or a bidirectional
    override in a name: `review list` and `review show` print them as escapes (the terminal is
    not retitled or cleared), and the review page shows them so too (the name cannot be made
    to read as another)."""
    proposed = load_proposed_patient(fhir_client, "esc", now=NOW)
    (patient,) = [r for r in proposed.resources if r["resourceType"] == "Patient"]
    hostile = {"family": "OKAFOR\x1b]0;X\x07\x1b[2J", "given": ["Ada\u202e"]}
    fhir_client.update({**patient, "name": [hostile]})
    url = fhir_server.base_url
    assert main(["review", "show", proposed.task_id, "--server", url]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "Name: OKAFOR\\x1b]0;X\\x07\\x1b[2J, Ada\\u202e"
    assert main(["review", "list", "--server", url]) == 0
    listed = capsys.readouterr().out
    assert "OKAFOR\\x1b]0;X\\x07\\x1b[2J, Ada\\u202e" in listed
    assert not any(c in out + listed for c in "\x1b\x07\u202e")
    page = page_for(fhir_server, tmp_path, f"Practitioner/gp-{proposed.pid}")
    for html in (page.get("/review/").text, page.get(f"/review/task/{proposed.task_id}").text):
        assert "OKAFOR\\x1b]0;X\\x07\\x1b[2J, Ada\\u202e" in html
        assert not any(c in html for c in "\x1b\x07\u202e")


# --- 2. IPS history ----------------------------------------------------------------------------


def test_history_shows_an_earlier_decline_with_who_reason_note_and_end(
    fhir_server: FhirTestServer, fhir_client: FhirClient, tmp_path: Path, capsys
):
    proposed = patient_with_history(fhir_client)
    history = read_history(fhir_client, f"Patient/{proposed.pid}", RULESET, AS_OF)
    events = [(e.event, e.when, e.ref) for e in history.entries]
    assert events == [
        ("awaiting", "2026-11-26", f"ServiceRequest/{proposed.sr_id}"),
        ("declined", "2025-09-20", f"ServiceRequest/{proposed.pid}-old-sr"),
        ("proposed", "2025-09-01", f"ServiceRequest/{proposed.pid}-old-sr"),
    ]
    declined = history.entries[1]
    assert history.who(declined) == "Dr Alan Earlier"
    assert declined.reason == "Patient not interested in IPS at present"
    assert declined.note == "Caring for a parent this year"
    assert (declined.until, declined.suppressing) == ("2026-09-20", False)

    page = page_for(fhir_server, tmp_path, f"Practitioner/gp-{proposed.pid}")
    section = page.get(f"/review/task/{proposed.task_id}").text.split('id="history"')[1]
    section = section.split("</section>")[0]
    for words in (
        "20 September 2025",
        "declined",
        "Dr Alan Earlier",
        "Patient not interested in IPS at present",
        "Caring for a parent this year",
        "ended 20 September 2026",
        "awaiting review",
    ):
        assert words in section, words

    assert main(["review", "show", proposed.task_id, "--server", fhir_server.base_url]) == 0
    out = capsys.readouterr().out
    history_text = out.split("\nIPS history\n")[1]
    assert (
        "20 September 2025 declined by Dr Alan Earlier: Patient not interested in IPS at "
        "present (Caring for a parent this year); ended 20 September 2026"
    ) in history_text


def test_history_after_accept_and_after_not_now(fhir_client: FhirClient):
    accepted = load_proposed_patient(fhir_client, "id", now=NOW)
    fhir_client.update(
        {"resourceType": "Practitioner", "id": "dr-accepts", "name": [{"text": "Dr Ann Accepts"}]}
    )
    fhir_client.update(ips_service(IPS_SERVICE))
    review.accept(
        fhir_client,
        accepted.task_id,
        by="Practitioner/dr-accepts",
        now=NOW + timedelta(hours=1),
        tool_version=__version__,
        ruleset=RULESET,
        ips_service=IPS_SERVICE,
        patient_agreed=True,
    )
    history = read_history(fhir_client, f"Patient/{accepted.pid}", RULESET, AS_OF)
    referred = [e for e in history.entries if e.event == "referred"]
    assert [(e.when, history.who(e), e.status) for e in referred] == [
        ("2026-11-26", "Dr Ann Accepts", "active")
    ]

    deferred = load_proposed_patient(fhir_client, "id", now=NOW)
    review.decline(
        fhir_client,
        deferred.task_id,
        by="Practitioner/dr-accepts",
        reason_code="not-now",
        note="Start after surgery",
        now=NOW + timedelta(hours=1),
        tool_version=__version__,
        ruleset=RULESET,
    )
    history = read_history(fhir_client, f"Patient/{deferred.pid}", RULESET, AS_OF)
    (entry,) = [e for e in history.entries if e.event == "deferred"]
    assert (entry.when, entry.until, entry.suppressing) == ("2026-11-26", "2027-02-26", True)
    assert (history.who(entry), entry.note) == ("Dr Ann Accepts", "Start after surgery")


# --- 6. working the list -----------------------------------------------------------------------


def test_list_order_owner_by_name_and_counts(
    fhir_server: FhirTestServer, fhir_client: FhirClient, capsys
):
    routine = load_proposed_patient(fhir_client, "id", now=NOW, employed_since="2024-01-01")
    early_new = load_proposed_patient(fhir_client, "id", now=NOW)
    early_old = load_proposed_patient(fhir_client, "id", now=NOW - timedelta(days=3))
    listed = [i.task_id for i in review.open_reviews(fhir_client)]
    assert listed.index(early_old.task_id) < listed.index(early_new.task_id)
    assert listed.index(early_new.task_id) < listed.index(routine.task_id)

    family = f"Hopper{early_new.pid[-8:]}"
    owner = name_the_gp(fhir_client, early_new.pid, family)
    assert owner_refs(fhir_client, family) == {owner}
    assert owner_refs(fhir_client, owner) == {owner}

    url = fhir_server.base_url
    assert main(["review", "list", "--server", url, "--owner", family]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[1:-1]] == [f"Task/{early_new.task_id}"]
    assert out[-1] == "1 open; in the last 30 days: 0 deferred, 0 accepted, 0 declined"

    assert main(["review", "list", "--server", url, "--owner", "Nobody Atall"]) == 2
    assert "no clinician, team or practice is called 'Nobody Atall'" in capsys.readouterr().err

    number = nhs_number_for(routine.pid)
    assert main(["review", "list", "--server", url, "--find", shown(number)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[1:-1]] == [f"Task/{routine.task_id}"]

    review.decline(
        fhir_client,
        early_new.task_id,
        by="Practitioner/dr-accepts",
        reason_code="not-now",
        now=NOW,
        tool_version=__version__,
        ruleset=RULESET,
    )
    counts = review_counts(fhir_client, [], RULESET, AS_OF, owners={owner})
    assert (counts.open, counts.deferred, counts.accepted, counts.declined) == (0, 1, 0, 0)


def test_a_clinician_signed_in_by_role_sees_their_practitioners_patients(
    fhir_server: FhirTestServer, fhir_client: FhirClient, tmp_path: Path
):
    proposed = load_proposed_patient(fhir_client, "id", now=NOW)
    gp = name_the_gp(fhir_client, proposed.pid, f"Role{proposed.pid[-8:]}")
    role = {
        "resourceType": "PractitionerRole",
        "id": f"role-{proposed.pid}",
        "practitioner": {"reference": gp},
    }
    fhir_client.update(role)
    assert own_refs(fhir_client, f"PractitionerRole/{role['id']}") == {
        f"PractitionerRole/{role['id']}",
        gp,
    }
    assert own_refs(fhir_client, gp) == {gp, f"PractitionerRole/{role['id']}"}
    page = page_for(fhir_server, tmp_path, f"PractitionerRole/{role['id']}")
    assert task_ids(page.get("/review/").text) == [proposed.task_id]


def test_page_owner_filter_by_name_and_counts(
    fhir_server: FhirTestServer, fhir_client: FhirClient, tmp_path: Path
):
    kept = load_proposed_patient(fhir_client, "id", now=NOW)
    deferred = load_proposed_patient(fhir_client, "id", now=NOW)
    family = f"Lovelace{kept.pid[-8:]}"
    owner = name_the_gp(fhir_client, kept.pid, family)
    page = page_for(fhir_server, tmp_path, "Practitioner/someone-else")
    listed = page.get("/review/", params={"owner": family}).text
    assert task_ids(listed) == [kept.task_id]
    assert 'id="filter-error"' not in listed
    counts = listed.split('id="counts">')[1].split("</p>")[0]
    assert " ".join(counts.split()) == (
        "1 open. In the last 30 days: 0 deferred, 0 accepted, 0 declined."
    )
    # a decision of the owner's patients in the last 30 days is counted under its kind
    fhir_client.update(
        {**fhir_client.read("Task", deferred.task_id)[0], "owner": {"reference": owner}}
    )
    fhir_client.update(practitioner("Practitioner/someone-else"))
    review.decline(
        fhir_client,
        deferred.task_id,
        by="Practitioner/someone-else",
        reason_code="not-now",
        now=NOW,
        tool_version=__version__,
        ruleset=RULESET,
    )
    listed = page.get("/review/", params={"owner": family}).text
    counts = listed.split('id="counts">')[1].split("</p>")[0]
    assert " ".join(counts.split()) == (
        "1 open. In the last 30 days: 1 deferred, 0 accepted, 0 declined."
    )
