"""The patient's data for a patient-view call: from prefetch, else from the EHR's FHIR server.

Each prefetch key's value may be a resource, a searchset Bundle, or null ("the EHR has no data
for it", CDS Hooks 2.0). A key the EHR did not send, or sent as an OperationOutcome (it failed to
prefetch), is fetched from `fhirServer` with `fhirAuthorization.access_token`: the token is sent
only to that server's origin (never to a next-page link elsewhere), with short timeouts and no
retries; the server must be https, or one of the configured `ehr_fhir_servers` when they are
listed (the only way to allow a loopback http server, e.g. in tests). Every key is needed
(requests and tasks hold the loop guard, procedures and observations the end-of-life
exclusion), so a key that neither gives is `MissingData` (412).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from ips_screen.errors import ConfigError, ServerError
from ips_screen.fhir.auth import FhirAuth, NoAuth
from ips_screen.fhir.client import FhirClient, RetryPolicy

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
FETCH_TIMEOUT = (3.05, 10.0)
MAX_PAGES = 20


class MissingData(Exception):
    """The service cannot get data it needs: the call is answered 412."""


class _AccessToken(FhirAuth):
    """The EHR user's access token, attached only to requests to the EHR's FHIR server."""

    def __init__(self, base_url: str, token: str) -> None:
        super().__init__(base_url)
        self._token = token

    def authorization(self) -> str:
        return f"Bearer {self._token}"


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
    out = []
    for entry in value.get("entry") or ():
        if not isinstance(entry, dict) or (entry.get("search") or {}).get("mode") == "outcome":
            continue
        resource = entry.get("resource")
        if isinstance(resource, dict) and resource.get("resourceType") != "OperationOutcome":
            out.append(resource)
    return out


def _has_patient(resources: list[dict], patient_id: str) -> bool:
    return any(r.get("resourceType") == "Patient" and r.get("id") == patient_id for r in resources)


def gather(
    patient_id: str,
    prefetch: Mapping[str, Any] | None,
    fhir_server: str | None,
    access_token: str | None,
    allowed_servers: Sequence[str] = (),
) -> list[dict]:
    """Every resource for the patient, prefetch first; `MissingData` when some cannot be had.

    `fhir_server` must be one of `allowed_servers` when that is not empty, else any https URL.
    """
    found: dict[str, list[dict]] = {}
    missing: list[str] = []
    for key in PREFETCH:
        parsed = _value_resources(prefetch[key]) if prefetch and key in prefetch else None
        if parsed is None or (key == "patient" and not _has_patient(parsed, patient_id)):
            missing.append(key)
        else:
            found[key] = parsed
    if missing:
        if not fhir_server:
            raise MissingData(f"no usable prefetch for {', '.join(missing)} and no fhirServer")
        check_server(fhir_server, allowed_servers)
        fetched = fetch(fhir_server, access_token, patient_id, missing)
        found.update(fetched)
        if not _has_patient(found["patient"], patient_id):
            raise MissingData("the Patient is neither in prefetch nor on the fhirServer")
        log.info("fetched %s from the EHR's FHIR server", ", ".join(missing))
    return [r for key in PREFETCH for r in found[key]]


def check_server(fhir_server: str, allowed_servers: Sequence[str]) -> None:
    """`MissingData` unless the EHR's fhirServer may be read (see `gather`)."""
    if allowed_servers:
        if fhir_server.rstrip("/") not in allowed_servers:
            raise MissingData("fhirServer is not one of the configured ehr_fhir_servers")
    elif urlsplit(fhir_server).scheme != "https":
        raise MissingData("fhirServer must be an https URL")


def _client(fhir_server: str, access_token: str | None) -> FhirClient:
    try:
        auth = _AccessToken(fhir_server, access_token) if access_token else NoAuth(fhir_server)
        return FhirClient(
            fhir_server,
            auth=auth,
            timeout=FETCH_TIMEOUT,
            retry=RetryPolicy(max_attempts=1),
            max_pages=MAX_PAGES,
        )
    except ConfigError as exc:
        raise MissingData(f"unusable fhirServer: {exc}") from None


def _fetch_one(fhir_server: str, token: str | None, patient_id: str, key: str) -> list[dict]:
    with _client(fhir_server, token) as client:
        if key == "patient":
            try:
                return [client.read("Patient", patient_id)[0]]
            except ServerError as exc:
                if str(exc).startswith(("HTTP 404", "HTTP 410")):
                    return []
                raise
        rtype = SEARCH_TYPES[key]
        return [
            r
            for r in client.search(rtype, {"patient": patient_id})
            if r.get("resourceType") == rtype
        ]


def fetch(
    fhir_server: str, access_token: str | None, patient_id: str, keys: list[str]
) -> dict[str, list[dict]]:
    """The prefetch keys' data read from the EHR's FHIR server, in parallel."""
    _client(fhir_server, access_token).close()  # check the URL before starting threads
    with ThreadPoolExecutor(max_workers=len(keys)) as pool:
        futures = {
            k: pool.submit(_fetch_one, fhir_server, access_token, patient_id, k) for k in keys
        }
        try:
            return {key: future.result() for key, future in futures.items()}
        except ServerError as exc:
            log.warning("reading the EHR's FHIR server failed: %s", exc)
            raise MissingData(f"reading the fhirServer failed: {exc}") from None
