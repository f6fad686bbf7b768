"""Exclusion `end-of-life`: a palliative-care Condition active at T (whenever recorded), or a
palliative-care Observation or Procedure dated in the last 12 months. Resolved palliative
Conditions do not count."""

from __future__ import annotations

import pytest

from tests.helpers import (
    PALLIATIVE,
    condition,
    decide,
    observation,
    procedure,
    qualifying,
    step_refs,
    summary,
)

EXCLUDED = ("excluded", ["end-of-life"], [], None)
PROPOSED = ("propose", [], [], "early")
END_OF_LIFE_REGISTER = "526631000000108"
PALLIATIVE_REFERRAL = "306237005"


def test_active_palliative_condition_recorded_long_ago_excludes_and_is_cited():
    decision = decide(
        [*qualifying(), condition(END_OF_LIFE_REGISTER, onset="2019-03-01", id="eol")]
    )
    assert summary(decision) == EXCLUDED
    assert decision.step("end-of-life").status == "fail"
    assert "Condition/eol" in step_refs(decision, "end-of-life")


@pytest.mark.parametrize("status", ["active", "recurrence", "relapse"])
def test_palliative_condition_in_an_active_status(status):
    assert summary(decide([*qualifying(), condition(PALLIATIVE, status=status)])) == EXCLUDED


def test_palliative_condition_with_no_clinical_status_and_no_abatement_is_active():
    assert summary(decide([*qualifying(), condition(PALLIATIVE, status=None)])) == EXCLUDED


@pytest.mark.parametrize("status", ["resolved", "inactive", "remission"])
def test_resolved_palliative_condition_does_not_count(status):
    resolved = condition(
        PALLIATIVE, onset="2026-01-10", status=status, abatementDateTime="2026-03-01"
    )
    assert summary(decide([*qualifying(), resolved])) == PROPOSED


def test_palliative_condition_resolved_after_t_was_still_active_at_t():
    later = condition(PALLIATIVE, status="resolved", abatementDateTime="2026-11-27")
    assert summary(decide([*qualifying(), later])) == EXCLUDED


def test_palliative_condition_recorded_after_t_is_ignored():
    assert summary(decide([*qualifying(), condition(PALLIATIVE, onset="2026-11-27")])) == PROPOSED


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_refuted_or_entered_in_error_palliative_condition_is_ignored(verification):
    record = condition(PALLIATIVE, verification=verification, status=None)
    assert summary(decide([*qualifying(), record])) == PROPOSED


@pytest.mark.parametrize(
    "make",
    [
        procedure,
        lambda code, when, **kw: observation(
            code, when=when, system="http://snomed.info/sct", **kw
        ),
    ],
)
@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2026-03-17", EXCLUDED),
        ("2025-11-26", EXCLUDED),  # exactly T minus 12 months: included
        ("2025-11-25", PROPOSED),
        ("2026-11-26", EXCLUDED),  # on T
        ("2026-11-27", PROPOSED),  # after T: ignored
        (None, PROPOSED),  # undated: cannot be "in the last 12 months"
    ],
)
def test_palliative_observation_or_procedure_in_the_last_12_months(make, when, expected):
    record = make(PALLIATIVE_REFERRAL, when, id="pal")
    decision = decide([*qualifying(), record])
    assert summary(decision) == expected
    if expected == EXCLUDED:
        assert step_refs(decision, "end-of-life") >= {f"{record['resourceType']}/pal"}


def test_procedure_not_done_is_ignored():
    record = procedure(PALLIATIVE, "2026-06-01", status="not-done")
    assert summary(decide([*qualifying(), record])) == PROPOSED


@pytest.mark.parametrize("status", ["cancelled", "entered-in-error"])
def test_observation_cancelled_or_entered_in_error_is_ignored(status):
    record = observation(PALLIATIVE, "http://snomed.info/sct", "2026-06-01", status=status)
    assert summary(decide([*qualifying(), record])) == PROPOSED


def test_end_of_life_excludes_whatever_the_criteria_say():
    decision = decide([qualifying()[0], condition(PALLIATIVE)])
    assert summary(decision) == EXCLUDED


@pytest.mark.parametrize(
    ("performed", "expected"),
    [
        ({"performedPeriod": {"start": "2026-03-01", "end": "2026-03-02"}}, EXCLUDED),
        ({"performedPeriod": {"start": "2025-03-01", "end": "2026-03-02"}}, PROPOSED),
    ],
)
def test_procedure_dated_by_performed_period_start(performed, expected):
    record = procedure(PALLIATIVE, None, **performed)
    assert summary(decide([*qualifying(), record])) == expected


def test_observation_dated_by_effective_instant():
    record = observation(
        PALLIATIVE, "http://snomed.info/sct", None, effectiveInstant="2026-03-01T10:00:00Z"
    )
    assert summary(decide([*qualifying(), record])) == EXCLUDED
