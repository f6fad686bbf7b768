"""The review page's evidence when a chronic pain review (a Procedure) is the pain evidence: R4
does not allow a Procedure as a ServiceRequest.reasonReference, so the proposal links it as
supportingInfo; the review still shows it as the pain evidence, not as a fit note."""

from __future__ import annotations

import pytest

from ips_screen.fhir.client import FhirClient
from ips_screen.writeback import review
from tests.fhir_support import unique_patient_id, write_proposal
from tests.helpers import NOT_FIT, PAIN_REVIEW, UNEMPLOYED, employment, fit_note, patient, procedure
from tests.support.paths import FROZEN_NOW

pytestmark = pytest.mark.integration


def test_a_pain_review_procedure_is_shown_as_pain_evidence(fhir_client: FhirClient):
    pid = unique_patient_id("rv-proc")
    resources = [
        patient(pid, "1980-01-01"),
        procedure(PAIN_REVIEW, "2026-09-01", id=f"{pid}-review", subject=pid),
        employment(UNEMPLOYED, "2026-06-01", id=f"{pid}-emp", subject=pid),
        fit_note(NOT_FIT, "2026-05-01", id=f"{pid}-fit", subject=pid),
    ]
    for resource in resources:
        fhir_client.update(resource)
    task_id, _ = write_proposal(fhir_client, pid, resources, now=FROZEN_NOW)
    detail = review.review_detail(fhir_client, task_id)
    assert [e.ref for e in detail.pain] == [f"Procedure/{pid}-review"]
    assert [e.ref for e in detail.employment] == [f"Observation/{pid}-emp"]
    assert [e.ref for e in detail.fit_notes] == [f"Observation/{pid}-fit"]
