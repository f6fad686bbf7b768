"""What a criterion kind returns (`Finding`) and what it reads (`Context`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from ips_screen.dates import months_before
from ips_screen.facts.model import PatientFacts, Record
from ips_screen.ruleset.codelists import Codelist


@dataclass(frozen=True, slots=True)
class Finding:
    matched: bool | None
    refs: tuple[str, ...] = ()
    detail: str = ""
    parts: tuple = ()  # child steps (combinators, fallbacks)
    reason: str | None = None  # a kind-specific reason (latest-category, missing data)
    flags: tuple[str, ...] = ()


@dataclass
class Context:
    facts: PatientFacts
    t: date
    codelists: dict[str, Codelist]
    records: tuple[Record, ...]  # visible at T: undated, or dated on or before T
    cache: dict = field(default_factory=dict)

    def window_start(self, months: int) -> date:
        return months_before(self.t, months)
