"""Criterion `chronic-pain` (reason `no-chronic-pain`), passing when any of:
1. an active Condition coded in the chronic-pain codelist;
2. an active Condition coded in the persistent-pain codelist whose earliest record with a code of
   that codelist is at least 3 months before T;
3. a chronic pain review (860381000000107) in the last 12 months.
"""

from __future__ import annotations

import csv
from datetime import date

import pytest

from ips_screen.ruleset.loader import DEFAULT_RULESET
from tests.helpers import (
    CHRONIC_PAIN,
    ICD10,
    ICD10CM,
    OSTEOARTHRITIS_KNEE,
    PAIN_REVIEW,
    SNOMED,
    UNEMPLOYED,
    condition,
    decide,
    document,
    employment,
    observation,
    patient,
    procedure,
    step_refs,
    summary,
)

PROPOSED = ("propose", [], [], "early")
NO_PAIN = ("not-eligible", ["no-chronic-pain"], [], None)
OSTEOARTHRITIS_HIP = "239872002"


def unemployed(*records: dict, when: str = "2026-06-01") -> list[dict]:
    """A working-age patient, unemployed this year, with `records`."""
    return [patient(), employment(UNEMPLOYED, when, id="status"), *records]


def codelist_rows(name: str) -> list[tuple[str, str]]:
    with (DEFAULT_RULESET.parent / "codelists" / f"{name}.csv").open(encoding="utf-8") as f:
        rows = [(r["system"], r["code"]) for r in csv.DictReader(f)]
    # a prefix row (ICD-11 MG30*) stands for its children: test one
    return [(s, c[:-1] + ".0" if c.endswith("*") else c) for s, c in rows]


# --- 1. chronic pain by definition ------------------------------------------------------------


@pytest.mark.parametrize(("system", "code"), codelist_rows("chronic-pain"))
def test_every_chronic_pain_code_passes(system, code):
    decision = decide(unemployed(condition(code, system, onset="2026-11-01", id="pain")))
    assert summary(decision) == PROPOSED
    assert step_refs(decision, "chronic-pain") == {"Condition/pain"}
    assert decision.links.pain == ("Condition/pain",)
    assert "Condition/pain" in decision.links.reasons


def test_acute_pain_codes_are_not_chronic_pain():
    joint, muscle = condition("57676002"), condition("68962001", onset="2020-01-01")
    assert summary(decide(unemployed(joint, muscle))) == NO_PAIN


@pytest.mark.parametrize("status", ["active", "recurrence", "relapse"])
def test_active_statuses(status):
    assert summary(decide(unemployed(condition(CHRONIC_PAIN, status=status)))) == PROPOSED


@pytest.mark.parametrize("status", ["inactive", "remission", "resolved"])
def test_non_active_statuses_without_abatement(status):
    assert summary(decide(unemployed(condition(CHRONIC_PAIN, status=status)))) == NO_PAIN


@pytest.mark.parametrize("status", ["inactive", "remission", "resolved"])
@pytest.mark.parametrize(
    ("abatement", "expected"),
    [
        ("2026-11-27", PROPOSED),  # abated after T: still active at T
        ("2026-12", PROPOSED),
        ("2026-11-26", NO_PAIN),  # on T
        ("2026-11", NO_PAIN),  # partial: 1 November
        ("2026-02-01", NO_PAIN),
        ("2026-11-26T23:30:00-01:00", PROPOSED),  # 00:30 on the 27th in London
    ],
)
def test_abatement_after_t_means_still_active(status, abatement, expected):
    pain = condition(CHRONIC_PAIN, status=status, abatementDateTime=abatement)
    assert summary(decide(unemployed(pain))) == expected


def test_abatement_period_start_is_the_abatement_date():
    later = condition(CHRONIC_PAIN, status="resolved", abatementPeriod={"start": "2027-01-01"})
    earlier = condition(CHRONIC_PAIN, status="resolved", abatementPeriod={"start": "2026-01-01"})
    assert summary(decide(unemployed(later))) == PROPOSED
    assert summary(decide(unemployed(earlier))) == NO_PAIN


@pytest.mark.parametrize("undated", [{"abatementBoolean": True}, {"abatementString": "2019"}])
@pytest.mark.parametrize("status", ["inactive", "remission", "resolved"])
def test_undated_abatement_and_non_active_status_is_not_active(undated, status):
    pain = condition(CHRONIC_PAIN, status=status, **undated)
    assert summary(decide(unemployed(pain))) == NO_PAIN


@pytest.mark.parametrize(
    ("abatement", "expected"),
    [
        ({}, PROPOSED),
        ({"abatementDateTime": "2026-11-27"}, PROPOSED),
        ({"abatementDateTime": "2026-11-26"}, NO_PAIN),  # on or before T
        ({"abatementDateTime": "2025-06-01"}, NO_PAIN),
    ],
)
def test_no_clinical_status_is_active_unless_abated_on_or_before_t(abatement, expected):
    pain = condition(CHRONIC_PAIN, status=None, **abatement)
    assert summary(decide(unemployed(pain))) == expected


def test_no_clinical_status_and_abatement_boolean_false_is_active():
    pain = condition(CHRONIC_PAIN, status=None, abatementBoolean=False)
    assert summary(decide(unemployed(pain))) == PROPOSED


def test_onset_after_t_is_ignored():
    assert summary(decide(unemployed(condition(CHRONIC_PAIN, onset="2026-11-27")))) == NO_PAIN


def test_recorded_date_when_there_is_no_onset():
    recorded = condition(CHRONIC_PAIN, onset=None, recordedDate="2026-03-01")
    future = condition(CHRONIC_PAIN, onset=None, recordedDate="2026-12-01")
    assert summary(decide(unemployed(recorded))) == PROPOSED
    assert summary(decide(unemployed(future))) == NO_PAIN


def test_condition_with_neither_date_counts_as_recorded_before_t():
    assert summary(decide(unemployed(condition(CHRONIC_PAIN, onset=None)))) == PROPOSED


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_refuted_or_entered_in_error_is_ignored(verification):
    pain = condition(CHRONIC_PAIN, status=None, verification=verification)
    assert summary(decide(unemployed(pain))) == NO_PAIN


@pytest.mark.parametrize("verification", ["unconfirmed", "provisional", "differential", None])
def test_other_verification_statuses_count(verification):
    pain = condition(CHRONIC_PAIN, verification=verification)
    assert summary(decide(unemployed(pain))) == PROPOSED


def test_condition_of_another_patient_does_not_count():
    other = condition(CHRONIC_PAIN, subject="someone-else")
    assert summary(decide(unemployed(other))) == NO_PAIN


# --- 2. persistent pain -----------------------------------------------------------------------


@pytest.mark.parametrize(("system", "code"), codelist_rows("persistent-pain"))
def test_every_persistent_pain_code_passes_after_3_months(system, code):
    decision = decide(unemployed(condition(code, system, onset="2026-05-01", id="oa")))
    assert summary(decision) == PROPOSED
    assert step_refs(decision, "persistent-pain-condition") == {"Condition/oa"}


@pytest.mark.parametrize(
    ("onset", "expected"),
    [
        ("2026-08-26", PROPOSED),  # exactly T minus 3 months
        ("2026-08-27", NO_PAIN),
        ("2026-10-01", NO_PAIN),
        ("2026-08", PROPOSED),  # partial: 1 August
        ("2026-09", NO_PAIN),
        ("2026-08-26T00:30:00+02:00", PROPOSED),  # 23:30 on the 25th in London
        ("2026-08-26T23:30:00-01:00", NO_PAIN),  # 01:30 on the 27th in London (BST)
    ],
)
def test_persistent_pain_needs_3_months(onset, expected):
    assert summary(decide(unemployed(condition(OSTEOARTHRITIS_KNEE, onset=onset)))) == expected


@pytest.mark.parametrize(
    ("as_of", "onset", "expected"),
    [
        (date(2027, 5, 31), "2027-02-28", PROPOSED),  # 31 May minus 3 months is 28 February
        (date(2027, 5, 31), "2027-03-01", NO_PAIN),
        (date(2028, 5, 31), "2028-02-29", PROPOSED),  # leap year: 29 February
        (date(2028, 5, 31), "2028-03-01", NO_PAIN),
    ],
)
def test_three_months_before_a_month_end(as_of, onset, expected):
    records = [
        patient(),
        employment(UNEMPLOYED, as_of.replace(day=1).isoformat()),
        condition(OSTEOARTHRITIS_KNEE, onset=onset),
    ]
    assert summary(decide(records, as_of)) == expected


def test_earliest_record_of_any_persistent_pain_code_and_any_status_counts():
    old_hip = condition(OSTEOARTHRITIS_HIP, onset="2024-01-01", status="resolved", id="hip")
    new_knee = condition(OSTEOARTHRITIS_KNEE, onset="2026-10-01", id="knee")
    decision = decide(unemployed(old_hip, new_knee))
    assert summary(decision) == PROPOSED
    assert step_refs(decision, "persistent-pain-condition") == {"Condition/knee", "Condition/hip"}


def test_earliest_record_in_another_coding_system_counts():
    old = condition("M54.5", ICD10, onset="2025-01-01", status="inactive")
    new = condition("M54.50", ICD10CM, onset="2026-11-20")
    assert summary(decide(unemployed(old, new))) == PROPOSED


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_refuted_or_entered_in_error_records_are_not_the_earliest(verification):
    old = condition(OSTEOARTHRITIS_HIP, onset="2024-01-01", status=None, verification=verification)
    new = condition(OSTEOARTHRITIS_KNEE, onset="2026-10-01")
    assert summary(decide(unemployed(old, new))) == NO_PAIN


def test_undated_persistent_pain_cannot_show_3_months():
    undated = condition(OSTEOARTHRITIS_KNEE, onset=None)
    assert summary(decide(unemployed(undated))) == NO_PAIN


def test_undated_active_condition_with_an_older_dated_record_passes():
    old = condition(OSTEOARTHRITIS_HIP, onset="2024-01-01", status="resolved")
    assert summary(decide(unemployed(old, condition(OSTEOARTHRITIS_KNEE, onset=None)))) == PROPOSED


def test_persistent_pain_must_still_be_active():
    resolved = condition(OSTEOARTHRITIS_KNEE, onset="2024-01-01", status="resolved")
    assert summary(decide(unemployed(resolved))) == NO_PAIN


# --- 3. chronic pain review -------------------------------------------------------------------


def _review(kind: str, when: str | None, **kw) -> dict:
    if kind == "Observation":
        return observation(PAIN_REVIEW, SNOMED, when, id="review", **kw)
    if kind == "Procedure":
        return procedure(PAIN_REVIEW, when, id="review", **kw)
    if kind == "Condition":
        return condition(PAIN_REVIEW, onset=when, status="resolved", id="review", **kw)
    return document(PAIN_REVIEW, when, id="review", **kw)


KINDS = ["Observation", "Procedure", "Condition", "DocumentReference"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2026-04-22", PROPOSED),
        ("2025-11-26", PROPOSED),  # exactly T minus 12 months
        ("2025-11-25", NO_PAIN),
        ("2026-11-27", NO_PAIN),  # after T
        (None, NO_PAIN),  # undated: not "in the last 12 months"
    ],
)
def test_chronic_pain_review_in_the_last_12_months_whatever_resource_holds_it(kind, when, expected):
    decision = decide(unemployed(_review(kind, when)))
    assert summary(decision) == expected
    if expected == PROPOSED:
        assert step_refs(decision, "chronic-pain-review") == {f"{kind}/review"}


def test_review_counts_only_through_rule_3_even_as_an_active_condition():
    old_review = condition(PAIN_REVIEW, onset="2024-06-01", status="active")
    assert summary(decide(unemployed(old_review))) == NO_PAIN


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
    assert summary(decide(unemployed(_review(kind, "2026-06-01", status=status)))) == NO_PAIN


def test_any_one_rule_is_enough_and_all_are_cited():
    decision = decide(
        unemployed(
            condition(CHRONIC_PAIN, id="pain"),
            condition(OSTEOARTHRITIS_KNEE, onset="2025-01-01", id="oa"),
            procedure(PAIN_REVIEW, "2026-06-01", id="review"),
        )
    )
    assert summary(decision) == PROPOSED
    assert step_refs(decision, "chronic-pain") == {
        "Condition/pain",
        "Condition/oa",
        "Procedure/review",
    }


# --- the date of a Condition ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dates", "expected"),
    [
        ({"onsetPeriod": {"start": "2026-05-01"}}, PROPOSED),  # Period start
        ({"onsetPeriod": {"start": "2026-10-01"}}, NO_PAIN),
        ({"onsetString": "last winter", "recordedDate": "2026-05-01"}, PROPOSED),  # else recorded
        ({"onsetString": "last winter", "recordedDate": "2026-10-01"}, NO_PAIN),
        ({"onsetAge": {"value": 40, "unit": "a"}, "recordedDate": "2026-05-01"}, PROPOSED),
    ],
)
def test_persistent_pain_dated_by_onset_period_start_else_recorded_date(dates, expected):
    oa = condition(OSTEOARTHRITIS_KNEE, onset=None, **dates)
    assert summary(decide(unemployed(oa))) == expected
