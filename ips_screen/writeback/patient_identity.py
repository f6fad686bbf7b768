"""Who a patient is, read from the FHIR server at display time, for clinician screens only.

Name, date of birth with age (whole years on the given day, London) and NHS number (identifier
system https://fhir.nhs.uk/Id/nhs-number, shown as 3 3 4 digits, its modulus 11 check verified).
The review page, `review list/show` and nothing else show these: batch outputs (decisions,
summary, report, worklist CSV) and logs carry resource ids only, and this module never logs a
Patient's contents.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from ips_screen.dates import age_on, parse_fhir_date
from ips_screen.fhir.client import FhirClient, Resource
from ips_screen.presentation.nhs_number import digits_of, formatted, is_valid, nhs_number_of

_CHUNK = 50  # Patient ids per search


@dataclass(frozen=True)
class PatientIdentity:
    """A Patient as a clinician recognises them; `found` False when the server lacks it."""

    ref: str  # "Patient/<id>"
    found: bool = True
    name: str | None = None  # "FAMILY, Given"
    birth_date: str | None = None  # YYYY-MM-DD
    age: int | None = None  # whole years on the day of display
    nhs_number: str | None = None  # "943 476 5919" (as recorded when not ten digits)
    nhs_number_valid: bool | None = None  # None when no NHS number is recorded

    def matches(self, query: str) -> bool:
        """Whether a search text finds this patient: every word in the name (any case), or the
        NHS number (spaces allowed), or its start when at least three digits are given."""
        text = query.strip()
        if not text:
            return True
        number = digits_of(text)
        if number.isdigit():
            own = digits_of(self.nhs_number or "")
            return bool(own) and (own == number or (len(number) >= 3 and own.startswith(number)))
        name = (self.name or "").casefold().replace(",", " ")
        return all(word in name for word in text.casefold().replace(",", " ").split())


def display_name(patient: Resource) -> str | None:
    """The Patient's name: the official (else usual, else first) HumanName as "FAMILY, Given",
    else its text."""
    names = [n for n in patient.get("name") or () if isinstance(n, dict)]
    if not names:
        return None
    chosen = next(
        (n for use in ("official", "usual") for n in names if n.get("use") == use), names[0]
    )
    family = chosen.get("family") if isinstance(chosen.get("family"), str) else ""
    given = " ".join(g for g in chosen.get("given") or () if isinstance(g, str))
    if family and given:
        return f"{family.upper()}, {given}"
    return (family.upper() or given or chosen.get("text") or "").strip() or None


def identity_of(ref: str, patient: Resource | None, today: date) -> PatientIdentity:
    """A Patient resource (None: not on the server) as shown to a clinician on `today`."""
    if patient is None:
        return PatientIdentity(ref, found=False)
    birth = parse_fhir_date(patient.get("birthDate"))
    number = nhs_number_of(patient)
    return PatientIdentity(
        ref,
        name=display_name(patient),
        birth_date=birth.isoformat() if birth else None,
        age=age_on(birth, today) if birth and birth <= today else None,
        nhs_number=formatted(number) if number else None,
        nhs_number_valid=is_valid(number) if number else None,
    )


def read_identities(
    client: FhirClient, refs: Iterable[str | None], today: date
) -> dict[str, PatientIdentity]:
    """The identities of the Patients `refs` ("Patient/<id>"), read in searches of a few dozen
    ids; a Patient the server lacks is `found=False`."""
    ids = list(
        dict.fromkeys(r.removeprefix("Patient/") for r in refs if r and r.startswith("Patient/"))
    )
    found: dict[str, Resource] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        for resource in client.search("Patient", [("_id", ",".join(chunk))]):
            if resource.get("resourceType") == "Patient" and resource.get("id") in chunk:
                found[resource["id"]] = resource
    return {f"Patient/{i}": identity_of(f"Patient/{i}", found.get(i), today) for i in ids}
