"""Write a synthetic practice list as a FHIR Bulk Data export: one NDJSON file per resource type.

Streaming: each patient's resources are written as soon as they are generated, so memory does not
grow with the number of patients. Each line is one resource, serialised by orjson with sorted
keys, so the same seed and as-of date give byte-identical files. Beside the NDJSON files,
``manifest.json`` records the parameters and the counts.

A population is replaced whole or not at all: the files of an earlier one are removed first,
the new ones written as ``<name>.partial`` (which no reader takes for data) and given their
names once every one is complete, the manifest last; a run that stops halfway removes its
partial files, so a folder never holds part of a population beside a manifest.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import date
from pathlib import Path

import orjson

from ips_screen import __version__
from ips_screen.synth.population import generate
from ips_screen.synth.rates import HISTORY_YEARS

RESOURCE_TYPES = (
    "Patient",
    "Condition",
    "Observation",
    "Procedure",
    "DocumentReference",
    "ServiceRequest",
    "Task",
    "Encounter",
)
MANIFEST = "manifest.json"  # beside the NDJSON, like a Bulk export (not read as data)
_LINE = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
_BUFFER = 1 << 20
PARTIAL = ".partial"  # a file still being written (not a name any reader takes for data)


def file_name(resource_type: str) -> str:
    return f"{resource_type}.000.ndjson"


def write_bulk(out_dir: Path, n_patients: int, seed: int, as_of: date) -> dict[str, int]:
    """Write `n_patients` synthetic patients into `out_dir`; returns the count of each type.

    Every file of `RESOURCE_TYPES` is written (empty when no resource has that type); existing
    files of the same names are removed first (see the module: whole or not at all).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (MANIFEST, *map(file_name, RESOURCE_TYPES)):  # the earlier population, if any
        (out_dir / name).unlink(missing_ok=True)
    partial = {rtype: out_dir / (file_name(rtype) + PARTIAL) for rtype in RESOURCE_TYPES}
    counts = dict.fromkeys(RESOURCE_TYPES, 0)
    try:
        with ExitStack() as stack:
            files = {
                rtype: stack.enter_context(path.open("wb", buffering=_BUFFER))
                for rtype, path in partial.items()
            }
            for resources in generate(n_patients, seed, as_of):
                for resource in resources:
                    rtype = resource["resourceType"]
                    files[rtype].write(orjson.dumps(resource, option=_LINE))
                    counts[rtype] += 1
    except BaseException:
        for path in partial.values():
            path.unlink(missing_ok=True)
        raise
    for rtype, path in partial.items():
        path.replace(out_dir / file_name(rtype))
    manifest = {
        "generator": f"ips-screen {__version__} synth",
        "synthetic": True,
        "seed": seed,
        "patients": n_patients,
        "as_of": as_of.isoformat(),
        "history_years": HISTORY_YEARS,
        "counts": counts,
        # as in a Bulk Data export manifest, with relative urls
        "output": [
            {"type": rtype, "url": file_name(rtype), "count": counts[rtype]}
            for rtype in RESOURCE_TYPES
        ],
        "documentation": "docs/synthetic-population.md",
    }
    data = orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
    written = out_dir / (MANIFEST + PARTIAL)
    written.write_bytes(data + b"\n")
    written.replace(out_dir / MANIFEST)
    return counts
