"""The CDS Hooks 2.0 service (ips_screen.service): discovery, the patient-view card, the loop guard,
missing data, EHR authentication and feedback, through FastAPI's TestClient.

Prefetch is built from the fixture patients; the EHR's JWTs are signed with a key made here and
checked against its JWKS in the configuration. Feedback writes go to `FakeFhir`, a small
in-memory FHIR server that applies transactions as a real one does (conditional creates,
If-Match, urn:uuid references), so a second identical feedback can be seen to change nothing.
The helpers here are reused by tests/integration/test_cds_live.py and test_review_page.py.
"""

from __future__ import annotations

import copy
import itertools
import shutil
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fhir.resources.R4B import get_fhir_model_class
from jwt.algorithms import RSAAlgorithm

from ips_screen import __version__
from ips_screen.codes import DECLINE_REASON_SYSTEM, DECLINE_REASONS, PROPOSAL_ID_SYSTEM
from ips_screen.errors import ConflictError, ServerError
from ips_screen.proposals.build import build_proposal
from ips_screen.service.app import create_app
from ips_screen.service.cards import blocking_referral, by_ref
from ips_screen.service.config import hash_password, parse_config
from ips_screen.service.prefetch import PREFETCH, SEARCH_TYPES
from ips_screen.service.state import CardMemory, CardState
from tests.conftest import FIXTURES, FROZEN_NOW
from tests.helpers import AS_OF, decide, default_ruleset, service_request

with warnings.catch_warnings():  # starlette warns that httpx (not httpx2) is installed
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

PUBLIC = "https://cds.example.org"
ISS = "https://ehr.example.org"
KID = "ehr-rsa-1"
SERVICE = "/cds-services/ips-screen"
FEEDBACK = f"{SERVICE}/feedback"
DR = "Practitioner/dr-cds"
SECRET_ENV = {"IPS_SCREEN_SESSION_SECRET": "s" * 48}
PASSWORD = "correct horse battery staple"


# --------------------------------------------------------------------------- keys and tokens


@pytest.fixture(scope="session")
def ehr_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwks(key: rsa.RSAPrivateKey, kid: str = KID) -> dict[str, Any]:
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {"keys": [{**jwk, "kid": kid, "use": "sig", "alg": "RS384"}]}


def token(key: rsa.RSAPrivateKey, path: str = SERVICE, **overrides: Any) -> str:
    import time

    now = int(time.time())  # frozen by tests/conftest.py
    claims = {
        "iss": ISS,
        "sub": "ehr-client",
        "aud": PUBLIC + path,
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm="RS384", headers={"kid": KID})


def auth(key: rsa.RSAPrivateKey, path: str = SERVICE, **overrides: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(key, path, **overrides)}"}


# --------------------------------------------------------------------------- configuration


def service_config(
    key: rsa.RSAPrivateKey, users_file: Path | None = None, **extra: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "public_base_url": PUBLIC,
        "fhir": {"base_url": "https://fhir.example.org/R4"},
        "ehr_auth": {"issuers": [{"iss": ISS, "jwks": public_jwks(key)}]},
        "ehr_fhir_servers": ["https://ehr.example.org/fhir"],
    }
    if users_file is not None:
        data["review_page"] = {"users_file": str(users_file)}
    data.update(extra)
    return data


def users_file(folder: Path, users: dict[str, str] | None = None) -> Path:
    path = folder / "users.txt"
    users = users or {"dr.cds": DR}
    lines = [f"{name}:{hash_password(PASSWORD)}:{ref}" for name, ref in users.items()]
    path.write_text("# test users\n" + "\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- FHIR data


def fixture_resources(name: str) -> list[dict]:
    (path,) = (FIXTURES / "patients").glob(f"{name}-*.json")
    bundle = orjson.loads(path.read_bytes())
    return [entry["resource"] for entry in bundle["entry"]]


def prefetch_of(resources: list[dict], *, nulls: tuple[str, ...] = ()) -> dict[str, Any]:
    """Prefetch as an EHR sends it: the Patient, a searchset Bundle per search (null: no data)."""
    (patient,) = [r for r in resources if r["resourceType"] == "Patient"]
    out: dict[str, Any] = {"patient": patient}
    for key, rtype in SEARCH_TYPES.items():
        found = [r for r in resources if r["resourceType"] == rtype]
        if key in nulls:
            out[key] = None
            continue
        out[key] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "entry": [{"fullUrl": f"{rtype}/{r['id']}", "resource": r} for r in found],
        }
    return out


def hook_request(
    patient_id: str,
    prefetch: dict[str, Any] | None = None,
    *,
    user: str = DR,
    fhir_server: str | None = None,
    access_token: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": user, "patientId": patient_id},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    if fhir_server is not None:
        body["fhirServer"] = fhir_server
    if access_token is not None:
        body["fhirAuthorization"] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/*.rs",
            "subject": "ehr-client",
        }
    return body


def with_pending_proposal(
    resources: list[dict], sr_id: str = "prop-1", task_id: str = "task-1"
) -> list[dict]:
    """The resources plus the proposal and review Task the screen writes, as the server has them."""
    ruleset = default_ruleset()
    decision = decide(resources)
    assert decision.outcome == "propose"
    _, sr, task, _ = build_proposal(decision, ruleset, now=FROZEN_NOW, tool_version=__version__)
    sr, task = dict(sr, id=sr_id), dict(task, id=task_id)
    sr["requester"] = task["requester"] = {"reference": "Device/ips-screen"}
    task["focus"] = {"reference": f"ServiceRequest/{sr_id}"}
    return [*resources, sr, task]


# --------------------------------------------------------------------------- CDS Hooks rules


def check_card(card: dict[str, Any]) -> None:
    """The CDS Hooks 2.0 rules a card must meet (and this service's choices)."""
    assert set(card) <= {
        "uuid",
        "summary",
        "detail",
        "indicator",
        "source",
        "suggestions",
        "selectionBehavior",
        "overrideReasons",
        "links",
    }
    uuid.UUID(card["uuid"])
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert card["source"]["label"]
    assert card["source"]["label"].startswith(f"ips-screen {__version__} (")
    assert "systemActions" not in card
    assert isinstance(card["detail"], str) and card["detail"]
    suggestions = card["suggestions"]
    assert suggestions and card["selectionBehavior"] in ("at-most-one", "any")
    for suggestion in suggestions:
        assert suggestion["label"] and isinstance(suggestion["isRecommended"], bool)
        uuid.UUID(suggestion["uuid"])
        for action in suggestion["actions"]:
            assert action["type"] in ("create", "update", "delete") and action["description"]
            resource = action["resource"]
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    for reason in card["overrideReasons"]:
        assert set(reason) == {"system", "code", "display"} and all(reason.values())
    for link in card.get("links", []):
        assert link["label"] and link["type"] in ("absolute", "smart")
        assert link["url"].startswith("https://")


# --------------------------------------------------------------------------- a fake FHIR server


class FakeFhir:
    """Just enough FHIR for review accept/decline and the proposal writer, in memory."""

    base_url = "https://fhir.example.org/R4"

    def __init__(self, resources: list[dict] = ()) -> None:
        self.store: dict[str, dict] = {}
        self.transactions = 0
        self._ids = itertools.count(1)
        for resource in resources:
            self._put(copy.deepcopy(resource))

    def _put(self, resource: dict) -> dict:
        resource.setdefault("id", f"fake-{next(self._ids)}")
        key = f"{resource['resourceType']}/{resource['id']}"
        old = self.store.get(key)
        version = int(old["meta"]["versionId"]) + 1 if old else 1
        resource["meta"] = {"versionId": str(version), "lastUpdated": FROZEN_NOW.isoformat()}
        self.store[key] = resource
        return resource

    def read(self, rtype: str, rid: str) -> tuple[dict, str]:
        found = self.store.get(f"{rtype}/{rid}")
        if found is None:
            raise ServerError(f"HTTP 404 Not Found from GET /{rtype}/{rid}")
        return copy.deepcopy(found), found["meta"]["versionId"]

    def _matches(self, resource: dict, params: dict[str, str]) -> bool:
        for name, value in params.items():
            if name == "identifier":
                system, _, code = value.partition("|")
                ids = resource.get("identifier") or []
                if not any(i.get("system") == system and i.get("value") == code for i in ids):
                    return False
            elif name in ("focus", "patient", "subject"):
                field = {"focus": "focus", "patient": "for", "subject": "subject"}[name]
                ref = (resource.get(field) or resource.get("subject") or {}).get("reference")
                if ref != value and ref != f"Patient/{value}":
                    return False
        return True

    def search(self, rtype: str, params: Any = None) -> Iterator[dict]:
        params = dict(params or {})
        params = {k: v for k, v in params.items() if k in ("identifier", "focus", "patient")}
        for key, resource in list(self.store.items()):
            if key.startswith(f"{rtype}/") and self._matches(resource, params):
                yield copy.deepcopy(resource)

    def transaction(self, bundle: dict, *, retry: bool = False) -> dict:
        """All or nothing: conflicts are checked before anything is stored."""
        self.transactions += 1
        urls: dict[str, str] = {}
        plan: list[tuple[str, dict]] = []
        for entry in bundle["entry"]:
            request, resource = entry["request"], copy.deepcopy(entry["resource"])
            rtype = resource["resourceType"]
            if request["method"] == "PUT":
                current = self.store.get(request["url"])
                wanted = request.get("ifMatch", "").removeprefix('W/"').rstrip('"')
                if current is None or (wanted and current["meta"]["versionId"] != wanted):
                    raise ConflictError("the transaction conflicted with the server's data")
                plan.append(("200 OK", resource))
                continue
            key, _, value = (request.get("ifNoneExist") or "").partition("=")
            existing = list(self.search(rtype, {key: unquote(value)})) if key else []
            if existing:
                resource, status = existing[0], "exists"
            else:
                resource["id"], status = f"fake-{next(self._ids)}", "201 Created"
            urls[entry.get("fullUrl", "")] = f"{rtype}/{resource['id']}"
            plan.append((status, resource))
        out = []
        for status, resource in plan:
            if status == "exists":
                stored, status = resource, "200 OK"
            else:
                stored = self._put(orjson.loads(_resolve(orjson.dumps(resource).decode(), urls)))
            location = f"{stored['resourceType']}/{stored['id']}/_history/1"
            out.append({"resource": stored, "response": {"status": status, "location": location}})
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": out}

    def of_type(self, rtype: str) -> list[dict]:
        return [r for k, r in self.store.items() if k.startswith(f"{rtype}/")]

    def close(self) -> None:
        pass


def _resolve(text: str, urls: dict[str, str]) -> str:
    for urn, ref in urls.items():
        if urn.startswith("urn:"):
            text = text.replace(f'"{urn}"', f'"{ref}"')
    return text


# --------------------------------------------------------------------------- the app


@pytest.fixture
def make_client(ehr_key, tmp_path, monkeypatch):
    monkeypatch.setenv("IPS_SCREEN_STATE_DIR", str(tmp_path / "state"))

    def make(fake: FakeFhir | None = None, **extra: Any) -> tuple[TestClient, Any]:
        config = parse_config(service_config(ehr_key, users_file(tmp_path), **extra))
        backend = fake or FakeFhir()
        env = {**SECRET_ENV, "IPS_SCREEN_STATE_DIR": str(tmp_path / "state")}
        app = create_app(config, fhir_client=backend, environ=env)  # type: ignore[arg-type]
        return TestClient(app), app

    return make


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()[0]


def call(client: TestClient, key, body: dict[str, Any], path: str = SERVICE, **claims: Any):
    return client.post(path, json=body, headers=auth(key, path, **claims))


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
    assert (suggestion["label"], suggestion["isRecommended"]) == ("Refer to IPS", True)
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
    for words in (
        "Chronic pain",
        "recorded as unemployed on 2026-09-14",
        "Fit notes in the last",
        "2026-08-03: not fit for work",
        "voluntary",
        "What happens next",
    ):
        assert words in detail
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
    assert "Suggested by ips-screen" in card["detail"]
    assert "completes the proposal's review" in card["detail"]

    # A proposal whose review is no longer requested is not pending: the engine decides (open).
    decided = [dict(r, status="completed") if r.get("id") == "task-1" else r for r in resources]
    response = call(client, ehr_key, hook_request("fx-01", prefetch_of(decided)))
    assert response.json() == {"cards": []}


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


# --------------------------------------------------------------------------- feedback


def feedback_item(card: dict, outcome: str, reason: str | None = None, comment: str | None = None):
    item: dict[str, Any] = {
        "card": card["uuid"],
        "outcome": outcome,
        "outcomeTimestamp": FROZEN_NOW.isoformat(),
    }
    if outcome == "accepted":
        item["acceptedSuggestions"] = [{"id": card["suggestions"][0]["uuid"]}]
    if reason is not None:
        item["overrideReason"] = {
            "reason": {
                "system": DECLINE_REASON_SYSTEM,
                "code": reason,
                "display": DECLINE_REASONS[reason],
            },
        }
        if comment:
            item["overrideReason"]["userComment"] = comment
    return {"feedback": [item]}


def send_feedback(client: TestClient, key, body: dict) -> int:
    return client.post(FEEDBACK, json=body, headers=auth(key, FEEDBACK)).status_code


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


def test_card_memory_is_bounded():
    memory = CardMemory(max_entries=2)
    for n in range(3):
        memory.put(f"c{n}", CardState(f"p{n}", "s", None, None, None, None))
    assert len(memory) == 2 and memory.get("c0") is None and memory.get("c2") is not None


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
