"""How long a decision stays valid with no new data: its *horizon*.

Decisions change with time alone (a pain Condition passes 3 months, a birthday, a window closes),
so a nightly run must bring every patient's decision up to date. Every comparison the engine makes
with the as-of date T has one of two forms:

- a record date against T itself (visibility, abatement, decline date, date of death), or
- a record date against "T minus N months" (every window and "at least N months ago"),

plus the patient's birthdays and State Pension date. The window lengths are those each criterion
kind declares (`KindSpec.windows`), with the priority's and the proposal's; a record's dates are
compared with the windows of the criteria that may read it (`Compared`): of a type the criterion
reads (`KindSpec.window_types`), and, for a kind that reads records by their codes
(`KindSpec.window_coded`: `records`, `latest-category`), with a coding (code, value, or a
component's code or value) in one of its codelists; the priority's windows with the records a
spell can start from (its latest-category criterion's and `also_starts`), the proposal's with
those of `supporting_info`. `valid_until` returns a day no later than the first day on which
any such comparison could change; for every T' from T up to the day before it,
`evaluate(ruleset, facts, T')` equals `evaluate(ruleset, facts, T)` except for `as_of`. The
bound is conservative in what it compares (every date of such a record against every such
window, whichever of its codings or dates the criterion reads, and whatever else narrows its
records: status, category) but exact in when a comparison changes: the start of a window,
`months_before(T, N)`, never moves back as T moves on,
so a date's place against it (before it, on it or after it) changes on days `window_change` finds,
month ends and leap days included. Re-evaluating early is always safe, late never happens;
property tests check both the horizon and `window_change` against a day-by-day reference.
"""

from __future__ import annotations

from datetime import date, timedelta

from ips_screen.dates import add_months, add_years, age_on, months_before, uk_state_pension_date
from ips_screen.facts.model import PatientFacts, Record
from ips_screen.facts.record_kinds import PerRecordKind, coded_in
from ips_screen.kinds.registry import window_codelists_of, window_types_of, windows_of
from ips_screen.ruleset.loader import CompiledRuleset

ONE_DAY = timedelta(days=1)
SCAN_DAYS = 62  # days `window_change` looks at, at most: a date's place changes within 35


# A window and the records compared with it: (length in months, record types or None: any,
# codelists or None: any record of the types; else only records with a coding in one of them)
Compared = tuple[int, frozenset[str] | None, frozenset[str] | None]


class _Windows:
    """A ruleset's windows, each with the records compared with it (`Compared`)."""

    def __init__(self, ruleset: CompiledRuleset, compared: tuple[Compared, ...]):
        self.model, self.codelists, self.compared = ruleset.model, ruleset.codelists, compared
        found: dict[int, frozenset[str] | None] = {}
        for n, types, _ in compared:
            known = found.get(n, frozenset())
            found[n] = None if known is None or types is None else known | types
        self.pairs = tuple(sorted(found.items()))
        self.lengths = tuple(n for n, _ in self.pairs)
        names = {n for _, _, some in compared if some is not None for n in some}
        self.coded_in = coded_in(ruleset.codelists, names)  # the codelists a record is coded in
        # The lengths of the windows a record's dates are compared with, asked once for each
        # kind of record (type and codings: facts/record_kinds.py).
        self.of_record = PerRecordKind(self._lengths)

    def _lengths(self, record: Record) -> tuple[int, ...]:
        rtype, coded = record.resource_type, self.coded_in(record)
        return tuple(
            sorted(
                {
                    n
                    for n, types, names in self.compared
                    if (types is None or rtype in types)
                    and (names is None or not names.isdisjoint(coded))
                }
            )
        )


_WINDOWS: dict[int, _Windows] = {}


def _windows(ruleset: CompiledRuleset) -> _Windows:
    model = ruleset.model
    cached = _WINDOWS.get(id(model))
    if cached is not None and cached.model is model and cached.codelists is ruleset.codelists:
        return cached
    compared: set[Compared] = set()
    for rule in ruleset.criteria:
        types, names = window_types_of(rule), window_codelists_of(rule)
        compared.update((n, types, names) for n in windows_of(rule))
    if model.priority is not None:
        types, names = _priority_records(ruleset)
        compared.update((n, types, names) for n in model.priority.windows())
    supporting = model.proposal.supporting_info
    types, names = window_types_of(supporting), window_codelists_of(supporting)
    compared.update((n, types, names) for n in model.proposal.windows())
    windows = _WINDOWS[id(model)] = _Windows(ruleset, tuple(sorted(compared, key=repr)))
    return windows


def _priority_records(ruleset: CompiledRuleset) -> tuple[frozenset[str] | None, ...]:
    """The records whose dates the priority compares with its windows (types, codelists; see
    `Compared`): a spell starts at the evidence of its latest-category criterion or at a record
    of `also_starts` (`engine.evaluate._priority`)."""
    priority = ruleset.model.priority
    assert priority is not None
    latest = ruleset.criteria_by_id.get(priority.latest)
    if latest is None:  # not expected: the loader checks the id
        return None, None
    sources = [latest, *([priority.also_starts] if priority.also_starts else [])]
    types = [window_types_of(rule) for rule in sources]
    names = [window_codelists_of(rule) for rule in sources]
    return (
        None if None in types else frozenset().union(*types),  # type: ignore[arg-type]
        None if None in names else frozenset().union(*names),  # type: ignore[arg-type]
    )


def window_pairs(ruleset: CompiledRuleset) -> tuple[tuple[int, frozenset[str] | None], ...]:
    """Every "N months" of the ruleset with the record types whose dates are compared with it
    (None: any type): the windows its criteria declare, each with the types the criterion reads
    (`KindSpec.window_types`), the priority's (the types a spell can start from) and the
    proposal's."""
    return _windows(ruleset).pairs


def window_compared(ruleset: CompiledRuleset) -> tuple[Compared, ...]:
    """Every "N months" of the ruleset with the records compared with it (`Compared`)."""
    return _windows(ruleset).compared


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
        lengths = windows.of_record(record)
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
