"""Generative tests: random small patients, checked for properties the contract implies and
against a plain reference implementation of the contract (for a restricted kind of patient).

(a) the decision does not depend on the order of the resources;
(b) resources the rules do not read (other codes, other resource types, other patients) change
    nothing;
(c) records dated after T change nothing;
(d) a reference implementation written from default-ruleset.md agrees with the engine.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ips_screen.engine import Decision
from ips_screen.presentation.trace import step_line
from tests.helpers import (
    BACK_TO_WORK,
    CHRONIC_PAIN,
    FULL_TIME,
    ICD10,
    INACTIVE,
    IPS_SYSTEM,
    LOINC,
    MAY_BE_FIT,
    NHS_EMPLOYMENT,
    NOT_ANSWERED,
    NOT_FIT,
    ODH,
    PAIN_REVIEW,
    PALLIATIVE,
    SNOMED,
    UNEMPLOYED,
    UNSPECIFIED_FIT_NOTE,
    concept,
    condition,
    decide,
    document,
    employment,
    finding,
    observation,
    patient,
    prapare,
    procedure,
    service_request,
    task,
)

SETTINGS = settings(
    derandomize=True,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
DECLINE_REASON = "https://ips-screen.org/fhir/CodeSystem/decline-reason"
AS_OF_CHOICES = [date(2026, 11, 26), date(2027, 5, 31), date(2028, 2, 29), date(2026, 3, 1)]


# --- plain calendar arithmetic for the generators and the reference ---------------------------


def shift_months(d: date, months: int) -> date:
    """`d` moved by whole calendar months, on the last day of a shorter month."""
    total = d.year * 12 + d.month - 1 + months
    year, month = total // 12, total % 12 + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def anniversary(birth: date, years: int) -> date:
    if birth.month == 2 and birth.day == 29 and not calendar.isleap(birth.year + years):
        return date(birth.year + years, 3, 1)
    return date(birth.year + years, birth.month, birth.day)


def edge_dates(t: date) -> list[date]:
    """Dates on and next to every boundary the rules use, for T."""
    out = [t, t + timedelta(days=1)]
    for months in (3, 12, 24):
        start = shift_months(t, -months)
        out += [start, start - timedelta(days=1), start + timedelta(days=1)]
    return out


def dates_around(t: date) -> st.SearchStrategy[date]:
    return st.one_of(
        st.sampled_from(edge_dates(t)),
        st.dates(min_value=date(2014, 1, 1), max_value=date(2029, 12, 31)),
    )


def fhir_date(d: date) -> st.SearchStrategy[str]:
    """Ways of writing a date that all mean London day `d`."""
    return st.sampled_from(
        [
            d.isoformat(),
            f"{d.isoformat()}T10:15:00Z",
            f"{d.isoformat()}T12:00:00+01:00",
            f"{(d - timedelta(days=1)).isoformat()}T23:30:00-02:00",  # 01:30 or 02:30 on d
        ]
    )


# --- a general random patient (properties a, b, c) --------------------------------------------

CONDITION_CODES = [
    (SNOMED, CHRONIC_PAIN),
    (SNOMED, "203082005"),
    (ICD10, "R52.2"),
    (SNOMED, "239873007"),
    (SNOMED, "239872002"),
    (SNOMED, PALLIATIVE),
    (SNOMED, "526631000000108"),
    (SNOMED, PAIN_REVIEW),
    (SNOMED, "73438004"),
    (SNOMED, "160903007"),
    (SNOMED, "105493001"),
    (SNOMED, NOT_FIT),
    (SNOMED, "57676002"),  # joint pain: in no codelist
]
EVENT_CODES = [NOT_FIT, MAY_BE_FIT, UNSPECIFIED_FIT_NOTE, BACK_TO_WORK, PALLIATIVE, PAIN_REVIEW]
ANSWERS = [
    (LOINC, UNEMPLOYED),
    (LOINC, INACTIVE),
    (LOINC, FULL_TIME),
    (LOINC, NOT_ANSWERED),
    (ODH, "Employed"),
    (ODH, "NotInLaborForce"),
    (SNOMED, "73438004"),
]
FINDINGS = [
    (SNOMED, "73438004"),
    (SNOMED, "224363007"),
    (SNOMED, "160895006"),
    (SNOMED, "213773001"),  # partner unemployed: not the patient's
    (NHS_EMPLOYMENT, "2"),
    (NHS_EMPLOYMENT, "03"),
    (NHS_EMPLOYMENT, "8"),
    (NHS_EMPLOYMENT, "ZZ"),
]


@st.composite
def a_date(draw, t: date, after_t: bool = False) -> str | None:
    if after_t:
        day = draw(st.dates(min_value=t + timedelta(days=1), max_value=date(2030, 12, 31)))
        return draw(st.sampled_from([day.isoformat(), f"{day.isoformat()}T00:00:00Z"]))
    if draw(st.integers(0, 9)) == 0:
        return None
    day = draw(dates_around(t))
    if draw(st.integers(0, 9)) == 0:
        return day.isoformat()[:7]  # partial: the first of the month
    return draw(fhir_date(day))


@st.composite
def clinical_record(draw, t: date, after_t: bool = False) -> dict:
    when = draw(a_date(t, after_t))
    if after_t:
        assert when is not None
    kind = draw(st.sampled_from(["condition", "question", "finding", "prapare", "event"]))
    if kind == "condition":
        system, code = draw(st.sampled_from(CONDITION_CODES))
        extra = {}
        abatement = draw(st.sampled_from(["none", "date", "boolean", "string"]))
        if abatement == "date":
            extra["abatementDateTime"] = draw(fhir_date(draw(dates_around(t))))
        elif abatement == "boolean":
            extra["abatementBoolean"] = True
        elif abatement == "string":
            extra["abatementString"] = "some time ago"
        if when is None and draw(st.booleans()):
            extra["recordedDate"] = draw(fhir_date(draw(dates_around(t))))
        return condition(
            code,
            system,
            onset=when,
            status=draw(
                st.sampled_from(
                    ["active", "recurrence", "relapse", "inactive", "remission", "resolved", None]
                )
            ),
            verification=draw(
                st.sampled_from(["confirmed", "unconfirmed", "refuted", "entered-in-error", None])
            ),
            **extra,
        )
    status = draw(
        st.sampled_from(["final", "amended", "preliminary", "cancelled", "entered-in-error"])
    )
    if kind == "question":
        system, code = draw(st.sampled_from(ANSWERS))
        question = draw(st.sampled_from(["67875-5", "74165-2"]))
        return employment(code, when, system, question=question, status=status)
    if kind == "finding":
        system, code = draw(st.sampled_from(FINDINGS))
        return finding(code, when, system, status=status)
    if kind == "prapare":
        system, code = draw(st.sampled_from(ANSWERS[:4]))
        return prapare(code, when, answer_system=system, status=status)
    code = draw(st.sampled_from(EVENT_CODES))
    holder = draw(st.sampled_from(["Observation", "Procedure", "DocumentReference"]))
    if holder == "Observation":
        return observation(code, SNOMED, when, status=status)
    if holder == "Procedure":
        status = draw(st.sampled_from(["completed", "in-progress", "not-done", "entered-in-error"]))
        return procedure(code, when, status=status)
    status = draw(st.sampled_from(["current", "superseded", "entered-in-error"]))
    return document(code, when, status=status)


@st.composite
def referral(draw, t: date, after_t: bool = False) -> dict:
    code = draw(
        st.sampled_from(
            [None, "18781004", concept("ips-referral", IPS_SYSTEM), "306109009"]  # None: both codes
        )
    )
    updated = draw(st.one_of(st.none(), st.dates(date(2024, 1, 1), date(2027, 12, 31))))
    if after_t:
        updated = draw(st.dates(t + timedelta(days=1), date(2030, 12, 31)))
    return service_request(
        status=draw(
            st.sampled_from(
                ["draft", "active", "on-hold", "completed", "revoked", "entered-in-error"]
            )
        ),
        intent=draw(st.sampled_from(["proposal", "order", "plan"])),
        authored=draw(a_date(t, after_t)),
        code=code,
        last_updated=f"{updated.isoformat()}T09:00:00Z" if updated else None,
    )


@st.composite
def review_task(draw, t: date, focus: str, after_t: bool = False) -> dict:
    modified = draw(a_date(t, after_t))
    reason = draw(st.sampled_from([None, "not-now", "not-now", "not-interested"]))
    extra = {"statusReason": {"coding": [{"system": DECLINE_REASON, "code": reason}]}}
    return task(
        focus,
        status=draw(st.sampled_from(["requested", "rejected", "cancelled", "completed"])),
        authored=draw(a_date(t, after_t)) if after_t else draw(st.one_of(st.none(), a_date(t))),
        last_modified=modified if modified and "T" in modified else None,
        **(extra if reason else {}),
    )


@st.composite
def a_birth_date(draw, t: date) -> str | None:
    """Mostly of working age; sometimes missing, at an age boundary, or anything."""
    choice = draw(st.integers(0, 9))
    if choice < 6:
        day = draw(st.dates(anniversary(t, -66), anniversary(t, -19)))
    elif choice == 6:
        return None
    elif choice == 7:
        day = draw(
            st.sampled_from(
                [
                    anniversary(t, -18),
                    anniversary(t, -18) + timedelta(days=1),
                    date(1960, 7, 26),
                    date(1960, 7, 27),
                    date(1961, 3, 5),
                    date(1961, 3, 6),
                    date(2008, 2, 29),
                ]
            )
        )
    else:
        day = draw(st.dates(date(1950, 1, 1), date(2015, 12, 31)))
    return day.isoformat()


@st.composite
def random_patient(draw) -> tuple[date, list[dict]]:
    t = draw(st.sampled_from(AS_OF_CHOICES))
    birth = draw(a_birth_date(t))
    extra = draw(
        st.sampled_from(
            [{}] * 12
            + [{"deceasedBoolean": True}, {"deceasedBoolean": False}]
            + [{"deceasedDateTime": d.isoformat()} for d in (t, t + timedelta(days=1))]
        )
    )
    records = []
    if draw(st.booleans()):  # often a chronic pain and an employment record to build on
        onset = draw(dates_around(t)).isoformat()
        records.append(condition(CHRONIC_PAIN, onset=onset))
        answer = draw(st.sampled_from([UNEMPLOYED, INACTIVE, FULL_TIME]))
        records.append(employment(answer, draw(dates_around(t)).isoformat()))
    records += draw(st.lists(clinical_record(t), max_size=8))
    requests = draw(st.lists(referral(t), max_size=2)) if draw(st.integers(0, 3)) == 0 else []
    tasks = [draw(review_task(t, r["id"])) for r in requests if draw(st.booleans())]
    return t, [patient(birth=birth, **extra), *records, *requests, *tasks]


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


@SETTINGS
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


@SETTINGS
@given(random_patient())
def test_typed_evidence_survives_a_decisions_ndjson_line(case):
    """A cached decision (a decisions.ndjson line) reads back equal, words included."""
    t, resources = case
    decision = decide(resources, t)
    line = orjson.dumps(decision.to_dict(step_line), option=orjson.OPT_SORT_KEYS)
    again = Decision.from_dict(orjson.loads(line))
    assert again == decision
    assert orjson.dumps(again.to_dict(step_line), option=orjson.OPT_SORT_KEYS) == line


@SETTINGS
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


@SETTINGS
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


@SETTINGS
@given(simple_case())
def test_engine_agrees_with_the_reference(case):
    decision = decide(as_fhir(case), case.t)
    got = (decision.outcome, list(decision.reasons), list(decision.flags), decision.priority)
    assert got == reference(case)


def test_reference_state_pension_dates_agree_with_the_worked_examples():
    from tests.spec.test_working_age import STATE_PENSION_DATES

    for birth, pension in STATE_PENSION_DATES:
        assert state_pension_date(date.fromisoformat(birth)) == date.fromisoformat(pension)
