"""Write FHIR resources as a Bulk Data folder (``<Type>.000.ndjson``), for the reading tests."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import orjson

from ips_screen.sources.files import discover, iter_resources


def as_bulk(resources: Iterable[dict], folder: Path, *, mixed: str | None = None) -> Path:
    """One NDJSON file per type in `folder`, or all in one file named `mixed`."""
    folder.mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[bytes]] = {}
    for resource in resources:
        name = mixed or f"{resource['resourceType']}.000.ndjson"
        lines.setdefault(name, []).append(orjson.dumps(resource) + b"\n")
    for name, found in lines.items():
        (folder / name).write_bytes(b"".join(found))
    return folder


def resources_in(paths: Iterable[Path]) -> list[dict]:
    """Every resource in the files under `paths`, Bundles flattened."""
    return [resource for resource, _, _ in iter_resources(discover(list(paths)))]
