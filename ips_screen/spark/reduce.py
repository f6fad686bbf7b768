"""The screen's steps as functions of one input file and of one group of patients: what the Spark
job (`spark.job`) runs in its tasks. Plain Python, no Spark: the tests call them directly too.

Merging is the single-machine one (`sources.population.PopulationBuilder`), made order-aware:

- `read_file` reads one file with the project's reader (`sources.files.iter_resources`) into a
  `PopulationBuilder` of its own, and tells, for every patient and every resource ("Type/id")
  the file touched, its last state in the file: a `Patient`'s facts, or a record kept for a
  patient, a record without a resolvable patient (unlinked), or gone (a later copy the rules
  cannot use). Each comes with the file's index in the input order.
- `latest` keeps, per patient and per resource, the state from the file read last (the highest
  index): the single machine reads the files in that order and the last copy read wins, so the
  result is the same.
- `screen_patients` rebuilds a `PopulationBuilder` with the merged patients and records of a
  group of patients, finishes it (the same `PatientFacts`, the same orphans) and evaluates each
  patient with the engine, giving each one's decisions.ndjson line and summary key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import orjson

from ips_screen.engine import Decision, evaluate
from ips_screen.errors import InputError
from ips_screen.facts.extract import PatientInfo
from ips_screen.facts.model import Record
from ips_screen.outputs.summary import SummaryCounter, SummaryKey
from ips_screen.presentation.trace import step_line
from ips_screen.reading import MAX_SKIPPED, HasCodelists, ReadReport, Skipped, gc_paused
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.sources.files import iter_resources
from ips_screen.sources.population import PopulationBuilder

KEPT, UNLINKED, GONE = "kept", "unlinked", "gone"


@dataclass(frozen=True, slots=True)
class RecordState:
    """A resource's last state in one file: kept for `patient`, unlinked, or gone."""

    index: int  # the file's place in the input order
    state: str  # KEPT, UNLINKED or GONE
    patient: str | None = None  # the patient id (KEPT only)
    record: Record | None = None  # KEPT only


@dataclass(frozen=True, slots=True)
class PatientState:
    index: int
    info: PatientInfo


@dataclass
class FileReport:
    """What reading one file found (a `ReadReport`'s counts), or the error that stopped it."""

    index: int
    files_read: int = 0
    resources_read: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (where, problem)
    skipped_count: int = 0
    error: str | None = None  # the `InputError` message, without --skip-invalid


@dataclass(frozen=True, slots=True)
class PatientResult:
    """One patient's screen: what every output needs of it."""

    patient: str  # "Patient/<id>"
    line: bytes  # the decisions.ndjson line, without the newline
    key: SummaryKey
    decision: Decision | None  # proposed patients only


Event = tuple[str, object, object]  # ("report", index, FileReport) | ("patient", id, ...) | ...


def read_file(index: int, path: str, ruleset: HasCodelists, skip_invalid: bool) -> Iterator[Event]:
    """Read one input file: a ("report", index, FileReport) event, then ("patient", id,
    PatientState) and ("record", "Type/id", RecordState) events for the last state of each
    patient and resource in the file. An `InputError` (without `skip_invalid`) is in the report,
    with no other event: the driver raises the error of the first file that has one."""
    report = ReadReport(skip_invalid=skip_invalid)
    # track_drops: the resources whose last copy in the file the rules cannot use (gone)
    builder = PopulationBuilder(ruleset, report, track_drops=True)
    try:
        with gc_paused():
            for resource, where, resolve in iter_resources([Path(path)], report):
                builder.add(resource, where, resolve)
    except InputError as exc:
        yield "report", index, FileReport(index, error=str(exc))
        return
    yield "report", index, _file_report(index, report)
    for pid, info in builder.patients.items():
        yield "patient", pid, PatientState(index, info)
    for ref, (pid, record) in builder.records.items():
        if pid is None:
            yield "record", ref, RecordState(index, UNLINKED)
        else:
            yield "record", ref, RecordState(index, KEPT, pid, record)
    for ref in builder.dropped - builder.records.keys():
        yield "record", ref, RecordState(index, GONE)


def _file_report(index: int, report: ReadReport) -> FileReport:
    return FileReport(
        index,
        files_read=report.files_read,
        resources_read=report.resources_read,
        by_type=dict(report.by_type),
        skipped=[(s.where, s.problem) for s in report.skipped],
        skipped_count=report.skipped_count,
    )


def latest(a: RecordState | PatientState, b: RecordState | PatientState):
    """Of two states of one patient or resource, the one from the file read last."""
    return a if a.index > b.index else b


def merge_reports(reports: Iterable[FileReport], skip_invalid: bool) -> ReadReport:
    """The files' reports as one, in input order, as a single reader would have made it; the
    `InputError` of the first file that stopped, if one did."""
    merged = ReadReport(skip_invalid=skip_invalid)
    by_type: Counter[str] = Counter()
    for part in sorted(reports, key=lambda r: r.index):
        if part.error is not None:
            raise InputError(part.error)
        merged.files_read += part.files_read
        merged.resources_read += part.resources_read
        by_type.update(part.by_type)
        merged.skipped_count += part.skipped_count
        room = MAX_SKIPPED - len(merged.skipped)
        merged.skipped.extend(Skipped(where, problem) for where, problem in part.skipped[:room])
    merged.by_type = by_type
    return merged


Screened = tuple[str, object]  # ("patient", PatientResult) | ("orphan", (id, n)) | ("keys", ...)


def screen_patients(
    groups: Iterable[tuple[str, tuple[Iterable[PatientState], Iterable[Record]]]],
    ruleset: CompiledRuleset,
    as_of: date,
) -> Iterator[Screened]:
    """Screen a group of patients: (patient id, (its merged Patient state, if any; its kept
    records)) as Spark's cogroup gives them. Yields ("patient", PatientResult) in patient order,
    then ("orphan", (id, number of records)) for records of patients absent from the input, then
    ("keys", Counter) of the group's summary keys (summary.json is counted from them)."""
    builder = PopulationBuilder(ruleset)
    for pid, (states, records) in groups:
        for state in states:
            builder.patients[pid] = state.info
        for record in records:
            builder.records[record.ref] = (pid, record)
    population = builder.finish()
    counter = SummaryCounter(ruleset)
    results = []
    for facts in population.patients.values():
        decision = evaluate(ruleset, facts, as_of)
        results.append(result_of(decision, counter))
    results.sort(key=lambda r: r.patient)
    for result in results:
        yield "patient", result
    for pid, count in population.orphans.items():
        yield "orphan", (pid, count)
    yield "keys", Counter(result.key for result in results)


def result_of(decision: Decision, counter: SummaryCounter) -> PatientResult:
    """A decision as the outputs take it (`outputs.folder.OutputFolder.add`)."""
    line = orjson.dumps(decision.to_dict(step_line), option=orjson.OPT_SORT_KEYS)
    proposed = decision if decision.outcome == "propose" else None
    return PatientResult(decision.patient, line, counter.key(decision), proposed)
