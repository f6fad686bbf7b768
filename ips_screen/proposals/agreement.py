"""The patient's agreement to the IPS referral, as an Observation (pure builder).

Nobody is referred without their agreement, so accepting a proposal records it in a
structured, queryable way: an Observation, status final, coded with the project's own concept
`patient-agreed-referral` (CodeSystem https://ips-screen.org/fhir/CodeSystem/ips-screen; no
SNOMED CT concept says "patient agreed to this referral"; rules/codelists/README.md), its text
the ruleset's words (`texts.decisions.agreement_record`), about the patient, performed by the
clinician who confirmed it, effective when they did, valueBoolean true, basedOn the proposal. The
order's supportingInfo links it. The code is the same for every ruleset: what was agreed to is
the proposal it is basedOn. Its business identifier is the proposal's plus "-agreement", so
writing it twice (a retried transaction) finds the first one:

    GET Observation?code=https://ips-screen.org/fhir/CodeSystem/ips-screen|patient-agreed-referral
"""

from __future__ import annotations

import copy

from ips_screen.codes import PATIENT_AGREED, PROPOSAL_ID_SYSTEM
from ips_screen.proposals.common import full_url, validated

AGREEMENT_SUFFIX = "-agreement"


def agreement_url(value: str) -> str:
    """The fullUrl of the agreement of the proposal whose identifier value is `value`."""
    return full_url("Observation", PROPOSAL_ID_SYSTEM, f"{value}{AGREEMENT_SUFFIX}")


def agreement_observation(
    *, value: str, proposal_ref: str, subject: dict, by: str, when: str, text: str
) -> dict:
    """The Observation recording that the patient agreed to be referred (validated R4B)."""
    return validated(
        {
            "resourceType": "Observation",
            "identifier": [{"system": PROPOSAL_ID_SYSTEM, "value": f"{value}{AGREEMENT_SUFFIX}"}],
            "basedOn": [{"reference": proposal_ref}],
            "status": "final",
            "code": {"coding": [dict(PATIENT_AGREED)], "text": text or PATIENT_AGREED["display"]},
            "subject": copy.deepcopy(subject),
            "effectiveDateTime": when,
            "issued": when,
            "performer": [{"reference": by}],
            "valueBoolean": True,
        }
    )
