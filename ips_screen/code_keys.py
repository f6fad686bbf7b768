"""The key a coding is matched by: (system, code), normalised as real exports need.

Surrounding whitespace is removed, the code upper-cased, and for ICD-10 family systems the dot
removed (R52.2 = R522). Shared by the codelists and the criterion kinds.
"""

from __future__ import annotations

ICD_SYSTEMS = frozenset(
    {
        "http://hl7.org/fhir/sid/icd-10",
        "http://hl7.org/fhir/sid/icd-10-cm",
        "http://hl7.org/fhir/sid/icd-10-uk",
        "http://id.who.int/icd/release/11/mms",
    }
)

Coding = tuple[str, str]


def normalise(system: str, code: str) -> Coding:
    """The key a coding is matched by."""
    system = system.strip()
    code = code.strip().upper()
    if system in ICD_SYSTEMS:
        code = code.replace(".", "")
    return system, code
