"""What a criterion kind returns (`Finding`), what it reads (`Context`), and how a finding becomes
a trace step (`to_step`, used by `evaluate` and by the kinds with child criteria)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from ips_screen.dates import months_before
from ips_screen.engine.decision import Step
from ips_screen.facts.model import PatientFacts, Record
from ips_screen.ruleset.codelists import Codelist
from ips_screen.ruleset.model import Criterion


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


def to_step(
    rule: Criterion, finding: Finding, *, inclusion: bool, reason: str | None = None
) -> Step:
    """A finding as a trace step; for an exclusion, a match means the patient is stopped."""
    if finding.matched is None:
        status = "unknown"
    elif inclusion:
        status = "pass" if finding.matched else "fail"
    else:
        status = "fail" if finding.matched else "pass"
    stop_reason = None
    if status == "fail":
        stop_reason = reason if not inclusion else (finding.reason or reason)
    elif status == "unknown":
        stop_reason = finding.reason
    return Step(
        id=rule.id,
        kind=rule.kind,
        status=status,
        refs=finding.refs,
        detail=finding.detail,
        parts=finding.parts,
        reason=stop_reason,
    )
