"""Small FHIR pieces shared by build.py and review.py: validation, datetimes, deterministic
fullUrls, the tool's Device and transaction Bundles.

Every resource is validated by its `fhir.resources.R4B` model and dumped with
``model_dump(mode="json", exclude_none=True)``, so its key order is the model's and stable. (The
R4B Bundle model does not check the resources inside it, so each is validated on its own.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote
from uuid import NAMESPACE_URL, uuid5

from fhir.resources.R4B import get_fhir_model_class

from ips_screen.codes import DEVICE_ID_SYSTEM, IPS_SYSTEM, PROVENANCE_AGENT_SYSTEM
from ips_screen.engine.decision import REASON_REFERENCE_TYPES, reference_type

TOOL_NAME = "ips-screen"
DATA_OPERATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PRIORITY_CODES: dict[str, dict[str, str]] = {
    "early": {
        "system": IPS_SYSTEM,
        "code": "priority-early",
        "display": "Screen priority: early",
    },
    "routine": {
        "system": IPS_SYSTEM,
        "code": "priority-routine",
        "display": "Screen priority: routine",
    },
}

# ServiceRequest.priority of the order an accepted proposal becomes (request-priority codes), so
# the receiving IPS service reads the screen's priority in the standard element: "early" (offer
# promptly: IPS works best early) is "urgent" ("actioned promptly, higher priority than
# routine"); never "asap" or "stat", which mean clinical urgency. The proposal itself keeps
# "routine" (a proposal is not a request to anyone yet); its category carries PRIORITY_CODES.
ORDER_PRIORITY: dict[str, str] = {"early": "urgent", "routine": "routine"}


def screen_priority(request: dict) -> str | None:
    """The screen's priority ("early", "routine") a ServiceRequest's category codes, if any."""
    for concept in request.get("category") or ():
        for coding in concept.get("coding") or () if isinstance(concept, dict) else ():
            for name, code in PRIORITY_CODES.items():
                if (coding.get("system"), coding.get("code")) == (code["system"], code["code"]):
                    return name
    return None


def place_evidence(request: dict) -> dict:
    """The ServiceRequest with every reasonReference of a type R4 does not allow there (e.g. a
    Procedure, as versions before 1.1 wrote them) moved to supportingInfo; empty lists dropped."""
    reasons = [r for r in request.get("reasonReference") or () if isinstance(r, dict)]
    supporting = [r for r in request.get("supportingInfo") or () if isinstance(r, dict)]
    moved = [r for r in reasons if _kind(r) not in (None, *REASON_REFERENCE_TYPES)]
    out = {**request}
    out["reasonReference"] = [r for r in reasons if r not in moved]
    out["supportingInfo"] = [*supporting, *(r for r in moved if r not in supporting)]
    for key in ("reasonReference", "supportingInfo"):
        if not out[key]:
            del out[key]
    return out


def _kind(reference: dict) -> str | None:
    """The resource type a Reference names (its `type`, else its text), or None."""
    kind, text = reference.get("type"), reference.get("reference")
    if isinstance(kind, str) and kind:
        return kind
    return reference_type(text) if isinstance(text, str) else None


def validated(resource: dict) -> dict:
    """The resource checked by its R4B model, as plain JSON (None values dropped)."""
    model = get_fhir_model_class(resource["resourceType"])
    return model.model_validate(resource).model_dump(mode="json", exclude_none=True)


def checked(resource: dict) -> dict:
    """The resource itself, checked by its R4B model: for a resource built as the model writes it
    back (no None values, times from `fhir_datetime`), where `validated` would return an equal
    dict (tests/unit/test_proposal_checked.py holds them equal) at four times the cost."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resource


def fhir_datetime(now: datetime) -> str:
    """A timezone-aware datetime as a FHIR dateTime/instant, to the second, as the R4B models
    write it (UTC as Z)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    text = now.replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def agent_type(code: str) -> dict:
    """Provenance.agent.type for "author", "assembler", ..."""
    return {"coding": [{"system": PROVENANCE_AGENT_SYSTEM, "code": code, "display": code.title()}]}


def data_operation(code: str) -> dict:
    """Provenance.activity: "CREATE" or "UPDATE"."""
    return {"coding": [{"system": DATA_OPERATION_SYSTEM, "code": code, "display": code.lower()}]}


def if_none_exist(system: str, value: str) -> str:
    """The search for a conditional create; the value is percent-encoded (e.g. "+" in a version)."""
    return f"identifier={system}|{quote(value, safe='-._~')}"


def full_url(resource_type: str, system: str, value: str) -> str:
    """The deterministic fullUrl of a resource with this business identifier."""
    name = f"{resource_type}?{if_none_exist(system, value)}"
    return f"urn:uuid:{uuid5(NAMESPACE_URL, name)}"


def device_identifier(tool_version: str) -> tuple[str, str]:
    """The conditional-create key of the tool's Device: one Device per tool version."""
    return DEVICE_ID_SYSTEM, f"{TOOL_NAME}-{tool_version}"


def device_full_url(tool_version: str) -> str:
    return full_url("Device", *device_identifier(tool_version))


def device_reference(tool_version: str) -> dict:
    """A reference to the tool's Device by the fullUrl the transactions give it."""
    return {"reference": device_full_url(tool_version), "display": f"{TOOL_NAME} {tool_version}"}


def device_resource(tool_version: str) -> dict:
    """The tool as a Device: identifier "ips-screen" plus a per-version identifier."""
    _, versioned = device_identifier(tool_version)
    return validated(
        {
            "resourceType": "Device",
            "identifier": [
                {"system": DEVICE_ID_SYSTEM, "value": TOOL_NAME},
                {"system": DEVICE_ID_SYSTEM, "value": versioned},
            ],
            "status": "active",
            "deviceName": [{"name": TOOL_NAME, "type": "manufacturer-name"}],
            "type": {"text": "software: ips-screen"},
            "version": [{"value": tool_version}],
        }
    )


@dataclass(frozen=True)
class Entry:
    """A transaction entry: a conditional POST when `if_none_exist` is set."""

    patient: str  # patient id, "" for the Device (sorts first)
    full_url: str
    resource: dict
    if_none_exist: str | None = None

    def to_dict(self) -> dict:
        request = {"method": "POST", "url": self.resource["resourceType"]}
        if self.if_none_exist:
            request["ifNoneExist"] = self.if_none_exist
        return {"fullUrl": self.full_url, "resource": self.resource, "request": request}


def device_entry(tool_version: str) -> Entry:
    return Entry(
        "",
        device_full_url(tool_version),
        device_resource(tool_version),
        if_none_exist(*device_identifier(tool_version)),
    )


# the resources of proposals.json
PROPOSAL_TYPES = ("ServiceRequest", "Task", "Provenance", "Device")


def import_models() -> None:
    """Import the fhir.resources models a proposal is validated with (`checked`, `validated`),
    so that their first use does not (their schemas take about 0.15 s to build)."""
    for name in PROPOSAL_TYPES:
        get_fhir_model_class(name)


def transaction(entries: Iterable[Entry]) -> dict:
    """A transaction Bundle of the entries (sorted by patient, then resource type), validated."""
    ordered = sorted(entries, key=lambda e: (e.patient, e.resource["resourceType"], e.full_url))
    urls = [e.full_url for e in ordered]
    if len(set(urls)) != len(urls):
        raise ValueError("two entries share a fullUrl (the same patient twice?)")
    bundle = {"resourceType": "Bundle", "type": "transaction"}
    if ordered:
        bundle["entry"] = [e.to_dict() for e in ordered]
    return validated(bundle)
