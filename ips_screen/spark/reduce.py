"""The screen's merge and decide steps as functions of states and of one group of patients:
what the Spark job (`spark.job`) runs in its tasks. Plain Python, no Spark: the tests call them
directly too.

Merging is the single-machine one (`sources.parallel.merge`), made order-aware:

- the read stage (`spark.parts.states`) tells, for every patient and every resource ("Type/id")
  a part of the input touched, its last state in the part (`PatientState`, `RecordState`), with
  the part's index in the input order.
- `latest` keeps, per patient and per resource, the state from the part read last (the highest
  index): the single machine merges the parts in that order and the last copy read wins, so the
  result is the same.
- `screen_patients` rebuilds a `PopulationBuilder` with the merged patients and records of a
  group of patients, finishes it (the same `PatientFacts`, the same orphans) and evaluates each
  patient with the engine, giving each one's decisions.ndjson line and summary key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date

from ips_screen.engine import Decision, evaluate
from ips_screen.facts.extract import PatientInfo
from ips_screen.facts.model import Record
from ips_screen.outputs.formats.decisions_ndjson import decision_line
from ips_screen.outputs.summary import SummaryCounter, SummaryKey
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.sources.population import PopulationBuilder

KEPT, UNLINKED, GONE = "kept", "unlinked", "gone"


@dataclass(frozen=True, slots=True)
class RecordState:
    """A resource's last state in one part of the input: kept for `patient`, unlinked, or
    gone."""

    index: int  # the part's place in the input order
    state: str  # KEPT, UNLINKED or GONE
    patient: str | None = None  # the patient id (KEPT only)
    record: Record | None = None  # KEPT only


@dataclass(frozen=True, slots=True)
class PatientState:
    index: int
    info: PatientInfo


@dataclass(frozen=True, slots=True)
class PatientResult:
    """One patient's screen: what every output needs of it."""

    patient: str  # "Patient/<id>"
    line: bytes  # the decisions.ndjson line, without the newline
    key: SummaryKey
    decision: Decision | None  # proposed patients only


Event = tuple[str, object, object]  # ("patient", id, PatientState) | ("record", ref, RecordState)


def latest(a: RecordState | PatientState, b: RecordState | PatientState):
    """Of two states of one patient or resource, the one from the part read last."""
    return a if a.index > b.index else b


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
    line = decision_line(decision)
    proposed = decision if decision.outcome == "propose" else None
    return PatientResult(decision.patient, line, counter.key(decision), proposed)
