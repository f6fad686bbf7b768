"""Input size limits shared by the file reader (`sources`) and the Bulk download (`fhir`).

Kept here, below both, so the FHIR transport need not import the file reader to agree with it.
"""

DEFAULT_MAX_LINE = 64 << 20  # bytes in one NDJSON line (one resource): 64 MiB
