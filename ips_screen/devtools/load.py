"""Load FHIR files into a server, for the tests and the demo (never a practice's real server).

    load_bundles(client, [Path("fhir_fixtures")])  -> the number of resources written

Files are read as the screen reads them (`sources.files`: Bundles of any type, single resources,
NDJSON, gzipped NDJSON; folders recursively) and every resource is written with `PUT Type/id` in
transaction Bundles of at most `chunk_size` entries, so loading twice gives the same server
content. ``urn:uuid:`` references between entries of a Bundle become "Type/id". A resource without
an id cannot be PUT: that is an `InputError` naming the file and entry, raised before anything
in its chunk is sent. A resource met twice in one chunk starts a new chunk (the last copy wins).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ips_screen.errors import InputError
from ips_screen.facts.extract import Resolver
from ips_screen.fhir.client import FhirClient
from ips_screen.sources.files import discover, iter_resources

log = logging.getLogger("ips_screen.devtools")

CHUNK_SIZE = 200
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def load_bundles(
    client: FhirClient, paths: Iterable[Path | str], *, chunk_size: int = CHUNK_SIZE
) -> int:
    """PUT every resource in `paths` to the server; returns how many were written."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be 1 or more")
    chunk: dict[str, dict] = {}
    written = 0
    for resource, where, resolve in iter_resources(discover(paths)):
        rtype, rid = resource["resourceType"], resource.get("id")
        if not isinstance(rid, str) or not _ID_RE.match(rid):
            raise InputError(f"{where}: a resource to load needs a valid id, not {rid!r}")
        key = f"{rtype}/{rid}"
        if key in chunk or len(chunk) >= chunk_size:
            written += _send(client, chunk)
        if resolve is not None:
            resource = _resolved(resource, resolve)
        chunk[key] = {
            "fullUrl": f"{client.base_url}/{key}",
            "resource": resource,
            "request": {"method": "PUT", "url": key},
        }
    written += _send(client, chunk)
    log.info("loaded %d resources into %s", written, client.base_url)
    return written


def _send(client: FhirClient, chunk: dict[str, dict]) -> int:
    """POST the chunk as one transaction (PUTs are safe to retry) and empty it."""
    if not chunk:
        return 0
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": list(chunk.values())}
    client.transaction(bundle, retry=True)
    count = len(chunk)
    chunk.clear()
    return count


def _resolved(value: Any, resolve: Resolver) -> Any:
    """A copy of `value` with every urn: reference that the Bundle defines made "Type/id"."""
    if isinstance(value, dict):
        out = {k: _resolved(v, resolve) for k, v in value.items()}
        ref = value.get("reference")
        if isinstance(ref, str) and ref.startswith("urn:"):
            out["reference"] = resolve(ref) or ref
        return out
    if isinstance(value, list):
        return [_resolved(v, resolve) for v in value]
    return value
