"""The proposal for each `propose` decision, as FHIR R4 resources (plain JSON dicts).

For one patient: a ServiceRequest (intent proposal, status draft; reasonReference holds only the
types R4 allows there, other evidence goes to supportingInfo), its review Task (code approve),
a Provenance (the tool as author and assembler, the evidence as sources) and the tool's Device.
Every resource is checked by its `fhir.resources.R4B` model (`common.checked`): it is built as the
model writes it back (``model_dump(mode="json", exclude_none=True)`` gives an equal dict), so it
is not dumped again; key order is the builder's and stable.

Determinism: the same decisions, ruleset, `now`, owner and tool version give the same Bundle,
byte for byte. Business identifiers depend only on the patient, the ruleset id and the ruleset's
MAJOR version (`proposal_identifier`), so reruns and minor ruleset changes never duplicate a
proposal; fullUrls are ``urn:uuid:`` + uuid5(NAMESPACE_URL, "<Type>?identifier=<system>|<value>").

The screen's priority (early / routine) is not the proposal's ServiceRequest.priority (always
"routine": a proposal asks no one to act yet). It is carried as a coded `category` in the
project's code system (`PRIORITY_CODES`, searchable with ``ServiceRequest?category=``), in the
note and in the Task's description; the order an accepted proposal becomes carries it in
ServiceRequest.priority too, for the receiving service (`ORDER_PRIORITY`: early -> urgent).

Duplicates: Device, ServiceRequest and Task are conditional creates (``ifNoneExist`` on their
identifier). The Provenance has no identifier in R4 and no standard conditional key, so it is
posted unconditionally: the FHIR writer must write one transaction per patient
(`build_patient_transaction`), and only when that patient's proposal ServiceRequest does not
already exist (a rerun also excludes the patient as `ips-referral-open`). `build_transaction`
(all patients in one Bundle) is for export and review, or for a first write to an empty server.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ips_screen.codes import IPS_SYSTEM, PROPOSAL_ID_SYSTEM, RULESET_EXTENSION, TASK_CODE_SYSTEM
from ips_screen.engine.decision import Decision
from ips_screen.presentation.labels import short_name
from ips_screen.proposals.common import (
    PRIORITY_CODES,
    TOOL_NAME,
    Entry,
    agent_type,
    checked,
    data_operation,
    device_entry,
    device_reference,
    device_resource,
    fhir_datetime,
    full_url,
    if_none_exist,
    place_evidence,
    transaction,
)
from ips_screen.proposals.text import clinician_note, patient_explanation, task_description
from ips_screen.ruleset.loader import CompiledRuleset

APPROVE = {
    "system": TASK_CODE_SYSTEM,
    "code": "approve",
    "display": "Activate/approve the focal resource",
}


def proposal_identifier(ruleset: CompiledRuleset, patient_id: str) -> tuple[str, str]:
    """(system, value) of a patient's proposal: patient, ruleset id and MAJOR version only.

    `patient_id` is the Patient's id; a "Patient/<id>" reference is accepted too.
    """
    pid = patient_id.removeprefix("Patient/")
    return PROPOSAL_ID_SYSTEM, f"{ruleset.id}-v{ruleset.model.major_version}-{pid}"


# --- the proposal ------------------------------------------------------------------------------


def _check(decision: Decision, ruleset: CompiledRuleset) -> None:
    if decision.outcome != "propose":
        raise ValueError(f"{decision.patient}: outcome {decision.outcome}, not propose")
    tag = f"{ruleset.id}@{ruleset.version}"
    if decision.ruleset != tag:
        raise ValueError(f"{decision.patient}: decided by {decision.ruleset}, not {tag}")


def _request_code(ruleset: CompiledRuleset) -> dict:
    rows = ruleset.codelists[ruleset.model.proposal.request_codelist].rows
    coding = [{"system": r.system, "code": r.code, "display": r.display} for r in rows]
    text = next((r.display for r in rows if r.system == IPS_SYSTEM), rows[0].display)
    return {"coding": coding, "text": text}


def _refs(refs: Iterable[str]) -> list[dict]:
    return [{"reference": ref} for ref in refs]


def proposal_entries(
    decision: Decision,
    ruleset: CompiledRuleset,
    *,
    now: datetime,
    owner: str | None = None,
    tool_version: str,
) -> list[Entry]:
    """ServiceRequest, Task and Provenance entries for one proposed patient (no Device)."""
    _check(decision, ruleset)
    when = fhir_datetime(now)
    patient_id = decision.patient.removeprefix("Patient/")
    system, value = proposal_identifier(ruleset, patient_id)
    sr_url = full_url("ServiceRequest", system, value)
    task_url = full_url("Task", system, f"{value}-review")
    device = device_reference(tool_version)
    subject = {"reference": decision.patient}
    priority = decision.priority or "routine"
    links = decision.links
    short = short_name(ruleset)

    request: dict = {
        "resourceType": "ServiceRequest",
        "extension": [{"url": RULESET_EXTENSION, "valueString": decision.ruleset}],
        "identifier": [{"system": system, "value": value}],
        "status": "draft",
        "intent": "proposal",
        "category": [
            {"coding": [PRIORITY_CODES[priority]], "text": f"{priority} offer of {short}"}
        ],
        "priority": "routine",
        "code": _request_code(ruleset),
        "subject": subject,
        "authoredOn": when,
        "requester": device,
        "reasonReference": _refs(links.reasons),
        "supportingInfo": _refs(links.supporting),
        "note": [
            {
                "authorString": f"{TOOL_NAME} {tool_version}",
                "time": when,
                "text": clinician_note(decision, ruleset),
            }
        ],
        "patientInstruction": patient_explanation(ruleset),
    }
    task: dict = {
        "resourceType": "Task",
        "identifier": [{"system": system, "value": f"{value}-review"}],
        "status": "requested",
        "intent": "proposal",
        "priority": "routine",
        "code": {
            "coding": [APPROVE],
            "text": f"Review the {short} proposal: offer it, then accept or decline",
        },
        "description": task_description(decision, ruleset),
        "focus": {"reference": sr_url},
        "for": subject,
        "authoredOn": when,
        "lastModified": when,
        "requester": device,
    }
    chosen_owner = owner or links.owner
    if chosen_owner:
        task["owner"] = {"reference": chosen_owner}
    evidence = dict.fromkeys([*links.reasons, *links.supporting])
    provenance = {
        "resourceType": "Provenance",
        "target": [{"reference": sr_url}, {"reference": task_url}],
        "recorded": when,
        "activity": data_operation("CREATE"),
        "agent": [
            {"type": agent_type("author"), "who": device},
            {"type": agent_type("assembler"), "who": device},
        ],
        "entity": [{"role": "source", "what": {"reference": ref}} for ref in evidence],
    }
    for resource in (request, provenance):  # FHIR forbids empty arrays
        for key in [k for k, v in resource.items() if v == []]:
            del resource[key]
    request = place_evidence(request)  # decisions cached by an older version may list Procedures
    return [
        Entry(patient_id, sr_url, checked(request), if_none_exist(system, value)),
        Entry(patient_id, task_url, checked(task), if_none_exist(system, f"{value}-review")),
        Entry(patient_id, full_url("Provenance", system, value), checked(provenance)),
    ]


def build_proposal(
    decision: Decision,
    ruleset: CompiledRuleset,
    *,
    now: datetime,
    owner: str | None = None,
    tool_version: str,
) -> list[dict]:
    """[Device, ServiceRequest, Task, Provenance] for one proposed patient, id-less.

    References between them are the urn:uuid fullUrls of `build_patient_transaction`.
    """
    entries = proposal_entries(decision, ruleset, now=now, owner=owner, tool_version=tool_version)
    return [device_resource(tool_version), *(e.resource for e in entries)]


def build_patient_transaction(
    decision: Decision,
    ruleset: CompiledRuleset,
    *,
    now: datetime,
    owner: str | None = None,
    tool_version: str,
) -> dict:
    """One patient's transaction Bundle (Device + proposal): what the FHIR writer posts."""
    entries = proposal_entries(decision, ruleset, now=now, owner=owner, tool_version=tool_version)
    return transaction([device_entry(tool_version), *entries])


def build_transaction(
    decisions: Iterable[Decision],
    ruleset: CompiledRuleset,
    *,
    now: datetime,
    owner: str | None = None,
    tool_version: str,
) -> dict:
    """One transaction Bundle for every `propose` decision (others are skipped).

    No proposals gives a Bundle with no entries. See the module docstring on the Provenance.
    """
    entries: list[Entry] = []
    for decision in decisions:
        if decision.outcome == "propose":
            entries.extend(
                proposal_entries(decision, ruleset, now=now, owner=owner, tool_version=tool_version)
            )
    if entries:
        entries.append(device_entry(tool_version))
    return transaction(entries)
