"""Pure builders for a clinician's decision on a proposal (the FHIR I/O lives elsewhere).

Accept (only with the patient's agreement): the agreement as an Observation (agreement.py), a
ServiceRequest intent order (basedOn the proposal; performer the practice's IPS service,
requester the clinician, priority "urgent" for an early offer and "routine" otherwise
(`ORDER_PRIORITY`), supportingInfo the evidence and the agreement), a CarePlan (its title and
description from the ruleset's `texts:`) addressing the Conditions of `proposal.addresses`,
with the order as its activity and the linked records (e.g. fit notes) as supporting
information, the review Task completed, the proposal completed, and a Provenance naming the
clinician (author) and the tool (assembler). Decline: the Task rejected with a coded
statusReason, the proposal revoked (which suppresses new proposals for 12 months, 3 for
`not-now`), and a Provenance. The order copies the proposal's evidence, with reasonReference
kept to the types R4 allows there (`place_evidence`). The new resources refer to each other and
to the tool's Device by urn:uuid fullUrls: write them with `review_transaction`, which assigns
exactly those fullUrls. Both builders refuse (ValueError) a Task and proposal that are not one
review of this tool's proposal for one patient (`review_subject`).

The project's CodeSystems (decline reasons, IPS code) are in codesystems.py, re-exported here.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from datetime import datetime
from uuid import NAMESPACE_URL, uuid5

from ips_screen.codes import DECLINE_REASON_SYSTEM, PROPOSAL_ID_SYSTEM
from ips_screen.facts.extract import reference_to
from ips_screen.proposals.agreement import agreement_observation, agreement_url
from ips_screen.proposals.codesystems import decline_reason_codesystem, ips_codesystem
from ips_screen.proposals.common import (
    ORDER_PRIORITY,
    agent_type,
    data_operation,
    device_entry,
    device_reference,
    fhir_datetime,
    full_url,
    if_none_exist,
    place_evidence,
    screen_priority,
    validated,
)

__all__ = [
    "CREATED",
    "IPS_SERVICE",
    "accept_resources",
    "decline_reason_codesystem",
    "decline_resources",
    "ips_codesystem",
    "review_subject",
    "review_transaction",
]

DECIDED = frozenset({"completed", "rejected", "cancelled", "failed", "entered-in-error"})
_BY = re.compile(r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$")
IPS_SERVICE = re.compile(r"^(HealthcareService|Organization)/[A-Za-z0-9\-.]{1,64}$")
CREATED = ("agreement", "order", "careplan")  # the new resources of an accept, in write order


def review_subject(proposal_sr: dict, task: dict) -> str:
    """The "Patient/<id>" a review is about, or ValueError when the pair is not one review.

    The proposal must be this tool's (an identifier in PROPOSAL_ID_SYSTEM) and about a Patient,
    and the review Task must be `for` that same Patient: a Task for one patient focused on
    another's proposal is refused, so a decision never lands on the wrong person's record.
    Every decision (the CLI, the review page, CDS Hooks feedback) passes through this check.
    """
    proposal_ref = f"ServiceRequest/{proposal_sr.get('id')}"
    ids = proposal_sr.get("identifier") or ()
    if not any(isinstance(i, dict) and i.get("system") == PROPOSAL_ID_SYSTEM for i in ids):
        raise ValueError(f"{proposal_ref} has no {PROPOSAL_ID_SYSTEM} identifier")
    subject = reference_to(proposal_sr.get("subject"))
    if subject is None or not subject.startswith("Patient/"):
        raise ValueError(f"{proposal_ref} is not about a Patient")
    if reference_to(task.get("for")) != subject:
        raise ValueError(f"Task/{task.get('id')} is not for the Patient of {proposal_ref}")
    return subject


def _checked(proposal_sr: dict, task: dict, by: str) -> tuple[str, str, str]:
    """(proposal reference, task reference, proposal identifier value), or ValueError."""
    if not _BY.match(by):
        raise ValueError(f"by must be Practitioner/<id> or PractitionerRole/<id>, not {by!r}")
    if proposal_sr.get("resourceType") != "ServiceRequest" or not proposal_sr.get("id"):
        raise ValueError("proposal_sr must be a ServiceRequest read from the server (with an id)")
    if proposal_sr.get("intent") != "proposal":
        raise ValueError(f"ServiceRequest/{proposal_sr['id']} is not a proposal")
    if task.get("resourceType") != "Task" or not task.get("id"):
        raise ValueError("task must be a Task read from the server (with an id)")
    proposal_ref = f"ServiceRequest/{proposal_sr['id']}"
    if reference_to(task.get("focus")) != proposal_ref:
        raise ValueError(f"Task/{task['id']} is not the review of {proposal_ref}")
    review_subject(proposal_sr, task)
    if task.get("status") in DECIDED:
        raise ValueError(f"Task/{task['id']} is already {task['status']}")
    value = next(
        (
            i.get("value")
            for i in proposal_sr.get("identifier") or ()
            if i.get("system") == PROPOSAL_ID_SYSTEM
        ),
        None,
    )
    if not value:
        raise ValueError(f"{proposal_ref} has no {PROPOSAL_ID_SYSTEM} identifier value")
    return proposal_ref, f"Task/{task['id']}", value


def _agents(by: str, tool_version: str) -> list[dict]:
    return [
        {"type": agent_type("author"), "who": {"reference": by}},
        {"type": agent_type("assembler"), "who": device_reference(tool_version)},
    ]


def _updated(resource: dict, **changes: object) -> dict:
    out = copy.deepcopy(resource)
    out.update(changes)
    return validated(out)


def accept_resources(
    proposal_sr: dict,
    task: dict,
    *,
    by: str,
    now: datetime,
    tool_version: str,
    pain_conditions: list[str],
    fit_notes: list[str],
    ips_service: str,
    patient_agreed: bool,
    care_plan: tuple[str, str] = ("Care plan", ""),
    agreement_text: str = "",
) -> dict:
    """{"agreement", "order", "careplan", "task", "proposal", "provenance"} for an accepted
    proposal.

    `patient_agreed` must be True (the clinician confirmed the patient agreed to be referred):
    ValueError otherwise. `ips_service` is the practice's IPS service, HealthcareService/<id> or
    Organization/<id>: the order's performer. `care_plan` is the CarePlan's (title,
    description), from the ruleset's `texts:` (`ips_screen.presentation.labels.care_plan_words`);
    an empty description is left out. `agreement_text` is the agreement Observation's code
    text (`ips_screen.presentation.decision_words.agreement_record`)."""
    if patient_agreed is not True:
        raise ValueError("accepting needs the patient's agreement to be referred")
    if not IPS_SERVICE.match(ips_service):
        raise ValueError(
            f"ips_service must be HealthcareService/<id> or Organization/<id>, not {ips_service!r}"
        )
    proposal_ref, task_ref, value = _checked(proposal_sr, task, by)
    when = fhir_datetime(now)
    bad = [ref for ref in pain_conditions if not ref.startswith("Condition/")]
    if bad:
        raise ValueError(f"pain_conditions must be Condition references: {bad}")
    order_url = full_url("ServiceRequest", PROPOSAL_ID_SYSTEM, f"{value}-order")
    careplan_url = full_url("CarePlan", PROPOSAL_ID_SYSTEM, f"{value}-careplan")
    agreement = agreement_observation(
        value=value,
        proposal_ref=proposal_ref,
        subject=proposal_sr["subject"],
        by=by,
        when=when,
        text=agreement_text,
    )
    order = {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": PROPOSAL_ID_SYSTEM, "value": f"{value}-order"}],
        "basedOn": [{"reference": proposal_ref}],
        "status": "active",
        "intent": "order",
        "priority": ORDER_PRIORITY[screen_priority(proposal_sr) or "routine"],
        "authoredOn": when,
        "requester": {"reference": by},
        "performer": [{"reference": ips_service}],
    }
    for key in (
        "extension",
        "category",
        "code",
        "subject",
        "reasonReference",
        "supportingInfo",
        "patientInstruction",
    ):
        if proposal_sr.get(key):
            order[key] = copy.deepcopy(proposal_sr[key])
    order = place_evidence(order)  # a proposal written before 1.1 may give a Procedure as reason
    order["supportingInfo"] = [
        *order.get("supportingInfo", []),
        {"reference": agreement_url(value), "type": "Observation"},
    ]
    careplan: dict = {
        "resourceType": "CarePlan",
        "identifier": [{"system": PROPOSAL_ID_SYSTEM, "value": f"{value}-careplan"}],
        "status": "active",
        "intent": "plan",
        "category": [{"text": care_plan[0].lower()}],
        "title": care_plan[0],
        "description": care_plan[1],
        "subject": copy.deepcopy(proposal_sr["subject"]),
        "created": when,
        "author": {"reference": by},
        "addresses": [{"reference": ref} for ref in pain_conditions],
        "supportingInfo": [{"reference": ref} for ref in fit_notes],
        "activity": [{"reference": {"reference": order_url}}],
    }
    for key in ("description", "addresses", "supportingInfo"):
        if not careplan[key]:
            del careplan[key]
    output = [
        *task.get("output", []),
        {"type": {"text": "referral order"}, "valueReference": {"reference": order_url}},
    ]
    provenance = {
        "resourceType": "Provenance",
        "target": [
            {"reference": ref} for ref in (agreement_url(value), order_url, careplan_url, task_ref)
        ],
        "recorded": when,
        "activity": data_operation("CREATE"),
        "agent": _agents(by, tool_version),
        "entity": [{"role": "source", "what": {"reference": proposal_ref}}],
    }
    return {
        "agreement": agreement,
        "order": validated(order),
        "careplan": validated(careplan),
        "task": _updated(task, status="completed", lastModified=when, output=output),
        "proposal": _updated(proposal_sr, status="completed"),
        "provenance": validated(provenance),
    }


def decline_resources(
    proposal_sr: dict,
    task: dict,
    *,
    by: str,
    reason_code: str,
    reasons: Mapping[str, str],
    note: str | None = None,
    now: datetime,
    tool_version: str,
) -> dict:
    """{"task", "proposal", "provenance"} for a declined proposal.

    `reasons` is the ruleset's `proposal.decline_reasons` (code -> display). ValueError for an
    unknown `reason_code` (naming the allowed codes), or "other" with no note.
    """
    if reason_code not in reasons:
        raise ValueError(
            f"unknown decline reason {reason_code!r}; use one of: {', '.join(reasons)}"
        )
    if reason_code == "other" and not (note and note.strip()):
        raise ValueError("decline reason 'other' needs a note")
    proposal_ref, task_ref, _ = _checked(proposal_sr, task, by)
    when = fhir_datetime(now)
    display = reasons[reason_code]
    changes: dict = {
        "status": "rejected",
        "statusReason": {
            "coding": [{"system": DECLINE_REASON_SYSTEM, "code": reason_code, "display": display}],
            "text": display,
        },
        "lastModified": when,
    }
    if note and note.strip():
        entry = {"authorReference": {"reference": by}, "time": when, "text": note.strip()}
        changes["note"] = [*task.get("note", []), entry]
    provenance = {
        "resourceType": "Provenance",
        "target": [{"reference": task_ref}, {"reference": proposal_ref}],
        "recorded": when,
        "activity": data_operation("UPDATE"),
        "agent": _agents(by, tool_version),
    }
    return {
        "task": _updated(task, **changes),
        "proposal": _updated(proposal_sr, status="revoked"),
        "provenance": validated(provenance),
    }


def review_transaction(resources: dict, *, tool_version: str) -> dict:
    """The transaction Bundle that writes `accept_resources` or `decline_resources` output.

    New resources are conditional creates on their identifier, with the fullUrls the other
    resources refer to; the Task and the proposal are updates (PUT), with ``ifMatch`` when the
    resource read carried meta.versionId; the Device is included so its fullUrl resolves.
    """
    device = device_entry(tool_version).to_dict()
    entries = [device]
    for key in CREATED:
        if key in resources:
            resource = resources[key]
            system, value = resource["identifier"][0]["system"], resource["identifier"][0]["value"]
            entries.append(
                {
                    "fullUrl": full_url(resource["resourceType"], system, value),
                    "resource": resource,
                    "request": {
                        "method": "POST",
                        "url": resource["resourceType"],
                        "ifNoneExist": if_none_exist(system, value),
                    },
                }
            )
    for key in ("task", "proposal"):
        resource = resources[key]
        url = f"{resource['resourceType']}/{resource['id']}"
        request = {"method": "PUT", "url": url}
        version = (resource.get("meta") or {}).get("versionId")
        if version:
            request["ifMatch"] = f'W/"{version}"'
        entries.append({"resource": resource, "request": request})
    provenance = resources["provenance"]
    name = f"Provenance?target={resources['task']['id']}&recorded={provenance['recorded']}"
    entries.append(
        {
            "fullUrl": f"urn:uuid:{uuid5(NAMESPACE_URL, name)}",
            "resource": provenance,
            "request": {"method": "POST", "url": "Provenance"},
        }
    )
    return validated({"resourceType": "Bundle", "type": "transaction", "entry": entries})
