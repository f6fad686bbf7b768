"""What a FHIR server's response holds: the resource in its body, the version it names, and what
a create or update answered. Failures are `ServerError`s naming the request ("METHOD /path").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import requests

from ips_screen.errors import ServerError

Resource = dict[str, Any]
_ETAG_RE = re.compile(r'^(?:W/)?"?([^"]*)"?$')


@dataclass(frozen=True)
class WriteResult:
    """What a create or update answered."""

    status: int
    resource: Resource | None
    version_id: str | None
    location: str | None

    @property
    def created(self) -> bool:
        return self.status == 201


def resource_json(resp: requests.Response, what: str) -> Resource:
    """The response body as a FHIR resource (a JSON object with a resourceType), else
    ServerError naming `what` ("METHOD /path")."""
    if not resp.content:
        raise ServerError(f"{what}: empty response (HTTP {resp.status_code}), expected FHIR JSON")
    try:
        data = orjson.loads(resp.content)
    except orjson.JSONDecodeError as exc:
        content_type = resp.headers.get("Content-Type", "none")
        if "json" not in content_type.lower():
            raise ServerError(
                f"{what}: the response is not JSON (Content-Type: {content_type})"
            ) from exc
        raise ServerError(f"{what}: malformed JSON in the response ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise ServerError(f"{what}: the response is not a FHIR resource")
    return data


def version_id(resp: requests.Response, resource: Mapping[str, Any] | None) -> str | None:
    """The versionId a response names: its ETag (W/"n" or "n"), else the resource's meta."""
    etag = resp.headers.get("ETag")
    if etag:
        match = _ETAG_RE.match(etag.strip())
        if match and match.group(1):
            return match.group(1)
    meta = resource.get("meta") if resource else None
    version = meta.get("versionId") if isinstance(meta, dict) else None
    return str(version) if version is not None else None


def write_result(resp: requests.Response, what: str) -> WriteResult:
    """What a create or update answered (the body, when there is one, must be a resource)."""
    resource = resource_json(resp, what) if resp.content else None
    location = resp.headers.get("Location") or resp.headers.get("Content-Location")
    return WriteResult(resp.status_code, resource, version_id(resp, resource), location)
