"""The screen on real synthetic data nobody here wrote (../shared/data; skipped when absent).

The expected counts were established by running the screen and checking each proposed patient by
hand against the raw records; a change to them is a change in behaviour to be explained.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from ips_screen.dates import age_on, uk_state_pension_date
from ips_screen.facts.extract import codings, patient_of
from ips_screen.pipeline import decide_all
from ips_screen.ruleset.loader import load_ruleset
from ips_screen.sources import collect
from ips_screen.sources.files import discover, iter_resources

AS_OF = date(2026, 11, 26)

EXPECTED = {
    "synthea-bulk-10": {"patients": 13, "propose": 1, "not-eligible": 6, "excluded": 6},
    "synthea-california": {"patients": 86, "propose": 3, "not-eligible": 52, "excluded": 31},
    "ahrq-pain-test-patient": {"patients": 1, "propose": 0, "not-eligible": 1, "excluded": 0},
}


@pytest.fixture(scope="module")
def ruleset():
    return load_ruleset()


def _raw(folder: Path):
    """Patients' birth dates and Conditions, read independently of the facts layer."""
    births: dict[str, date] = {}
    conditions: dict[str, list[dict]] = {}
    for resource, _, resolve in iter_resources(discover([folder])):
        if resource["resourceType"] == "Patient":
            births[resource["id"]] = date.fromisoformat(resource["birthDate"][:10])
        elif resource["resourceType"] == "Condition":
            conditions.setdefault(patient_of(resource, resolve), []).append(resource)
    return births, conditions


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_outcome_counts(shared_data: Path, ruleset, name: str):
    population = collect([shared_data / name], ruleset)
    decisions = decide_all(ruleset, population.patients.values(), AS_OF)
    counts = Counter(d.outcome for d in decisions)
    expected = EXPECTED[name]
    assert len(decisions) == expected["patients"]
    assert {k: counts[k] for k in ("propose", "not-eligible", "excluded")} == {
        k: expected[k] for k in ("propose", "not-eligible", "excluded")
    }
    assert population.orphans == {}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_proposed_patient_is_of_working_age_with_active_chronic_pain(
    shared_data: Path, ruleset, name: str
):
    folder = shared_data / name
    decisions = decide_all(ruleset, collect([folder], ruleset).patients.values(), AS_OF)
    births, conditions = _raw(folder)
    chronic = ruleset.codelist("chronic-pain")
    persistent = ruleset.codelist("persistent-pain")
    for decision in decisions:
        if decision.outcome != "propose":
            continue
        pid = decision.patient.removeprefix("Patient/")
        birth = births[pid]
        assert age_on(birth, AS_OF) >= 18
        assert uk_state_pension_date(birth) > AS_OF
        active_pain = [
            c
            for c in conditions.get(pid, [])
            if c.get("clinicalStatus", {}).get("coding", [{}])[0].get("code") == "active"
            and any(k in chronic or k in persistent for k in codings(c.get("code")))
        ]
        assert active_pain, f"{decision.patient} proposed without active chronic pain"


def test_synthea_not_in_labor_force_since_2022_is_proposed_with_unconfirmed_flag(
    shared_data: Path, ruleset
):
    """README of the data: one chronic-pain patient is 'Not in labor force' since 2022."""
    population = collect([shared_data / "synthea-bulk-10"], ruleset)
    proposed = [
        d
        for d in decide_all(ruleset, population.patients.values(), AS_OF)
        if d.outcome == "propose"
    ]
    assert len(proposed) == 1
    assert proposed[0].flags == ("employment-status-unconfirmed",)


def test_layouts_give_the_same_decisions(shared_data: Path, ruleset, tmp_path: Path):
    """synthea-california's Bundles re-written as Bulk NDJSON give identical decisions."""
    import orjson

    folder = shared_data / "synthea-california"
    files: dict[str, object] = {}
    for resource, _, _ in iter_resources(discover([folder])):
        rewritten = orjson.loads(
            orjson.dumps(resource).replace(b'"urn:uuid:', b'"Patient/')
        )  # transaction Bundles reference the patient by urn:uuid of its id
        kind = rewritten["resourceType"]
        handle = files.get(kind) or (tmp_path / f"{kind}.000.ndjson").open("wb")
        files[kind] = handle
        handle.write(orjson.dumps(rewritten) + b"\n")
    for handle in files.values():
        handle.close()
    from_bundles = decide_all(ruleset, collect([folder], ruleset).patients.values(), AS_OF)
    from_ndjson = decide_all(ruleset, collect([tmp_path], ruleset).patients.values(), AS_OF)
    assert [d.to_dict() for d in from_bundles] == [d.to_dict() for d in from_ndjson]
