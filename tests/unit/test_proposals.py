"""Proposals: the FHIR resources written for each `propose`, their text, and accept / decline.

Golden file: tests/golden/proposals-basic.json; rewrite it with UPDATE_GOLDEN=1 after a deliberate
change to what is written back (and read the diff).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle

from ips_screen.codes import (
    DECLINE_REASON_SYSTEM,
    DEVICE_ID_SYSTEM,
    PROPOSAL_ID_SYSTEM,
    RULESET_EXTENSION,
    TASK_CODE_SYSTEM,
)
from ips_screen.dates import LONDON
from ips_screen.engine import Decision, evaluate
from ips_screen.facts.extract import CodeIndex, extract_patient, extract_record
from ips_screen.facts.model import PatientFacts
from ips_screen.presentation.labels import care_plan_words
from ips_screen.proposals.build import (
    build_patient_transaction,
    build_proposal,
    build_transaction,
    proposal_entries,
    proposal_identifier,
)
from ips_screen.proposals.codesystems import CODESYSTEM_FILES, FHIR_DIR, write_codesystems
from ips_screen.proposals.common import validated
from ips_screen.proposals.review import (
    accept_resources,
    decline_reason_codesystem,
    decline_resources,
    ips_codesystem,
    review_subject,
    review_transaction,
)
from ips_screen.proposals.text import (
    clinician_note,
    flag_text,
    patient_explanation,
    reason_text,
)
from ips_screen.ruleset.loader import CompiledRuleset, load_ruleset

DECLINE_REASONS = load_ruleset().model.proposal.decline_reasons

AS_OF = date(2026, 11, 26)
NOW = datetime(2026, 11, 26, 9, 30, tzinfo=LONDON)
VERSION = "0.1.0"
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "proposals-basic.json"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
NOT_FIT = ("751481000000104", "eMED3 (2010) new statement issued, not fit for work")
BIRTH_A, BIRTH_B = "1980-03-04", "1975-07-19"


@pytest.fixture(scope="module")
def rs() -> CompiledRuleset:
    return load_ruleset()


def with_version(rs: CompiledRuleset, version: str, rid: str | None = None) -> CompiledRuleset:
    update = {"version": version} | ({"id": rid} if rid else {})
    return dataclasses.replace(rs, model=rs.model.model_copy(update=update))


# --- inline FHIR --------------------------------------------------------------------------------


def condition(rid: str, pid: str, code: str, display: str, onset: str) -> dict:
    return {
        "resourceType": "Condition",
        "id": rid,
        "subject": {"reference": f"Patient/{pid}"},
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": SCT, "code": code, "display": display}]},
        "onsetDateTime": onset,
    }


def fit_note(rid: str, pid: str, when: str) -> dict:
    code, display = NOT_FIT
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": SCT, "code": code, "display": display}]},
        "effectiveDateTime": when,
    }


def unemployed(rid: str, pid: str, when: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": LOINC, "code": "67875-5"}]},
        "valueCodeableConcept": {
            "coding": [{"system": LOINC, "code": "LA17956-6", "display": "Unemployed"}]
        },
        "effectiveDateTime": when,
    }


def decide(rs: CompiledRuleset, patient: dict, resources: list[dict]) -> Decision:
    info = extract_patient(patient)
    index = CodeIndex(rs.codelists.values())
    records = tuple(r for r in (extract_record(x, index) for x in resources) if r is not None)
    facts = PatientFacts(
        id=info.id,
        birth_date=info.birth_date,
        general_practitioners=info.general_practitioners,
        records=records,
    )
    return evaluate(rs, facts, AS_OF)


def decision_a(rs: CompiledRuleset) -> Decision:
    """Chronic pain, no employment status, two "not fit" fit notes: proposed early, flagged."""
    patient = {
        "resourceType": "Patient",
        "id": "pa",
        "birthDate": BIRTH_A,
        "generalPractitioner": [{"reference": "Practitioner/gp1"}],
    }
    return decide(
        rs,
        patient,
        [
            condition("c1", "pa", "82423001", "Chronic pain", "2025-01-10"),
            fit_note("f1", "pa", "2026-03-01"),
            fit_note("f2", "pa", "2026-06-01"),
        ],
    )


def decision_b(rs: CompiledRuleset) -> Decision:
    """Knee osteoarthritis for years, unemployed since 2023 (stale): proposed routine, flagged."""
    patient = {"resourceType": "Patient", "id": "pb", "birthDate": BIRTH_B}
    return decide(
        rs,
        patient,
        [
            condition("c2", "pb", "239873007", "Osteoarthritis of knee", "2022-05-01"),
            unemployed("e1", "pb", "2023-01-15"),
            fit_note("f3", "pb", "2026-09-10"),
        ],
    )


def decision_c(rs: CompiledRuleset) -> Decision:
    """No chronic pain: not proposed."""
    patient = {"resourceType": "Patient", "id": "pc", "birthDate": "1990-01-01"}
    return decide(rs, patient, [unemployed("e2", "pc", "2026-05-01")])


@pytest.fixture(scope="module")
def decisions(rs: CompiledRuleset) -> list[Decision]:
    found = [decision_a(rs), decision_b(rs), decision_c(rs)]
    assert [d.outcome for d in found] == ["propose", "propose", "not-eligible"]
    return found


@pytest.fixture(scope="module")
def bundle(rs: CompiledRuleset, decisions: list[Decision]) -> dict:
    return build_transaction(decisions, rs, now=NOW, tool_version=VERSION)


def entries_of(bundle: dict, resource_type: str) -> list[dict]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def for_patient(bundle: dict, resource_type: str, pid: str) -> dict:
    field = "for" if resource_type == "Task" else "subject"
    (entry,) = [
        e
        for e in entries_of(bundle, resource_type)
        if e["resource"][field]["reference"] == f"Patient/{pid}"
    ]
    return entry


# --- the transaction ---------------------------------------------------------------------------


def test_bundle_and_every_resource_validate_with_r4b(bundle: dict) -> None:
    Bundle.model_validate(bundle)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert "id" not in resource
        assert entry["fullUrl"].startswith("urn:uuid:")
    types = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert types == ["Device"] + ["Provenance", "ServiceRequest", "Task"] * 2
    assert bundle["type"] == "transaction"


@pytest.mark.parametrize(
    "now",
    [
        NOW,  # London in winter: +00:00, which the models write Z
        datetime(2026, 7, 1, 9, 30, tzinfo=LONDON),  # +01:00
        datetime(2026, 7, 1, 9, 30, tzinfo=UTC),
        datetime(2026, 7, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    ],
)
@pytest.mark.parametrize("owner", [None, "Practitioner/gp9"])
def test_proposal_resources_are_built_as_their_model_writes_them(
    rs: CompiledRuleset, decisions: list[Decision], now: datetime, owner: str | None
) -> None:
    """The proposal's resources are only checked by their models, not dumped back
    (`common.checked`): that is right only while the dump would give the same JSON."""
    for decision in decisions[:2]:
        entries = proposal_entries(decision, rs, now=now, owner=owner, tool_version=VERSION)
        assert len(entries) == 3
        for entry in entries:
            assert validated(entry.resource) == entry.resource


def test_same_decisions_give_byte_identical_bundles(rs: CompiledRuleset) -> None:
    first = build_transaction(
        [decision_a(rs), decision_b(rs), decision_c(rs)], rs, now=NOW, tool_version=VERSION
    )
    again = build_transaction(
        [decision_c(rs), decision_b(rs), decision_a(rs)], rs, now=NOW, tool_version=VERSION
    )
    dump = orjson.dumps(first, option=orjson.OPT_SORT_KEYS)
    assert dump == orjson.dumps(again, option=orjson.OPT_SORT_KEYS)


def test_conditional_creates_on_identifiers(bundle: dict) -> None:
    for entry in bundle["entry"]:
        resource, request = entry["resource"], entry["request"]
        assert request["method"] == "POST"
        assert request["url"] == resource["resourceType"]
        if resource["resourceType"] == "Provenance":
            assert "ifNoneExist" not in request
            continue
        versioned = resource["identifier"][-1]
        assert request["ifNoneExist"] == f"identifier={versioned['system']}|{versioned['value']}"
    (device,) = entries_of(bundle, "Device")
    assert device["resource"]["identifier"][0] == {
        "system": DEVICE_ID_SYSTEM,
        "value": "ips-screen",
    }
    assert device["resource"]["version"] == [{"value": VERSION}]


def test_identifiers_depend_on_patient_ruleset_id_and_major_version(rs: CompiledRuleset) -> None:
    base = proposal_identifier(rs, "pa")
    assert base == (PROPOSAL_ID_SYSTEM, "ips-chronic-pain-v1-pa")
    assert proposal_identifier(rs, "Patient/pa") == base
    assert proposal_identifier(with_version(rs, "1.2.0"), "pa") == base
    assert proposal_identifier(with_version(rs, "2.0.0"), "pa") != base
    assert proposal_identifier(with_version(rs, "1.0.0", "other-screen"), "pa") != base
    assert proposal_identifier(rs, "pb") != base


def test_minor_version_keeps_identifiers_and_full_urls(rs: CompiledRuleset) -> None:
    def keys(ruleset: CompiledRuleset) -> list[tuple]:
        built = build_patient_transaction(
            decision_a(ruleset), ruleset, now=NOW, tool_version=VERSION
        )
        return [
            (e["fullUrl"], e["request"].get("ifNoneExist"), e["resource"].get("identifier"))
            for e in built["entry"]
        ]

    assert keys(with_version(rs, "1.2.0")) == keys(rs)
    assert keys(with_version(rs, "2.0.0")) != keys(rs)


def test_service_request(bundle: dict, rs: CompiledRuleset) -> None:
    sr = for_patient(bundle, "ServiceRequest", "pa")["resource"]
    assert (sr["status"], sr["intent"], sr["priority"]) == ("draft", "proposal", "routine")
    assert sr["identifier"] == [{"system": PROPOSAL_ID_SYSTEM, "value": "ips-chronic-pain-v1-pa"}]
    assert {(c["system"], c["code"]) for c in sr["code"]["coding"]} == {
        (SCT, "18781004"),
        ("https://ips-screen.org/fhir/CodeSystem/ips-screen", "ips-referral"),
    }
    assert sr["code"]["text"] == "Referral to Individual Placement and Support (IPS)"
    assert sr["category"][0]["coding"][0]["code"] == "priority-early"
    assert sr["extension"] == [{"url": RULESET_EXTENSION, "valueString": "ips-chronic-pain@1.1.0"}]
    assert sr["authoredOn"] == "2026-11-26T09:30:00Z"
    assert [r["reference"] for r in sr["reasonReference"]] == [
        "Condition/c1",
        "Observation/f1",
        "Observation/f2",
    ]
    assert sr["patientInstruction"] == patient_explanation(rs)
    assert sr["note"][0]["text"] == clinician_note(decision_a(rs), rs)
    (device,) = entries_of(bundle, "Device")
    assert sr["requester"]["reference"] == device["fullUrl"]
    routine = for_patient(bundle, "ServiceRequest", "pb")["resource"]
    assert routine["category"][0]["coding"][0]["code"] == "priority-routine"


def test_supporting_info_is_the_fit_notes(bundle: dict) -> None:
    sr_a = for_patient(bundle, "ServiceRequest", "pa")["resource"]
    assert [r["reference"] for r in sr_a["supportingInfo"]] == ["Observation/f1", "Observation/f2"]
    sr_b = for_patient(bundle, "ServiceRequest", "pb")["resource"]
    assert [r["reference"] for r in sr_b["supportingInfo"]] == ["Observation/f3"]


def test_task_focus_resolves_to_the_service_request(bundle: dict) -> None:
    for pid in ("pa", "pb"):
        sr = for_patient(bundle, "ServiceRequest", pid)
        task = for_patient(bundle, "Task", pid)["resource"]
        assert task["focus"]["reference"] == sr["fullUrl"]
        assert (task["status"], task["intent"], task["priority"]) == (
            "requested",
            "proposal",
            "routine",
        )
        assert task["code"]["coding"][0]["system"] == TASK_CODE_SYSTEM
        assert task["code"]["coding"][0]["code"] == "approve"
        assert (
            task["identifier"][0]["value"] == sr["resource"]["identifier"][0]["value"] + "-review"
        )
    task_a = for_patient(bundle, "Task", "pa")["resource"]
    assert task_a["owner"] == {"reference": "Practitioner/gp1"}
    assert task_a["description"].startswith("Offer IPS: chronic pain and out of work (early)")
    assert "owner" not in for_patient(bundle, "Task", "pb")["resource"]


def test_owner_argument_wins(rs: CompiledRuleset) -> None:
    resources = build_proposal(
        decision_a(rs), rs, now=NOW, owner="Organization/practice", tool_version=VERSION
    )
    assert [r["resourceType"] for r in resources] == [
        "Device",
        "ServiceRequest",
        "Task",
        "Provenance",
    ]
    assert resources[2]["owner"] == {"reference": "Organization/practice"}


def test_provenance_targets_both_and_lists_evidence_once(bundle: dict) -> None:
    sr, task = for_patient(bundle, "ServiceRequest", "pa"), for_patient(bundle, "Task", "pa")
    provenances = [
        e["resource"]
        for e in entries_of(bundle, "Provenance")
        if e["resource"]["target"][0]["reference"] == sr["fullUrl"]
    ]
    (prov,) = provenances
    assert [t["reference"] for t in prov["target"]] == [sr["fullUrl"], task["fullUrl"]]
    assert [e["what"]["reference"] for e in prov["entity"]] == [
        "Condition/c1",
        "Observation/f1",
        "Observation/f2",
    ]
    assert {e["role"] for e in prov["entity"]} == {"source"}
    (device,) = entries_of(bundle, "Device")
    assert {a["who"]["reference"] for a in prov["agent"]} == {device["fullUrl"]}
    assert [a["type"]["coding"][0]["code"] for a in prov["agent"]] == ["author", "assembler"]


def test_patient_transaction_is_self_contained(rs: CompiledRuleset) -> None:
    built = build_patient_transaction(decision_b(rs), rs, now=NOW, tool_version=VERSION)
    Bundle.model_validate(built)
    urls = {e["fullUrl"] for e in built["entry"]}
    used = set(re.findall(r"urn:uuid:[0-9a-f-]{36}", orjson.dumps(built["entry"]).decode()))
    assert used == urls


def test_not_proposed_and_mismatched_inputs_are_refused(rs: CompiledRuleset) -> None:
    with pytest.raises(ValueError, match="not propose"):
        build_proposal(decision_c(rs), rs, now=NOW, tool_version=VERSION)
    with pytest.raises(ValueError, match="decided by"):
        build_proposal(decision_a(rs), with_version(rs, "1.2.0"), now=NOW, tool_version=VERSION)
    with pytest.raises(ValueError, match="timezone"):
        build_proposal(decision_a(rs), rs, now=datetime(2026, 11, 26, 9, 30), tool_version="x")
    with pytest.raises(ValueError, match="fullUrl"):
        build_transaction([decision_a(rs)] * 2, rs, now=NOW, tool_version=VERSION)
    empty = build_transaction([decision_c(rs)], rs, now=NOW, tool_version=VERSION)
    assert empty == {"resourceType": "Bundle", "type": "transaction"}


# --- text --------------------------------------------------------------------------------------


def test_text_has_no_birth_date(bundle: dict) -> None:
    dumped = orjson.dumps(bundle).decode()
    texts = [
        text
        for e in entries_of(bundle, "ServiceRequest") + entries_of(bundle, "Task")
        for text in (
            e["resource"].get("description", ""),
            e["resource"].get("patientInstruction", ""),
            *(n["text"] for n in e["resource"].get("note", [])),
        )
    ]
    for birth in (BIRTH_A, BIRTH_B):
        assert birth not in dumped
        year, month, day = birth.split("-")
        for text in texts:
            assert year not in text  # not even the year of birth
            assert f"{day}/{month}/{year}" not in text
    assert "Patient/pa" in dumped  # references are there; identity details are not


def test_clinician_note_explains_in_plain_words(rs: CompiledRuleset) -> None:
    note = clinician_note(decision_a(rs), rs)
    assert note.split("\n\n")[0].split("\n") == [  # the brief the card shows, first
        "Chronic pain, first recorded 10 January 2025.",
        "Employment status not recorded: please ask.",
    ]
    assert "Priority: early" in note
    assert " ".join(rs.model.proposal.clinician_summary.split()) in note
    assert note.endswith("Screened on records up to 26 November 2026.")
    stale = clinician_note(decision_b(rs), rs)
    assert stale.split("\n\n")[0].split("\n") == [
        "Osteoarthritis of knee, first recorded 1 May 2022.",
        "Employment status last recorded 15 January 2023 (unemployed): please confirm.",
    ]
    assert "Priority: routine (out of work since 15 January 2023" in stale
    for text in (note, stale):
        assert "Patient/" not in text
        assert "employment-status-unconfirmed" not in text and "eMED3" not in text
        assert "zero exclusion" not in text


def test_same_day_fit_note_document_is_listed_once(rs: CompiledRuleset) -> None:
    code, display = NOT_FIT
    document = {
        "resourceType": "DocumentReference",
        "id": "d1",
        "status": "current",
        "subject": {"reference": "Patient/pd"},
        "type": {"coding": [{"system": SCT, "code": code, "display": display}]},
        "date": "2026-03-01T10:00:00Z",
    }
    patient = {"resourceType": "Patient", "id": "pd", "birthDate": BIRTH_A}
    decision = decide(
        rs,
        patient,
        [
            condition("c9", "pd", "82423001", "Chronic pain", "2025-01-10"),
            fit_note("f8", "pd", "2026-03-01"),
            document,
            fit_note("f9", "pd", "2026-06-01"),
        ],
    )
    assert display not in clinician_note(decision, rs)  # a codelist display is not plain words
    sr = build_proposal(decision, rs, now=NOW, tool_version=VERSION)[1]
    assert [r["reference"] for r in sr["supportingInfo"]] == [
        "Observation/f8",
        "DocumentReference/d1",
        "Observation/f9",
    ]


def test_reason_and_flag_words(rs: CompiledRuleset) -> None:
    names = [
        "deceased",
        "outside-working-age",
        "end-of-life",
        "ips-referral-open",
        "ips-declined",
        "no-chronic-pain",
        "in-work",
        "retired",
        "student",
        "employment-status-unknown",
        "birth-date-missing",
    ]
    assert sorted(rs.model.texts.reasons) == sorted(names)
    for name in names:
        assert reason_text(name, rs) != name
        assert "\n" not in reason_text(name, rs)
    assert list(rs.model.texts.flags) == ["employment-status-unconfirmed"]
    assert reason_text("something-new", rs) == "something-new"
    assert flag_text("something-new", rs) == "something-new"


# --- accept and decline ------------------------------------------------------------------------


def stored(bundle: dict) -> tuple[dict, dict]:
    """The proposal and its Task as a server would return them."""
    sr = copy.deepcopy(for_patient(bundle, "ServiceRequest", "pa")["resource"])
    sr |= {"id": "sr1", "meta": {"versionId": "1"}}
    task = copy.deepcopy(for_patient(bundle, "Task", "pa")["resource"])
    task |= {"id": "t1", "meta": {"versionId": "3"}, "focus": {"reference": "ServiceRequest/sr1"}}
    return sr, task


LATER = NOW + timedelta(days=3)


def validate_all(resources: dict) -> None:
    for resource in resources.values():
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_accept(bundle: dict, rs: CompiledRuleset) -> None:
    sr, task = stored(bundle)
    before = copy.deepcopy((sr, task))
    out = accept_resources(
        sr,
        task,
        by="Practitioner/dr1",
        now=LATER,
        tool_version=VERSION,
        pain_conditions=["Condition/c1"],
        fit_notes=["Observation/f1", "Observation/f2"],
        ips_service="HealthcareService/ips",
        patient_agreed=True,
        care_plan=care_plan_words(rs),
    )
    assert (sr, task) == before  # inputs untouched
    assert sorted(out) == ["agreement", "careplan", "order", "proposal", "provenance", "task"]
    validate_all(out)
    order, plan, agreed = out["order"], out["careplan"], out["agreement"]
    assert (order["status"], order["intent"]) == ("active", "order")
    assert order["basedOn"] == [{"reference": "ServiceRequest/sr1"}]
    for key in ("code", "subject", "reasonReference"):
        assert order[key] == sr[key]
    assert order["supportingInfo"][:-1] == sr["supportingInfo"]
    assert order["requester"] == {"reference": "Practitioner/dr1"}
    assert order["performer"] == [{"reference": "HealthcareService/ips"}]
    assert order["priority"] == "urgent"  # the proposal's screen priority is early
    assert (agreed["status"], agreed["valueBoolean"]) == ("final", True)
    assert agreed["code"]["coding"] == [
        {
            "system": "https://ips-screen.org/fhir/CodeSystem/ips-screen",
            "code": "patient-agreed-referral",
            "display": "Patient agreed to the proposed referral",
        }
    ]
    assert agreed["subject"] == sr["subject"]
    assert agreed["performer"] == [{"reference": "Practitioner/dr1"}]
    assert agreed["effectiveDateTime"] == "2026-11-29T09:30:00Z"
    assert agreed["basedOn"] == [{"reference": "ServiceRequest/sr1"}]
    assert order["identifier"][0]["value"] == "ips-chronic-pain-v1-pa-order"
    assert (plan["status"], plan["intent"], plan["title"]) == ("active", "plan", "Work and health")
    assert plan["category"] == [{"text": "work and health"}]
    assert plan["description"] == (
        "Individual Placement and Support (IPS) alongside care for chronic pain"
    )
    assert plan["addresses"] == [{"reference": "Condition/c1"}]
    assert [r["reference"] for r in plan["supportingInfo"]] == ["Observation/f1", "Observation/f2"]
    assert plan["author"] == {"reference": "Practitioner/dr1"}
    assert plan["identifier"][0]["value"] == "ips-chronic-pain-v1-pa-careplan"
    assert out["task"]["status"] == "completed"
    assert out["task"]["lastModified"] == "2026-11-29T09:30:00Z"
    assert out["proposal"]["status"] == "completed"
    prov = out["provenance"]
    assert prov["agent"][0]["who"] == {"reference": "Practitioner/dr1"}
    assert prov["agent"][1]["type"]["coding"][0]["code"] == "assembler"

    written = review_transaction(out, tool_version=VERSION)
    Bundle.model_validate(written)
    urls = {
        e["resource"]["resourceType"]: e["fullUrl"]
        for e in written["entry"]
        if e["request"]["method"] == "POST"
    }
    assert plan["activity"][0]["reference"]["reference"] == urls["ServiceRequest"]
    assert out["task"]["output"][0]["valueReference"]["reference"] == urls["ServiceRequest"]
    assert order["supportingInfo"][-1] == {"reference": urls["Observation"], "type": "Observation"}
    assert [t["reference"] for t in prov["target"]] == [
        urls["Observation"],
        urls["ServiceRequest"],
        urls["CarePlan"],
        "Task/t1",
    ]
    assert prov["agent"][1]["who"]["reference"] == urls["Device"]
    puts = {e["request"]["url"]: e["request"] for e in written["entry"]}
    assert puts["Task/t1"] == {"method": "PUT", "url": "Task/t1", "ifMatch": 'W/"3"'}
    assert puts["ServiceRequest/sr1"]["ifMatch"] == 'W/"1"'


def test_decline(bundle: dict) -> None:
    sr, task = stored(bundle)
    out = decline_resources(
        sr,
        task,
        by="Practitioner/dr1",
        reason_code="not-now",
        reasons=DECLINE_REASONS,
        note="Will revisit after surgery",
        now=LATER,
        tool_version=VERSION,
    )
    assert sorted(out) == ["proposal", "provenance", "task"]
    validate_all(out)
    assert out["task"]["status"] == "rejected"
    assert out["task"]["statusReason"] == {
        "coding": [
            {
                "system": DECLINE_REASON_SYSTEM,
                "code": "not-now",
                "display": DECLINE_REASONS["not-now"],
            }
        ],
        "text": DECLINE_REASONS["not-now"],
    }
    assert out["task"]["lastModified"] == "2026-11-29T09:30:00Z"
    assert out["task"]["note"][-1]["text"] == "Will revisit after surgery"
    assert out["proposal"]["status"] == "revoked"
    assert [t["reference"] for t in out["provenance"]["target"]] == [
        "Task/t1",
        "ServiceRequest/sr1",
    ]
    assert out["provenance"]["agent"][0]["who"] == {"reference": "Practitioner/dr1"}
    Bundle.model_validate(review_transaction(out, tool_version=VERSION))


def test_decline_reason_must_be_known(bundle: dict) -> None:
    sr, task = stored(bundle)
    kwargs = {"by": "Practitioner/dr1", "now": LATER, "tool_version": VERSION}
    with pytest.raises(ValueError, match="not-interested, already-supported") as caught:
        decline_resources(
            sr, task, reason_code="bored", note=None, reasons=DECLINE_REASONS, **kwargs
        )
    assert "'bored'" in str(caught.value)
    with pytest.raises(ValueError, match="needs a note"):
        decline_resources(
            sr, task, reason_code="other", note=" ", reasons=DECLINE_REASONS, **kwargs
        )
    out = decline_resources(
        sr, task, reason_code="not-interested", note=None, reasons=DECLINE_REASONS, **kwargs
    )
    assert "note" not in out["task"]


def test_decided_task_and_bad_clinician_are_refused(bundle: dict) -> None:
    sr, task = stored(bundle)
    kwargs = {
        "now": LATER,
        "tool_version": VERSION,
        "pain_conditions": [],
        "fit_notes": [],
        "ips_service": "HealthcareService/ips",
        "patient_agreed": True,
    }
    with pytest.raises(ValueError, match="patient's agreement"):
        accept_resources(sr, task, by="Practitioner/dr1", **{**kwargs, "patient_agreed": False})
    with pytest.raises(ValueError, match="ips_service must be HealthcareService"):
        accept_resources(sr, task, by="Practitioner/dr1", **{**kwargs, "ips_service": "Patient/p"})
    with pytest.raises(ValueError, match="already rejected"):
        accept_resources(sr, task | {"status": "rejected"}, by="Practitioner/dr1", **kwargs)
    with pytest.raises(ValueError, match="Practitioner"):
        accept_resources(sr, task, by="dr1", **kwargs)
    with pytest.raises(ValueError, match="not the review"):
        accept_resources(
            sr, task | {"focus": {"reference": "ServiceRequest/x"}}, by="Practitioner/d", **kwargs
        )


def test_a_task_and_proposal_about_different_patients_are_refused(bundle: dict) -> None:
    sr, task = stored(bundle)
    kwargs = {"by": "Practitioner/d", "now": LATER, "tool_version": VERSION}
    other = {"reference": "Patient/someone-else"}
    foreign_ids = [{"system": "https://example.org/ids", "value": "x"}]
    for bad_sr, bad_task, message in (
        (sr, task | {"for": other}, "is not for the Patient of ServiceRequest/"),
        (sr | {"subject": other}, task, "is not for the Patient of ServiceRequest/"),
        (sr, {k: v for k, v in task.items() if k != "for"}, "is not for the Patient"),
        (sr | {"identifier": foreign_ids}, task, "has no https://ips-screen.org/fhir/identifier"),
        (sr | {"subject": {"reference": "Group/g"}}, task, "is not about a Patient"),
    ):
        with pytest.raises(ValueError, match=message):
            decline_resources(
                bad_sr, bad_task, reason_code="not-now", reasons=DECLINE_REASONS, **kwargs
            )
        with pytest.raises(ValueError, match=message):
            accept_resources(
                bad_sr,
                bad_task,
                pain_conditions=[],
                fit_notes=[],
                ips_service="Organization/ips",
                patient_agreed=True,
                **kwargs,
            )
    assert review_subject(sr, task) == sr["subject"]["reference"]


# --- code systems and golden file --------------------------------------------------------------


def test_codesystem_files_match_the_functions(tmp_path: Path) -> None:
    assert set(CODESYSTEM_FILES) == {"CodeSystem-decline-reason.json", "CodeSystem-ips-screen.json"}
    assert orjson.loads((FHIR_DIR / "CodeSystem-decline-reason.json").read_bytes()) == (
        decline_reason_codesystem()
    )
    assert orjson.loads((FHIR_DIR / "CodeSystem-ips-screen.json").read_bytes()) == ips_codesystem()
    for path in write_codesystems(tmp_path):
        assert path.read_bytes() == (FHIR_DIR / path.name).read_bytes()
    codes = [c["code"] for c in decline_reason_codesystem()["concept"]]
    assert codes == list(DECLINE_REASONS)
    assert "ips-referral" in [c["code"] for c in ips_codesystem()["concept"]]


def test_golden_bundle(bundle: dict) -> None:
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_bytes(orjson.dumps(bundle, option=orjson.OPT_INDENT_2) + b"\n")
    assert GOLDEN.exists(), "no golden file: run with UPDATE_GOLDEN=1 and review it"
    assert orjson.loads(GOLDEN.read_bytes()) == bundle
