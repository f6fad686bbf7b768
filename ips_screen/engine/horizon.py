"""How long a decision stays valid with no new data: its *horizon*.

Decisions change with time alone (a pain Condition passes 3 months, a birthday, a window closes),
so a nightly run must bring every patient's decision up to date. Every comparison the engine makes
with the as-of date T has one of two forms:

- a record date against T itself (visibility, abatement, decline date, date of death), or
- a record date against "T minus N months" (every window and "at least N months ago"),

plus the patient's birthdays and State Pension date. The window lengths are those each criterion
kind declares (`KindSpec.windows`), with the priority's and the proposal's. `valid_until` returns
a day no later than the first day on which any such comparison could change; for every T' from T
up to the day before it, `evaluate(ruleset, facts, T')` equals `evaluate(ruleset, facts, T)`
except for `as_of`. The bound is conservative in what it compares (every date of the patient
against every window length of the ruleset, whichever criterion reads it) but exact in when a
comparison changes: the start of a window, `months_before(T, N)`, never moves back as T moves on,
so a date's place against it (before it, on it or after it) changes on days `window_change` finds,
month ends and leap days included. Re-evaluating early is always safe, late never happens;
property tests check both the horizon and `window_change` against a day-by-day reference.
"""

from __future__ import annotations

from datetime import date, timedelta

from ips_screen.dates import add_months, add_years, age_on, months_before, uk_state_pension_date
from ips_screen.facts.model import PatientFacts
from ips_screen.kinds.registry import walk_criteria, windows_of
from ips_screen.ruleset.loader import CompiledRuleset

ONE_DAY = timedelta(days=1)
SCAN_DAYS = 62  # days `window_change` looks at, at most: a date's place changes within 35


_LENGTHS: dict[int, tuple[object, tuple[int, ...]]] = {}


def window_lengths(ruleset: CompiledRuleset) -> tuple[int, ...]:
    """Every "N months" of the ruleset: the windows its criteria, priority and proposal declare."""
    model = ruleset.model
    cached = _LENGTHS.get(id(model))
    if cached is not None and cached[0] is model:
        return cached[1]
    found: set[int] = set()
    tops = [*(e.rule for e in model.exclusions), *(c.rule for c in model.criteria)]
    for top in tops:
        for rule in walk_criteria(top):
            found.update(windows_of(rule))
    if model.priority is not None:
        found.update(model.priority.windows())
    found.update(model.proposal.windows())
    lengths = tuple(sorted(found))
    _LENGTHS[id(model)] = (model, lengths)
    return lengths


def valid_until(ruleset: CompiledRuleset, facts: PatientFacts, t: date) -> date:
    """The first day on which the decision for `facts` might differ from the decision at T."""
    starts = [(n, months_before(t, n)) for n in window_lengths(ruleset)]
    horizon = date.max
    dates: set[date] = set()
    for record in facts.records:
        for d in (record.date, record.abatement, record.changed):
            if d is not None:
                dates.add(d)
    if facts.deceased_date is not None:
        dates.add(facts.deceased_date)
    for d in dates:
        if d > t:  # a record becomes visible, an abatement or a decline takes effect
            horizon = min(horizon, d)
        for n, start in starts:
            if start <= d:  # before the window's start, a date stays before it
                horizon = window_change(d, n, t, horizon)
    birth = facts.birth_date
    if birth is not None:
        if birth > t:
            horizon = min(horizon, birth)
        else:
            horizon = min(horizon, add_years(birth, age_on(birth, t) + 1))
        pension = uk_state_pension_date(birth)
        if pension > t:
            horizon = min(horizon, pension)
    return max(horizon, t + ONE_DAY)


def window_change(d: date, months: int, t: date, limit: date = date.max) -> date:
    """The first day after T on which `d` is placed differently against the start of the window
    "last `months` months" (`months_before(day, months)`: after d, on it or before it) than on T;
    `limit` if that day is not before `limit` (date.max: never).

    The start never moves back, so a date after it can only come to be on it, then before it, and
    the first day it is on or before d is no earlier than `add_months(d, months)`: for any day D,
    `add_months(months_before(D, months), months)` is D or a day of D's month before it."""
    tomorrow = t + ONE_DAY
    place = _order(d, months_before(t, months))
    if place < 0:
        return limit  # before the start: stays so
    day = max(add_months(d, months), tomorrow) if place > 0 else tomorrow
    for _ in range(SCAN_DAYS):
        if day >= limit:
            return limit
        if _order(d, add_months(day, -months)) != place:  # months_before, uncached here
            return day
        day += ONE_DAY
    return day  # not reached (see SCAN_DAYS); an early horizon is safe


def _order(a: date, b: date) -> int:
    return (a > b) - (a < b)
