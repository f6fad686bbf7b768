"""Tiny inline FHIR for tests: resource builders, facts from dicts, and one-call decisions.

Builders return plain FHIR R4 dicts with sensible defaults (subject ``Patient/p``, dates relative
to the frozen as-of date 2026-11-26). `decide` runs the default ruleset (loaded once) over them:

    decide([patient(), condition("82423001"), employment("LA17956-6", "2026-06-01")])
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import date
from functools import lru_cache
from pathlib import Path

import orjson

from ips_screen.engine import Decision, evaluate
from ips_screen.facts.extract import CodeIndex, extract_patient, extract_record, patient_of
from ips_screen.facts.model import PatientFacts
from ips_screen.ruleset.loader import CompiledRuleset, load_ruleset

AS_OF = date(2026, 11, 26)

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD11 = "http://id.who.int/icd/release/11/mms"
ODH = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
NHS_EMPLOYMENT = "https://fhir.nhs.uk/STU3/CodeSystem/DCH-EmploymentStatus-1"
IPS_SYSTEM = "https://ips-screen.org/fhir/CodeSystem/ips-screen"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

# Codes used again and again in the tests (all from rules/codelists).
CHRONIC_PAIN = "82423001"
OSTEOARTHRITIS_KNEE = "239873007"
PAIN_REVIEW = "860381000000107"
UNEMPLOYED = "LA17956-6"  # LOINC answer
INACTIVE = "LA30137-6"  # LOINC answer: otherwise unemployed, not seeking work
FULL_TIME = "LA30136-8"  # LOINC answer
NOT_ANSWERED = "LA30122-8"  # LOINC answer: I choose not to answer
NOT_FIT = "751481000000104"  # eMED3 new statement, not fit for work
MAY_BE_FIT = "751601000000107"  # eMED3 new statement, may be fit for work
UNSPECIFIED_FIT_NOTE = "1331000000103"
BACK_TO_WORK = "14241000000101"
PALLIATIVE = "103735009"
VOCATIONAL_REHAB = "18781004"

_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


def coding(code: str, system: str = SNOMED, display: str | None = None) -> dict:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def concept(code: str, system: str = SNOMED, display: str | None = None) -> dict:
    return {"coding": [coding(code, system, display)]}


def ref(value: str) -> dict:
    return {"reference": value}


# --- builders ---------------------------------------------------------------------------------


def patient(id: str = "p", birth: str | None = "1980-01-01", **extra) -> dict:
    """A Patient; ``birth=None`` leaves birthDate out; extra fields are copied as given."""
    out: dict = {"resourceType": "Patient", "id": id}
    if birth is not None:
        out["birthDate"] = birth
    out.update(extra)
    return out


def condition(
    code: str,
    system: str = SNOMED,
    onset: str | None = "2025-01-15",
    status: str | None = "active",
    id: str | None = None,
    subject: str = "p",
    verification: str | None = "confirmed",
    **extra,
) -> dict:
    """A Condition; ``status``/``verification``/``onset`` None leave the field out."""
    out: dict = {"resourceType": "Condition", "id": id or _id("cond")}
    if status is not None:
        out["clinicalStatus"] = concept(status, CLINICAL)
    if verification is not None:
        out["verificationStatus"] = concept(verification, VERIFICATION)
    out["code"] = concept(code, system)
    out["subject"] = ref(f"Patient/{subject}")
    if onset is not None:
        out["onsetDateTime"] = onset
    out.update(extra)
    return out


def observation(
    code: str,
    system: str = LOINC,
    when: str | None = "2026-06-01",
    value: str | dict | None = None,
    value_system: str = LOINC,
    status: str = "final",
    id: str | None = None,
    subject: str = "p",
    components: list[dict] | None = None,
    **extra,
) -> dict:
    """An Observation; ``value`` is a code (in ``value_system``) or a CodeableConcept dict."""
    out: dict = {
        "resourceType": "Observation",
        "id": id or _id("obs"),
        "status": status,
        "code": concept(code, system),
        "subject": ref(f"Patient/{subject}"),
    }
    if when is not None:
        out["effectiveDateTime"] = when
    if value is not None:
        out["valueCodeableConcept"] = (
            value if isinstance(value, dict) else concept(value, value_system)
        )
    if components is not None:
        out["component"] = components
    out.update(extra)
    return out


def employment(
    answer: str,
    when: str | None = "2026-06-01",
    system: str = LOINC,
    question: str = "67875-5",
    **kw,
) -> dict:
    """Employment status as a question (67875-5 or 74165-2) with a coded answer."""
    return observation(question, LOINC, when, value=answer, value_system=system, **kw)


def finding(code: str, when: str | None = "2026-06-01", system: str = SNOMED, **kw) -> dict:
    """An Observation whose code is itself the status (a SNOMED or NHS DD employment code)."""
    return observation(code, system, when, **kw)


def component(code: str, answer: str, system: str = LOINC, answer_system: str = LOINC) -> dict:
    return {"code": concept(code, system), "valueCodeableConcept": concept(answer, answer_system)}


def prapare(answer: str, when: str | None = "2026-06-01", answer_system: str = LOINC, **kw) -> dict:
    """A PRAPARE panel (93025-5) answering 67875-5 Employment status - current in a component."""
    extra_components = kw.pop("more_components", [])
    return observation(
        "93025-5",
        LOINC,
        when,
        components=[
            component("56051-6", "LA33-6"),  # "Do you consider yourself Hispanic/Latino?": Yes
            component("67875-5", answer, answer_system=answer_system),
            *extra_components,
        ],
        **kw,
    )


def procedure(
    code: str,
    when: str | None = "2026-06-01",
    system: str = SNOMED,
    status: str = "completed",
    id: str | None = None,
    subject: str = "p",
    **extra,
) -> dict:
    out: dict = {
        "resourceType": "Procedure",
        "id": id or _id("proc"),
        "status": status,
        "code": concept(code, system),
        "subject": ref(f"Patient/{subject}"),
    }
    if when is not None:
        out["performedDateTime"] = when
    out.update(extra)
    return out


def document(
    code: str,
    when: str | None = "2026-06-01",
    system: str = SNOMED,
    status: str = "current",
    id: str | None = None,
    subject: str = "p",
    **extra,
) -> dict:
    """A DocumentReference typed ``code``, dated by context.period.start."""
    out: dict = {
        "resourceType": "DocumentReference",
        "id": id or _id("doc"),
        "status": status,
        "type": concept(code, system),
        "subject": ref(f"Patient/{subject}"),
        "content": [{"attachment": {"contentType": "application/pdf", "title": "Fit note"}}],
    }
    if when is not None:
        out["context"] = {"period": {"start": when}}
    out.update(extra)
    return out


def fit_note(
    code: str = NOT_FIT,
    when: str | None = "2026-06-01",
    resource_type: str = "Observation",
    id: str | None = None,
    subject: str = "p",
    **extra,
) -> dict:
    """A fit note recorded as an Observation, Procedure, Condition or DocumentReference."""
    if resource_type == "Observation":
        return observation(code, SNOMED, when, id=id, subject=subject, **extra)
    if resource_type == "Procedure":
        return procedure(code, when, id=id, subject=subject, **extra)
    if resource_type == "Condition":
        extra.setdefault("status", "resolved")
        return condition(code, SNOMED, onset=when, id=id, subject=subject, **extra)
    if resource_type == "DocumentReference":
        return document(code, when, id=id, subject=subject, **extra)
    raise ValueError(f"fit notes are not recorded as {resource_type}")


def ips_codes() -> dict:
    """The code the tool writes on its proposals: project IPS code plus SNOMED 18781004."""
    return {
        "coding": [
            coding(
                "ips-referral", IPS_SYSTEM, "Referral to Individual Placement and Support (IPS)"
            ),
            coding(VOCATIONAL_REHAB, SNOMED, "Patient referral for vocational rehabilitation"),
        ]
    }


def service_request(
    status: str = "active",
    intent: str = "order",
    authored: str | None = "2026-06-01",
    code: dict | str | None = None,
    last_updated: str | None = None,
    id: str | None = None,
    subject: str = "p",
    **extra,
) -> dict:
    """An IPS ServiceRequest by default (``code`` a SNOMED code or a CodeableConcept)."""
    if code is None:
        code = ips_codes()
    elif isinstance(code, str):
        code = concept(code)
    out: dict = {
        "resourceType": "ServiceRequest",
        "id": id or _id("sr"),
        "status": status,
        "intent": intent,
        "code": code,
        "subject": ref(f"Patient/{subject}"),
    }
    if authored is not None:
        out["authoredOn"] = authored
    if last_updated is not None:
        out["meta"] = {"lastUpdated": last_updated}
    out.update(extra)
    return out


def proposal(**kw) -> dict:
    """The tool's own pending proposal: an IPS ServiceRequest, status draft, intent proposal."""
    kw.setdefault("status", "draft")
    kw.setdefault("intent", "proposal")
    return service_request(**kw)


def task(
    focus: str,
    status: str = "requested",
    authored: str | None = "2026-06-01",
    last_modified: str | None = None,
    id: str | None = None,
    subject: str = "p",
    intent: str = "proposal",
    **extra,
) -> dict:
    """The review Task of a proposal; ``focus`` is a ServiceRequest id (or "ServiceRequest/x")."""
    out: dict = {
        "resourceType": "Task",
        "id": id or _id("task"),
        "status": status,
        "intent": intent,
        "code": concept("approve", "http://hl7.org/fhir/CodeSystem/task-code"),
        "focus": ref(focus if "/" in focus else f"ServiceRequest/{focus}"),
        "for": ref(f"Patient/{subject}"),
    }
    if authored is not None:
        out["authoredOn"] = authored
    if last_modified is not None:
        out["lastModified"] = last_modified
    out.update(extra)
    return out


# --- running the rules ------------------------------------------------------------------------


@lru_cache(maxsize=1)
def default_ruleset() -> CompiledRuleset:
    return load_ruleset()


def _flatten(resources: Iterable[dict], urls: dict[str, str]) -> list[dict]:
    out = []
    for resource in resources:
        if resource.get("resourceType") == "Bundle":
            inner = []
            for entry in resource.get("entry") or ():
                item = entry.get("resource")
                if item is None:
                    continue
                full_url = entry.get("fullUrl", "")
                if full_url.startswith("urn:") and item.get("id"):
                    urls[full_url] = f"{item['resourceType']}/{item['id']}"
                inner.append(item)
            out.extend(_flatten(inner, urls))
        else:
            out.append(resource)
    return out


def facts_from(
    resources: Iterable[dict], ruleset: CompiledRuleset | None = None, patient_id: str | None = None
) -> PatientFacts:
    """One patient's facts from FHIR dicts (Bundles are flattened), in the order given.

    The patient is the only Patient among the resources, or ``patient_id``; records whose subject
    is another patient are left out, as the real collector does.
    """
    ruleset = ruleset or default_ruleset()
    urls: dict[str, str] = {}
    flat = _flatten(resources, urls)
    resolve = urls.get if urls else None
    patients = [r for r in flat if r.get("resourceType") == "Patient"]
    if patient_id is not None:
        patients = [r for r in patients if r.get("id") == patient_id]
    if len(patients) != 1:
        raise ValueError(f"expected exactly one Patient, found {len(patients)}")
    info = extract_patient(patients[0], resolve)
    index = CodeIndex(ruleset.codelists.values())
    records = []
    for resource in flat:
        if resource.get("resourceType") == "Patient":
            continue
        if patient_of(resource, resolve) != info.id:
            continue
        record = extract_record(resource, index, resolve)
        if record is not None:
            records.append(record)
    return PatientFacts(
        id=info.id,
        birth_date=info.birth_date,
        deceased=info.deceased,
        deceased_date=info.deceased_date,
        general_practitioners=info.general_practitioners,
        records=tuple(records),
    )


def decide(
    resources: Iterable[dict],
    as_of: date = AS_OF,
    ruleset: CompiledRuleset | None = None,
    patient_id: str | None = None,
) -> Decision:
    """The decision for the patient among `resources` (a Patient is added if none is given)."""
    resources = list(resources)
    if not any(r.get("resourceType") in ("Patient", "Bundle") for r in resources):
        resources.insert(0, patient())
    ruleset = ruleset or default_ruleset()
    return evaluate(ruleset, facts_from(resources, ruleset, patient_id), as_of)


def summary(decision: Decision) -> tuple[str, list[str], list[str], str | None]:
    """(outcome, reasons, flags, priority): what a user of the screen relies on."""
    return (
        decision.outcome,
        list(decision.reasons),
        list(decision.flags),
        decision.priority,
    )


def load_json(path: Path | str) -> dict:
    return orjson.loads(Path(path).read_bytes())


def step_refs(decision: Decision, step_id: str) -> set[str]:
    """The references a trace step (at any depth) cites."""
    step = decision.step(step_id)
    assert step is not None, f"no step {step_id!r} in the trace"
    return set(step.refs)


def qualifying(
    birth: str | None = "1980-01-01",
    pain_onset: str = "2024-01-15",
    status_date: str = "2026-06-01",
    **patient_extra,
) -> list[dict]:
    """A patient who is proposed as of 2026-11-26: active chronic pain, unemployed this year.

    The chronic pain Condition has id ``pain`` and the employment Observation id ``status``.
    """
    return [
        patient(birth=birth, **patient_extra),
        condition(CHRONIC_PAIN, onset=pain_onset, id="pain"),
        employment(UNEMPLOYED, status_date, id="status"),
    ]
