"""What a criterion kind reads (`Context`) and what it returns (`Finding`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

from ips_screen.dates import months_before
from ips_screen.facts.model import PatientFacts, Record
from ips_screen.kinds.evidence import Evidence


class CodeMatcher(Protocol):
    """What a kind needs of a codelist (`ruleset.codelists.Codelist`)."""

    def first_match(self, codings: Iterable[tuple[str, str]]) -> str | None: ...


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

    def window_start(self, months: int) -> date:
        return months_before(self.t, months)

    def evaluate(self, rule: Any) -> Finding:
        """The finding of a (nested) criterion."""
        return self.dispatch(rule, self)

    def child(self, rule: Any) -> Child:
        return Child(rule.id, rule.kind, self.evaluate(rule))
