"""A patient's IPS history read from the FHIR server: their ServiceRequests, review Tasks and the
Provenance of the decisions, shaped by `ips_screen.presentation.history` (which requests count,
how declines are dated and how long they suppress: the ruleset's `referral-declined` rule), with
the deciding clinicians' names. Clinician screens only (`review show`, the review page); logs name
resource ids only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from ips_screen.fhir.client import FhirClient, Resource
from ips_screen.presentation.history import HistoryEntry, ips_history
from ips_screen.ruleset.loader import CompiledRuleset

_CHUNK = 40  # references per search


@dataclass(frozen=True)
class PatientHistory:
    entries: list[HistoryEntry] = field(default_factory=list)  # newest first
    names: dict[str, str] = field(default_factory=dict)  # clinician reference -> name

    def who(self, entry: HistoryEntry) -> str | None:
        return self.names.get(entry.who, entry.who) if entry.who else None


def _of_type(found: list[Resource], rtype: str) -> list[Resource]:
    return [r for r in found if r.get("resourceType") == rtype]


def practitioner_name(resource: Resource) -> str | None:
    """A Practitioner's (or Organization's) name as people write it: "Dr Jane Smith"."""
    if isinstance(resource.get("name"), str):
        return resource["name"].strip() or None
    for name in resource.get("name") or ():
        if not isinstance(name, dict):
            continue
        if name.get("text"):
            return str(name["text"]).strip()
        parts = [
            *(p for p in name.get("prefix") or () if isinstance(p, str)),
            *(g for g in name.get("given") or () if isinstance(g, str)),
            *([name["family"]] if isinstance(name.get("family"), str) else []),
        ]
        if parts:
            return " ".join(parts)
    return None


def practitioner_names(client: FhirClient, refs: list[str]) -> dict[str, str]:
    """Reference -> name of the Practitioners (and PractitionerRoles' practitioners) in `refs`;
    a reference the server cannot name is left out."""
    out: dict[str, str] = {}
    ids = sorted({r.removeprefix("Practitioner/") for r in refs if r.startswith("Practitioner/")})
    for start in range(0, len(ids), _CHUNK):
        for resource in _of_type(
            list(client.search("Practitioner", [("_id", ",".join(ids[start : start + _CHUNK]))])),
            "Practitioner",
        ):
            name = practitioner_name(resource)
            if name:
                out[f"Practitioner/{resource['id']}"] = name
    roles = sorted({r for r in refs if r.startswith("PractitionerRole/")})
    for ref in roles:
        found = list(
            client.search(
                "PractitionerRole",
                [
                    ("_id", ref.removeprefix("PractitionerRole/")),
                    ("_include", "PractitionerRole:practitioner"),
                ],
            )
        )
        person = next((practitioner_name(p) for p in _of_type(found, "Practitioner")), None)
        if person:
            out[ref] = person
    return out


def read_history(
    client: FhirClient, patient_ref: str, ruleset: CompiledRuleset, today: date
) -> PatientHistory:
    """The IPS history of the Patient `patient_ref` ("Patient/<id>") on `today`."""
    requests = _of_type(
        list(client.search("ServiceRequest", [("subject", patient_ref)])), "ServiceRequest"
    )
    tasks = _of_type(list(client.search("Task", [("patient", patient_ref)])), "Task")
    targets = [f"Task/{t['id']}" for t in tasks if t.get("id")]
    targets += [f"ServiceRequest/{r['id']}" for r in requests if r.get("status") == "revoked"]
    provenances: list[Resource] = []
    for start in range(0, len(targets), _CHUNK):
        chunk = ",".join(targets[start : start + _CHUNK])
        provenances += _of_type(
            list(client.search("Provenance", [("target", chunk)])), "Provenance"
        )
    entries = ips_history([*requests, *tasks, *provenances], ruleset, today)
    names = practitioner_names(client, [e.who for e in entries if e.who])
    return PatientHistory(entries, names)
