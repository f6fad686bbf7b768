"""The kick-off of a Bulk Data export (`ips_screen.fhir.bulk`): whether to try it, GET or POST,
and what to do when the server refuses some of the requested types.

- `supports_export` reads the CapabilityStatement, which servers often get wrong. It answers
  False only when a readable statement declares no export operation anywhere and does not claim
  the Bulk Data capability; when absent, unreadable, or declared at another level: True, and the
  kick-off decides.

- `GET [base]/.../$export?_type=...` (the default), or `POST` with a FHIR `Parameters` body
  (`method="post"`, Bulk Data 2.0). A server that answers the POST with 404, 405 or 501 is asked
  again with GET (logged): many servers implement only one of them.
- Unsupported `_type`: the spec lets a server answer 400 with an OperationOutcome when it does not
  export every type asked for. The types it cannot export are those its CapabilityStatement leaves
  out of `rest.resource` (when it lists any), or marks with the Bulk Data
  `operation-not-supported` extension, or, failing both, those the OperationOutcome names. The
  export is asked again once without them; `KickOff.unsupported` lists them. Without Patient
  nothing can be screened: that is `ExportUnsupported` (so that `auto` mode reads by REST).
- 202 + Content-Location is the status URL; 404/405/501 or an OperationOutcome `not-supported`
  (that the types do not explain) is `ExportUnsupported`; a missing Group is a plain ServerError;
  408/429/5xx are retried, and the server's words survive the last retry.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urljoin

import orjson
import requests

from ips_screen.errors import ServerError
from ips_screen.fhir.bulk_http import BulkHttp, failure
from ips_screen.fhir.bulk_request import LEVELS, ExportRequest
from ips_screen.fhir.client import FHIR_JSON, FhirClient
from ips_screen.fhir.outcome import issue_codes, request_label

log = logging.getLogger("ips_screen.fhir.bulk")

KICKOFF_METHODS = ("get", "post")
UNSUPPORTED_STATUSES = frozenset({404, 405, 501})
NOT_SUPPORTED_EXT = "http://hl7.org/fhir/uv/bulkdata/Extension/operation-not-supported"
_REFUSED_TYPES = frozenset({400, 422})
BULK_CAPABILITY = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
_EXPORT_NAMES = {"export": None, "patient-export": "patient", "group-export": "group"}


class ExportUnsupported(ServerError):
    """The server does not do this $export (the level, or the parameters asked for)."""


@dataclass(frozen=True)
class KickOff:
    """A kicked-off job: its status URL, what it exports and the requested types it cannot."""

    status_url: str
    request: ExportRequest
    unsupported: tuple[str, ...] = ()


def kick_off(http: BulkHttp, request: ExportRequest, method: str = "get") -> KickOff:
    """Start the export; see the module notes."""
    if method not in KICKOFF_METHODS:
        raise ValueError(f"kick-off method must be one of {', '.join(KICKOFF_METHODS)}")
    resp, what, method = _send(http, request, method)
    unsupported: tuple[str, ...] = ()
    if resp.status_code in _REFUSED_TYPES and request.types:
        found = unsupported_types(http, request.types, resp)
        if found:
            unsupported = found
            message = failure(resp, what)
            resp.close()
            if "Patient" in found:
                raise ExportUnsupported(
                    f"the server cannot export Patient, so no one can be screened: {message}"
                )
            if set(found) >= set(request.types):
                raise ExportUnsupported(f"the server exports none of the types asked: {message}")
            log.warning(
                "the server cannot export %s (%s); exporting the other types",
                ", ".join(found),
                message,
            )
            kept = tuple(t for t in request.types if t not in found)
            filters = tuple(f for f in request.type_filters if f.partition("?")[0] in kept)
            request = replace(request, types=kept, type_filters=filters)
            resp, what, method = _send(http, request, method)
    if resp.status_code == 202:
        location = resp.headers.get("Content-Location")
        if not location:
            raise ServerError(f"{what}: 202 Accepted without a Content-Location (status URL)")
        log.info("export kicked off at %s level (%s)", request.level, method.upper())
        return KickOff(urljoin(_url(http, request), location), request, unsupported)
    message = failure(resp, what)
    if resp.status_code in UNSUPPORTED_STATUSES or "not-supported" in issue_codes(resp):
        if request.level == "group" and resp.status_code == 404 and _group_missing(http, request):
            raise ServerError(f"{message} (Group/{request.group_id} does not exist)")
        raise ExportUnsupported(f"the server does not support this $export: {message}")
    if resp.status_code == 200:
        message += " (expected 202 Accepted: was Prefer: respond-async ignored?)"
    raise ServerError(message)


def _url(http: BulkHttp, request: ExportRequest) -> str:
    return f"{http.client.base_url}/{request.operation_path()}"


def _send(
    http: BulkHttp, request: ExportRequest, method: str
) -> tuple[requests.Response, str, str]:
    """One kick-off (retrying 408/429/5xx); a POST the server does not take is sent as GET."""
    url = _url(http, request)
    headers = {"Accept": FHIR_JSON, "Prefer": http.client.prefer_header("respond-async")}
    if method == "post":
        what = f"{request_label('POST', url)} (export kick-off)"
        body = orjson.dumps(request.parameters())
        post_headers = {**headers, "Content-Type": FHIR_JSON}
        resp = http.call("POST", url, what, headers=post_headers, body=body)
        if resp.status_code not in (404, 405, 501):
            return resp, what, method
        log.warning("%s -> %d: kicking off with GET instead", what, resp.status_code)
        resp.close()
    what = f"{request_label('GET', url)} (export kick-off)"
    return http.call("GET", url, what, params=request.params(), headers=headers), what, "get"


def unsupported_types(
    http: BulkHttp, types: tuple[str, ...], resp: requests.Response
) -> tuple[str, ...]:
    """The requested types the server cannot export, by its CapabilityStatement, else by the
    OperationOutcome's words; () when neither tells (the refusal is about something else)."""
    statement = http.client.capabilities()
    if statement is not None:
        listed, refused = _statement_types(statement)
        missing = tuple(t for t in types if (listed and t not in listed) or t in refused)
        if missing:
            return missing
    text = _outcome_text(resp)
    return tuple(t for t in types if re.search(rf"\b{t}\b", text))


def _statement_types(statement: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """(types listed in rest.resource, types marked operation-not-supported for export)."""
    listed: set[str] = set()
    refused: set[str] = set()
    for rest in _dicts(statement.get("rest")):
        if rest.get("mode") not in (None, "server"):
            continue
        for res in _dicts(rest.get("resource")):
            rtype = res.get("type")
            if not isinstance(rtype, str):
                continue
            listed.add(rtype)
            for ext in _dicts(res.get("extension")):
                canonical = str(ext.get("valueCanonical") or "")
                if ext.get("url") == NOT_SUPPORTED_EXT and "export" in canonical.lower():
                    refused.add(rtype)
                elif ext.get("url") == NOT_SUPPORTED_EXT and "bulk-data" in canonical:
                    refused.add(rtype)  # none of the Bulk operations for this type
    return listed, refused


def _outcome_text(resp: requests.Response) -> str:
    try:
        body = orjson.loads(resp.content) if resp.content else None
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ""
    parts: list[str] = []
    for issue in _dicts(body.get("issue")):
        details = issue.get("details")
        parts.append(str(issue.get("diagnostics") or ""))
        if isinstance(details, dict):
            parts.append(str(details.get("text") or ""))
        expression = issue.get("expression")
        if isinstance(expression, list):
            parts.extend(str(e) for e in expression)
    return " ".join(parts)


def supports_export(client: FhirClient, level: str) -> bool:
    """Whether to try $export at `level`: see the module notes (True unless the server's own
    CapabilityStatement shows no sign of Bulk Data at all)."""
    if level not in LEVELS:
        raise ValueError(f"export level must be one of {', '.join(LEVELS)}: {level!r}")
    statement = client.capabilities()
    if statement is None:
        log.info("no CapabilityStatement: $export support unknown, the kick-off will tell")
        return True
    declared = _declared_levels(statement)
    instantiates = statement.get("instantiates")
    if level in declared:
        return True
    if declared or (isinstance(instantiates, list) and BULK_CAPABILITY in instantiates):
        log.info("$export is not declared at %s level, but elsewhere: trying it", level)
        return True
    log.info("the CapabilityStatement declares no $export operation")
    return False


def _declared_levels(statement: Mapping[str, Any]) -> set[str]:
    levels: set[str] = set()
    for rest in _dicts(statement.get("rest")):
        places: list[tuple[str, object]] = [("system", rest.get("operation"))]
        for res in _dicts(rest.get("resource")):
            if res.get("type") in ("Patient", "Group"):
                places.append((str(res["type"]).lower(), res.get("operation")))
        for place, operations in places:
            for op in _dicts(operations):
                name = str(op.get("name") or "").lower().lstrip("$")
                definition = str(op.get("definition") or "").rstrip("/").rsplit("/", 1)[-1]
                for word in (name, definition.lower()):
                    if word in _EXPORT_NAMES:
                        levels.add(_EXPORT_NAMES[word] or place)
    return levels


def _group_missing(http: BulkHttp, request: ExportRequest) -> bool:
    try:
        resp = http.send("GET", f"{http.client.base_url}/Group/{request.group_id}")
    except ServerError:
        return False
    return resp.status_code in (404, 410)


def _dicts(value: object) -> list[dict]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
