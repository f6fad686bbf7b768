"""Set-up shared by the tests that run against a real FHIR server (sekmet-fhir on 127.0.0.1).

    with running_test_server() as server:          # in a fixture: skips when it cannot install
        with strict_client(server.base_url) as client:
            proposed = load_proposed_patient(client, "rv", now=NOW)

`load_proposed_patient` PUTs the records of a patient the default ruleset proposes for IPS
(chronic pain, out of work, two fit notes; ids unique per call, so a shared server is fine) and
posts the proposal transaction the screen would write for them.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest

from ips_screen import __version__
from ips_screen.codes import DECLINE_REASON_SYSTEM
from ips_screen.devtools.testserver import FhirTestServer, IndexUnreachable
from ips_screen.engine import evaluate
from ips_screen.fhir.client import FhirClient
from ips_screen.presentation.nhs_number import NHS_NUMBER_SYSTEM
from ips_screen.proposals.build import build_patient_transaction
from tests.helpers import (
    AS_OF,
    CHRONIC_PAIN,
    MAY_BE_FIT,
    NOT_FIT,
    UNEMPLOYED,
    condition,
    default_ruleset,
    employment,
    facts_from,
    fit_note,
    ips_codes,
    patient,
    ref,
)


@contextlib.contextmanager
def running_test_server() -> Iterator[FhirTestServer]:
    """A started FHIR test server, stopped on exit. The test is skipped only when sekmet-fhir
    cannot be installed because the package index is unreachable; any other failure fails it."""
    server = FhirTestServer()
    try:
        server.start()
    except IndexUnreachable as exc:
        pytest.skip(f"no FHIR test server: {exc}")
    try:
        yield server
    finally:
        server.stop()


def strict_client(base_url: str) -> FhirClient:
    """A client that asks the server to reject what it does not understand (unknown search
    parameters are otherwise silently ignored). A context manager."""
    return FhirClient(base_url, headers={"Prefer": "handling=strict"}, timeout=(5, 30))


def search(client: FhirClient, rtype: str, params: dict[str, str] | None = None) -> list[dict]:
    """The resources of type `rtype` a search returns (without included or outcome resources)."""
    return [r for r in client.search(rtype, params or {}) if r.get("resourceType") == rtype]


def unique_patient_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


PATIENT_NAME = {"use": "official", "family": "Okafor", "given": ["Ada"]}  # "OKAFOR, Ada"


def nhs_number_for(pid: str) -> str:
    """A valid NHS number of the 999 range (test numbers, never issued) made from the id."""
    seed = int(uuid.uuid5(uuid.NAMESPACE_URL, pid).hex, 16)
    for attempt in range(20):
        first = f"999{(seed + attempt) % 1_000_000:06d}"
        total = sum(int(d) * w for d, w in zip(first, range(10, 1, -1), strict=True))
        check = (11 - total % 11) % 11
        if check != 10:
            return f"{first}{check}"
    raise AssertionError("unreachable: one of 20 consecutive numbers has a check digit")


def proposed_patient_records(pid: str, employed_since: str = "2026-06-01") -> list[dict]:
    """The records of a patient the default ruleset proposes: a Patient named OKAFOR, Ada with
    a valid test NHS number (`nhs_number_for(pid)`), a chronic pain Condition, out of work since
    `employed_since`, and fit notes (an Observation and a DocumentReference). Record ids are
    `<pid>-pain`, `-emp`, `-fit1` and `-fit2`."""
    return [
        patient(
            pid,
            "1980-01-01",
            generalPractitioner=[ref(f"Practitioner/gp-{pid}")],
            name=[PATIENT_NAME],
            identifier=[{"system": NHS_NUMBER_SYSTEM, "value": nhs_number_for(pid)}],
        ),
        condition(CHRONIC_PAIN, id=f"{pid}-pain", subject=pid),
        employment(UNEMPLOYED, employed_since, id=f"{pid}-emp", subject=pid),
        fit_note(NOT_FIT, "2026-05-01", id=f"{pid}-fit1", subject=pid),
        fit_note(MAY_BE_FIT, "2026-08-01", "DocumentReference", id=f"{pid}-fit2", subject=pid),
    ]


def write_proposal(
    client: FhirClient, pid: str, resources: list[dict], *, now: datetime
) -> tuple[str, str]:
    """Post the proposal transaction the screen writes for the patient; (Task id, proposal id)."""
    ruleset = default_ruleset()
    decision = evaluate(ruleset, facts_from(resources, ruleset), AS_OF)
    assert decision.outcome == "propose", decision.reasons
    client.transaction(
        build_patient_transaction(decision, ruleset, now=now, tool_version=__version__)
    )
    (task,) = search(client, "Task", {"patient": f"Patient/{pid}"})
    return task["id"], task["focus"]["reference"].removeprefix("ServiceRequest/")


@dataclass(frozen=True)
class Proposed:
    """One patient whose records and proposal are on the server."""

    pid: str
    resources: list[dict]
    task_id: str
    sr_id: str

    def ref(self, rtype: str, suffix: str) -> str:
        return f"{rtype}/{self.pid}-{suffix}"


def load_proposed_patient(
    client: FhirClient,
    prefix: str,
    *,
    now: datetime,
    employed_since: str = "2026-06-01",
    missing: tuple[str, ...] = (),
) -> Proposed:
    """PUT a new patient's records (except the `missing` ones, by id suffix: "emp", "fit2", ...)
    and post the screen's proposal for them."""
    pid = unique_patient_id(prefix)
    resources = proposed_patient_records(pid, employed_since)
    for resource in resources:
        if resource["id"].removeprefix(f"{pid}-") not in missing:
            client.update(resource)
    task_id, sr_id = write_proposal(client, pid, resources, now=now)
    return Proposed(pid, resources, task_id, sr_id)


EARLIER_DECLINER = "Practitioner/dr-old-decliner"  # Dr Alan Earlier


def earlier_decline(client: FhirClient, pid: str) -> None:
    """A proposal of 14 months ago declined ("not interested", with a note) by EARLIER_DECLINER."""
    client.update(
        {
            "resourceType": "Practitioner",
            "id": EARLIER_DECLINER.removeprefix("Practitioner/"),
            "name": [{"prefix": ["Dr"], "given": ["Alan"], "family": "Earlier"}],
        }
    )
    client.update(
        {
            "resourceType": "ServiceRequest",
            "id": f"{pid}-old-sr",
            "status": "revoked",
            "intent": "proposal",
            "code": ips_codes(),
            "subject": {"reference": f"Patient/{pid}"},
            "authoredOn": "2025-09-01",
        }
    )
    client.update(
        {
            "resourceType": "Task",
            "id": f"{pid}-old-task",
            "status": "rejected",
            "intent": "proposal",
            "statusReason": {
                "coding": [{"system": DECLINE_REASON_SYSTEM, "code": "not-interested"}],
                "text": "Patient not interested in IPS at present",
            },
            "code": {
                "coding": [
                    {"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "approve"}
                ]
            },
            "focus": {"reference": f"ServiceRequest/{pid}-old-sr"},
            "for": {"reference": f"Patient/{pid}"},
            "authoredOn": "2025-09-01T10:00:00+01:00",
            "lastModified": "2025-09-20T11:00:00+01:00",
            "note": [{"text": "Caring for a parent this year"}],
        }
    )
    client.create(
        {
            "resourceType": "Provenance",
            "target": [{"reference": f"Task/{pid}-old-task"}],
            "recorded": "2025-09-20T11:00:00+01:00",
            "agent": [
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                "code": "author",
                            }
                        ]
                    },
                    "who": {"reference": EARLIER_DECLINER},
                }
            ],
        }
    )
