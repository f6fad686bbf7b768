"""Reading FHIR input files (Bundles, NDJSON, NDJSON.gz) and grouping them into per-patient facts.

`files` finds and streams resources with a "file:line" location for every problem; `population`
reduces them to `PatientFacts`, keeping only what the ruleset's codelists can use; `chunks`
and `parallel` read files in parts, on several processes, without parsing the lines no rule
needs. `fhir_rest` reads the same from a FHIR server by search (import it from there: it needs
the HTTP client). The read report and `gc_paused` live in `ips_screen.reading`, shared with
the facts store.
"""

from ips_screen.reading import ReadReport, Skipped
from ips_screen.sources.files import discover, iter_resources
from ips_screen.sources.parallel import collect, default_jobs
from ips_screen.sources.population import Population, PopulationBuilder, collect_resources

__all__ = [
    "Population",
    "PopulationBuilder",
    "ReadReport",
    "Skipped",
    "collect",
    "collect_resources",
    "default_jobs",
    "discover",
    "iter_resources",
]
