"""Synthetic FHIR R4 test data: a plausible English GP practice list for exercising the screen.

`generate` yields one patient's resources at a time; `write_bulk` writes them as a FHIR Bulk Data
export (NDJSON per resource type) with a ``manifest.json`` of the parameters and counts. Same seed
and as-of date, same bytes. The rates and their sources: `rates` and docs/synthetic-population.md.
"""

from __future__ import annotations

from ips_screen.synth.population import generate
from ips_screen.synth.writer import MANIFEST, RESOURCE_TYPES, write_bulk

__all__ = ["MANIFEST", "RESOURCE_TYPES", "generate", "write_bulk"]
