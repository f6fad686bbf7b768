"""Fixture patients under fresh ids, so tests sharing a FHIR test server never share patients."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson

from tests.support.paths import FIXTURES


def retag(value: object, tag: str) -> object:
    """Every id, reference and fullUrl prefixed with `tag`, so tests never share patients."""
    if isinstance(value, list):
        return [retag(v, tag) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: retag(v, tag) for k, v in value.items()}
    if isinstance(value.get("id"), str) and isinstance(value.get("resourceType"), str):
        out["id"] = f"{tag}-{value['id']}"
    for key in ("reference", "fullUrl"):
        ref = value.get(key)
        if isinstance(ref, str) and "/" in ref and not ref.startswith("urn:"):
            head, _, rid = ref.rpartition("/")
            out[key] = f"{head}/{tag}-{rid}"
    return out


def retagged_fixtures(folder: Path, numbers: list[str]) -> tuple[str, list[str]]:
    """practice.json and the numbered fixture patients, retagged, written into `folder` (created
    here); the tag and the patients' ids."""
    tag = uuid.uuid4().hex[:8]
    folder.mkdir(parents=True)
    paths = [FIXTURES / "practice.json"]
    for number in numbers:
        paths.extend(sorted((FIXTURES / "patients").glob(f"{number}-*.json")))
    for path in paths:
        data = orjson.loads(path.read_bytes())
        (folder / path.name).write_bytes(orjson.dumps(retag(data, tag)))
    return tag, [f"{tag}-fx-{n}" for n in numbers]
