"""Days and months as the contract defines them (default-ruleset.md, "Precise definitions").

- A dateTime with a time and offset is its Europe/London calendar day; T is a London day.
- A partial date (YYYY or YYYY-MM) means its first day.
- T minus N months keeps the day of month, or takes the last day of the target month.
- Ages count whole years; a person born on 29 February turns a year older on 1 March in
  non-leap years.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from ips_screen.dates import (
    LONDON,
    add_months,
    age_on,
    months_before,
    parse_fhir_date,
    today_london,
    uk_state_pension_date,
)
from tests.helpers import (
    PAIN_REVIEW,
    UNEMPLOYED,
    decide,
    employment,
    patient,
    procedure,
    qualifying,
    summary,
)
from tests.support.state_pension import STATE_PENSION_DATES

PROPOSED = ("propose", [], [], "early")


@pytest.mark.parametrize(
    ("value", "day"),
    [
        ("2026-03-14", date(2026, 3, 14)),
        ("2026-03", date(2026, 3, 1)),
        ("2026", date(2026, 1, 1)),
        # winter: London is UTC
        ("2026-01-10T23:30:00Z", date(2026, 1, 10)),
        ("2026-01-10T23:30:00-01:00", date(2026, 1, 11)),
        ("2026-01-11T00:30:00+01:00", date(2026, 1, 10)),
        # summer: London is UTC+1
        ("2026-07-01T23:30:00Z", date(2026, 7, 2)),
        ("2026-07-01T00:30:00+01:00", date(2026, 7, 1)),
        ("2026-07-01T00:30:00+02:00", date(2026, 6, 30)),
        ("2026-07-01T12:00:00+12:00", date(2026, 7, 1)),
        # the clocks change: 29 March 2026 01:00 UTC, 25 October 2026 01:00 UTC
        ("2026-03-29T00:59:59Z", date(2026, 3, 29)),
        ("2026-03-28T23:30:00Z", date(2026, 3, 28)),
        ("2026-10-24T23:30:00Z", date(2026, 10, 25)),  # still BST: 00:30 on the 25th
        ("2026-10-25T23:30:00Z", date(2026, 10, 25)),  # GMT again
        # instants with fractions of a second
        ("2026-02-03T04:05:06.789Z", date(2026, 2, 3)),
        ("2026-02-03T23:59:59.999999-00:30", date(2026, 2, 4)),
    ],
)
def test_fhir_dates_are_london_days(value, day):
    assert parse_fhir_date(value) == day


@pytest.mark.parametrize("value", [None, "", "26/11/2026", "2026-13", "2026-02-30", 20261126])
def test_unreadable_dates_are_none(value):
    assert parse_fhir_date(value) is None


@pytest.mark.parametrize(
    ("t", "months", "start"),
    [
        (date(2026, 11, 26), 12, date(2025, 11, 26)),
        (date(2026, 11, 26), 24, date(2024, 11, 26)),
        (date(2026, 11, 26), 3, date(2026, 8, 26)),
        (date(2027, 5, 31), 3, date(2027, 2, 28)),  # 31 May minus 3 months
        (date(2028, 5, 31), 3, date(2028, 2, 29)),  # leap year
        (date(2026, 3, 31), 1, date(2026, 2, 28)),
        (date(2026, 12, 31), 1, date(2026, 11, 30)),
        (date(2028, 2, 29), 12, date(2027, 2, 28)),
        (date(2028, 2, 29), 48, date(2024, 2, 29)),
        (date(2026, 1, 15), 1, date(2025, 12, 15)),
        (date(2026, 11, 26), 0, date(2026, 11, 26)),
    ],
)
def test_t_minus_n_calendar_months(t, months, start):
    assert months_before(t, months) == start


def test_add_months_crosses_years_both_ways():
    assert add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)
    assert add_months(date(2026, 1, 31), -2) == date(2025, 11, 30)


@pytest.mark.parametrize(
    ("birth", "t", "age"),
    [
        (date(1980, 1, 1), date(2026, 11, 26), 46),
        (date(1980, 11, 26), date(2026, 11, 26), 46),  # birthday on T
        (date(1980, 11, 27), date(2026, 11, 26), 45),
        (date(2008, 2, 29), date(2026, 2, 28), 17),  # non-leap year: not yet
        (date(2008, 2, 29), date(2026, 3, 1), 18),  # ... a year older on 1 March
        (date(2008, 2, 29), date(2028, 2, 28), 19),
        (date(2008, 2, 29), date(2028, 2, 29), 20),  # leap year: on 29 February
    ],
)
def test_age_in_whole_years(birth, t, age):
    assert age_on(birth, t) == age


@pytest.mark.parametrize(("birth", "pension"), STATE_PENSION_DATES)
def test_uk_state_pension_date(birth, pension):
    assert uk_state_pension_date(date.fromisoformat(birth)) == date.fromisoformat(pension)


def test_today_is_the_london_day_whatever_the_local_zone(frozen_clock):
    # 12:30 on 27 November in Auckland (the local zone while travelling) is 23:30 on the 26th in
    # London
    frozen_clock.move_to(datetime(2026, 11, 27, 12, 30, tzinfo=ZoneInfo("Pacific/Auckland")))
    assert datetime.now().date() == date(2026, 11, 27)  # the local day on purpose
    assert today_london() == date(2026, 11, 26)
    assert today_london(datetime(2026, 11, 26, 23, 30, tzinfo=LONDON)) == date(2026, 11, 26)


# --- the same rules, through the engine -------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "held"),
    [
        ("2025-11-26", True),  # T minus 12 months: included
        ("2025-11-25", False),
        ("2025-11-25T23:30:00-01:00", True),  # 00:30 on 26 November in London
        ("2025-11-26T00:30:00+01:00", False),  # 23:30 on 25 November in London
        ("2025-12", True),  # partial: 1 December
        ("2025-11", False),  # partial: 1 November
        ("2026", True),
        ("2025", False),
        ("2026-11-26T23:59:59Z", True),  # on T
        ("2026-11-27T00:00:00Z", False),  # after T
        ("2026-11-27T00:30:00+01:00", True),  # 23:30 on T in London
    ],
)
def test_window_edges_in_london_days(when, held):
    # a chronic pain review is the only chronic pain evidence: it holds only in the window
    records = [patient(), employment(UNEMPLOYED, "2026-06-01"), procedure(PAIN_REVIEW, when)]
    decision = decide(records)
    assert (decision.outcome == "propose") is held
    if held:
        assert summary(decision) == PROPOSED


def test_as_of_is_a_date_not_the_clock():
    # the frozen clock says 26 November 2026; a screen as of a past date ignores later records
    records = [*qualifying(status_date="2026-06-01"), procedure("526631000000108", "2026-07-01")]
    assert decide(records).outcome == "excluded"
    assert summary(decide(records, date(2026, 6, 15))) == PROPOSED
