"""Exclusion `deceased`: Patient.deceasedBoolean is true, or deceasedDateTime is on or before T."""

from __future__ import annotations

import pytest

from tests.helpers import condition, decide, qualifying, step_refs, summary

EXCLUDED = ("excluded", ["deceased"], [], None)
PROPOSED = ("propose", [], [], "early")


def test_deceased_boolean_true_is_excluded_and_the_patient_is_cited():
    decision = decide(qualifying(deceasedBoolean=True))
    assert summary(decision) == EXCLUDED
    assert decision.step("deceased").status == "fail"
    assert step_refs(decision, "deceased") == {"Patient/p"}


def test_deceased_boolean_false_is_not_excluded():
    assert summary(decide(qualifying(deceasedBoolean=False))) == PROPOSED


@pytest.mark.parametrize(
    "when",
    [
        "2026-10-02",
        "2026-11-26",  # on T
        "2026-11",  # partial: its first day, 1 November
        "2026",
        "2026-11-26T08:00:00+00:00",
        "2026-11-27T00:30:00+02:00",  # 22:30 on the 26th in London
    ],
)
def test_date_of_death_on_or_before_t_is_excluded(when):
    assert summary(decide(qualifying(deceasedDateTime=when))) == EXCLUDED


@pytest.mark.parametrize(
    "when",
    [
        "2026-11-27",
        "2026-12",
        "2026-11-26T23:30:00-01:00",  # 00:30 on the 27th in London
    ],
)
def test_date_of_death_after_t_is_ignored(when):
    assert summary(decide(qualifying(deceasedDateTime=when))) == PROPOSED


def test_a_deceased_patient_with_no_birth_date_is_still_excluded():
    assert summary(decide(qualifying(birth=None, deceasedBoolean=True))) == EXCLUDED


def test_exclusion_wins_over_failing_criteria():
    decision = decide([*qualifying(deceasedBoolean=True)[:1], condition("57676002")])
    assert summary(decision) == EXCLUDED
