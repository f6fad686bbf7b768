"""The CDS Hooks 2.0 service (ips_screen.service): discovery, the patient-view card, the loop guard,
missing data, EHR authentication and feedback, through FastAPI's TestClient.

Prefetch is built from the fixture patients; the EHR's JWTs are signed with a key made here and
checked against its JWKS in the configuration. Feedback writes go to `FakeFhir`, a small
in-memory FHIR server that applies transactions as a real one does (conditional creates,
If-Match, urn:uuid references), so a second identical feedback can be seen to change nothing.
The helpers are in tests/support/cds.py and fake_fhir.py; `make_client` in tests/unit/conftest.py.
"""

from __future__ import annotations

import copy
import re
import shutil
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ips_screen import __version__
from ips_screen.codes import DECLINE_REASON_SYSTEM, PROPOSAL_ID_SYSTEM
from ips_screen.ruleset.loader import load_ruleset
from ips_screen.service.cards import blocking_referral, by_ref, pending_proposal
from ips_screen.service.config import parse_config
from ips_screen.service.prefetch import PREFETCH
from ips_screen.service.state import Cards, CardState
from ips_screen.service.store import CARD_RETENTION_SECONDS, ServiceStore
from tests.helpers import AS_OF, decide, default_ruleset, patient, service_request
from tests.support.cds import (
    DR,
    FEEDBACK,
    ISS,
    PUBLIC,
    SERVICE,
    auth,
    call,
    check_card,
    feedback_item,
    fixture_resources,
    hook_request,
    prefetch_of,
    send_feedback,
    service_config,
    token,
    with_pending_proposal,
)
from tests.support.fake_fhir import FakeFhir
from tests.support.paths import FROZEN_NOW
from tests.support.second_ruleset import SMOKER, SMOKING, assert_clean, smoking_status

DECLINE_REASONS = default_ruleset().model.proposal.decline_reasons

with warnings.catch_warnings():  # starlette warns that httpx (not httpx2) is installed
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

# --------------------------------------------------------------------------- keys and tokens


# --------------------------------------------------------------------------- the app


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()[0]


# --------------------------------------------------------------------------- discovery and cards


def test_discovery_words_the_service_as_its_ruleset_does(make_client, tmp_path: Path):
    rules = tmp_path / "rules"
    shutil.copytree(default_ruleset().path.parent, rules, ignore=shutil.ignore_patterns("fhir"))
    path = rules / "ips-chronic-pain.yaml"
    text = path.read_text(encoding="utf-8")
    old = "  service_title: IPS employment support for chronic pain\n"
    assert old in text
    path.write_text(text.replace(old, "  service_title: Work support finder\n"), encoding="utf-8")
    client, _ = make_client(rules=str(path))
    (service,) = client.get("/cds-services").json()["services"]
    assert service["title"] == "Work support finder"
    assert service["description"].startswith("Suggests offering Individual Placement")


def test_a_second_ruleset_serves_its_own_card(make_client, ehr_key):
    # tests/rulesets/smoking through the running service: discovery, card, loop guard.
    client, _ = make_client(rules=str(SMOKING))
    (service,) = client.get("/cds-services").json()["services"]
    assert service["title"] == "Stop-smoking support"
    resources = [patient("sm-1"), smoking_status(SMOKER, "sm-1")]
    response = call(client, ehr_key, hook_request("sm-1", prefetch_of(resources)))
    (card,) = response.json()["cards"]
    assert card["summary"] == "Consider Stop-smoking support"
    assert card["suggestions"][0]["label"] == "Refer for Stop-smoking support"
    assert [r["code"] for r in card["overrideReasons"]] == ["not-ready", "has-support", "other"]
    assert "Smoking records in the last 24 months" in card["detail"]
    assert_clean("discovery and card", orjson.dumps([service, card]).decode())
    order = card["suggestions"][0]["actions"][0]["resource"]
    created = dict(order, id="ehr-order-1", status="active", authoredOn="2026-11-26")
    again = call(client, ehr_key, hook_request("sm-1", prefetch_of([*resources, created])))
    assert again.json() == {"cards": []}


def test_discovery_names_one_patient_view_service_and_its_prefetch(client: TestClient):
    response = client.get("/cds-services")
    assert response.status_code == 200
    (service,) = response.json()["services"]
    assert service["hook"] == "patient-view" and service["id"] == "ips-screen"
    assert service["title"] and service["description"]
    assert service["prefetch"] == {
        "patient": "Patient/{{context.patientId}}",
        "conditions": "Condition?patient={{context.patientId}}",
        "observations": "Observation?patient={{context.patientId}}",
        "procedures": "Procedure?patient={{context.patientId}}",
        "documents": "DocumentReference?patient={{context.patientId}}",
        "requests": "ServiceRequest?patient={{context.patientId}}",
        "tasks": "Task?patient={{context.patientId}}",
    }
    assert service["prefetch"] == PREFETCH


def test_propose_patient_gets_a_card_from_prefetch_alone(client: TestClient, ehr_key):
    resources = fixture_resources("01")
    response = call(client, ehr_key, hook_request("fx-01", prefetch_of(resources)))
    assert response.status_code == 200
    (card,) = response.json()["cards"]
    check_card(card)
    assert card["summary"] == "Consider IPS employment support: chronic pain and out of work"
    assert card["indicator"] == "info"
    assert card["source"]["label"] == f"ips-screen {__version__} (ips-chronic-pain@1.1.0)"
    assert card["selectionBehavior"] == "at-most-one"
    assert [r["code"] for r in card["overrideReasons"]] == list(DECLINE_REASONS)
    assert {r["system"] for r in card["overrideReasons"]} == {DECLINE_REASON_SYSTEM}
    assert card["links"] == [
        {"label": "Review in ips-screen", "url": f"{PUBLIC}/review/", "type": "absolute"}
    ]
    (suggestion,) = card["suggestions"]
    assert (suggestion["label"], suggestion["isRecommended"]) == (
        "Patient agrees: refer to IPS",
        True,
    )
    (action,) = suggestion["actions"]
    order = action["resource"]
    assert (action["type"], order["intent"], order["status"]) == ("create", "order", "draft")
    codes = {(c["system"], c["code"]) for c in order["code"]["coding"]}
    assert ("http://snomed.info/sct", "18781004") in codes
    assert ("https://ips-screen.org/fhir/CodeSystem/ips-screen", "ips-referral") in codes
    assert order["subject"] == {"reference": "Patient/fx-01"}
    assert [r["reference"] for r in order["reasonReference"]] == [
        "Condition/fx-01-cond-1",
        "Observation/fx-01-obs-3",
    ]
    assert order["supportingInfo"] == [{"reference": "Observation/fx-01-obs-2"}]
    assert "basedOn" not in order
    assert order["identifier"] == [
        {"system": PROPOSAL_ID_SYSTEM, "value": "ips-chronic-pain-v1-fx-01-order"}
    ]
    detail = card["detail"]
    assert detail.split("\n")[:3] == [
        "- Chronic pain, first recorded 7 February 2024.",
        "- Out of work since 3 August 2026.",
        "- Fit notes in the last 12 months: 1, latest 3 August 2026.",
    ]
    assert "**IPS is voluntary.**" in detail and detail.endswith("refer only if they agree.")
    assert "Test" not in detail and "1979" not in detail  # no name, no birth date

    again = call(client, ehr_key, hook_request("fx-01", prefetch_of(resources)))
    assert again.json()["cards"][0]["uuid"] == card["uuid"]  # deterministic


def test_prefetch_values_may_be_null_or_single_resources(client: TestClient, ehr_key):
    resources = fixture_resources("01")
    prefetch = prefetch_of(resources, nulls=("procedures", "documents", "tasks"))
    (condition,) = [r for r in resources if r["resourceType"] == "Condition"]
    prefetch["conditions"] = condition  # a resource, not a Bundle
    response = call(client, ehr_key, hook_request("fx-01", prefetch))
    assert response.status_code == 200
    assert len(response.json()["cards"]) == 1


@pytest.mark.parametrize(
    ("fixture", "patient_id"),
    [("17", "fx-17"), ("21", "fx-21"), ("29", "fx-29"), ("30", "fx-30"), ("35", "fx-35")],
)
def test_no_card_when_excluded_or_not_eligible(client: TestClient, ehr_key, fixture, patient_id):
    resources = fixture_resources(fixture)
    assert decide(resources).outcome != "propose"
    response = call(client, ehr_key, hook_request(patient_id, prefetch_of(resources)))
    assert response.status_code == 200
    assert response.json() == {"cards": []}


def test_pending_proposal_is_shown_with_its_review(client: TestClient, ehr_key):
    resources = with_pending_proposal(fixture_resources("01"))
    response = call(client, ehr_key, hook_request("fx-01", prefetch_of(resources)))
    (card,) = response.json()["cards"]
    check_card(card)
    assert card["summary"].startswith("IPS employment support proposal awaiting review")
    assert card["links"][0]["url"] == f"{PUBLIC}/review/task/task-1"
    order = card["suggestions"][0]["actions"][0]["resource"]
    assert order["basedOn"] == [{"reference": "ServiceRequest/prop-1"}]
    assert order["supportingInfo"] == [{"reference": "Observation/fx-01-obs-2"}]
    assert card["detail"].startswith("- Chronic pain, first recorded 7 February 2024.\n")
    assert card["detail"].endswith("Accepting also completes the review.")

    # A proposal whose review is no longer requested is not pending: the engine decides (open).
    decided = [dict(r, status="completed") if r.get("id") == "task-1" else r for r in resources]
    response = call(client, ehr_key, hook_request("fx-01", prefetch_of(decided)))
    assert response.json() == {"cards": []}


def test_another_patients_proposal_or_task_never_makes_the_card(client: TestClient, ehr_key):
    ruleset = default_ruleset()
    resources = with_pending_proposal(fixture_resources("01"))
    *records, sr, task = resources
    other = {"reference": "Patient/fx-02"}
    mixed = [
        [dict(sr, subject=other), dict(task, **{"for": other})],  # fx-01's proposal id, fx-02's
        [sr, dict(task, **{"for": other})],  # fx-02's review of fx-01's proposal
        [dict(sr, subject=other), task],
        [sr, dict(task, id="../logout")],  # not a FHIR id: never put in the card's link
    ]
    assert pending_proposal(by_ref([sr, task]), ruleset, "fx-01") is not None
    for pair in mixed:
        assert pending_proposal(by_ref(pair), ruleset, "fx-01") is None
        response = call(client, ehr_key, hook_request("fx-01", prefetch_of([*records, *pair])))
        assert response.status_code == 200
        assert "task-1" not in response.text and "awaiting review" not in response.text
        assert "logout" not in response.text


HOSTILE = "Back pain\n\n# Heading\n* item\r\n1. one\n---\n    code |a|b|\u2028> <b>x</b> [l](x)"
_BLOCK = re.compile(r"^(#|>|\*|\+|-|=|\d+[.)]|\s|`|~|\||<)")


def _blocks(detail: str) -> list[str]:
    """Each line's kind (blank, bold, bullet, text); AssertionError for a line (or a bullet's
    content) that starts a heading, list, quote, code block, table or HTML."""
    kinds = []
    for line in detail.split("\n"):
        if not line:
            kinds.append("blank")
        elif line.startswith("**"):
            kinds.append("bold")
        elif line.startswith("- "):
            assert not _BLOCK.match(line[2:]), line
            kinds.append("bullet")
        else:
            assert not _BLOCK.match(line), line
            kinds.append("text")
    return kinds


def _displayed(resources: list[dict], display: str) -> list[dict]:
    out = copy.deepcopy(resources)
    for resource in out:
        for key in ("code", "type"):
            concept = resource.get(key)
            for coding in concept.get("coding", []) if isinstance(concept, dict) else ():
                coding["display"] = display
    return out


def test_record_text_cannot_break_out_of_the_card_markdown(client: TestClient, ehr_key):
    details = [
        call(
            client, ehr_key, hook_request("fx-01", prefetch_of(_displayed(records, display)))
        ).json()["cards"][0]["detail"]
        for records in [fixture_resources("01")]
        for display in ("Back pain", HOSTILE)
    ]
    assert _blocks(details[1]) == _blocks(details[0])  # the same list items and paragraphs
    assert (
        "- Back pain \\# Heading \\* item 1. one --- code "
        "\\|a\\|b\\| \\> \\<b\\>x\\</b\\> \\[l\\](x), first recorded 7 February 2024."
    ) in details[1].split("\n")

    # A pending proposal's stored note (the EHR sends it) is escaped line by line.
    resources = with_pending_proposal(fixture_resources("01"))
    resources[-2]["note"] = [{"text": f"Why:\n- {HOSTILE}\n{HOSTILE}\n```\n+ x\n===\n2) y"}]
    response = call(client, ehr_key, hook_request("fx-01", prefetch_of(resources)))
    (card,) = response.json()["cards"]
    assert card["summary"].startswith("IPS employment support proposal awaiting review")
    assert "bullet" in _blocks(card["detail"])


def test_record_text_cannot_reorder_or_hide_the_card_words(client: TestClient, ehr_key):
    """A bidirectional override or a C1 control in a display (the EHR renders the card's text)
    becomes a space, as line breaks and C0 controls do."""
    display = "Back\u202epain\x9b2J\u2066x\x85y"
    resources = _displayed(fixture_resources("01"), display)
    (card,) = call(client, ehr_key, hook_request("fx-01", prefetch_of(resources))).json()["cards"]
    assert "- Back pain 2J x y, first recorded 7 February 2024." in card["detail"].split("\n")


@pytest.mark.parametrize("status", ["draft", "active", "on-hold", "unknown", "completed"])
def test_loop_guard_an_ips_referral_silences_the_card(client: TestClient, ehr_key, status):
    resources = fixture_resources("01")
    first = call(client, ehr_key, hook_request("fx-01", prefetch_of(resources))).json()
    order = first["cards"][0]["suggestions"][0]["actions"][0]["resource"]
    created = dict(order, id="ehr-order-1", status=status, authoredOn="2026-11-26")
    response = call(client, ehr_key, hook_request("fx-01", prefetch_of([*resources, created])))
    assert response.json() == {"cards": []}


def test_loop_guard_does_not_depend_on_the_engine():
    ruleset = default_ruleset()
    # status "unknown" is not an open referral for the ruleset, but the guard still holds.
    unknown = service_request(status="unknown", intent="plan", id="sr-x", subject="fx-01")
    assert decide([*fixture_resources("01"), unknown]).outcome == "propose"
    assert blocking_referral(by_ref([unknown]), ruleset, AS_OF) == "ServiceRequest/sr-x"
    for status in ("revoked", "entered-in-error"):
        gone = service_request(status=status, id="sr-y", subject="fx-01")
        assert blocking_referral(by_ref([gone]), ruleset, AS_OF) is None
    old = service_request(status="completed", authored="2024-01-10", id="sr-z")
    assert blocking_referral(by_ref([old]), ruleset, AS_OF) is None
    not_ips = service_request(code="12345678", id="sr-w")
    assert blocking_referral(by_ref([not_ips]), ruleset, AS_OF) is None


def test_loop_guard_is_the_rulesets_own_referral_rule():
    # tests/rulesets/smoking: referrals coded in its own codelist block, completed ones for the
    # 6 months its `referral-open` rule says (not a fixed 12), and SNOMED 18781004 (the default
    # ruleset's vocational rehabilitation) is nothing to it.
    smoking = load_ruleset(SMOKING)
    stop = "871661000000106"
    recent = service_request(status="completed", authored="2026-07-01", code=stop, id="sr-a")
    assert blocking_referral(by_ref([recent]), smoking, AS_OF) == "ServiceRequest/sr-a"
    older = service_request(status="completed", authored="2026-03-01", code=stop, id="sr-b")
    assert blocking_referral(by_ref([older]), smoking, AS_OF) is None
    vocational = service_request(status="active", code="18781004", id="sr-c")
    assert blocking_referral(by_ref([vocational]), smoking, AS_OF) is None
    assert (
        blocking_referral(by_ref([vocational]), default_ruleset(), AS_OF) == "ServiceRequest/sr-c"
    )


# --------------------------------------------------------------------------- bad requests


def test_412_when_no_prefetch_and_no_fhir_server(client: TestClient, ehr_key):
    response = call(client, ehr_key, hook_request("fx-01"))
    assert response.status_code == 412
    partial = prefetch_of(fixture_resources("01"))
    del partial["tasks"]
    assert call(client, ehr_key, hook_request("fx-01", partial)).status_code == 412
    no_patient = prefetch_of(fixture_resources("01"))
    no_patient["patient"] = None
    assert call(client, ehr_key, hook_request("fx-01", no_patient)).status_code == 412
    failed = prefetch_of(fixture_resources("01"))
    failed["conditions"] = {"resourceType": "OperationOutcome", "issue": []}
    assert call(client, ehr_key, hook_request("fx-01", failed)).status_code == 412


def test_412_when_fhir_server_is_not_allowed(make_client, ehr_key):
    client, _ = make_client()
    for server in ("http://ehr.example.org/fhir", "http://127.0.0.1:8080/fhir"):
        body = hook_request("fx-01", fhir_server=server, access_token="t")
        assert call(client, ehr_key, body).status_code == 412  # https only by default
    listed, _ = make_client(ehr_fhir_servers=["https://ehr.example.org/fhir"])
    body = hook_request("fx-01", fhir_server="https://other.example.org/fhir", access_token="t")
    assert call(listed, ehr_key, body).status_code == 412


@pytest.mark.parametrize(
    "change",
    [
        {"hook": "order-sign"},
        {"hook": None},
        {"context": {"userId": DR}},
        {"context": {"patientId": "../x"}},
        {"hookInstance": None},
        {"prefetch": ["not", "an", "object"]},
        {"fhirAuthorization": {"access_token": "t", "token_type": "MAC"}},
    ],
)
def test_400_for_a_malformed_request(client: TestClient, ehr_key, change):
    body = hook_request("fx-01", prefetch_of(fixture_resources("01")))
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    response = call(client, ehr_key, body)
    assert response.status_code == 400
    assert "error" in response.json()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"context": {"patientId": "fx-01"}}, "context.userId is required"),
        (
            {"context": {"patientId": "fx-01", "userId": "dr-cds"}},
            "context.userId must be a FHIR reference such as Practitioner/<id>",
        ),
        ({"hookInstance": "call-1"}, "hookInstance must be a UUID"),
        ({"hookInstance": 42}, "hookInstance must be a UUID"),
        (
            {"fhirAuthorization": hook_request("x", access_token="t")["fhirAuthorization"]},
            "fhirServer is required when fhirAuthorization is given",
        ),
        (
            {"fhirServer": "https://ehr.example.org/fhir", "fhirAuthorization": {}},
            "fhirAuthorization.access_token is required",
        ),
    ],
)
def test_400_when_a_field_the_spec_requires_is_missing_or_malformed(
    client: TestClient, ehr_key, change, message
):
    body = hook_request("fx-01", prefetch_of(fixture_resources("01")))
    body.update(change)
    response = call(client, ehr_key, body)
    assert response.status_code == 400
    assert response.json() == {"error": message}


def test_400_for_a_body_that_is_not_a_json_object(client: TestClient, ehr_key):
    for content in (b"not json", b"[1, 2]"):
        response = client.post(SERVICE, content=content, headers=auth(ehr_key))
        assert response.status_code == 400


# --------------------------------------------------------------------------- EHR authentication


def test_401_with_an_empty_body_for_missing_or_invalid_tokens(client: TestClient, ehr_key, caplog):
    body = hook_request("fx-01", prefetch_of(fixture_resources("01")))
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    replayed = token(ehr_key)
    assert client.post(SERVICE, json=body, headers={"Authorization": f"Bearer {replayed}"})
    refused = [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": f"Bearer {replayed}"},  # the same jti again
        {"Authorization": f"Bearer {token(other_key)}"},  # signed by someone else
        auth(ehr_key, aud="http://testserver/cds-services/ips-screen"),  # the Host, not public
        auth(ehr_key, aud=PUBLIC + FEEDBACK),  # minted for another endpoint
        auth(ehr_key, iss="https://attacker.example.org"),
        auth(ehr_key, exp=int(FROZEN_NOW.timestamp()) - 600),
        {"Authorization": "Bearer " + jwt.encode({"iss": ISS}, "k" * 64, algorithm="HS384")},
    ]
    for headers in refused:
        response = client.post(SERVICE, json=body, headers=headers)
        assert response.status_code == 401, headers
        assert response.content == b"{}"
        assert response.headers["www-authenticate"] == "Bearer"
    assert client.post(FEEDBACK, json={"feedback": []}).status_code == 401
    assert "refused a call to /cds-services/ips-screen" in caplog.text
    assert "Test" not in caplog.text  # no patient names in the log


def test_discovery_needs_no_token(client: TestClient):
    assert client.get("/cds-services").status_code == 200
    assert client.get("/healthz").json()["status"] == "ok"


def test_auth_can_be_disabled_only_on_loopback(ehr_key):
    from ips_screen.errors import ConfigError

    data = service_config(ehr_key, ehr_auth={"disabled": True})
    with pytest.raises(ConfigError, match="loopback"):
        parse_config(data)
    data["public_base_url"] = "http://127.0.0.1:8080"
    assert parse_config(data).auth_disabled
    # The table's own settings may stay, unread; another key is said, not ignored (a top-level
    # setting written below the table's header lands in it).
    data["ehr_auth"] = {"disabled": True, "leeway_seconds": 5, "issuers": []}
    assert parse_config(data).auth_disabled
    data["ehr_auth"] = {"disabled": True, "state_dir": "/var/lib/ips", "leeway_seconds": 5}
    with pytest.raises(ConfigError, match=r"^ehr_auth: state_dir: unknown key \(a top-level"):
        parse_config(data)


# --------------------------------------------------------------------------- feedback


def test_feedback_accepted_completes_the_pending_review_once(make_client, ehr_key):
    resources = with_pending_proposal(fixture_resources("01"))
    fake = FakeFhir(resources)
    client, _ = make_client(fake)
    (card,) = call(client, ehr_key, hook_request("fx-01", prefetch_of(resources))).json()["cards"]
    assert send_feedback(client, ehr_key, feedback_item(card, "accepted")) == 200
    assert fake.transactions == 1
    task = fake.store["Task/task-1"]
    assert task["status"] == "completed"
    assert fake.store["ServiceRequest/prop-1"]["status"] == "completed"
    (order,) = [r for r in fake.of_type("ServiceRequest") if r["intent"] == "order"]
    assert order["requester"] == {"reference": DR}
    assert order["identifier"] == card["suggestions"][0]["actions"][0]["resource"]["identifier"]
    before = copy.deepcopy(fake.store)
    assert send_feedback(client, ehr_key, feedback_item(card, "accepted")) == 200
    assert fake.store == before and fake.transactions == 1  # the same feedback: no change


def test_feedback_overridden_declines_the_pending_review_once(make_client, ehr_key):
    resources = with_pending_proposal(fixture_resources("01"))
    fake = FakeFhir(resources)
    client, _ = make_client(fake)
    (card,) = call(client, ehr_key, hook_request("fx-01", prefetch_of(resources))).json()["cards"]
    body = feedback_item(card, "overridden", "not-now", "After her operation")
    assert send_feedback(client, ehr_key, body) == 200
    task = fake.store["Task/task-1"]
    assert task["status"] == "rejected"
    assert task["statusReason"]["coding"][0]["code"] == "not-now"
    assert task["note"][-1]["text"] == "After her operation"
    assert fake.store["ServiceRequest/prop-1"]["status"] == "revoked"
    before = copy.deepcopy(fake.store)
    assert send_feedback(client, ehr_key, body) == 200
    assert send_feedback(client, ehr_key, feedback_item(card, "accepted")) == 200
    assert fake.store == before  # decided already: nothing changes


def test_feedback_on_a_live_card(make_client, ehr_key):
    resources = fixture_resources("01")
    fake = FakeFhir(resources)
    client, _ = make_client(fake)
    (card,) = call(client, ehr_key, hook_request("fx-01", prefetch_of(resources))).json()["cards"]

    assert send_feedback(client, ehr_key, feedback_item(card, "accepted")) == 200
    assert fake.transactions == 0  # the EHR created the order: nothing to update

    body = feedback_item(card, "overridden", "other")
    assert send_feedback(client, ehr_key, body) == 200
    (proposal,) = [r for r in fake.of_type("ServiceRequest") if r["intent"] == "proposal"]
    assert proposal["status"] == "revoked"
    (task,) = fake.of_type("Task")
    assert task["status"] == "rejected" and task["statusReason"]["coding"][0]["code"] == "other"
    assert task["focus"] == {"reference": f"ServiceRequest/{proposal['id']}"}
    assert "no comment given" in task["note"][-1]["text"]
    before, count = copy.deepcopy(fake.store), fake.transactions
    assert send_feedback(client, ehr_key, body) == 200
    assert fake.store == before and fake.transactions == count

    # The proposal on the server now suppresses the card for 12 months.
    now_there = [*resources, *fake.of_type("ServiceRequest"), *fake.of_type("Task")]
    response = call(client, ehr_key, hook_request("fx-01", prefetch_of(now_there)))
    assert response.json() == {"cards": []}


def test_feedback_that_cannot_be_used_is_ignored(make_client, ehr_key):
    resources = fixture_resources("01")
    fake = FakeFhir(resources)
    client, _ = make_client(fake)
    (card,) = call(client, ehr_key, hook_request("fx-01", prefetch_of(resources))).json()["cards"]
    unknown = dict(card, uuid=str(uuid.uuid4()))
    assert send_feedback(client, ehr_key, feedback_item(unknown, "overridden", "not-now")) == 200
    no_reason = feedback_item(card, "overridden")
    assert send_feedback(client, ehr_key, no_reason) == 200
    foreign = feedback_item(card, "overridden", "not-now")
    foreign["feedback"][0]["overrideReason"]["reason"]["system"] = "http://example.org/reasons"
    assert send_feedback(client, ehr_key, foreign) == 200
    assert fake.transactions == 0 and not fake.of_type("Task")

    (card,) = call(
        client, ehr_key, hook_request("fx-01", prefetch_of(resources), user="Patient/fx-01")
    ).json()["cards"]
    assert send_feedback(client, ehr_key, feedback_item(card, "overridden", "not-now")) == 200
    assert not fake.of_type("Task")  # a patient cannot decline on a clinician's behalf


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"feedback": []},
        {"feedback": [{"card": "x", "outcome": "maybe", "outcomeTimestamp": "2026-11-26"}]},
        {"feedback": [{"card": "x", "outcome": "accepted"}]},
        {"feedback": ["x"]},
    ],
)
def test_malformed_feedback_is_400(client: TestClient, ehr_key, body):
    assert send_feedback(client, ehr_key, body) == 400


CARD = "6f1c2b9e-2f43-4c1e-9d57-1f0e3c8a4b21"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"card": "card-1"}, "feedback[0].card must be the UUID of a card"),
        ({"outcomeTimestamp": "yesterday"}, "feedback[0].outcomeTimestamp must be an ISO 8601"),
        ({"outcomeTimestamp": None}, "feedback[0].outcomeTimestamp is required"),
        (
            {"acceptedSuggestions": None},
            "feedback[0]: acceptedSuggestions is required when the outcome is accepted",
        ),
        ({"acceptedSuggestions": [{}]}, "feedback[0].acceptedSuggestions.0.id is required"),
    ],
)
def test_feedback_without_what_the_spec_requires_is_400(client: TestClient, ehr_key, item, message):
    good = {
        "card": CARD,
        "outcome": "accepted",
        "outcomeTimestamp": FROZEN_NOW.isoformat(),
        "acceptedSuggestions": [{"id": CARD}],
    }
    body = {"feedback": [{k: v for k, v in {**good, **item}.items() if v is not None}]}
    response = client.post(FEEDBACK, json=body, headers=auth(ehr_key, FEEDBACK))
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)


def test_cards_are_kept_for_a_day_then_dropped(tmp_path: Path, frozen_clock):
    cards = Cards(ServiceStore(str(tmp_path / "state")), clock=lambda: datetime.now(tz=UTC))
    live = decide(fixture_resources("01"))
    cards.put("c1", CardState("p1", "s", None, DR, ISS, live))
    cards.put("c2", CardState("p2", "s", "t-2", None, None, None))
    frozen_clock.shift(CARD_RETENTION_SECONDS)
    assert cards.get("c1") == CardState("p1", "s", None, DR, ISS, live)
    assert cards.get("c2") == CardState("p2", "s", "t-2", None, None, None)
    frozen_clock.shift(1)
    assert cards.get("c1") is None and cards.get("c2") is None


def test_cors_only_for_configured_browser_clients_and_only_on_cds_routes(make_client):
    sandbox = "https://sandbox.cds-hooks.org"
    client, _ = make_client(cds_cors_origins=[sandbox])
    preflight = {
        "Origin": sandbox,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    answer = client.options(SERVICE, headers=preflight)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == sandbox
    assert "access-control-allow-credentials" not in answer.headers
    other = client.options(SERVICE, headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    page = client.get("/review/login", headers={"Origin": sandbox})
    assert "access-control-allow-origin" not in page.headers
    discovery = client.get("/cds-services", headers={"Origin": sandbox})
    assert discovery.headers["access-control-allow-origin"] == sandbox


def test_feedback_accepted_without_an_ips_service_configured_records_nothing(make_client, ehr_key):
    resources = with_pending_proposal(fixture_resources("01"))
    fake = FakeFhir(resources)
    client, _ = make_client(fake, referral=None)  # serve.toml without [referral]
    (card,) = call(client, ehr_key, hook_request("fx-01", prefetch_of(resources))).json()["cards"]
    before = copy.deepcopy(fake.store)
    response = client.post(
        FEEDBACK, json=feedback_item(card, "accepted"), headers=auth(ehr_key, FEEDBACK)
    )
    assert response.status_code == 503
    assert "no IPS service configured" in response.json()["error"]
    assert fake.store == before and fake.transactions == 0
    # A decline needs no IPS service: it is recorded, and says until when.
    body = feedback_item(card, "overridden", "not-now")
    answer = client.post(FEEDBACK, json=body, headers=auth(ehr_key, FEEDBACK))
    assert answer.status_code == 200
    (said,) = answer.json()["results"]
    assert said.startswith("Deferred Task/task-1 (Not the right time; reconsider later): ")
    assert "deferred until 26 February 2027" in said
