"""How reasons, flags and priority are put together, and what is ignored everywhere.

- `excluded` (with its reasons, every exclusion that applies in the table's order), else `propose`
  when both criteria pass, else `not-eligible` (chronic-pain's reason before out-of-work's).
- Flags and priority appear only on `propose` (empty list and null otherwise).
- Everything dated after T is ignored; so are records entered in error, refuted Conditions,
  cancelled Observations, not-done Procedures and superseded DocumentReferences.
- Every decision carries a trace: each exclusion and criterion, pass / fail / unknown.
"""

from __future__ import annotations

import pytest

from tests.helpers import (
    CHRONIC_PAIN,
    FULL_TIME,
    NOT_FIT,
    PALLIATIVE,
    UNEMPLOYED,
    condition,
    decide,
    employment,
    fit_note,
    observation,
    patient,
    procedure,
    proposal,
    qualifying,
    service_request,
    summary,
    task,
)

EXCLUSIONS = ["deceased", "working-age", "end-of-life", "ips-referral-open", "ips-declined"]
CRITERIA = ["chronic-pain", "out-of-work"]


def test_every_exclusion_at_once_lists_all_reasons_in_table_order():
    records = [
        patient(birth="2010-01-01", deceasedBoolean=True),
        condition(CHRONIC_PAIN),
        employment(UNEMPLOYED, "2026-06-01"),
        condition(PALLIATIVE),
        proposal(id="pending"),
        service_request(status="revoked", intent="proposal", authored="2026-02-01", id="old"),
        task("old", status="rejected", authored="2026-02-01", last_modified="2026-02-10T10:00:00Z"),
    ]
    decision = decide(records)
    assert summary(decision) == (
        "excluded",
        ["deceased", "outside-working-age", "end-of-life", "ips-referral-open", "ips-declined"],
        [],
        None,
    )
    assert [s.id for s in decision.trace] == EXCLUSIONS + CRITERIA
    assert all(decision.step(i).status == "fail" for i in EXCLUSIONS)


def test_excluded_patient_who_would_be_flagged_has_no_flags_or_priority():
    records = [*qualifying(status_date="2020-01-01"), condition(PALLIATIVE)]
    assert summary(decide(records)) == ("excluded", ["end-of-life"], [], None)


def test_not_eligible_lists_chronic_pain_before_out_of_work():
    records = [patient(), employment(FULL_TIME, "2026-06-01")]
    assert summary(decide(records)) == ("not-eligible", ["no-chronic-pain", "in-work"], [], None)
    records = [patient(), employment(FULL_TIME, None)]
    assert summary(decide(records)) == (
        "not-eligible",
        ["no-chronic-pain", "employment-status-unknown"],
        [],
        None,
    )


def test_not_eligible_has_no_flags_or_priority_and_the_trace_says_which_failed():
    decision = decide([patient(), condition(CHRONIC_PAIN), employment(FULL_TIME, "2026-06-01")])
    assert summary(decision) == ("not-eligible", ["in-work"], [], None)
    assert decision.step("chronic-pain").status == "pass"
    assert decision.step("out-of-work").status == "fail"
    assert decision.step("out-of-work").reason == "in-work"


def test_propose_carries_a_trace_of_every_step():
    decision = decide(qualifying())
    assert summary(decision) == ("propose", [], [], "early")
    assert [s.id for s in decision.trace] == [*EXCLUSIONS, *CRITERIA, "priority"]
    assert all(s.status == "pass" for s in decision.trace)
    assert set(decision.links.reasons) == {"Condition/pain", "Observation/status"}


# --- records dated after T --------------------------------------------------------------------

AFTER_T = "2026-11-27"
LATER_RECORDS = [
    condition(PALLIATIVE, onset=AFTER_T),
    procedure(PALLIATIVE, AFTER_T),
    observation(PALLIATIVE, "http://snomed.info/sct", "2026-11-27T00:30:00Z"),
    proposal(authored=AFTER_T),
    service_request(status="completed", authored=AFTER_T),
    service_request(status="revoked", authored=AFTER_T, last_updated="2026-11-28T10:00:00Z"),
    employment(FULL_TIME, AFTER_T),
    condition("105493001", onset=AFTER_T),
]


@pytest.mark.parametrize("later", LATER_RECORDS, ids=lambda r: r["resourceType"])
def test_records_dated_after_t_are_ignored(later):
    assert summary(decide([*qualifying(), later])) == ("propose", [], [], "early")


def test_records_dated_after_t_do_not_make_a_patient_eligible():
    records = [patient(), condition(CHRONIC_PAIN, onset=AFTER_T), employment(UNEMPLOYED, AFTER_T)]
    assert summary(decide(records)) == (
        "not-eligible",
        ["no-chronic-pain", "employment-status-unknown"],
        [],
        None,
    )


# --- ignored like entered-in-error ------------------------------------------------------------

IGNORED = [
    observation(PALLIATIVE, "http://snomed.info/sct", "2026-06-01", status="cancelled"),
    observation(PALLIATIVE, "http://snomed.info/sct", "2026-06-01", status="entered-in-error"),
    procedure(PALLIATIVE, "2026-06-01", status="not-done"),
    procedure(PALLIATIVE, "2026-06-01", status="entered-in-error"),
    condition(PALLIATIVE, status=None, verification="entered-in-error"),
    condition(PALLIATIVE, status="active", verification="refuted"),
    proposal(status="entered-in-error"),
    employment(FULL_TIME, "2026-10-01", status="cancelled"),
    employment(FULL_TIME, "2026-10-01", status="entered-in-error"),
]


@pytest.mark.parametrize("ignored", IGNORED, ids=lambda r: f"{r['resourceType']}")
def test_ignored_records_change_nothing(ignored):
    assert summary(decide([*qualifying(), ignored])) == ("propose", [], [], "early")


def test_entered_in_error_task_is_not_a_decline():
    records = [
        *qualifying(),
        service_request(status="completed", intent="proposal", authored="2024-01-01", id="ips"),
        task("ips", status="entered-in-error", authored="2026-06-01"),
    ]
    assert summary(decide(records)) == ("propose", [], [], "early")


def test_superseded_fit_note_documents_are_not_fit_notes():
    records = [
        patient(),
        condition(CHRONIC_PAIN),
        fit_note(NOT_FIT, "2026-02-16", "DocumentReference", status="superseded"),
        fit_note(NOT_FIT, "2026-05-11"),
    ]
    assert summary(decide(records)) == ("not-eligible", ["employment-status-unknown"], [], None)
