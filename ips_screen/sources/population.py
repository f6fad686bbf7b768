"""Group streamed resources into per-patient facts, keeping only what the ruleset can use.

Memory grows with the number of patients and kept records, never with the size of the input:
each resource dict is reduced (or dropped) as soon as it is read. The same resource ("Type/id")
read twice, e.g. the same data in two layouts, is kept once: the last copy read wins, including a
last copy the rules cannot use (an entered-in-error update removes the earlier record).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

from ips_screen.facts.extract import (
    SUBJECT_FIELD,
    CodeIndex,
    PatientInfo,
    Resolver,
    extract_patient,
    extract_record,
    patient_of,
)
from ips_screen.facts.model import PatientFacts, Record
from ips_screen.reading import HasCodelists, ReadReport
from ips_screen.sources.files import resources_of

PROGRESS_EVERY = 10_000


@dataclass
class Population:
    """The patients found in the input, with what could not be linked to one."""

    patients: dict[str, PatientFacts]  # by id, in sorted id order
    report: ReadReport
    orphans: dict[str, int] = field(default_factory=dict)  # patient id absent -> records kept
    unlinked: int = 0  # relevant records with no resolvable patient reference

    def __iter__(self) -> Iterator[PatientFacts]:
        return (self.patients[pid] for pid in sorted(self.patients))

    def __len__(self) -> int:
        return len(self.patients)


def collect_resources(
    resources: Iterable[dict], ruleset: HasCodelists, skip_invalid: bool = False
) -> Population:
    """`collect` for resources already in memory; a Bundle among them is flattened.

    Problems are located as "resource N" (the first is 1).
    """
    report = ReadReport(skip_invalid=skip_invalid)
    builder = PopulationBuilder(ruleset, report)
    for n, value in enumerate(resources, 1):
        for resource, where, resolve in resources_of(value, f"resource {n}", report):
            builder.add(resource, where, resolve)
    return builder.finish()


def _as_date(value: object) -> date | None:
    return value if isinstance(value, date) else None


def _order(record: Record) -> tuple[date, str]:
    return (record.date or date.min, record.ref)


class PopulationBuilder:
    """Reduces resources, one at a time, to the population's facts (any source: files, a FHIR
    server, memory). Feed it checked resources (`files.iter_resources` / `files.resources_of`
    items) with `add`, then call `finish` once.

    The state is the last word on each patient and each record: `patients` (id -> info) and
    `records` (ref -> (patient id or None, record)); `dropped` holds the refs of resources read
    that the rules cannot use, so that a later part of the input (`merge`) can forget an earlier
    part's copy. `progress` is called with the number of resources added so far, every
    PROGRESS_EVERY.
    """

    def __init__(
        self,
        ruleset: HasCodelists | None,
        report: ReadReport | None = None,
        progress: Callable[[int], None] | None = None,
        *,
        index: CodeIndex | None = None,
        track_drops: bool = False,
    ) -> None:
        if index is None:
            assert ruleset is not None
            index = CodeIndex(ruleset.codelists.values())
        self.index = index
        self.report = report if report is not None else ReadReport()
        self.progress = progress
        self.added = 0
        self.patients: dict[str, PatientInfo] = {}
        self.records: dict[str, tuple[str | None, Record]] = {}  # ref -> (patient id, record)
        self.dropped: set[str] = set()  # refs read last as a resource the rules cannot use
        self.track_drops = track_drops  # keep `dropped` (a part of the input, to be merged)

    def add(self, resource: dict, where: str, resolve: Resolver | None = None) -> None:
        """Take one resource; `where` locates it in messages, `resolve` maps its Bundle's urn:
        fullUrls (None outside Bundles)."""
        self.added += 1
        if self.progress is not None and self.added % PROGRESS_EVERY == 0:
            self.progress(self.added)
        rtype = resource["resourceType"]
        if rtype == "Patient":
            if resource.get("id") is None:
                self.report.problem(where, "Patient has no id")
                return
            info = extract_patient(resource, resolve)
            self.patients[info.id] = info
            return
        if rtype not in SUBJECT_FIELD:
            return
        record = extract_record(resource, self.index, resolve)
        if record is None:
            if resource.get("id") is not None:
                self.drop(f"{rtype}/{resource['id']}")
            return
        if resource.get("id") is None:
            self.report.problem(where, f"{rtype} has no id")
            return
        self.dropped.discard(record.ref)
        self.records[record.ref] = (patient_of(resource, resolve), record)

    def drop(self, ref: str) -> None:
        """Forget an earlier copy of a resource (a later copy the rules cannot use replaces it)."""
        self.records.pop(ref, None)
        if self.track_drops:
            self.dropped.add(ref)

    def finish(self) -> Population:
        """The population built from everything added."""
        by_patient: dict[str | None, list[Record]] = {}
        for pid, record in self.records.values():
            by_patient.setdefault(pid, []).append(record)
        unlinked = len(by_patient.pop(None, ()))
        patients: dict[str, PatientFacts] = {}
        for pid in sorted(self.patients):
            info = self.patients[pid]
            patients[pid] = PatientFacts(
                id=pid,
                birth_date=_as_date(info.birth_date),
                deceased=info.deceased,
                deceased_date=_as_date(info.deceased_date),
                general_practitioners=info.general_practitioners,
                records=tuple(sorted(by_patient.get(pid, ()), key=_order)),
            )
        orphans = {
            pid: len(by_patient[pid])
            for pid in sorted(p for p in by_patient if p is not None)
            if pid not in self.patients
        }
        return Population(patients=patients, report=self.report, orphans=orphans, unlinked=unlinked)
