"""Hypothesis strategies for random small patients (tests/property/): dates on and next to every
boundary the rules use, written in the several ways FHIR allows, and patients with random
conditions, employment answers, findings, fit notes, referrals and review Tasks. Also the plain
calendar arithmetic the generators and the reference implementation share."""

from __future__ import annotations

import calendar
from datetime import date, timedelta

from hypothesis import strategies as st

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
