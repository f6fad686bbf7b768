"""What a failed FHIR response says, as one line for an error message.

`raise_for_status` turns a non-2xx response into a `ServerError` (a `ConflictError` for a version
conflict) naming the HTTP status, the method and the URL path (never query values, which may hold
patient data) and a summary of the body: the OperationOutcome's issues, an OAuth error, or what is
wrong with the body. The raw body is never quoted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests

from ips_screen.errors import ConflictError, ServerError


def request_label(method: str, url: str) -> str:
    """'METHOD /path' for messages and logs: never the query string."""
    return f"{method} {urlsplit(url).path or '/'}"


def raise_for_status(
    resp: requests.Response, what: str, *, conflict: str | None = None, hint: str | None = None
) -> None:
    """Raise ServerError (ConflictError for 409/412 when `conflict` is given) unless 2xx.

    `what` is the "METHOD /path" of the request; `hint` is added in brackets after it."""
    status = resp.status_code
    if 200 <= status < 300:
        return
    message = f"HTTP {status} {resp.reason or ''}".rstrip() + f" from {what}"
    if hint:
        message += f" ({hint})"
    detail = error_detail(resp)
    if detail:
        message += f": {detail}"
    if conflict and status in (409, 412):
        raise ConflictError(f"{conflict}: {message}", status=status)
    raise ServerError(message, status=status)


def error_detail(resp: requests.Response) -> str:
    """A one-line summary of an error body: OperationOutcome issues, an OAuth error, or what is
    wrong with the body. Never the raw body."""
    if not resp.content:
        return ""
    try:
        data = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        content_type = resp.headers.get("Content-Type", "none")
        if "json" in content_type.lower():
            return "malformed JSON in the error response"
        return f"the error response is not FHIR JSON (Content-Type: {content_type})"
    if isinstance(data, dict) and data.get("resourceType") == "OperationOutcome":
        return outcome_summary(data)
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        described = data.get("error_description")
        return one_line(f"{data['error']}: {described}" if described else data["error"])
    return f"unexpected error response ({type_name(data)})"


def outcome_summary(outcome: Mapping[str, Any], limit: int = 600) -> str:
    """'severity code: diagnostics [expression]; ...' for each issue of an OperationOutcome."""
    parts: list[str] = []
    issues = outcome.get("issue")
    for issue in issues if isinstance(issues, list) else []:
        if not isinstance(issue, dict):
            continue
        label = " ".join(str(issue[k]) for k in ("severity", "code") if issue.get(k))
        text = issue.get("diagnostics") or _details_text(issue.get("details"))
        where = issue.get("expression") or issue.get("location")
        piece = f"{label}: {text}" if label and text else (label or str(text or ""))
        if isinstance(where, list) and where:
            piece += f" [{', '.join(str(w) for w in where)}]"
        if piece:
            parts.append(piece)
    return one_line("; ".join(parts), limit) if parts else "OperationOutcome without issues"


def only_informs(outcome: Mapping[str, Any]) -> bool:
    """Whether an OperationOutcome holds issues, each of severity "information": a Bulk export's
    note (its error files hold "error, warning, and information messages"), not a failure."""
    issues = outcome.get("issue")
    return (
        isinstance(issues, list)
        and bool(issues)
        and all(isinstance(i, dict) and i.get("severity") == "information" for i in issues)
    )


def issue_codes(resp: requests.Response) -> set[str]:
    """The issue codes of an OperationOutcome body; empty for any other body."""
    try:
        body = orjson.loads(resp.content) if resp.content else None
    except orjson.JSONDecodeError:
        return set()
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return set()
    issues = body.get("issue")
    return {
        str(issue.get("code"))
        for issue in (issues if isinstance(issues, list) else [])
        if isinstance(issue, dict)
    }


def type_name(data: object) -> str:
    """The resourceType of a FHIR resource, else the Python type's name (for messages)."""
    if isinstance(data, dict) and isinstance(data.get("resourceType"), str):
        return str(data["resourceType"])
    return type(data).__name__


def one_line(text: str, limit: int = 600) -> str:
    """`text` with its whitespace collapsed, cut to `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _details_text(details: object) -> str:
    if not isinstance(details, dict):
        return ""
    if details.get("text"):
        return str(details["text"])
    codings = details.get("coding")
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, dict) and (coding.get("display") or coding.get("code")):
            return str(coding.get("display") or coding.get("code"))
    return ""
