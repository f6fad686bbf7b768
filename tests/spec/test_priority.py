"""Priority: `early` when the current spell out of work began within the last 24 months, else
`routine`. The spell starts at the earliest out-of-work evidence or not-fit / may-be-fit fit note
strictly after the latest in-work, retired or student evidence. Only on `propose`."""

from __future__ import annotations

import pytest

from tests.helpers import (
    BACK_TO_WORK,
    CHRONIC_PAIN,
    FULL_TIME,
    INACTIVE,
    MAY_BE_FIT,
    NHS_EMPLOYMENT,
    NOT_FIT,
    UNEMPLOYED,
    UNSPECIFIED_FIT_NOTE,
    condition,
    decide,
    employment,
    finding,
    fit_note,
    patient,
    step_refs,
    summary,
)


def with_pain(*records: dict) -> list[dict]:
    return [patient(), condition(CHRONIC_PAIN, onset="2018-01-01", id="pain"), *records]


def priority(*records: dict) -> str | None:
    decision = decide(with_pain(*records))
    assert decision.outcome == "propose"
    return decision.priority


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        ("2026-06-01", "early"),
        ("2024-11-26", "early"),  # exactly T minus 24 months
        ("2024-11-25", "routine"),
        ("2024-11-25T23:30:00-01:00", "early"),  # 00:30 on 26 November in London
    ],
)
def test_spell_start_within_24_months_is_early(start, expected):
    assert priority(employment(UNEMPLOYED, start), employment(UNEMPLOYED, "2026-06-01")) == expected


def test_long_spell_is_routine_and_the_start_is_cited():
    decision = decide(
        with_pain(
            employment(FULL_TIME, "2019-06-01"),
            employment(UNEMPLOYED, "2022-04-04", id="start"),
            employment(UNEMPLOYED, "2026-01-12"),
        )
    )
    assert summary(decision) == ("propose", [], [], "routine")
    assert step_refs(decision, "priority") == {"Observation/start"}


def test_spell_restarts_after_in_work_evidence():
    records = [
        employment(UNEMPLOYED, "2019-01-01"),
        employment(FULL_TIME, "2024-01-01"),
        employment(UNEMPLOYED, "2026-01-01", id="start"),
    ]
    decision = decide(with_pain(*records))
    assert decision.priority == "early"
    assert step_refs(decision, "priority") == {"Observation/start"}


@pytest.mark.parametrize(
    "break_",
    [
        condition("105493001", onset="2024-01-01"),  # retired
        finding("3", "2024-01-01", NHS_EMPLOYMENT),  # student
    ],
)
def test_retired_and_student_evidence_break_a_spell(break_):
    records = [employment(UNEMPLOYED, "2019-01-01"), break_, employment(UNEMPLOYED, "2026-01-01")]
    assert priority(*records) == "early"


def test_economically_inactive_is_part_of_the_spell():
    records = [employment(INACTIVE, "2023-01-01"), employment(UNEMPLOYED, "2026-01-01")]
    assert priority(*records) == "routine"


@pytest.mark.parametrize("code", [NOT_FIT, MAY_BE_FIT])
def test_not_fit_or_may_be_fit_notes_start_a_spell(code):
    records = [
        employment(FULL_TIME, "2019-06-01"),
        fit_note(code, "2024-06-01", id="note"),
        employment(UNEMPLOYED, "2026-01-01"),
    ]
    decision = decide(with_pain(*records))
    assert decision.priority == "routine"
    assert step_refs(decision, "priority") == {"Observation/note"}


@pytest.mark.parametrize("code", [UNSPECIFIED_FIT_NOTE, BACK_TO_WORK])
def test_other_fit_notes_do_not_start_a_spell(code):
    records = [
        employment(FULL_TIME, "2019-06-01"),
        fit_note(code, "2024-06-01"),
        employment(UNEMPLOYED, "2026-01-01"),
    ]
    assert priority(*records) == "early"


def test_fit_notes_before_the_latest_break_do_not_start_the_spell():
    records = [
        fit_note(NOT_FIT, "2023-01-01"),
        employment(FULL_TIME, "2024-01-01"),
        employment(UNEMPLOYED, "2026-01-01"),
    ]
    assert priority(*records) == "early"


def test_evidence_on_the_day_of_the_break_is_not_strictly_after_it():
    records = [
        employment(FULL_TIME, "2024-03-01"),
        fit_note(NOT_FIT, "2024-03-01"),
        employment(UNEMPLOYED, "2026-01-01"),
    ]
    assert priority(*records) == "early"


def test_fit_note_proxy_after_old_employment_is_early():
    records = [
        employment(FULL_TIME, "2023-09-14"),
        fit_note(NOT_FIT, "2025-12-08", id="first"),
        fit_note(NOT_FIT, "2026-03-09"),
    ]
    decision = decide(with_pain(*records))
    assert summary(decision) == ("propose", [], ["employment-status-unconfirmed"], "early")
    assert step_refs(decision, "priority") == {"Observation/first"}


def test_stale_out_of_work_status_is_routine():
    assert priority(employment(UNEMPLOYED, "2023-05-20")) == "routine"


def test_records_after_t_do_not_move_the_spell():
    records = [employment(UNEMPLOYED, "2026-01-01"), employment(FULL_TIME, "2026-12-01")]
    assert priority(*records) == "early"


@pytest.mark.parametrize(
    "records",
    [
        [
            patient(deceasedBoolean=True),
            condition(CHRONIC_PAIN),
            employment(UNEMPLOYED, "2020-01-01"),
        ],
        [patient(), employment(UNEMPLOYED, "2020-01-01")],  # no chronic pain
        [patient(), condition(CHRONIC_PAIN), employment(FULL_TIME, "2026-01-01")],
    ],
)
def test_flags_and_priority_only_on_propose(records):
    decision = decide(records)
    assert decision.outcome != "propose"
    assert decision.flags == ()
    assert decision.priority is None
    assert decision.step("priority") is None
