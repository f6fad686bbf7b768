"""Exclusion `outside-working-age`: under 18 at T, or T on or after the UK State Pension date.

A patient with no birthDate is not excluded: outcome `not-eligible`, reason `birth-date-missing`.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import yaml

from ips_screen.ruleset.loader import DEFAULT_RULESET, load_ruleset
from tests.helpers import (
    CHRONIC_PAIN,
    UNEMPLOYED,
    condition,
    decide,
    employment,
    patient,
    qualifying,
    step_refs,
    summary,
)
from tests.support.state_pension import STATE_PENSION_DATES

EXCLUDED = ("excluded", ["outside-working-age"], [], None)
PROPOSED = ("propose", [], [], "early")


def qualifying_at(as_of: date, birth: str | None) -> list[dict]:
    """Chronic pain for two years and unemployed a month before `as_of`."""
    return [
        patient(birth=birth),
        condition(CHRONIC_PAIN, onset=(as_of - timedelta(days=730)).isoformat()),
        employment(UNEMPLOYED, (as_of - timedelta(days=30)).isoformat()),
    ]


# --- 18th birthday ----------------------------------------------------------------------------


def test_eighteenth_birthday_on_t_is_working_age():
    assert summary(decide(qualifying(birth="2008-11-26"))) == PROPOSED


def test_seventeen_the_day_before_the_eighteenth_birthday_is_excluded():
    decision = decide(qualifying(birth="2008-11-27"))
    assert summary(decision) == EXCLUDED
    assert step_refs(decision, "working-age") == {"Patient/p"}


def test_born_29_february_turns_18_on_1_march_in_a_non_leap_year():
    assert summary(decide(qualifying_at(date(2026, 2, 28), "2008-02-29"), date(2026, 2, 28))) == (
        EXCLUDED
    )
    assert summary(decide(qualifying_at(date(2026, 3, 1), "2008-02-29"), date(2026, 3, 1))) == (
        PROPOSED
    )


@pytest.mark.parametrize(
    ("birth", "expected"),
    [
        ("2008-11", PROPOSED),  # first day of the month: 18 on 1 November 2026
        ("2008-12", EXCLUDED),
        ("2008", PROPOSED),
        ("2009", EXCLUDED),
    ],
)
def test_partial_birth_date_means_its_first_day(birth, expected):
    assert summary(decide(qualifying(birth=birth))) == expected


def test_born_after_t_is_excluded():
    assert summary(decide(qualifying(birth="2027-01-01"))) == EXCLUDED


# --- State Pension date -----------------------------------------------------------------------


@pytest.mark.parametrize(("birth", "pension"), STATE_PENSION_DATES)
def test_excluded_from_the_state_pension_date(birth, pension):
    day = date.fromisoformat(pension)
    assert summary(decide(qualifying_at(day, birth), day)) == EXCLUDED


@pytest.mark.parametrize(("birth", "pension"), STATE_PENSION_DATES)
def test_working_age_the_day_before_the_state_pension_date(birth, pension):
    day = date.fromisoformat(pension) - timedelta(days=1)
    assert summary(decide(qualifying_at(day, birth), day)) == PROPOSED


def test_never_a_fixed_65_or_66():
    # 66 on T but born in the 66-years-4-months band: still of working age
    assert summary(decide(qualifying(birth="1960-07-27"))) == PROPOSED


# --- max_age override -------------------------------------------------------------------------


def _ruleset_with_max_age(tmp_path, max_age: int):
    data = yaml.safe_load(DEFAULT_RULESET.read_text(encoding="utf-8"))
    data["codelists"] = {
        name: str((DEFAULT_RULESET.parent / rel).resolve())
        for name, rel in data["codelists"].items()
    }
    data.pop("examples", None)
    for exclusion in data["exclusions"]:
        if exclusion["rule"]["id"] == "working-age":
            exclusion["rule"]["max_age"] = max_age
    path = tmp_path / "ruleset.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_ruleset(path)


def test_max_age_overrides_the_state_pension_date(tmp_path):
    ruleset = _ruleset_with_max_age(tmp_path, 60)
    assert summary(decide(qualifying(birth="1966-11-26"), ruleset=ruleset)) == EXCLUDED
    assert summary(decide(qualifying(birth="1966-11-27"), ruleset=ruleset)) == PROPOSED
    # aged 68, past the State Pension date, but under a fixed max_age of 70
    ruleset = _ruleset_with_max_age(tmp_path, 70)
    assert summary(decide(qualifying(birth="1958-01-01"), ruleset=ruleset)) == PROPOSED


# --- birth date missing -----------------------------------------------------------------------


def test_no_birth_date_is_not_eligible_not_excluded():
    decision = decide(qualifying(birth=None))
    assert summary(decision) == ("not-eligible", ["birth-date-missing"], [], None)
    assert decision.step("working-age").status == "unknown"


def test_no_birth_date_and_a_failing_criterion_lists_both():
    decision = decide([patient(birth=None), employment(UNEMPLOYED, "2026-06-01")])
    assert summary(decision) == (
        "not-eligible",
        ["birth-date-missing", "no-chronic-pain"],
        [],
        None,
    )


def test_no_birth_date_is_still_excluded_by_other_exclusions():
    decision = decide(qualifying(birth=None, deceasedDateTime="2026-01-01"))
    assert summary(decision) == ("excluded", ["deceased"], [], None)
