"""The second test ruleset (tests/rulesets/smoking) through the clinicians' review on the real
test FHIR server: `review list`, `review show` (text and JSON) and `review decline` work on its
proposals and speak its words, none of the default ruleset's."""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest

from ips_screen import __version__
from ips_screen.cli.main import main
from ips_screen.dates import LONDON
from ips_screen.engine import evaluate
from ips_screen.fhir.client import FhirClient
from ips_screen.proposals.build import build_patient_transaction
from ips_screen.ruleset.loader import load_ruleset
from tests.fhir_support import search, unique_patient_id
from tests.helpers import AS_OF, facts_from, patient, ref
from tests.support.people import practitioner
from tests.support.second_ruleset import SMOKER, SMOKING, assert_clean, smoking_status

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 26, 9, 30, tzinfo=LONDON)


def test_review_of_a_second_ruleset_proposal(fhir_server, fhir_client: FhirClient, capsys):
    smoking = load_ruleset(SMOKING)
    pid = unique_patient_id("sm")
    resources = [
        patient(pid, "1980-01-01", generalPractitioner=[ref(f"Practitioner/gp-{pid}")]),
        smoking_status(SMOKER, pid),
    ]
    for resource in resources:
        fhir_client.update(resource)
    decision = evaluate(smoking, facts_from(resources, smoking), AS_OF)
    assert decision.outcome == "propose", decision.reasons
    fhir_client.transaction(
        build_patient_transaction(decision, smoking, now=NOW, tool_version=__version__)
    )
    (task,) = search(fhir_client, "Task", {"patient": f"Patient/{pid}"})
    url = fhir_server.base_url
    rules = ["--rules", str(SMOKING)]

    assert main(["review", "list", "--server", url]) == 0
    listed = capsys.readouterr().out
    assert task["id"] in listed
    assert main(["review", "show", task["id"], "--server", url, *rules]) == 0
    shown = capsys.readouterr().out
    assert "Smoking status" in shown and f"Observation/{pid}-smoking" in shown
    assert "Smoking records timeline" in shown
    assert main(["review", "show", task["id"], "--server", url, "--json", *rules]) == 0
    as_json = capsys.readouterr().out
    fhir_client.update(practitioner("Practitioner/dr-sm"))  # `--by` must be on the server
    by = ["--by", "Practitioner/dr-sm"]
    assert main(["review", "decline", task["id"], *by, "--server", url, *rules,
                 "--reason", "not-ready"]) == 0  # fmt: skip
    declined = capsys.readouterr().out
    assert declined.startswith(f"Declined Task/{task['id']} (Not ready to stop at present).")
    (done,) = search(fhir_client, "Task", {"patient": f"Patient/{pid}"})
    assert done["status"] == "rejected"
    assert done["statusReason"]["coding"][0]["code"] == "not-ready"
    for what, text in (("show", shown), ("show --json", as_json), ("decline", declined)):
        assert_clean(what, text)
    assert_clean("Task", orjson.dumps(done).decode())


def test_the_review_page_speaks_a_second_rulesets_words(fhir_server, fhir_client, tmp_path):
    """Signed in to the review page of a service configured with the second ruleset, the
    clinician sees its words on every page (sign-in, worklist, the proposal and its forms):
    none of the default ruleset's (before, "IPS proposal for ..." and "Accept: refer to IPS")."""
    import warnings

    from ips_screen.service.app import create_app
    from ips_screen.service.config import parse_config
    from tests.support.cds import PASSWORD, SECRET_ENV, users_file

    with warnings.catch_warnings():  # starlette warns that httpx (not httpx2) is installed
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    smoking = load_ruleset(SMOKING)
    pid = unique_patient_id("smp")
    gp = f"Practitioner/gp-{pid}"  # the proposal's owner: the worklist shows this one alone
    resources = [
        patient(pid, "1980-01-01", generalPractitioner=[ref(gp)]),
        smoking_status(SMOKER, pid),
    ]
    fhir_client.update(practitioner(gp))
    for resource in resources:
        fhir_client.update(resource)
    decision = evaluate(smoking, facts_from(resources, smoking), AS_OF)
    fhir_client.transaction(
        build_patient_transaction(decision, smoking, now=NOW, tool_version=__version__)
    )
    (task,) = search(fhir_client, "Task", {"patient": f"Patient/{pid}"})
    fhir_client.update(practitioner("Practitioner/dr-smp"))
    config = parse_config(
        {
            "public_base_url": "https://review.example.org",
            "rules": str(SMOKING),
            "ehr_fhir_servers": ["https://ehr.example.org/fhir"],
            "fhir": {"base_url": fhir_server.base_url},
            "ehr_auth": {
                "issuers": [
                    {"iss": "https://ehr.example.org", "jwks_url": "https://ehr.example.org/j"}
                ]
            },
            "review_page": {"users_file": str(users_file(tmp_path, {"dr": "Practitioner/dr-smp"}))},
            "state_dir": str(tmp_path / "serve-state"),
            "referral": {"ips_service": "Organization/stop-smoking-service"},
        }
    )
    app = create_app(config, environ=SECRET_ENV)
    client = TestClient(app, base_url="https://testserver", follow_redirects=False)
    login = client.get("/review/login").text
    assert_clean("sign-in page", login)
    token = login.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    signed = client.post(
        "/review/login", data={"username": "dr", "password": PASSWORD, "csrf_token": token}
    )
    assert signed.status_code == 303
    worklist = client.get("/review/", params={"owner": gp})  # the server holds others' too
    assert worklist.status_code == 200 and task["id"] in worklist.text
    assert_clean("worklist", worklist.text)
    page = client.get(f"/review/task/{task['id']}")
    assert page.status_code == 200 and "Stop-smoking support" in page.text
    assert_clean("proposal page", page.text)
