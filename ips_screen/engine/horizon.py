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
except for `as_of`. The bound is deliberately conservative (it considers every date against
every window length of the ruleset): re-evaluating early is always safe, late never happens.
A property test checks it.
"""

from __future__ import annotations

from datetime import date, timedelta

from ips_screen.dates import add_months, add_years, age_on, uk_state_pension_date
from ips_screen.facts.model import PatientFacts
from ips_screen.kinds.registry import walk_criteria, windows_of
from ips_screen.ruleset.loader import CompiledRuleset

ONE_DAY = timedelta(days=1)
SLACK = timedelta(days=4)  # month-end clamping moves a window's edge by at most 3 days


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
