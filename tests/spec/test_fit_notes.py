"""Fit notes and the fit-note proxy of `out-of-work`.

Fit notes: Observations, Procedures, Conditions or DocumentReferences (type) coded in the fit-note
codelist, each classed not-fit / may-be-fit / unspecified / back-to-work. With no usable
employment status the proxy passes when there are at least 2 fit notes in the last 12 months and at
least one is "not fit" (flag `employment-status-unconfirmed`). Records of the same class on the
same day are one fit note; 224459001 On sick leave is not a fit note; 160910001 Unfit for work is
not fit; 225891002 Fit for work with restrictions is may be fit. Those in the last 12 months are
linked to the proposal.
"""

from __future__ import annotations

import pytest

from ips_screen.presentation.notes import clinician_note
from ips_screen.service.card_detail import detail_markdown
from tests.helpers import (
    BACK_TO_WORK,
    CHRONIC_PAIN,
    MAY_BE_FIT,
    NOT_FIT,
    UNSPECIFIED_FIT_NOTE,
    condition,
    decide,
    default_ruleset,
    fit_note,
    patient,
    step_refs,
    summary,
)

PROXY = ("propose", [], ["employment-status-unconfirmed"], "early")
UNKNOWN = ("not-eligible", ["employment-status-unknown"], [], None)
SICK_LEAVE = "224459001"
UNFIT = "160910001"
WITH_RESTRICTIONS = "225891002"
RESOURCE_TYPES = ["Observation", "Procedure", "Condition", "DocumentReference"]


def no_status(*records: dict) -> list[dict]:
    """Chronic pain, no employment status at all, and `records`."""
    return [patient(), condition(CHRONIC_PAIN, onset="2020-01-01", id="pain"), *records]


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (NOT_FIT, NOT_FIT, PROXY),
        (NOT_FIT, MAY_BE_FIT, PROXY),
        (NOT_FIT, UNSPECIFIED_FIT_NOTE, PROXY),
        (NOT_FIT, BACK_TO_WORK, PROXY),
        (MAY_BE_FIT, MAY_BE_FIT, UNKNOWN),  # none not fit
        (MAY_BE_FIT, UNSPECIFIED_FIT_NOTE, UNKNOWN),
        (UNFIT, MAY_BE_FIT, PROXY),  # 160910001 Unfit for work is not fit
        (WITH_RESTRICTIONS, NOT_FIT, PROXY),
        (WITH_RESTRICTIONS, WITH_RESTRICTIONS, UNKNOWN),  # may be fit, never not fit
        (NOT_FIT, SICK_LEAVE, UNKNOWN),  # on sick leave is not a fit note
    ],
)
def test_two_fit_notes_one_not_fit(first, second, expected):
    records = [fit_note(first, "2026-02-16"), fit_note(second, "2026-05-11")]
    assert summary(decide(no_status(*records))) == expected


def test_one_fit_note_is_not_enough():
    assert summary(decide(no_status(fit_note(NOT_FIT, "2026-08-10")))) == UNKNOWN


@pytest.mark.parametrize("kind", RESOURCE_TYPES)
def test_fit_notes_in_any_resource_type(kind):
    records = [
        fit_note(NOT_FIT, "2026-02-16", kind, id="one"),
        fit_note(MAY_BE_FIT, "2026-05-11", kind, id="two"),
    ]
    decision = decide(no_status(*records))
    assert summary(decision) == PROXY
    assert step_refs(decision, "fit-note-proxy") >= {f"{kind}/one", f"{kind}/two"}
    assert set(decision.links.supporting) == {f"{kind}/one", f"{kind}/two"}


@pytest.mark.parametrize("status", ["resolved", "inactive", None])
def test_fit_note_condition_need_not_be_active(status):
    records = [
        fit_note(NOT_FIT, "2026-02-16", "Condition", status=status, abatementDateTime="2026-03-15"),
        fit_note(NOT_FIT, "2026-05-11", "Condition", status=status, abatementDateTime="2026-06-08"),
    ]
    assert summary(decide(no_status(*records))) == PROXY


def test_coded_entry_and_its_document_on_the_same_day_are_one_fit_note():
    records = [
        fit_note(NOT_FIT, "2026-09-21T10:30:00+01:00", "Observation", id="coded"),
        fit_note(NOT_FIT, "2026-09-21", "DocumentReference", id="doc"),
    ]
    decision = decide(no_status(*records))
    assert summary(decision) == UNKNOWN


def test_same_day_fit_notes_are_one_by_the_london_day():
    records = [
        fit_note(NOT_FIT, "2026-01-10T23:30:00-01:00", "Observation"),  # 11 Jan in London
        fit_note(NOT_FIT, "2026-01-11", "Procedure"),
    ]
    assert summary(decide(no_status(*records))) == UNKNOWN


def test_document_and_coded_entry_plus_another_fit_note_pass_and_all_are_linked():
    records = [
        fit_note(NOT_FIT, "2026-07-06", "Observation", id="coded"),
        fit_note(NOT_FIT, "2026-07-06", "DocumentReference", id="doc"),
        fit_note(MAY_BE_FIT, "2026-10-05", "Observation", id="later"),
    ]
    decision = decide(no_status(*records))
    assert summary(decision) == PROXY
    assert set(decision.links.supporting) == {
        "Observation/coded",
        "DocumentReference/doc",
        "Observation/later",
    }


def test_same_day_fit_notes_of_different_classes_are_two():
    records = [fit_note(NOT_FIT, "2026-07-06"), fit_note(MAY_BE_FIT, "2026-07-06")]
    assert summary(decide(no_status(*records))) == PROXY


def test_two_not_fit_codes_on_the_same_day_are_one():
    # eMED3 new statement and its duplicate, both not fit
    records = [fit_note(NOT_FIT, "2026-07-06"), fit_note("751621000000103", "2026-07-06")]
    assert summary(decide(no_status(*records))) == UNKNOWN


@pytest.mark.parametrize(
    ("older", "expected"),
    [
        ("2025-11-26", PROXY),  # exactly T minus 12 months: included
        ("2025-11-25", UNKNOWN),
        ("2025-11-25T23:30:00-01:00", PROXY),  # 00:30 on 26 November in London
        ("2025-11-26T00:30:00+01:00", UNKNOWN),  # 23:30 on 25 November in London
    ],
)
def test_fit_notes_in_the_last_12_months(older, expected):
    records = [fit_note(NOT_FIT, older), fit_note(MAY_BE_FIT, "2026-05-11")]
    assert summary(decide(no_status(*records))) == expected


def test_undated_fit_notes_do_not_count():
    records = [fit_note(NOT_FIT, None), fit_note(MAY_BE_FIT, "2026-05-11")]
    assert summary(decide(no_status(*records))) == UNKNOWN


def test_fit_notes_after_t_are_ignored():
    records = [fit_note(NOT_FIT, "2026-11-27"), fit_note(MAY_BE_FIT, "2026-05-11")]
    assert summary(decide(no_status(*records))) == UNKNOWN


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("Observation", "cancelled"),
        ("Observation", "entered-in-error"),
        ("Procedure", "not-done"),
        ("Procedure", "entered-in-error"),
        ("DocumentReference", "superseded"),
        ("DocumentReference", "entered-in-error"),
    ],
)
def test_ignored_statuses(kind, status):
    records = [
        fit_note(NOT_FIT, "2026-02-16", kind, status=status),
        fit_note(MAY_BE_FIT, "2026-05-11"),
    ]
    assert summary(decide(no_status(*records))) == UNKNOWN


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_refuted_fit_note_conditions_are_ignored(verification):
    records = [
        fit_note(NOT_FIT, "2026-02-16", "Condition", status=None, verification=verification),
        fit_note(MAY_BE_FIT, "2026-05-11"),
    ]
    assert summary(decide(no_status(*records))) == UNKNOWN


def test_document_dated_by_context_period_start_else_date():
    by_period = fit_note(NOT_FIT, "2026-02-16", "DocumentReference")
    by_date = fit_note(NOT_FIT, None, "DocumentReference", date="2026-03-16T10:00:00+00:00")
    old_period = fit_note(NOT_FIT, "2025-01-01", "DocumentReference", date="2026-03-16T10:00:00Z")
    assert summary(decide(no_status(by_period, fit_note(MAY_BE_FIT, "2026-05-11")))) == PROXY
    assert summary(decide(no_status(by_date, fit_note(MAY_BE_FIT, "2026-05-11")))) == PROXY
    assert summary(decide(no_status(old_period, fit_note(MAY_BE_FIT, "2026-05-11")))) == UNKNOWN


def test_only_fit_notes_of_the_last_12_months_are_linked():
    records = [
        fit_note(NOT_FIT, "2025-06-01", id="old"),
        fit_note(NOT_FIT, "2026-02-16", id="a"),
        fit_note(BACK_TO_WORK, "2026-05-11", id="b"),
        fit_note(NOT_FIT, "2026-12-01", id="future"),
    ]
    decision = decide(no_status(*records))
    assert summary(decision) == PROXY
    assert set(decision.links.supporting) == {"Observation/a", "Observation/b"}


def test_trailing_spaces_in_fit_note_codes_match():
    records = [
        fit_note("751491000000102 ", "2026-02-16"),
        fit_note(" 751611000000109", "2026-05-11"),
    ]
    assert summary(decide(no_status(*records))) == PROXY


@pytest.mark.parametrize(
    ("records", "lines"),
    [
        (  # a coded entry and its document, and a later one: two fit notes shown
            [
                fit_note(NOT_FIT, "2026-07-06", "Observation", id="coded"),
                fit_note(NOT_FIT, "2026-07-06", "DocumentReference", id="doc"),
                fit_note(MAY_BE_FIT, "2026-10-05", "Observation", id="later"),
            ],
            ["- Fit notes in the last 12 months: 2, latest 5 October 2026."],
        ),
        (  # one London day, two records of one class: one; of another class: two
            [
                fit_note(NOT_FIT, "2026-01-10T23:30:00-01:00", "Observation", id="late"),
                fit_note(NOT_FIT, "2026-01-11", "Procedure", id="proc"),
                fit_note(MAY_BE_FIT, "2026-01-11", "Observation", id="may"),
            ],
            ["- Fit notes in the last 12 months: 2, latest 11 January 2026."],
        ),
    ],
    ids=["document-and-coded-entry", "london-day-and-class"],
)
def test_fit_notes_are_shown_as_they_are_counted(records, lines):
    """The card counts the linked fit notes one per fit note, by the rule that counts them (same
    class, same London day = one), with the latest date (issue 8: a count, not a list); the
    review (CLI and page) groups the same way (tests/integration/test_review_fit_notes.py)."""
    decision = decide(no_status(*records))
    resources = {f"{r['resourceType']}/{r['id']}": r for r in records}
    detail = detail_markdown(
        [], decision.links.supporting, resources, default_ruleset(), pending=False
    )
    assert [line for line in detail.splitlines() if line.startswith("- Fit note")] == lines


def test_the_clinician_note_names_a_fit_note_recorded_twice_once():
    """Its coded entry and its document worded differently are still one fit note: the card
    counts two, and the note (plain words since issue 8) names no record's display."""
    records = [
        fit_note(NOT_FIT, "2026-07-06", "Observation", id="coded"),
        fit_note(
            NOT_FIT,
            "2026-07-06",
            "DocumentReference",
            id="doc",
            type={
                "coding": [{"system": "http://snomed.info/sct", "code": NOT_FIT}],
                "text": "Statement of Fitness for Work (Med3)",
            },
        ),
        fit_note(MAY_BE_FIT, "2026-10-05", "Observation", id="later"),
    ]
    decision = decide(no_status(*records))
    note = clinician_note(decision, default_ruleset())
    assert "Statement of Fitness" not in note and "eMED3" not in note  # plain words, no displays
    resources = {f"{r['resourceType']}/{r['id']}": r for r in records}
    detail = detail_markdown(
        [], decision.links.supporting, resources, default_ruleset(), pending=False
    )
    assert "- Fit notes in the last 12 months: 2, latest 5 October 2026." in detail.splitlines()
