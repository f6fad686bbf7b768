"""The default ruleset's example patients (rules/ips-chronic-pain.yaml, `examples:`) give the
outcome they promise, and the fixture files they point at are valid FHIR R4 test data."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class

from ips_screen.engine import evaluate
from ips_screen.presentation.nhs_number import NHS_NUMBER_SYSTEM, is_valid
from tests.helpers import default_ruleset, facts_from, load_json

RULESET = default_ruleset()
EXAMPLES = RULESET.model.examples
FIXTURES = Path(__file__).resolve().parents[1] / "fhir_fixtures"
PATIENT_FILES = sorted((FIXTURES / "patients").glob("*.json"))
PRACTICE = FIXTURES / "practice.json"


def example_path(file: str) -> Path:
    return (RULESET.path.parent / file).resolve()


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_example_gives_its_expected_decision(example):
    bundle = load_json(example_path(example.file))
    facts = facts_from([bundle], RULESET, example.patient)
    decision = evaluate(RULESET, facts, date.fromisoformat(example.as_of))
    expect = example.expect
    assert (
        decision.outcome,
        list(decision.reasons),
        list(decision.flags),
        decision.priority,
    ) == (expect.outcome, expect.reasons, expect.flags, expect.priority)


def test_every_fixture_patient_is_an_example_and_every_example_file_exists():
    files = [example_path(e.file) for e in EXAMPLES]
    assert all(f.is_file() for f in files)
    assert sorted(files) == [p.resolve() for p in PATIENT_FILES]
    assert len(set(e.name for e in EXAMPLES)) == len(EXAMPLES)


def test_examples_cover_every_outcome_reason_flag_and_priority():
    seen = {e.expect.outcome for e in EXAMPLES}
    seen |= {r for e in EXAMPLES for r in e.expect.reasons}
    seen |= {f for e in EXAMPLES for f in e.expect.flags}
    seen |= {e.expect.priority for e in EXAMPLES if e.expect.priority}
    assert seen >= {
        "propose",
        "not-eligible",
        "excluded",
        "deceased",
        "outside-working-age",
        "end-of-life",
        "ips-referral-open",
        "ips-declined",
        "birth-date-missing",
        "no-chronic-pain",
        "in-work",
        "retired",
        "student",
        "employment-status-unknown",
        "employment-status-unconfirmed",
        "early",
        "routine",
    }


# --- the fixture files ------------------------------------------------------------------------


def _walk(value, path=()):
    """Every (path, key, value) in a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield path, k, v
            yield from _walk(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, (*path, i))


@pytest.mark.parametrize("path", [*PATIENT_FILES, PRACTICE], ids=lambda p: p.name)
def test_fixture_is_valid_fhir_r4(path):
    bundle = load_json(path)
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "collection"
    get_fhir_model_class("Bundle").model_validate(bundle)
    full_urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(set(full_urls)) == len(full_urls)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert entry["fullUrl"].endswith(f"/{resource['resourceType']}/{resource['id']}")


def test_practice_has_the_organization_and_two_gps():
    resources = [e["resource"] for e in load_json(PRACTICE)["entry"]]
    kinds = sorted(r["resourceType"] for r in resources)
    assert kinds == ["Organization", "Practitioner", "Practitioner"]


@pytest.mark.parametrize("path", PATIENT_FILES, ids=lambda p: p.name)
def test_fixture_patient_conventions(path):
    bundle = load_json(path)
    resources = [e["resource"] for e in bundle["entry"]]
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    assert len(patients) == 1
    number = path.name.split("-", 1)[0]
    assert patients[0]["id"] == f"fx-{number}"
    assert bundle["id"] == f"fx-{number}"
    practice = {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in load_json(PRACTICE)["entry"]
    }
    gps = [gp["reference"] for gp in patients[0]["generalPractitioner"]]
    assert gps and all(gp in practice for gp in gps)
    assert all(gp.startswith("Practitioner/") for gp in gps)
    # fictional: the only identifier is the Patient's NHS number, a test number of the 999
    # range (never issued) with a valid check digit, so the demo shows a named patient
    identifiers = [value for _, key, value in _walk(bundle) if key == "identifier"]
    assert identifiers in ([], [patients[0].get("identifier")])
    for identifier in patients[0].get("identifier", []):
        assert identifier["system"] == NHS_NUMBER_SYSTEM
        assert identifier["value"].startswith("999") and is_valid(identifier["value"])
    # every record is about this patient; every other reference is to this patient, the
    # practice or a resource in the same Bundle
    local = {f"{r['resourceType']}/{r['id']}" for r in resources}
    for _, key, value in _walk(bundle):
        if key == "reference":
            assert value in local or value in practice, value
    for resource in resources[1:]:
        subject = resource.get("subject") or resource.get("for")
        assert subject == {"reference": f"Patient/fx-{number}"}, resource["id"]
