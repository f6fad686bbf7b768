"""How long a decision stays valid with no new data: its *horizon*.

Decisions change with time alone (a pain Condition passes 3 months, a birthday, a window closes),
so a nightly run must bring every patient's decision up to date. Every comparison the engine makes
with the as-of date T has one of two forms:

- a record date against T itself (visibility, abatement, decline date, date of death), or
- a record date against "T minus N months" (every window and "at least N months ago"),

plus the patient's birthdays and State Pension date. `valid_until` returns a day no later than
the first day on which any such comparison could change; for every T' from T up to the day before
it, `evaluate(ruleset, facts, T')` equals `evaluate(ruleset, facts, T)` except for `as_of`. The
bound is deliberately conservative (it considers every date against every window length of the
ruleset): re-evaluating early is always safe, late never happens. A property test checks it.
"""

from __future__ import annotations

from datetime import date, timedelta

from pydantic import BaseModel

from ips_screen.dates import add_months, add_years, age_on, uk_state_pension_date
from ips_screen.facts.model import PatientFacts
from ips_screen.ruleset.loader import CompiledRuleset

ONE_DAY = timedelta(days=1)
SLACK = timedelta(days=4)  # month-end clamping moves a window's edge by at most 3 days


_LENGTHS: dict[int, tuple[object, tuple[int, ...]]] = {}


def window_lengths(ruleset: CompiledRuleset) -> tuple[int, ...]:
    """Every "N months" of the ruleset (any field named *_months, at any depth)."""
    cached = _LENGTHS.get(id(ruleset.model))
    if cached is not None and cached[0] is ruleset.model:
        return cached[1]
    found: set[int] = set()

    def walk(value: object) -> None:
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                item = getattr(value, name)
                if name.endswith("_months") and isinstance(item, int):
                    found.add(item)
                else:
                    walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(ruleset.model)
    lengths = tuple(sorted(found))
    _LENGTHS[id(ruleset.model)] = (ruleset.model, lengths)
    return lengths


def valid_until(ruleset: CompiledRuleset, facts: PatientFacts, t: date) -> date:
    """The first day on which the decision for `facts` might differ from the decision at T."""
    months = window_lengths(ruleset)
    horizon = date.max
    dates: set[date] = set()
    for record in facts.records:
        for d in (record.date, record.abatement, record.changed):
            if d is not None:
                dates.add(d)
    if facts.deceased_date is not None:
        dates.add(facts.deceased_date)
    tomorrow = t + ONE_DAY
    for d in dates:
        if d > t:  # a record becomes visible, an abatement or a decline takes effect
            horizon = min(horizon, d)
        for n in months:
            edge = add_months(d, n)  # around here "d within the last n months" flips
            if edge - ONE_DAY > t:
                horizon = min(horizon, edge - ONE_DAY)
            elif edge + SLACK > t:  # at the edge now: look again tomorrow
                horizon = min(horizon, tomorrow)
    birth = facts.birth_date
    if birth is not None:
        if birth > t:
            horizon = min(horizon, birth)
        else:
            horizon = min(horizon, add_years(birth, age_on(birth, t) + 1))
        pension = uk_state_pension_date(birth)
        if pension > t:
            horizon = min(horizon, pension)
    return max(horizon, tomorrow)
