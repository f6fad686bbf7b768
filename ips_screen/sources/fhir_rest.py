"""Read the population from a FHIR R4 server by search, into the same facts as files give.

Only the resource types the rules can use are read (`facts.extract.RELEVANT_TYPES`), Patient
first, each with `_count=page_size`, following the server's next links through `FhirClient`
(same origin only, loop and page-count guards, retries). Every resource goes through the same
checks and grouping as a file's (`files.resources_of`, `population.PopulationBuilder`), so a
server and a file holding the same resources give the same decisions.

Whole population:   GET [base]/{Type}?_count=N                               for each type
Given patients, in chunks of PATIENT_CHUNK ids:
                    GET [base]/Patient?_id=a,b,...&_count=N
                    GET [base]/{Type}?patient=Patient/a,Patient/b,...&_count=N   other types

`patient` is an R4 search parameter of all six clinical types (for Task it is
`Task.for.where(resolve() is Patient)`; R4 has no `for` parameter). When the server's
CapabilityStatement lists parameters for a type without `patient` but with `subject`, `subject`
is used instead. `_revinclude` is deliberately not used: included resources are not paged by
`_count` (one page would hold every record of a chunk of patients) and servers may cap them per
page, which would silently drop evidence. As a guard against a server that ignores a search
parameter, records of patients that were not asked for are dropped (and counted in a warning).

Failures are `ServerError`s with one line: those of the client (HTTP errors, a page that is not a
Bundle or not JSON, a next link to another server), and a Bundle entry that is not a FHIR
resource ("GET /fhir/Condition (page 2): entry 3: ..."), which `skip_invalid` skips and counts
instead, as for files. Offset paging over data that changes while it is read may repeat a
resource (the last copy wins) or miss one; a page count that differs from `Bundle.total` is
logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from ips_screen.errors import InputError, ServerError, UserError
from ips_screen.facts.extract import RELEVANT_TYPES, SUBJECT_FIELD, Resolver, patient_of
from ips_screen.fhir.client import FhirClient, capability_search_params
from ips_screen.reading import HasCodelists, ReadReport
from ips_screen.sources.files import resources_of
from ips_screen.sources.population import Population, PopulationBuilder

log = logging.getLogger("ips_screen.sources")

PATIENT_CHUNK = 50  # ids per search: ~3.5 KB of query at most, well under common URL limits
DEFAULT_PAGE_SIZE = 500
SEARCH_ORDER: tuple[str, ...] = ("Patient", *sorted(RELEVANT_TYPES - {"Patient"}))
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def read_server(
    client: FhirClient,
    ruleset: HasCodelists,
    *,
    patients: list[str] | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    skip_invalid: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Population:
    """Read the patients on the server (or only `patients`, ids or "Patient/<id>") and their
    records the ruleset can use. `progress` gets the resource count every 10,000 resources."""
    if page_size < 1:
        raise UserError(f"the page size must be 1 or more, not {page_size}")
    wanted = patient_ids(patients) if patients is not None else None
    report = ReadReport(skip_invalid=skip_invalid)
    reader = _Reader(client, PopulationBuilder(ruleset, report, progress=progress), page_size)
    try:
        if wanted is None:
            for rtype in SEARCH_ORDER:
                reader.search(rtype, {})
        else:
            reader.read_patients(wanted)
    except InputError as exc:  # an unreadable entry in the server's answer
        raise ServerError(str(exc)) from exc
    population = reader.builder.finish()
    if wanted is not None:
        _warn_missing(wanted, population)
    return population


def patient_ids(values: Iterable[str]) -> list[str]:
    """Patient ids from ids or "Patient/<id>" references: checked, without repeats, in order."""
    out: dict[str, None] = {}
    for value in values:
        pid = value.strip().removeprefix("Patient/")
        if not _ID_RE.match(pid):
            raise UserError(f"not a FHIR patient id: {value!r}")
        out[pid] = None
    if not out:
        raise UserError("no patient ids given")
    return list(out)


def patient_search_param(statement: Mapping[str, Any] | None, resource_type: str) -> str:
    """The search parameter that finds a type's resources by patient: "patient" (R4 defines it
    for every clinical type here) unless the CapabilityStatement lists the type's parameters
    with "subject" but without "patient"."""
    declared = capability_search_params(statement, resource_type)
    if declared and "patient" not in declared and "subject" in declared:
        return "subject"
    return "patient"


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Reader:
    def __init__(self, client: FhirClient, builder: PopulationBuilder, page_size: int) -> None:
        self.client = client
        self.builder = builder
        self.page_size = page_size
        self.path = urlsplit(client.base_url).path.rstrip("/")
        self.wanted: frozenset[str] | None = None
        self.outside = 0  # records of patients not asked for (a server ignoring a parameter)

    def read_patients(self, ids: list[str]) -> None:
        statement = self.client.capabilities()
        params = {t: patient_search_param(statement, t) for t in SEARCH_ORDER[1:]}
        log.info(
            "reading %d patients by %s",
            len(ids),
            ", ".join(f"{t}?{p}" for t, p in sorted(params.items())),
        )
        self.wanted = frozenset(ids)
        for chunk in chunks(ids, PATIENT_CHUNK):
            self.search("Patient", {"_id": ",".join(chunk)})
            refs = ",".join(f"Patient/{pid}" for pid in chunk)
            for rtype in SEARCH_ORDER[1:]:
                self.search(rtype, {params[rtype]: refs})
        if self.outside:
            log.warning(
                "the server returned %d records of patients that were not asked for; ignored "
                "(does it support the patient search parameter?)",
                self.outside,
            )

    def search(self, rtype: str, params: dict[str, str]) -> None:
        label = f"GET {self.path}/{rtype}"
        query: dict[str, str | int] = {**params, "_count": self.page_size}
        matches = 0
        total: object = None
        pages = 0
        for pages, bundle in enumerate(self.client.search_pages(rtype, query), 1):
            if pages == 1:
                total = bundle.get("total")
            matches += _count_matches(bundle)
            for resource, where, resolve in resources_of(
                bundle, f"{label} (page {pages})", self.builder.report
            ):
                if self.wanted is not None and not self._asked_for(resource, resolve):
                    self.outside += 1
                    continue
                self.builder.add(resource, where, resolve)
        log.debug("%s: %d matches in %d pages", label, matches, pages)
        if isinstance(total, int) and not isinstance(total, bool) and total != matches:
            log.warning(
                "%s: the server announced %d matches but sent %d (did the data change while it "
                "was read?)",
                label,
                total,
                matches,
            )

    def _asked_for(self, resource: dict, resolve: Resolver | None) -> bool:
        assert self.wanted is not None
        rtype = resource.get("resourceType")
        if rtype == "Patient":
            pid = resource.get("id")
            return isinstance(pid, str) and pid in self.wanted
        if rtype in SUBJECT_FIELD:
            return patient_of(resource, resolve) in self.wanted
        return True  # other types are counted and dropped by the builder


def _count_matches(bundle: Mapping[str, Any]) -> int:
    count = 0
    for entry in bundle.get("entry") or []:
        if not isinstance(entry, dict) or entry.get("resource") is None:
            continue
        search = entry.get("search")
        mode = search.get("mode") if isinstance(search, dict) else None
        if mode in (None, "match"):
            count += 1
    return count


def _warn_missing(wanted: list[str], population: Population) -> None:
    missing = [pid for pid in wanted if pid not in population.patients]
    if missing:
        shown = ", ".join(f"Patient/{pid}" for pid in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        log.warning(
            "%d of the %d patients asked for are not on the server: %s%s",
            len(missing),
            len(wanted),
            shown,
            more,
        )
