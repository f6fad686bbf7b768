"""How long a decision stays valid with no new data: its *horizon*.

Decisions change with time alone (a pain Condition passes 3 months, a birthday, a window closes),
so a nightly run must bring every patient's decision up to date. Every comparison the engine makes
with the as-of date T has one of two forms:

- a record date against T itself (visibility, abatement, decline date, date of death), or
- a record date against "T minus N months" (every window and "at least N months ago"),

plus the patient's birthdays and State Pension date. The window lengths are those each criterion
kind declares (`KindSpec.windows`), with the priority's and the proposal's; a record's dates are
compared with the windows of the criteria that read records of its type
(`KindSpec.window_types`; the priority's and the proposal's: any type). `valid_until` returns
a day no later than the first day on which any such comparison could change; for every T' from T
up to the day before it, `evaluate(ruleset, facts, T')` equals `evaluate(ruleset, facts, T)`
except for `as_of`. The bound is conservative in what it compares (every date of a record against
every window of a criterion that reads its type, whether or not the criterion reads that record:
its codes are not looked at) but exact in when a
comparison changes: the start of a window, `months_before(T, N)`, never moves back as T moves on,
so a date's place against it (before it, on it or after it) changes on days `window_change` finds,
month ends and leap days included. Re-evaluating early is always safe, late never happens;
property tests check both the horizon and `window_change` against a day-by-day reference.
"""

from __future__ import annotations

from datetime import date, timedelta

from ips_screen.dates import add_months, add_years, age_on, months_before, uk_state_pension_date
from ips_screen.facts.model import PatientFacts
from ips_screen.kinds.registry import window_types_of, windows_of
from ips_screen.ruleset.loader import CompiledRuleset

ONE_DAY = timedelta(days=1)
SCAN_DAYS = 62  # days `window_change` looks at, at most: a date's place changes within 35


class _Windows:
    """A ruleset's windows: each length with the record types compared with it (None: any)."""

    def __init__(self, model: object, pairs: tuple[tuple[int, frozenset[str] | None], ...]):
        self.model, self.pairs = model, pairs
        self.lengths = tuple(n for n, _ in pairs)
        self.by_type: dict[str, tuple[int, ...]] = {}

    def of_type(self, resource_type: str) -> tuple[int, ...]:
        lengths = self.by_type.get(resource_type)
        if lengths is None:
            lengths = tuple(n for n, t in self.pairs if t is None or resource_type in t)
            self.by_type[resource_type] = lengths
        return lengths


_WINDOWS: dict[int, _Windows] = {}


def _windows(ruleset: CompiledRuleset) -> _Windows:
    model = ruleset.model
    cached = _WINDOWS.get(id(model))
    if cached is not None and cached.model is model:
        return cached
    found: dict[int, frozenset[str] | None] = {}

    def add(lengths: tuple[int, ...], types: frozenset[str] | None) -> None:
        for n in lengths:
            known = found.get(n, frozenset())
            found[n] = None if known is None or types is None else known | types

    for rule in ruleset.criteria:
        add(windows_of(rule), window_types_of(rule))
    if model.priority is not None:
        add(model.priority.windows(), None)  # a spell's start: a date of any record
    add(model.proposal.windows(), window_types_of(model.proposal.supporting_info))
    windows = _WINDOWS[id(model)] = _Windows(model, tuple(sorted(found.items())))
    return windows


def window_pairs(ruleset: CompiledRuleset) -> tuple[tuple[int, frozenset[str] | None], ...]:
    """Every "N months" of the ruleset with the record types whose dates are compared with it
    (None: any type): the windows its criteria declare, each with the types the criterion reads
    (`KindSpec.window_types`), the priority's with any type and the proposal's."""
    return _windows(ruleset).pairs


def window_lengths(ruleset: CompiledRuleset) -> tuple[int, ...]:
    """Every "N months" of the ruleset: the windows its criteria, priority and proposal declare."""
    return _windows(ruleset).lengths


def valid_until(ruleset: CompiledRuleset, facts: PatientFacts, t: date) -> date:
    """The first day on which the decision for `facts` might differ from the decision at T."""
    windows = _windows(ruleset)
    starts = {n: months_before(t, n) for n in windows.lengths}
    horizon = date.max
    dates: set[tuple[date, tuple[int, ...]]] = set()  # (date, the windows it is compared with)
    for record in facts.records:
        lengths = windows.of_type(record.resource_type)
        for d in (record.date, record.abatement, record.changed):
            if d is not None:
                dates.add((d, lengths))
    if facts.deceased_date is not None:
        dates.add((facts.deceased_date, tuple(starts)))
    for d, lengths in dates:
        if d > t:  # a record becomes visible, an abatement or a decline takes effect
            horizon = min(horizon, d)
        for n in lengths:
            if starts[n] <= d:  # before the window's start, a date stays before it
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
