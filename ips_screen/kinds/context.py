"""What a criterion kind reads (`Context`) and what it returns (`Finding`), and the findings
that are the same for every patient (`constant`).

A kind that finds nothing of what it reads (no record coded in its codelist, no referral, no
decline) gives a finding that depends on its rule alone. `constant` makes it once per rule and
gives every such patient that one object, so the engine's trace step for it and the outputs'
serialisation of that step are made once too (`engine.evaluate.to_step`, decisions.ndjson's
line): most steps of most patients' traces are such steps. A finding made of constant findings
only (a combinator's) is constant too. Kept for the life of the process (rules and findings are
few: CONSTANT_MAX is a bound for processes that load many rulesets, such as the test suite).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ips_screen.dates import months_before
from ips_screen.facts.model import PatientFacts, Record
from ips_screen.facts.record_kinds import Matcher as CodeMatcher  # what a kind asks of a codelist
from ips_screen.kinds.evidence import Evidence

CONSTANT_MAX = 10_000  # constant findings kept; beyond it, findings are made as they are asked


@dataclass(frozen=True, slots=True)
class Child:
    """A nested criterion's finding (combinators, fallbacks): its id, kind and finding."""

    id: str
    kind: str
    finding: Finding


@dataclass(frozen=True, slots=True)
class Finding:
    """A kind's answer: matched (None: cannot tell), the references that decided it, its typed
    evidence, nested findings, a kind-specific reason (missing data, a failing class) and flags."""

    matched: bool | None
    refs: tuple[str, ...] = ()
    evidence: Evidence | None = None
    parts: tuple[Child, ...] = ()
    reason: str | None = None
    flags: tuple[str, ...] = ()


@dataclass
class Context:
    """One patient at the as-of date T; `dispatch` evaluates any criterion (nested ones too)."""

    facts: PatientFacts
    t: date
    codelists: Mapping[str, CodeMatcher]
    records: tuple[Record, ...]  # visible at T: undated, or dated on or before T
    dispatch: Callable[[Any, Context], Finding]
    cache: dict = field(default_factory=dict)
    unread: Any = None  # the ruleset's `kinds.unread.Unread`, if findings are kept
    coded: list = field(default_factory=list)  # its `coded(records)`

    def window_start(self, months: int) -> date:
        return months_before(self.t, months)

    def evaluate(self, rule: Any) -> Finding:
        """The finding of a (nested) criterion: the one kept for patients with nothing it reads
        (`kinds.unread`), or evaluated."""
        unread = self.unread
        if unread is None:
            return self.dispatch(rule, self)
        finding = unread.kept(rule, self.coded)
        return self.dispatch(rule, self) if finding is None else finding

    def child(self, rule: Any) -> Child:
        return Child(rule.id, rule.kind, self.evaluate(rule))


# id of a rule -> (the rule, its constant finding): the value holds the rule, so no other object
# can take its id while the entry is kept (entries are never removed).
_CONSTANT: dict[int, tuple[Any, Finding]] = {}
_CONSTANT_IDS: dict[int, Finding] = {}  # id -> the constant finding (kept, so ids stay its)
_afresh = False  # `made_afresh`


@contextmanager
def made_afresh() -> Iterator[None]:
    """Within it (one thread, tests), `constant` makes every finding anew and keeps none: the
    findings as each kind makes them for the patient, to compare the kept ones with."""
    global _afresh
    _afresh = True
    try:
        yield
    finally:
        _afresh = False


def afresh() -> bool:
    """Whether findings are being made afresh (`made_afresh`): none is kept or reused."""
    return _afresh


def constant(rule: Any, make: Callable[[], Finding]) -> Finding:
    """The finding `make()` gives, the same object for every patient: a rule has one. `make`
    must depend on nothing but `rule` and the constant findings of its nested criteria (each
    the one of its rule); the caller says when that holds (e.g. no record of the patient is
    coded in the rule's codelist)."""
    if _afresh:
        return make()
    held = _CONSTANT.get(id(rule))
    if held is not None:
        return held[1]
    finding = make()
    if len(_CONSTANT) >= CONSTANT_MAX:
        return finding
    held = _CONSTANT.setdefault(id(rule), (rule, finding))  # another thread's, if it came first
    _CONSTANT_IDS[id(held[1])] = held[1]
    return held[1]


def constant_of(rule: Any) -> Finding | None:
    """The rule's constant finding, once `constant` has made it (None before, or when made
    afresh)."""
    held = None if _afresh else _CONSTANT.get(id(rule))
    return None if held is None else held[1]


def is_constant(finding: Finding) -> bool:
    """Whether `finding` is one `constant` made (the same for every patient)."""
    return _CONSTANT_IDS.get(id(finding)) is finding
