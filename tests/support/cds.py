"""CDS Hooks test helpers: the EHR's signing key material and JWTs, the service's configuration
and users file, hook requests with prefetch built from the fixture patients, feedback bodies, and
the CDS Hooks 2.0 rules every card must meet (`check_card`)."""

from __future__ import annotations

import functools
import uuid
import warnings
from pathlib import Path
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import rsa
from fhir.resources.R4B import get_fhir_model_class
from jwt.algorithms import RSAAlgorithm

from ips_screen import __version__
from ips_screen.codes import DECLINE_REASON_SYSTEM
from ips_screen.proposals.build import build_proposal
from ips_screen.service.config import hash_password
from ips_screen.service.prefetch import SEARCH_TYPES
from tests.helpers import decide, default_ruleset
from tests.support.paths import FIXTURES, FROZEN_NOW
from tests.support.people import CDS_CLINICIAN, IPS_SERVICE

DECLINE_REASONS = default_ruleset().model.proposal.decline_reasons

with warnings.catch_warnings():  # starlette warns that httpx (not httpx2) is installed
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


PUBLIC = "https://cds.example.org"
ISS = "https://ehr.example.org"
KID = "ehr-rsa-1"
SERVICE = "/cds-services/ips-screen"
FEEDBACK = f"{SERVICE}/feedback"
DR = CDS_CLINICIAN
SECRET_ENV = {"IPS_SCREEN_SESSION_SECRET": "s" * 48}
PASSWORD = "correct horse battery staple"


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
        "referral": {"ips_service": IPS_SERVICE},
    }
    if users_file is not None:
        data["review_page"] = {"users_file": str(users_file)}
    data.update(extra)
    return data


@functools.cache
def password_hash() -> str:
    """PASSWORD's scrypt hash, made once: hashing is slow by design (about 0.1 s)."""
    return hash_password(PASSWORD)


def users_file(folder: Path, users: dict[str, str] | None = None) -> Path:
    path = folder / "users.txt"
    users = users or {"dr.cds": DR}
    lines = [f"{name}:{password_hash()}:{ref}" for name, ref in users.items()]
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


def call(client: TestClient, key, body: dict[str, Any], path: str = SERVICE, **claims: Any):
    return client.post(path, json=body, headers=auth(key, path, **claims))


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


def hook(service: TestClient, key, body: dict) -> dict:
    """Call the service's hook as the EHR; the answer must be 200, its JSON is returned."""
    response = service.post(SERVICE, json=body, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()
