"""Criterion `out-of-work`: the latest dated employment evidence on or before T decides.

unemployed / economically-inactive pass (flag `employment-status-unconfirmed` when older than 24
months); employed / retired / student within 24 months fail (`in-work`, `retired`, `student`);
otherwise (no evidence, conflicting, or employed/retired/student older than 24 months) the
fit-note proxy decides (fit-note cases in test_fit_notes.py), else `employment-status-unknown`.
"""

from __future__ import annotations

import pytest

from ips_screen.presentation.trace import step_line
from tests.helpers import (
    CHRONIC_PAIN,
    FULL_TIME,
    INACTIVE,
    LOINC,
    MAY_BE_FIT,
    NHS_EMPLOYMENT,
    NOT_ANSWERED,
    NOT_FIT,
    ODH,
    SNOMED,
    UNEMPLOYED,
    condition,
    decide,
    employment,
    finding,
    fit_note,
    patient,
    prapare,
    step_refs,
    summary,
)
from tests.support.rulesets import ruleset_with_quality_notes

PROPOSED = ("propose", [], [], "early")
STALE = ("propose", [], ["employment-status-unconfirmed"], "routine")
UNKNOWN = ("not-eligible", ["employment-status-unknown"], [], None)
EXPECTED = {
    "out-of-work": PROPOSED,
    "in-work": ("not-eligible", ["in-work"], [], None),
    "retired": ("not-eligible", ["retired"], [], None),
    "student": ("not-eligible", ["student"], [], None),
}


def with_pain(*records: dict) -> list[dict]:
    """A working-age patient with active chronic pain, and `records`."""
    return [patient(), condition(CHRONIC_PAIN, onset="2020-01-01", id="pain"), *records]


# --- where evidence comes from, and what it means ---------------------------------------------

ANSWERS = [  # (answer system, answer code, class) for LOINC 67875-5 / 74165-2
    (LOINC, UNEMPLOYED, "out-of-work"),
    (LOINC, INACTIVE, "out-of-work"),
    (LOINC, FULL_TIME, "in-work"),
    (LOINC, "LA30138-4", "in-work"),
]
ODH_ANSWERS = [  # LOINC 74165-2 takes the ODH answers and the SNOMED employment findings
    (ODH, "Employed", "in-work"),
    (ODH, "Unemployed", "out-of-work"),
    (ODH, "NotInLaborForce", "out-of-work"),
]
SNOMED_FINDINGS = [
    (SNOMED, "73438004", "out-of-work"),  # Unemployed
    (SNOMED, "741062008", "out-of-work"),  # Not in labor force
    (SNOMED, "160895006", "out-of-work"),  # Stopped work is unemployed
    (SNOMED, "160903007", "in-work"),
    (SNOMED, "160904001", "in-work"),
    (SNOMED, "224363007", "in-work"),
    (SNOMED, "160906004", "in-work"),  # Self employed
    (SNOMED, "105493001", "retired"),
]
NHS_DD = [
    (NHS_EMPLOYMENT, code, klass)
    for number, klass in [
        ("1", "in-work"),
        ("2", "out-of-work"),
        ("3", "student"),
        ("4", "out-of-work"),  # long-term sick or disabled: economically inactive
        ("5", "out-of-work"),  # homemaker
        ("6", "out-of-work"),  # not receiving benefits and not seeking work
        ("7", "out-of-work"),  # unpaid voluntary work
        ("8", "retired"),
    ]
    for code, klass in [(number, klass), ("0" + number, klass)]
]


@pytest.mark.parametrize(("system", "code", "klass"), ANSWERS)
def test_loinc_67875_5_answers(system, code, klass):
    assert summary(decide(with_pain(employment(code, "2026-06-01", system)))) == EXPECTED[klass]


@pytest.mark.parametrize(("system", "code", "klass"), ANSWERS + ODH_ANSWERS + SNOMED_FINDINGS)
def test_loinc_74165_2_answers(system, code, klass):
    record = employment(code, "2026-06-01", system, question="74165-2")
    assert summary(decide(with_pain(record))) == EXPECTED[klass]


@pytest.mark.parametrize(("system", "code", "klass"), ANSWERS)
def test_prapare_panel_component(system, code, klass):
    decision = decide(with_pain(prapare(code, "2026-06-01", answer_system=system, id="panel")))
    assert summary(decision) == EXPECTED[klass]
    assert "Observation/panel" in step_refs(decision, "out-of-work")


@pytest.mark.parametrize(("system", "code", "klass"), SNOMED_FINDINGS + NHS_DD)
def test_observation_coded_with_a_status(system, code, klass):
    decision = decide(with_pain(finding(code, "2026-06-01", system, id="status")))
    assert summary(decision) == EXPECTED[klass]
    assert step_refs(decision, "out-of-work") == {"Observation/status"}


@pytest.mark.parametrize(("system", "code", "klass"), SNOMED_FINDINGS)
def test_active_condition_coded_with_a_status(system, code, klass):
    record = condition(code, system, onset="2026-06-01", id="status")
    decision = decide(with_pain(record))
    assert summary(decision) == EXPECTED[klass]
    assert step_refs(decision, "out-of-work") == {"Condition/status"}


@pytest.mark.parametrize(
    "extra",
    [
        {"status": "resolved", "abatementDateTime": "2026-09-01"},
        {"status": "inactive"},
        {"status": None, "abatementDateTime": "2026-09-01"},
        {"status": None, "verification": "refuted"},
        {"onset": "2026-11-27"},  # after T
    ],
)
def test_status_conditions_must_be_active_at_t(extra):
    kwargs = {"onset": "2026-06-01", **extra}
    employed_before = condition("160903007", **kwargs)
    assert summary(decide(with_pain(employed_before))) == UNKNOWN
    assert summary(decide(with_pain(condition("73438004", **kwargs)))) == UNKNOWN


def test_status_condition_abated_after_t_is_still_evidence():
    record = condition(
        "73438004", onset="2026-06-01", status="resolved", abatementDateTime="2027-01-01"
    )
    assert summary(decide(with_pain(record))) == PROPOSED


@pytest.mark.parametrize("code", ["213773001", "160875000"])  # partner unemployed / retired
def test_partner_codes_are_not_the_patients_status(code):
    assert summary(decide(with_pain(finding(code, "2026-06-01")))) == UNKNOWN
    assert summary(decide(with_pain(condition(code, onset="2026-06-01")))) == UNKNOWN


def test_unanswered_and_not_stated_are_skipped():
    employed = employment(FULL_TIME, "2026-01-10", id="job")
    declined = employment(NOT_ANSWERED, "2026-06-01")
    not_stated = finding("ZZ", "2026-07-01", NHS_EMPLOYMENT)
    decision = decide(with_pain(employed, declined, not_stated))
    assert summary(decision) == EXPECTED["in-work"]
    assert step_refs(decision, "out-of-work") == {"Observation/job"}


def test_only_unanswered_is_no_evidence():
    assert summary(decide(with_pain(employment(NOT_ANSWERED, "2026-06-01")))) == UNKNOWN


def test_no_evidence_at_all():
    decision = decide(with_pain())
    assert summary(decision) == UNKNOWN
    assert "chronic-pain-no-employment-status" in decision.quality


def test_the_data_quality_notes_are_named_by_the_ruleset(tmp_path):
    """priority.quality_notes names the notes; a ruleset that names none gets none."""
    renamed = ruleset_with_quality_notes(tmp_path, {"missing": "no-status", "undated": "no-date"})
    undated = employment(UNEMPLOYED, None)
    assert decide(with_pain(), ruleset=renamed).quality == ("no-status",)
    assert "no-date" in decide(with_pain(undated), ruleset=renamed).quality
    unnamed = ruleset_with_quality_notes(tmp_path, None)
    assert decide(with_pain(), ruleset=unnamed).quality == ()


# --- the latest evidence decides --------------------------------------------------------------


def test_latest_evidence_decides_out_of_work():
    records = [employment(FULL_TIME, "2025-03-01"), employment(UNEMPLOYED, "2026-06-01", id="now")]
    decision = decide(with_pain(*records))
    assert summary(decision) == PROPOSED
    assert step_refs(decision, "out-of-work") == {"Observation/now"}
    assert "Observation/now" in decision.links.reasons


def test_latest_evidence_decides_in_work():
    records = [employment(UNEMPLOYED, "2025-03-01"), employment(FULL_TIME, "2026-06-01", id="job")]
    decision = decide(with_pain(*records))
    assert summary(decision) == EXPECTED["in-work"]
    assert step_refs(decision, "out-of-work") == {"Observation/job"}


def test_latest_evidence_is_compared_across_sources():
    records = [
        condition("73438004", onset="2024-01-01"),
        prapare(FULL_TIME, "2025-02-01"),
        finding("2", "2026-02-01", NHS_EMPLOYMENT, id="latest"),
    ]
    decision = decide(with_pain(*records))
    assert summary(decision) == PROPOSED
    assert step_refs(decision, "out-of-work") == {"Observation/latest"}


def test_evidence_dated_after_t_is_ignored():
    records = [employment(UNEMPLOYED, "2026-06-01"), employment(FULL_TIME, "2026-11-27")]
    assert summary(decide(with_pain(*records))) == PROPOSED


def test_evidence_on_t_counts():
    records = [employment(UNEMPLOYED, "2026-06-01"), employment(FULL_TIME, "2026-11-26")]
    assert summary(decide(with_pain(*records))) == EXPECTED["in-work"]


def test_undated_evidence_is_not_used_for_latest():
    undated_job = employment(FULL_TIME, None)
    decision = decide(with_pain(undated_job, employment(UNEMPLOYED, "2026-06-01")))
    assert summary(decision) == PROPOSED
    assert "undated-employment-status" in decision.quality


def test_undated_evidence_alone_is_no_evidence():
    decision = decide(with_pain(employment(UNEMPLOYED, None)))
    assert summary(decision) == UNKNOWN
    assert "undated-employment-status" in decision.quality


def test_issued_dates_an_observation_without_effective():
    record = employment(UNEMPLOYED, None, issued="2026-06-01T10:00:00+01:00")
    assert summary(decide(with_pain(record))) == PROPOSED


def test_effective_period_start_dates_an_observation():
    record = employment(UNEMPLOYED, None, effectivePeriod={"start": "2026-06-01"})
    assert summary(decide(with_pain(record))) == PROPOSED


@pytest.mark.parametrize("status", ["cancelled", "entered-in-error"])
def test_cancelled_or_entered_in_error_observations_are_ignored(status):
    records = [
        employment(UNEMPLOYED, "2026-01-01"),
        employment(FULL_TIME, "2026-06-01", status=status),
    ]
    assert summary(decide(with_pain(*records))) == PROPOSED


# --- same-day conflicts -----------------------------------------------------------------------


def test_same_day_different_classes_conflict():
    records = [
        employment(UNEMPLOYED, "2026-06-30", id="a"),
        finding("160903007", "2026-06-30", id="b"),  # full-time employment
    ]
    decision = decide(with_pain(*records))
    assert summary(decision) == UNKNOWN
    assert "conflicting" in step_line(decision.step("out-of-work"))


def test_conflict_falls_back_to_the_fit_note_proxy():
    records = [
        employment(UNEMPLOYED, "2026-06-30"),
        finding("160903007", "2026-06-30"),
        fit_note(NOT_FIT, "2026-03-01"),
        fit_note(MAY_BE_FIT, "2026-05-01"),
    ]
    summary_ = summary(decide(with_pain(*records)))
    assert summary_[:3] == ("propose", [], ["employment-status-unconfirmed"])


def test_same_day_retired_and_student_conflict():
    records = [finding("105493001", "2026-06-30"), finding("3", "2026-06-30", NHS_EMPLOYMENT)]
    assert summary(decide(with_pain(*records))) == UNKNOWN


def test_unemployed_and_economically_inactive_on_the_same_day_do_not_conflict():
    records = [
        employment(UNEMPLOYED, "2026-05-05", id="a"),
        finding("04", "2026-05-05", NHS_EMPLOYMENT, id="b"),  # long-term sick or disabled
    ]
    decision = decide(with_pain(*records))
    assert summary(decision) == PROPOSED
    assert step_refs(decision, "out-of-work") == {"Observation/a", "Observation/b"}


def test_same_class_on_the_same_day_does_not_conflict():
    records = [employment(FULL_TIME, "2026-06-30"), finding("224363007", "2026-06-30")]
    assert summary(decide(with_pain(*records))) == EXPECTED["in-work"]


def test_same_day_means_the_same_london_day():
    # 23:30 UTC on 1 June is 00:30 on 2 June in London (BST): the same day as the unemployed
    # record, though a different UTC day
    records = [
        employment(FULL_TIME, "2026-06-01T23:30:00+00:00"),
        employment(UNEMPLOYED, "2026-06-02"),
    ]
    assert summary(decide(with_pain(*records))) == UNKNOWN


def test_different_london_days_do_not_conflict():
    # both on 1 June UTC, but the employed record is 2 June in London: it is the latest
    records = [
        employment(UNEMPLOYED, "2026-06-01T08:00:00+00:00"),
        employment(FULL_TIME, "2026-06-01T23:30:00+00:00"),
    ]
    assert summary(decide(with_pain(*records))) == EXPECTED["in-work"]


def test_conflict_only_matters_on_the_latest_day():
    records = [
        employment(UNEMPLOYED, "2026-01-01"),
        employment(FULL_TIME, "2026-01-01"),
        employment(UNEMPLOYED, "2026-06-01"),
    ]
    assert summary(decide(with_pain(*records))) == PROPOSED


# --- 24 months: stale evidence ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2024-11-26", ("propose", [], [], "early")),  # exactly T minus 24 months: recent
        ("2024-11-25", STALE),
        ("2019-01-01", STALE),
    ],
)
def test_out_of_work_older_than_24_months_is_flagged(when, expected):
    assert summary(decide(with_pain(employment(UNEMPLOYED, when)))) == expected


def test_economically_inactive_older_than_24_months_is_flagged():
    assert summary(decide(with_pain(prapare(INACTIVE, "2023-01-01")))) == STALE


@pytest.mark.parametrize(
    ("record", "klass"),
    [
        (lambda when: employment(FULL_TIME, when), "in-work"),
        (lambda when: condition("105493001", onset=when), "retired"),
        (lambda when: finding("03", when, NHS_EMPLOYMENT), "student"),
    ],
)
def test_employed_retired_student_fail_only_within_24_months(record, klass):
    assert summary(decide(with_pain(record("2024-11-26")))) == EXPECTED[klass]
    assert summary(decide(with_pain(record("2024-11-25")))) == UNKNOWN


@pytest.mark.parametrize(
    "record",
    [
        lambda when: employment(FULL_TIME, when),
        lambda when: condition("105493001", onset=when),
        lambda when: finding("03", when, NHS_EMPLOYMENT),
    ],
)
def test_old_employed_retired_student_pass_through_the_fit_note_proxy(record):
    records = [
        record("2023-05-01"),
        fit_note(NOT_FIT, "2026-01-10"),
        fit_note(NOT_FIT, "2026-04-10"),
    ]
    assert summary(decide(with_pain(*records))) == (
        "propose",
        [],
        ["employment-status-unconfirmed"],
        "early",
    )
