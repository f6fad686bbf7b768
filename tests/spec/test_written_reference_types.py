"""Everything the tool writes refers only to resource types R4 allows for each element
(default-ruleset.md, "Proposal written for each propose": reasonReference holds Conditions,
Observations, DiagnosticReports, DocumentReferences; other evidence, e.g. a chronic pain review
recorded as a Procedure, goes to supportingInfo). fhir.resources itself accepts any target, so
`reference_type_problems` checks the targets against its field metadata.

Checked for every fixture patient who gets a proposal: the proposal transaction (ServiceRequest,
Task, Provenance, Device), the accept transaction (order, CarePlan, Task, proposal, Provenance),
the decline transaction, and the CDS card's suggested order (live decision and pending proposal).
"""

from __future__ import annotations

import copy

import pytest

from ips_screen import __version__
from ips_screen.pipeline import decide_all
from ips_screen.proposals.build import build_transaction
from ips_screen.proposals.review import accept_resources, decline_resources, review_transaction
from ips_screen.service.cards import Pending, build_card, by_ref
from ips_screen.sources import collect
from tests.helpers import AS_OF, default_ruleset, load_json
from tests.reference_types import reference_type_problems
from tests.support.paths import FIXTURES, FROZEN_NOW

BY = "Practitioner/gp-1"


def _proposed():
    ruleset = default_ruleset()
    population = collect([FIXTURES], ruleset)
    decisions = decide_all(ruleset, population.patients.values(), AS_OF)
    return [d for d in decisions if d.outcome == "propose"]


PROPOSED = _proposed()


def _as_read_from_a_server(bundle: dict, patient: str) -> tuple[dict, dict]:
    """The patient's proposal and review Task, with ids, as a server would give them back."""
    pid = patient.removeprefix("Patient/")
    ids = {}
    for entry in bundle["entry"]:
        kind = entry["resource"]["resourceType"]
        if kind in ("ServiceRequest", "Task") and entry["resource"].get(
            "subject", entry["resource"].get("for")
        ) == {"reference": patient}:
            ids[kind] = (entry["fullUrl"], copy.deepcopy(entry["resource"]))
    (sr_url, sr), (_, task) = ids["ServiceRequest"], ids["Task"]
    sr["id"], task["id"] = f"{pid}-proposal", f"{pid}-review"
    task["focus"] = {"reference": f"ServiceRequest/{sr['id']}"}
    assert sr_url  # the urn:uuid the Task referred to
    return sr, task


def test_the_fixtures_include_evidence_that_is_not_a_reason_type():
    """A chronic pain review held as a Procedure (fixture 07) is among the proposals' evidence."""
    evidence = {ref for d in PROPOSED for ref in (*d.links.reasons, *d.links.supporting)}
    assert any(ref.startswith("Procedure/") for ref in evidence)


@pytest.mark.parametrize("decision", PROPOSED, ids=[d.patient for d in PROPOSED])
def test_everything_written_refers_to_allowed_types(decision):
    ruleset = default_ruleset()
    bundle = build_transaction([decision], ruleset, now=FROZEN_NOW, tool_version=__version__)
    assert reference_type_problems(bundle) == []

    sr, task = _as_read_from_a_server(bundle, decision.patient)
    accepted = accept_resources(
        sr,
        task,
        by=BY,
        now=FROZEN_NOW,
        tool_version=__version__,
        pain_conditions=list(decision.links.pain),
        fit_notes=list(decision.links.supporting),
        ips_service="HealthcareService/ips",
        patient_agreed=True,
    )
    assert reference_type_problems(review_transaction(accepted, tool_version=__version__)) == []
    declined = decline_resources(
        sr,
        task,
        by=BY,
        reason_code="not-now",
        reasons=ruleset.model.proposal.decline_reasons,
        now=FROZEN_NOW,
        tool_version=__version__,
    )
    assert reference_type_problems(review_transaction(declined, tool_version=__version__)) == []

    pid = decision.patient.removeprefix("Patient/")
    live = build_card(ruleset, pid, {}, decision=decision, pending=None, review_url=None)
    pending = build_card(
        ruleset, pid, {}, decision=None, pending=Pending(sr, task), review_url=None
    )
    for result in (live, pending):
        [suggestion] = result.card["suggestions"]
        for action in suggestion["actions"]:
            assert reference_type_problems(action["resource"]) == []


def test_an_old_proposal_with_a_procedure_reason_is_accepted_with_it_as_supporting_info():
    """Proposals written before this fix hold a Procedure in reasonReference: the order written
    on accept and the card's suggested order put it in supportingInfo."""
    decision = next(d for d in PROPOSED if d.patient == "Patient/fx-07")
    ruleset = default_ruleset()
    bundle = build_transaction([decision], ruleset, now=FROZEN_NOW, tool_version=__version__)
    sr, task = _as_read_from_a_server(bundle, decision.patient)
    moved = [r for r in sr.get("supportingInfo", []) if r["reference"].startswith("Procedure/")]
    sr["reasonReference"] = [*sr.get("reasonReference", []), *moved]  # as an old version wrote it
    sr["supportingInfo"] = [r for r in sr.get("supportingInfo", []) if r not in moved]
    if not sr["supportingInfo"]:
        del sr["supportingInfo"]
    assert moved
    accepted = accept_resources(
        sr,
        task,
        by=BY,
        now=FROZEN_NOW,
        tool_version=__version__,
        pain_conditions=list(decision.links.pain),
        fit_notes=[],
        ips_service="HealthcareService/ips",
        patient_agreed=True,
    )
    order = accepted["order"]
    assert reference_type_problems(order) == []
    assert all(r in order["supportingInfo"] for r in moved)
    card = build_card(
        ruleset, "fx-07", {}, decision=None, pending=Pending(sr, task), review_url=None
    )
    [action] = card.card["suggestions"][0]["actions"]
    assert reference_type_problems(action["resource"]) == []


def test_the_checker_finds_targets_r4_does_not_allow():
    provenance = {
        "resourceType": "Provenance",
        "target": [{"reference": "urn:uuid:0b6f1b4e-5a53-4d1e-9d0a-6d0c8f6c1a01"}],
        "recorded": "2026-11-26T09:30:00Z",
        "agent": [{"who": {"reference": "Condition/c"}}],  # nested: agent.who
    }
    assert sorted(reference_type_problems(provenance)) == [
        "Provenance.agent.who -> Condition (Condition/c): allowed Practitioner, PractitionerRole, "
        "RelatedPerson, Patient, Device, Organization",
        "Provenance.target -> 'urn:uuid:0b6f1b4e-5a53-4d1e-9d0a-6d0c8f6c1a01': target type unknown",
    ]
    procedure_url = "urn:uuid:0b6f1b4e-5a53-4d1e-9d0a-6d0c8f6c1a01"
    procedure = {
        "resourceType": "Procedure",
        "status": "completed",
        "subject": {"reference": "Patient/p"},
    }
    careplan = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/p"},
        "addresses": [{"reference": procedure_url}],
    }
    entries = [{"fullUrl": procedure_url, "resource": procedure}, {"resource": careplan}]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    [problem] = reference_type_problems(bundle)
    assert problem.startswith("CarePlan.addresses -> Procedure (urn:uuid:")


def test_a_pain_review_in_supporting_info_is_not_listed_as_a_fit_note_on_the_card():
    decision = next(d for d in PROPOSED if d.patient == "Patient/fx-07")
    assert decision.links.reasons == ("Observation/fx-07-obs-3",)
    assert decision.links.supporting == ("Procedure/fx-07-proc-2",)
    bundle = load_json(FIXTURES / "patients" / "07-chronic-pain-review-only.json")
    resources = by_ref(e["resource"] for e in bundle["entry"])
    card = build_card(
        default_ruleset(), "fx-07", resources, decision=decision, pending=None, review_url=None
    ).card
    assert "Fit notes" not in card["detail"]  # no fit notes: no line (and no "none recorded")
    assert "none recorded" not in card["detail"]
