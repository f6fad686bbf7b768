"""The FHIR R4 transport: how ips-screen talks HTTP to a FHIR server, and nothing of what it says.

It knows requests, responses, credentials, retries, paging, OperationOutcomes and Bulk Data
exports, and imports no domain package (no ruleset, facts, engine, proposals, sources, outputs,
store, writeback, nightly, service or cli: an import-linter contract in pyproject.toml holds it).
Workflow on the server (writing proposals, the duplicate sweep, the locks, the review) is
`ips_screen.writeback`; the loader and the test server are `ips_screen.devtools`.

    client = FhirClient(base_url, auth=BearerTokenAuth(base_url, DEFAULT_TOKEN_ENV))
    for patient in client.search("Patient", {"_count": 500}):
        ...
    result = export(client, ExportRequest(types=("Patient",), since=last), work_dir)

Modules (the names below are the public API; the rest of each module is private to the package,
and a test checks that code outside it imports nothing else):

- `client`: `FhirClient` (read, search with paging, conditional create, transactions), with
  `retry` (`RetryPolicy`: which failures are retried, how long to wait), `paging` (`next_link`,
  following a Bundle's next link on the server's own origin), `response` (`Resource`,
  `WriteResult`), `outcome` (every failure a one-line `ServerError` naming status, method,
  path and the OperationOutcome's diagnostics), `session` (credentials only to the server's
  origin, across redirects) and `capabilities` (what a CapabilityStatement says can be searched).
- `auth`: `FhirAuth` and its kinds (`NoAuth`, `BearerTokenAuth`, `SmartBackendAuth`), sending
  credentials only to the server's own origin (`origin_of`).
- `connection`: `FhirConnection`, the one description of a server connection (base URL, auth
  settings, timeouts, page size) that the CLI, practice.toml and serve.toml share, and
  `open_client`, the one factory that builds a `FhirClient` from it, and `ConfigPath` (a path
  setting of either file, never empty); `connection_keys` reads the old config keys with a
  deprecation line.
- `bulk`: Bulk Data 2.0 `export` of an `ExportRequest` (`bulk_request`): kick-off
  (`bulk_kickoff`), status (`bulk_status`), download and checking of the files (`bulk_download`,
  `bulk_lines`, `bulk_filter`), resume; `bulk_http` holds what they share.
"""

from ips_screen.fhir.auth import (
    DEFAULT_SCOPE,
    DEFAULT_TOKEN_ENV,
    BearerTokenAuth,
    FhirAuth,
    NoAuth,
    SmartBackendAuth,
    load_private_key,
    origin_of,
)
from ips_screen.fhir.bulk import (
    STATE_FILE,
    ExportDamaged,
    ExportRequest,
    ExportResult,
    ExportUnsupported,
    export,
    supports_export,
)
from ips_screen.fhir.client import (
    FHIR_JSON,
    FhirClient,
    Resource,
    RetryPolicy,
    SearchParams,
    WriteResult,
    capability_search_params,
)
from ips_screen.fhir.connection import (
    BearerAuthSettings,
    ConfigPath,
    ConfigPathText,
    FhirConnection,
    NoAuthSettings,
    SmartAuthSettings,
    error_key,
    error_location,
    error_message,
    open_client,
    without_secrets,
)
from ips_screen.fhir.connection_keys import (
    Moved,
    log_deprecations,
    old_key_label,
    old_key_path,
    upgrade_practice_keys,
    upgrade_serve_keys,
)
from ips_screen.fhir.paging import next_link

__all__ = [
    "DEFAULT_SCOPE",
    "DEFAULT_TOKEN_ENV",
    "FHIR_JSON",
    "STATE_FILE",
    "BearerAuthSettings",
    "BearerTokenAuth",
    "ConfigPath",
    "ConfigPathText",
    "ExportDamaged",
    "ExportRequest",
    "ExportResult",
    "ExportUnsupported",
    "FhirAuth",
    "FhirClient",
    "FhirConnection",
    "Moved",
    "NoAuth",
    "NoAuthSettings",
    "Resource",
    "RetryPolicy",
    "SearchParams",
    "SmartAuthSettings",
    "SmartBackendAuth",
    "WriteResult",
    "capability_search_params",
    "error_key",
    "error_location",
    "error_message",
    "export",
    "load_private_key",
    "log_deprecations",
    "next_link",
    "old_key_label",
    "old_key_path",
    "open_client",
    "origin_of",
    "supports_export",
    "upgrade_practice_keys",
    "upgrade_serve_keys",
    "without_secrets",
]
