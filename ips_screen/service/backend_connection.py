"""The service's connection to the practice FHIR server (`[fhir]` in serve.toml).

It is a `FhirConnection` like the nightly job's and the command line's, opened by the same
`open_client`; only the defaults and the patience differ, because a person is waiting:

    with_backend_defaults(data)   serve.toml data with the service's defaults filled in: a 20 s
                                  read timeout and, for SMART, the scopes it reads and writes with
    open_backend(connection, environ)   the client: 3 attempts with short backoff, 1000 pages
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ips_screen.fhir.connection import FhirConnection, open_client

if TYPE_CHECKING:
    from ips_screen.fhir.client import FhirClient

DEFAULT_BACKEND_SCOPE = (
    "system/Patient.rs system/Condition.rs system/Observation.rs system/Procedure.rs "
    "system/DocumentReference.rs system/ServiceRequest.cruds system/Task.cruds "
    "system/CarePlan.crs system/Provenance.crs system/Device.crs"
)
DEFAULT_BACKEND_READ_TIMEOUT = 20.0  # seconds
INTERACTIVE_MAX_PAGES = 1000


def with_backend_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """`data` (a serve.toml, its 0.1 keys already moved) with the backend's defaults."""
    fhir = data.get("fhir")
    if not isinstance(fhir, dict):
        return data
    fhir = {"read_timeout_seconds": DEFAULT_BACKEND_READ_TIMEOUT, **fhir}
    auth = fhir.get("auth")
    if isinstance(auth, dict) and auth.get("method") == "smart":
        fhir["auth"] = {"scope": DEFAULT_BACKEND_SCOPE, **auth}
    return {**data, "fhir": fhir}


def open_backend(connection: FhirConnection, environ: Mapping[str, str]) -> FhirClient:
    """The client for the practice server, with the service's own credentials and fewer,
    shorter retries than a batch job's."""
    from ips_screen.fhir.client import RetryPolicy

    retry = RetryPolicy(max_attempts=3, backoff_initial=0.5, backoff_max=4.0)
    return open_client(connection, environ, retry=retry, max_pages=INTERACTIVE_MAX_PAGES)
