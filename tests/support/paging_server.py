"""A fake FHIR server for reading a practice server with `responses`: five small patients
(`DATA`) answered from memory with `_count`/`_offset` paging, `_id` and `patient`/`subject`
searches; a fault planned for one page of one type is served (once per planned answer) before
the real page."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import orjson

BASE = "https://fhir.example.org/r4"
OTHER = "https://elsewhere.example.net/r4"
FHIR_JSON = "application/fhir+json"
AS_OF_TEXT = "2026-11-26"
PAIN = {"coding": [{"system": "http://snomed.info/sct", "code": "82423001"}]}
UNEMPLOYED = {"coding": [{"system": "http://loinc.org", "code": "LA17956-6"}]}
Answer = tuple[int, dict[str, str], bytes]


def records(pid: str) -> list[dict]:
    subject = {"reference": f"Patient/{pid}"}
    return [
        {"resourceType": "Patient", "id": pid, "birthDate": "1980-02-03"},
        {
            "resourceType": "Condition",
            "id": f"{pid}-c",
            "code": PAIN,
            "subject": subject,
            "onsetDateTime": "2025-01-15",
        },
        {
            "resourceType": "Observation",
            "id": f"{pid}-o",
            "status": "final",
            "subject": subject,
            "code": {"coding": [{"system": "http://loinc.org", "code": "67875-5"}]},
            "valueCodeableConcept": UNEMPLOYED,
            "effectiveDateTime": "2026-06-01",
        },
    ]


DATA = [r for pid in ("a", "b", "c", "d", "e") for r in records(pid)]


def _patient_ref(resource: dict) -> str | None:
    return (resource.get("subject") or resource.get("for") or {}).get("reference")


class FakeServer:
    """Searches over DATA: `_count`/`_offset` paging, `_id`, `patient`/`subject` (OR lists)."""

    def __init__(self, ignore_patient: bool = False) -> None:
        self.faults: dict[tuple[str, int], list[Answer]] = {}
        self.ignore_patient = ignore_patient

    def __call__(self, request: object) -> Answer:
        parts = urlsplit(request.url)  # type: ignore[attr-defined]
        rtype = parts.path.rsplit("/", 1)[-1]
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        count, offset = int(query.get("_count", "20")), int(query.get("_offset", "0"))
        planned = self.faults.get((rtype, offset // count + 1))
        if planned:
            return planned.pop(0)
        found = [r for r in DATA if r["resourceType"] == rtype]
        for name, value in query.items():
            wanted = set(value.split(","))
            if name == "_id":
                found = [r for r in found if r["id"] in wanted]
            elif name in ("patient", "subject") and not self.ignore_patient:
                found = [r for r in found if _patient_ref(r) in wanted]
            elif name not in ("_count", "_offset", "patient"):
                return 400, {}, b""
        page = found[offset : offset + count]
        bundle: dict = {"resourceType": "Bundle", "type": "searchset", "total": len(found)}
        bundle["entry"] = [{"resource": r, "search": {"mode": "match"}} for r in page]
        if offset + count < len(found):
            next_query = urlencode({**query, "_offset": offset + count})
            bundle["link"] = [{"relation": "next", "url": f"{BASE}/{rtype}?{next_query}"}]
        return 200, {"Content-Type": FHIR_JSON}, orjson.dumps(bundle)
