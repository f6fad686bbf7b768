"""The people and services a decision names, as FHIR resources: the clinician who decides (a
Practitioner, "Dr A Smith") and the practice's IPS service (a HealthcareService with a name and a
contact). Synthetic: no real person or service."""

from __future__ import annotations

IPS_SERVICE = "HealthcareService/ips-test-service"
CDS_CLINICIAN = "Practitioner/dr-cds"  # the CDS Hooks calls' userId (tests/support/cds.py DR)
IPS_SERVICE_NAME = "Test IPS employment service (fictional)"


def practitioner(ref: str, family: str = "Smith", given: str = "Alex") -> dict:
    """A Practitioner named "Dr <initial> <family>" with the id `ref` names."""
    return {
        "resourceType": "Practitioner",
        "id": ref.removeprefix("Practitioner/"),
        "active": True,
        "name": [{"use": "official", "family": family, "given": [given], "prefix": ["Dr"]}],
    }


def ips_service(ref: str = IPS_SERVICE) -> dict:
    """The practice's IPS service: a HealthcareService with a name and a contact."""
    return {
        "resourceType": "HealthcareService",
        "id": ref.removeprefix("HealthcareService/"),
        "active": True,
        "name": IPS_SERVICE_NAME,
        "telecom": [{"system": "email", "value": "ips@test-service.invalid", "use": "work"}],
    }


def people() -> list[dict]:
    """The CDS calls' clinician and the IPS service: what FakeFhir holds from the start."""
    return [practitioner(CDS_CLINICIAN), ips_service()]
