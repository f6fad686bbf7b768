"""Seed documents for the reader fuzz tests: real records, trimmed to a few per patient.

A seed is one patient's Bundle entries (``{"fullUrl"?, "resource", "request"?}``), Patient first,
then the records the default ruleset can use (so mutations reach the engine), then a few it
cannot. Fixture seeds come from fhir_fixtures/ (always there); Synthea seeds from the shared data
(/work/shared/data; None when it is absent, and the tests that need them skip).
"""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache

import orjson

from ips_screen.facts.extract import CodeIndex, extract_record
from ips_screen.ruleset.loader import load_ruleset
from tests.support.paths import FIXTURES, SHARED_DATA

Seed = tuple[dict, ...]

RECORDS_PER_SEED = 12  # records the rules can use, at most
OTHERS_PER_SEED = 3  # other resources (encounters, medications...), at most
SYNTHEA_BUNDLES = 8  # the smallest per-patient Bundles of synthea-california
BULK_LINES = 400  # first lines read of each synthea-bulk-10 file


@lru_cache(maxsize=1)
def code_index() -> CodeIndex:
    return CodeIndex(load_ruleset().codelists.values())


@lru_cache(maxsize=1)
def codelist_codings() -> tuple[tuple[str, str], ...]:
    """Every (system, code) row of the default ruleset's codelists, for mutations that make a
    resource relevant to the rules."""
    rows = {
        (system, code)
        for codelist in load_ruleset().codelists.values()
        for system, code in codelist.exact_keys()
    }
    return tuple(sorted(rows))


def _trim(entries: list[dict]) -> Seed:
    patients = [e for e in entries if e["resource"].get("resourceType") == "Patient"]
    used, other = [], []
    for entry in entries:
        resource = entry["resource"]
        if resource.get("resourceType") == "Patient":
            continue
        (used if extract_record(resource, code_index()) else other).append(entry)
    return (*patients[:1], *used[:RECORDS_PER_SEED], *other[:OTHERS_PER_SEED])


def _entries(bundle: dict) -> list[dict]:
    keep = ("fullUrl", "resource", "request")
    return [
        {k: e[k] for k in keep if k in e}
        for e in bundle.get("entry", [])
        if isinstance(e.get("resource"), dict)
    ]


@lru_cache(maxsize=1)
def fixture_seeds() -> tuple[Seed, ...]:
    """One seed per hand-written fixture patient, and the practice Bundle."""
    seeds = [
        _trim(_entries(orjson.loads(path.read_bytes())))
        for path in sorted((FIXTURES / "patients").glob("*.json"))
    ]
    seeds.append(tuple(_entries(orjson.loads((FIXTURES / "practice.json").read_bytes()))))
    return tuple(seeds)


@lru_cache(maxsize=1)
def synthea_seeds() -> tuple[Seed, ...] | None:
    """Seeds from the shared Synthea data: per-patient transaction Bundles (urn:uuid
    references), the Bulk export's NDJSON grouped by patient, and the AHRQ pain patient."""
    if not SHARED_DATA.is_dir():
        return None
    seeds: list[Seed] = []
    california = sorted(
        (SHARED_DATA / "synthea-california").glob("*.json"), key=lambda p: p.stat().st_size
    )
    for path in california[:SYNTHEA_BUNDLES]:
        seeds.append(_trim(_entries(orjson.loads(path.read_bytes()))))
    by_patient: dict[str, list[dict]] = defaultdict(list)
    for path in sorted((SHARED_DATA / "synthea-bulk-10").glob("*.ndjson")):
        with path.open("rb") as lines:
            for n, line in enumerate(lines):
                if n >= BULK_LINES:
                    break
                resource = orjson.loads(line)
                subject = resource.get("subject") or resource.get("patient") or {}
                ref = subject.get("reference", "") if isinstance(subject, dict) else ""
                key = resource["id"] if resource["resourceType"] == "Patient" else ref[8:]
                by_patient[key].append({"resource": resource})
    seeds.extend(_trim(entries) for _, entries in sorted(by_patient.items()) if entries)
    ahrq = SHARED_DATA / "ahrq-pain-test-patient" / "brenda_jackson.json"
    seeds.append(_trim(_entries(orjson.loads(ahrq.read_bytes()))))
    return tuple(seed for seed in seeds if seed)
