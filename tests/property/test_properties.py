"""Generative tests: random small patients, checked for properties the contract implies and
against a plain reference implementation of the contract (for a restricted kind of patient).

(a) the decision does not depend on the order of the resources;
(b) resources the rules do not read (other codes, other resource types, other patients) change
    nothing;
(c) records dated after T change nothing;
(d) a reference implementation written from default-ruleset.md agrees with the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import orjson
from hypothesis import given
from hypothesis import strategies as st

from ips_screen.engine import Decision
from ips_screen.presentation.trace import step_line
from tests.helpers import (
    BACK_TO_WORK,
    CHRONIC_PAIN,
    FULL_TIME,
    INACTIVE,
    LOINC,
    MAY_BE_FIT,
    NOT_ANSWERED,
    NOT_FIT,
    PALLIATIVE,
    SNOMED,
    UNEMPLOYED,
    concept,
    condition,
    decide,
    document,
    employment,
    observation,
    patient,
    procedure,
    service_request,
)
from tests.support.generators import (
    AS_OF_CHOICES,
    a_birth_date,
    anniversary,
    clinical_record,
    dates_around,
    random_patient,
    referral,
    review_task,
    shift_months,
)
from tests.support.state_pension import STATE_PENSION_DATES


def key(decision) -> tuple:
    """What must not change: outcome, reasons, flags, priority, links, and every step's status
    and cited records (as sets: the order records are listed in is not part of the decision)."""

    def steps(items) -> tuple:
        return tuple((s.id, s.status, s.reason, frozenset(s.refs), steps(s.parts)) for s in items)

    links = decision.links
    return (
        decision.outcome,
        decision.reasons,
        decision.flags,
        decision.priority,
        frozenset(links.reasons),
        frozenset(links.supporting),
        frozenset(links.pain),
        steps(decision.trace),
        frozenset(decision.quality),
    )


@given(random_patient(), st.randoms(use_true_random=False))
def test_resource_order_does_not_matter(case, rnd):
    t, resources = case
    shuffled = list(resources)
    rnd.shuffle(shuffled)
    assert key(decide(shuffled, t)) == key(decide(resources, t))


UNRELATED = [
    observation("8867-4", LOINC, "2026-06-01", valueQuantity={"value": 72, "unit": "/min"}),
    observation("85354-9", LOINC, "2026-06-01"),
    condition("38341003", onset="2025-01-01"),  # hypertension
    condition("44054006", onset="2026-10-01", status="resolved"),  # diabetes
    procedure("80146002", "2026-05-01"),  # appendicectomy
    document("11488-4", "2026-06-01", LOINC),  # consult note
    service_request(code="306109009", status="active"),  # referral to pain management
    employment(UNEMPLOYED, "2026-06-01", question="11341-5"),  # occupation history, not status
    {
        "resourceType": "Encounter",
        "id": "enc-1",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient/p"},
    },
    {
        "resourceType": "MedicationRequest",
        "id": "med-1",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": concept("322236009"),
        "subject": {"reference": "Patient/p"},
    },
    # another patient's records, however relevant
    condition(PALLIATIVE, subject="other"),
    employment(FULL_TIME, "2026-06-01", subject="other"),
    service_request(status="active", subject="other"),
    patient(id="other"),
]


@given(random_patient())
def test_typed_evidence_survives_a_decisions_ndjson_line(case):
    """A cached decision (a decisions.ndjson line) reads back equal, words included."""
    t, resources = case
    decision = decide(resources, t)
    line = orjson.dumps(decision.to_dict(step_line), option=orjson.OPT_SORT_KEYS)
    again = Decision.from_dict(orjson.loads(line))
    assert again == decision
    assert orjson.dumps(again.to_dict(step_line), option=orjson.OPT_SORT_KEYS) == line


@given(random_patient(), st.lists(st.sampled_from(UNRELATED), max_size=5, unique_by=id))
def test_unrelated_resources_change_nothing(case, unrelated):
    t, resources = case
    mixed = [resources[0], *unrelated, *resources[1:]]
    assert key(decide(mixed, t, patient_id="p")) == key(decide(resources, t))


@st.composite
def later_records(draw, t: date) -> list[dict]:
    records = draw(st.lists(clinical_record(t, after_t=True), max_size=4))
    requests = draw(st.lists(referral(t, after_t=True), max_size=2))
    tasks = [draw(review_task(t, r["id"], after_t=True)) for r in requests]
    return [*records, *requests, *tasks]


@given(st.data())
def test_records_dated_after_t_change_nothing(data):
    t, resources = data.draw(random_patient())
    later = data.draw(later_records(t))
    assert key(decide([*resources, *later], t)) == key(decide(resources, t))


# --- (d) a reference implementation -----------------------------------------------------------

CLASS_OF_ANSWER = {
    UNEMPLOYED: "out-of-work",
    INACTIVE: "out-of-work",
    FULL_TIME: "in-work",
    "LA30138-4": "in-work",
    NOT_ANSWERED: None,  # "I choose not to answer": skipped
}
CLASS_OF_CONDITION = {"73438004": "out-of-work", "160903007": "in-work", "105493001": "retired"}
FIT_CLASS = {NOT_FIT: "not-fit", MAY_BE_FIT: "may-be-fit", BACK_TO_WORK: "back-to-work"}


@dataclass(frozen=True)
class Pain:
    status: str | None
    onset: date | None
    abatement: date | None


@dataclass(frozen=True)
class Status:
    """Employment status: an Observation (67875-5 answer) or an employment Condition."""

    code: str
    when: date | None
    condition: bool
    clinical_status: str | None = None
    abatement: date | None = None


@dataclass(frozen=True)
class FitNote:
    code: str
    when: date | None


@dataclass(frozen=True)
class Case:
    t: date
    birth: date | None
    pains: tuple[Pain, ...]
    statuses: tuple[Status, ...]
    fit_notes: tuple[FitNote, ...]


@st.composite
def simple_case(draw) -> Case:
    t = draw(st.sampled_from(AS_OF_CHOICES))
    birth = draw(a_birth_date(t))
    maybe_date = st.one_of(st.none(), dates_around(t), dates_around(t))
    rarely_date = st.one_of(st.none(), st.none(), dates_around(t))
    pains = draw(
        st.lists(
            st.builds(
                Pain,
                st.sampled_from(["active", "active", "resolved", None]),
                maybe_date,
                rarely_date,
            ),
            min_size=1,
            max_size=2,
        )
    )
    observed = st.builds(
        Status, st.sampled_from(sorted(CLASS_OF_ANSWER)), maybe_date, st.just(False)
    )
    recorded = st.builds(
        Status,
        st.sampled_from(sorted(CLASS_OF_CONDITION)),
        maybe_date,
        st.just(True),
        st.sampled_from(["active", "resolved"]),
        rarely_date,
    )
    statuses = draw(st.lists(st.one_of(observed, observed, recorded), max_size=4))
    # fit notes often fall on the same days, and in the last year
    last_year = st.dates(shift_months(t, -13), t)
    days = draw(st.lists(st.one_of(last_year, dates_around(t)), min_size=1, max_size=3))
    fit_notes = draw(
        st.lists(
            st.builds(
                FitNote,
                st.sampled_from(sorted(FIT_CLASS)),
                st.one_of(st.sampled_from(days), st.sampled_from(days), st.none()),
            ),
            max_size=4,
        )
    )
    return Case(
        t,
        date.fromisoformat(birth) if birth else None,
        tuple(pains),
        tuple(statuses),
        tuple(fit_notes),
    )


def as_fhir(case: Case) -> list[dict]:
    def iso(d: date | None) -> str | None:
        return d.isoformat() if d else None

    out = [patient(birth=iso(case.birth))]
    for pain in case.pains:
        extra = {"abatementDateTime": iso(pain.abatement)} if pain.abatement else {}
        out.append(condition(CHRONIC_PAIN, onset=iso(pain.onset), status=pain.status, **extra))
    for s in case.statuses:
        if s.condition:
            extra = {"abatementDateTime": iso(s.abatement)} if s.abatement else {}
            out.append(condition(s.code, onset=iso(s.when), status=s.clinical_status, **extra))
        else:
            out.append(employment(s.code, iso(s.when)))
    for note in case.fit_notes:
        out.append(observation(note.code, SNOMED, iso(note.when)))
    return out


def state_pension_date(birth: date) -> date:
    """UK State Pension date, from the contract's text."""
    if birth < date(1960, 4, 6):
        return anniversary(birth, 66)
    # born 6 April 1960 to 5 March 1961: bands from the 6th of one month to the 5th of the next;
    # the k-th band (k = 1..11) is 66 years and k months
    band_start = date(1960, 4, 6)
    for k in range(1, 12):
        band_end = shift_months(band_start, 1)  # the 6th of the next month, exclusive
        if band_start <= birth < band_end:
            return shift_months(anniversary(birth, 66), k)
        band_start = band_end
    if birth < date(1977, 4, 6):
        return anniversary(birth, 67)
    return anniversary(birth, 68)


def reference(case: Case) -> tuple[str, list[str], list[str], str | None]:
    """The contract (default-ruleset.md), written out plainly for this restricted patient."""
    t = case.t

    def seen(d: date | None) -> bool:  # dated on or before T, or undated
        return d is None or d <= t

    def within(d: date | None, months: int) -> bool:
        return d is not None and shift_months(t, -months) <= d <= t

    def active(status: str | None, abatement: date | None) -> bool:
        if status == "active":
            return True
        if status is None:
            return abatement is None or abatement > t
        return abatement is not None and abatement > t  # resolved, abated after T

    # exclusions
    if case.birth is not None and (
        t < anniversary(case.birth, 18) or t >= state_pension_date(case.birth)
    ):
        return "excluded", ["outside-working-age"], [], None
    reasons = [] if case.birth is not None else ["birth-date-missing"]

    # chronic-pain
    if not any(seen(p.onset) and active(p.status, p.abatement) for p in case.pains):
        reasons.append("no-chronic-pain")

    # out-of-work: dated evidence, each with its class
    evidence: list[tuple[date, str]] = []
    for s in case.statuses:
        if s.when is None or s.when > t:
            continue
        if s.condition:
            if active(s.clinical_status, s.abatement):
                evidence.append((s.when, CLASS_OF_CONDITION[s.code]))
        elif CLASS_OF_ANSWER[s.code] is not None:
            evidence.append((s.when, CLASS_OF_ANSWER[s.code]))
    notes = [(n.when, FIT_CLASS[n.code]) for n in case.fit_notes if n.when and n.when <= t]

    flags: list[str] = []
    decided = False
    if evidence:
        latest = max(d for d, _ in evidence)
        classes = {c for d, c in evidence if d == latest}
        recent = within(latest, 24)
        if classes == {"out-of-work"}:
            decided = True
            if not recent:
                flags.append("employment-status-unconfirmed")
        elif len(classes) == 1 and recent:
            decided = True
            reasons.append(classes.pop())  # in-work, retired (no students generated)
    if not decided:
        recent_notes = {(d, c) for d, c in notes if within(d, 12)}  # one per day and class
        if len(recent_notes) >= 2 and any(c == "not-fit" for _, c in recent_notes):
            flags.append("employment-status-unconfirmed")
        else:
            reasons.append("employment-status-unknown")

    if reasons:
        return "not-eligible", reasons, [], None

    # priority: the spell starts at the earliest out-of-work evidence or not-fit / may-be-fit
    # fit note strictly after the latest in-work, retired or student evidence
    breaks = [d for d, c in evidence if c != "out-of-work"]
    starts = [d for d, c in evidence if c == "out-of-work"]
    starts += [d for d, c in notes if c in ("not-fit", "may-be-fit")]
    if breaks:
        starts = [d for d in starts if d > max(breaks)]
    early = bool(starts) and within(min(starts), 24)
    return "propose", [], flags, "early" if early else "routine"


@given(simple_case())
def test_engine_agrees_with_the_reference(case):
    decision = decide(as_fhir(case), case.t)
    got = (decision.outcome, list(decision.reasons), list(decision.flags), decision.priority)
    assert got == reference(case)


def test_reference_state_pension_dates_agree_with_the_worked_examples():

    for birth, pension in STATE_PENSION_DATES:
        assert state_pension_date(date.fromisoformat(birth)) == date.fromisoformat(pension)
