"""Calendar arithmetic in the ruleset's terms.

All comparisons are on London calendar days (default-ruleset.md, "Precise definitions"): a FHIR
dateTime with a time and offset is converted to its Europe/London day; a partial date (YYYY or
YYYY-MM) means its first day.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")


def today_london(now: datetime | None = None) -> date:
    """Today's date in Europe/London (the default as-of date T)."""
    now = now or datetime.now(tz=LONDON)
    if now.tzinfo is None:
        now = now.astimezone()
    return now.astimezone(LONDON).date()


MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def long_date(d: date) -> str:
    """A date as people read it: "2 December 2026" (no leading zero, whatever the locale)."""
    return f"{d.day} {MONTHS[d.month - 1]} {d.year}"


def long_iso(value: str | None, missing: str = "-") -> str:
    """An ISO date or dateTime string's day as `long_date` (`missing` for none; the text itself
    when it is not a date)."""
    if not value:
        return missing
    try:
        return long_date(date.fromisoformat(value[:10]))
    except ValueError:
        return value


# Later years are unreadable: no record is dated there, and the rules' arithmetic (ages, windows
# of months, the decision horizon) must not overflow `date.max` (9999-12-31).
MAX_YEAR = 9000
# The longest window of months a ruleset may set (100 years), and the years an as-of date may be
# in: windows reach back from it at most MAX_MONTHS, horizons forward at most as far (or to an age
# of 130, or a State Pension date), so no date the rules compute leaves years 1 to 9999.
MAX_MONTHS = 1200
AS_OF_YEARS = (1900, MAX_YEAR)


def as_of_date(value: str) -> date:
    """A screen's as-of date, from YYYY-MM-DD in AS_OF_YEARS; ValueError saying what is wrong."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not a date (YYYY-MM-DD): {value!r}") from None
    low, high = AS_OF_YEARS
    if not low <= day.year <= high:
        raise ValueError(f"{value!r}: an as-of date must be in the years {low} to {high}")
    return day


def parse_fhir_date(value: object) -> date | None:
    """A FHIR date, dateTime or instant as a London calendar day; None when absent or unreadable
    (including a year after MAX_YEAR).

    >>> parse_fhir_date("2024-03")
    datetime.date(2024, 3, 1)
    >>> parse_fhir_date("2024-03-31T23:30:00-05:00")
    datetime.date(2024, 4, 1)
    """
    if not isinstance(value, str) or len(value) < 4:
        return None
    try:
        n = len(value)
        if n == 10:
            day = date.fromisoformat(value)
        elif n == 4:
            day = date(int(value), 1, 1)
        elif n == 7:
            day = date(int(value[:4]), int(value[5:7]), 1)
        else:
            parsed = datetime.fromisoformat(value)
            # FHIR requires an offset with a time; without one, take the day as written
            day = parsed.astimezone(LONDON).date() if parsed.tzinfo else parsed.date()
    except (ValueError, OverflowError):  # OverflowError: an offset across 0001-01-01/9999-12-31
        return None
    return day if day.year <= MAX_YEAR else None


def add_months(d: date, months: int) -> date:
    """Calendar months: keep the day, or take the last day of the month when it does not exist."""
    index = d.year * 12 + (d.month - 1) + months
    year, month0 = divmod(index, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(d.day, last))


@lru_cache(maxsize=256)  # the same few windows of the same T, for every patient of a screen
def months_before(t: date, months: int) -> date:
    """Start of the window "last N months" ending at T (both ends included)."""
    return add_months(t, -months)


def add_years(d: date, years: int) -> date:
    """Anniversary: a 29 February date falls on 1 March in non-leap years."""
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February in a non-leap year
        return date(d.year + years, 3, 1)


def age_on(birth: date, t: date) -> int:
    """Whole years of age on day T."""
    years = t.year - birth.year
    return years if t >= add_years(birth, years) else years - 1


def uk_state_pension_date(birth: date) -> date:
    """UK State Pension date from date of birth (clinical-codes.md, default-ruleset.md).

    66 for births before 6 April 1960; 66 years and 1 to 11 months for births 6 April 1960 to
    5 March 1961 (bands from the 6th of one month to the 5th of the next); 67 for births 6 March
    1961 to 5 April 1977; 68 from 6 April 1977 (the 1977-78 phase-in approximated as 68).
    """
    if birth < date(1960, 4, 6):
        return add_years(birth, 66)
    if birth < date(1961, 3, 6):
        band_year, band_month = birth.year, birth.month
        if birth.day < 6:  # belongs to the band that started on the 6th of the previous month
            band_year, band_month = (
                (band_year, band_month - 1) if band_month > 1 else (band_year - 1, 12)
            )
        extra = (band_year - 1960) * 12 + band_month - 4 + 1
        return add_months(add_years(birth, 66), extra)
    if birth < date(1977, 4, 6):
        return add_years(birth, 67)
    return add_years(birth, 68)
