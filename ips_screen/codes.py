"""The project's own code systems and identifier systems (canonical URLs) and fixed codings.

No SNOMED CT code exists for "referral to IPS" or for IPS decline reasons
(docs: clinical-codes.md), so the project defines its own CodeSystems; SNOMED 18781004 (patient
referral for vocational rehabilitation) is sent beside the project code (the default ruleset's
`ips-referral` codelist). The decline reasons are the ruleset's (`proposal.decline_reasons`).
"""

from __future__ import annotations

BASE = "https://ips-screen.org/fhir"
IPS_SYSTEM = f"{BASE}/CodeSystem/ips-screen"  # project concepts, e.g. "ips-referral"
DECLINE_REASON_SYSTEM = f"{BASE}/CodeSystem/decline-reason"
PROPOSAL_ID_SYSTEM = f"{BASE}/identifier/proposal"  # ServiceRequest / Task / Provenance ids
DEVICE_ID_SYSTEM = f"{BASE}/identifier/device"
RULESET_EXTENSION = f"{BASE}/StructureDefinition/ruleset"

SNOMED = "http://snomed.info/sct"
TASK_CODE_SYSTEM = "http://hl7.org/fhir/CodeSystem/task-code"
PROVENANCE_AGENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"

IPS_REFERRAL = {
    "system": IPS_SYSTEM,
    "code": "ips-referral",
    "display": "Referral to Individual Placement and Support (IPS)",
}
PATIENT_AGREED = {  # Observation.code of the patient's recorded agreement to the referral
    "system": IPS_SYSTEM,
    "code": "patient-agreed-referral",
    "display": "Patient agreed to the proposed referral",
}
VOCATIONAL_REHAB = {
    "system": SNOMED,
    "code": "18781004",
    "display": "Patient referral for vocational rehabilitation",
}
