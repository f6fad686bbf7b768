"""The patient's name for the printed leaflet, read from the practice FHIR server when the review
page is shown (never stored). Kept apart so a fuller patient identity reader can replace it.

A name is shown only on clinician screens (the review page); it is never logged and never put in
a batch output. A Patient that cannot be read, or has no usable name, gives None.
"""

from __future__ import annotations

from datetime import date

from ips_screen.dates import parse_fhir_date
from ips_screen.errors import ServerError
from ips_screen.fhir.client import FhirClient

USES = ("official", "usual")  # preferred, in order; then any name but old, nickname or maiden


def read_patient_name(client: FhirClient, patient_ref: str | None, today: date) -> str | None:
    """The display name of `Patient/<id>` on the server (None when it cannot be had)."""
    kind, _, patient_id = (patient_ref or "").partition("/")
    if kind != "Patient" or not patient_id:
        return None
    try:
        patient, _ = client.read("Patient", patient_id)
    except ServerError:
        return None
    return display_name(patient, today)


def display_name(patient: dict, today: date) -> str | None:
    """ "Given Family" (or the name's text) of the current official, else usual, else other name."""
    names = [n for n in patient.get("name") or () if isinstance(n, dict) and _current(n, today)]
    names = [n for n in names if n.get("use") not in ("old", "nickname", "maiden")]
    names.sort(key=lambda n: USES.index(n["use"]) if n.get("use") in USES else len(USES))
    for name in names:
        text = name.get("text")
        given = [g for g in name.get("given") or () if isinstance(g, str)]
        family = name.get("family") if isinstance(name.get("family"), str) else ""
        words = " ".join([*given, family]).split() or (
            text.split() if isinstance(text, str) else []
        )
        if words:
            return " ".join(words)
    return None


def _current(name: dict, today: date) -> bool:
    period = name.get("period") if isinstance(name.get("period"), dict) else {}
    end = parse_fhir_date(period.get("end"))
    return end is None or end >= today
