"""The patient's data for a patient-view call: from prefetch, else from the EHR's FHIR server.

Each prefetch key's value may be a resource, a searchset Bundle, or null ("the EHR has no data
for it", CDS Hooks 2.0). A key the EHR did not send, or sent as an OperationOutcome (it failed to
prefetch), is fetched from `fhirServer` with `fhirAuthorization.access_token`. A paginated
prefetch Bundle (one with a `next` link) is completed: its next pages are read when the link is
on the `fhirServer`'s origin, otherwise the key is searched again from the start; so a patient's
decision never depends on how the EHR paged its prefetch. All reads from `fhirServer` go through
`ehr_reader.EhrReader` (allowed servers only, no redirects, one deadline and byte budget per call).

Every key is needed (requests and tasks hold the loop guard, procedures and observations the
end-of-life exclusion), so a key that neither gives is `MissingData` (412). When the fhirServer
is refused or fails, the EHR gets a generic message; the reason goes to the log only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from ips_screen.fhir.paging import next_link
from ips_screen.service.ehr_reader import EhrReader, ReadLimits, bundle_resources
from ips_screen.service.guarded_http import FetchRefused

__all__ = ["PREFETCH", "SEARCH_TYPES", "MissingData", "ReadLimits", "gather"]

log = logging.getLogger("ips_screen.service")

PREFETCH: dict[str, str] = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "observations": "Observation?patient={{context.patientId}}",
    "procedures": "Procedure?patient={{context.patientId}}",
    "documents": "DocumentReference?patient={{context.patientId}}",
    "requests": "ServiceRequest?patient={{context.patientId}}",
    "tasks": "Task?patient={{context.patientId}}",
}
SEARCH_TYPES = {
    "conditions": "Condition",
    "observations": "Observation",
    "procedures": "Procedure",
    "documents": "DocumentReference",
    "requests": "ServiceRequest",
    "tasks": "Task",
}
UNREADABLE = "the patient's data could not be read from the fhirServer"
"""What the EHR is told when the fhirServer is refused or fails (details go to the log)."""


class MissingData(Exception):
    """The service cannot get data it needs: the call is answered 412 with this message."""


def _value_resources(value: object) -> list[dict] | None:
    """The resources in a prefetch value; None when it is unusable (an error, malformed)."""
    if value is None:
        return []
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        return None
    if value["resourceType"] == "OperationOutcome":
        return None
    if value["resourceType"] != "Bundle":
        return [value]
    if not isinstance(value.get("entry") or [], list):
        return None
    return bundle_resources(value)


def _has_patient(resources: list[dict], patient_id: str) -> bool:
    return any(r.get("resourceType") == "Patient" and r.get("id") == patient_id for r in resources)


def gather(
    patient_id: str,
    prefetch: Mapping[str, Any] | None,
    fhir_server: str | None,
    access_token: str | None,
    allowed_servers: Sequence[str] = (),
    *,
    limits: ReadLimits | None = None,
) -> list[dict]:
    """Every resource for the patient, prefetch first; `MissingData` when some cannot be had.

    `fhir_server` must be one of `allowed_servers` when that is not empty, else an https URL on
    public addresses. `limits` gives the deadline, byte budget and page count for the call
    (default `ReadLimits()`)."""
    found: dict[str, list[dict]] = {}
    missing: list[str] = []
    more: dict[str, str] = {}  # key -> next-page link of a paginated prefetch Bundle
    for key in PREFETCH:
        value = prefetch[key] if prefetch and key in prefetch else None
        parsed = _value_resources(value) if prefetch and key in prefetch else None
        if parsed is None or (key == "patient" and not _has_patient(parsed, patient_id)):
            missing.append(key)
            continue
        found[key] = parsed
        link = next_link(value) if isinstance(value, dict) and key in SEARCH_TYPES else None
        if link is not None:
            more[key] = link
    if not missing and not more:
        return [r for key in PREFETCH for r in found[key]]
    if not fhir_server:
        what = ", ".join([*missing, *(f"{k} (paginated)" for k in more)])
        raise MissingData(f"no usable prefetch for {what} and no fhirServer")
    limits = replace(limits or ReadLimits(), allowed_servers=tuple(allowed_servers))
    try:
        reader = EhrReader(fhir_server, access_token, limits)
        fetched = _read_all(reader, patient_id, missing, more)
    except FetchRefused as exc:
        log.warning("patient-view Patient/%s: fhirServer not read: %s", patient_id, exc.reason)
        raise MissingData(UNREADABLE) from None
    for key, (resources, whole) in fetched.items():
        found[key] = resources if whole else [*found[key], *resources]
    if not _has_patient(found["patient"], patient_id):
        raise MissingData("the Patient is neither in prefetch nor on the fhirServer")
    log.info(
        "patient-view Patient/%s: read %s from the EHR's FHIR server",
        patient_id,
        ", ".join([*missing, *(f"{k} (further pages)" for k in more)]),
    )
    return [r for key in PREFETCH for r in found[key]]


def _read_all(
    reader: EhrReader, patient_id: str, missing: list[str], more: dict[str, str]
) -> dict[str, tuple[list[dict], bool]]:
    """Key -> (resources, True if they replace the prefetch's): the missing keys, and the rest
    of each paginated key, read in parallel."""

    def run(key: str) -> tuple[list[dict], bool]:
        if key in more:
            return _rest_of(reader, patient_id, key, more[key])
        return _read_key(reader, patient_id, key), True

    keys = [*missing, *more]
    with ThreadPoolExecutor(max_workers=len(keys)) as pool:
        futures = {key: pool.submit(run, key) for key in keys}
        return {key: future.result() for key, future in futures.items()}


def _read_key(reader: EhrReader, patient_id: str, key: str) -> list[dict]:
    if key == "patient":
        return reader.read_patient(patient_id)
    return reader.search(SEARCH_TYPES[key], patient_id)


def _rest_of(reader: EhrReader, patient_id: str, key: str, link: str) -> tuple[list[dict], bool]:
    """The pages after a prefetch page, or (True) the whole key searched again when the link is
    not on the fhirServer's origin."""
    url = reader.next_url_of(link)
    if url is None:
        return reader.search(SEARCH_TYPES[key], patient_id), True
    rtype = SEARCH_TYPES[key]
    return [r for r in reader.pages(url) if r.get("resourceType") == rtype], False
