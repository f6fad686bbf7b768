"""The `requests` Session under `FhirClient`: credentials only ever go to the FHIR server's origin.

On every redirect hop `OriginBoundSession` strips Authorization and re-applies the client's
`FhirAuth`, which attaches credentials only for its own origin (and never reads .netrc);
`without_auth` strips them from one request (e.g. a Bulk file on storage that needs no token).
"""

from __future__ import annotations

from typing import Any

import requests

from ips_screen.fhir.auth import FhirAuth


class OriginBoundSession(requests.Session):
    """A Session that, on every redirect hop, strips Authorization and re-applies the client's
    FhirAuth, which attaches credentials only for the FHIR server's own origin (no .netrc)."""

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: Any) -> None:
        prepared_request.headers.pop("Authorization", None)
        if isinstance(self.auth, FhirAuth):
            self.auth(prepared_request)


def without_auth(r: requests.PreparedRequest) -> requests.PreparedRequest:
    r.headers.pop("Authorization", None)
    return r
