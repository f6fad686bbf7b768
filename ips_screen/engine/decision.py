"""Decisions and their traces: frozen value objects, serialisable to plain JSON.

A trace step holds its criterion's typed evidence (`ips_screen.kinds.evidence`); its words are
rendered by `ips_screen.presentation` (`to_dict(describe=...)` adds them as each step's detail).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from ips_screen.kinds.evidence import Evidence, evidence_from_dict, evidence_to_dict

Status = Literal["pass", "fail", "unknown"]
Outcome = Literal["propose", "not-eligible", "excluded"]


@dataclass(frozen=True, slots=True)
class Step:
    """One exclusion or criterion as evaluated.

    ``status`` is from the patient's side: ``pass`` means the step kept the patient (an exclusion
    that does not apply, a criterion that holds), ``fail`` means it stopped them.
    """

    id: str
    kind: str
    status: Status
    refs: tuple[str, ...] = ()
    evidence: Evidence | None = None
    parts: tuple[Step, ...] = ()
    reason: str | None = None

    def to_dict(
        self, describe: Describe | None = None, step: Callable[[Step], object] | None = None
    ) -> dict:
        """Plain JSON; `describe` (e.g. `presentation.trace.step_line`) adds the words; `step`,
        if given, writes each nested step instead (as `Decision.to_dict` does)."""
        out: dict = {"id": self.id, "kind": self.kind, "status": self.status}
        if self.reason:
            out["reason"] = self.reason
        out["refs"] = list(self.refs)
        if self.evidence is not None:
            out["evidence"] = evidence_to_dict(self.evidence)
        if describe is not None:
            out["detail"] = describe(self)
        if self.parts:
            out["parts"] = [p.to_dict(describe) if step is None else step(p) for p in self.parts]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Step:
        return cls(
            id=data["id"],
            kind=data["kind"],
            status=data["status"],
            refs=tuple(data.get("refs", ())),
            evidence=evidence_from_dict(data["evidence"]) if "evidence" in data else None,
            parts=tuple(cls.from_dict(p) for p in data.get("parts", ())),
            reason=data.get("reason"),
        )


Describe = Callable[[Step], str]

# The target types R4 allows in ServiceRequest.reasonReference. Other evidence (e.g. a chronic
# pain review recorded as a Procedure) goes to supportingInfo, which takes any resource.
REASON_REFERENCE_TYPES = frozenset(
    {"Condition", "Observation", "DiagnosticReport", "DocumentReference"}
)


def reference_type(reference: str) -> str | None:
    """The resource type a "Type/id" (or absolute, or versioned) reference names; None for a
    urn:uuid or a contained "#id", whose type the text does not say."""
    parts = reference.split("?", 1)[0].split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return parts[-2] if len(parts) >= 2 and not reference.startswith("urn:") else None


def split_reasons(
    reasons: Iterable[str], supporting: Iterable[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(reasonReference, supportingInfo): reasons of a type R4 does not allow as a reason move
    to the end of supportingInfo; a reference of unknown type stays where it is."""
    kept, moved = [], []
    for ref in dict.fromkeys(reasons):
        kind = reference_type(ref)
        (moved if kind is not None and kind not in REASON_REFERENCE_TYPES else kept).append(ref)
    return tuple(kept), tuple(dict.fromkeys([*supporting, *moved]))


@dataclass(frozen=True, slots=True)
class Links:
    """References the proposal is built from (only on `propose`)."""

    reasons: tuple[str, ...] = ()  # ServiceRequest.reasonReference (REASON_REFERENCE_TYPES only)
    supporting: tuple[str, ...] = ()  # ServiceRequest.supportingInfo (fit notes, other evidence)
    addresses: tuple[str, ...] = ()  # Conditions the care plan addresses (proposal.addresses)
    owner: str | None = None  # the patient's general practitioner, if recorded

    @property
    def pain(self) -> tuple[str, ...]:
        """The old name of `addresses` (the default ruleset's chronic pain Conditions)."""
        return self.addresses


@dataclass(frozen=True, slots=True)
class Decision:
    patient: str  # "Patient/<id>"
    outcome: Outcome
    reasons: tuple[str, ...]
    flags: tuple[str, ...]
    priority: Literal["early", "routine"] | None
    trace: tuple[Step, ...]
    as_of: str
    ruleset: str  # "<id>@<version>"
    links: Links = field(default_factory=Links)
    quality: tuple[str, ...] = ()  # data-quality notes, e.g. "no-employment-status"

    def to_dict(
        self, describe: Describe | None = None, step: Callable[[Step], object] | None = None
    ) -> dict:
        """Plain JSON; `describe` adds each trace step's words (see `Step.to_dict`); `step`, if
        given, writes each step of the trace instead (e.g. as JSON it has already written)."""
        out = {
            "patient": self.patient,
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "flags": list(self.flags),
            "priority": self.priority,
            "as_of": self.as_of,
            "ruleset": self.ruleset,
            "trace": [s.to_dict(describe) if step is None else step(s) for s in self.trace],
        }
        if self.outcome == "propose":
            out["links"] = {
                "reasons": list(self.links.reasons),
                "supporting": list(self.links.supporting),
                "addresses": list(self.links.addresses),
                "owner": self.links.owner,
            }
        if self.quality:
            out["quality"] = list(self.quality)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Decision:
        links = data.get("links") or {}
        return cls(
            patient=data["patient"],
            outcome=data["outcome"],
            reasons=tuple(data["reasons"]),
            flags=tuple(data["flags"]),
            priority=data.get("priority"),
            trace=tuple(Step.from_dict(s) for s in data["trace"]),
            as_of=data["as_of"],
            ruleset=data["ruleset"],
            links=Links(
                reasons=tuple(links.get("reasons", ())),
                supporting=tuple(links.get("supporting", ())),
                addresses=tuple(links.get("addresses", links.get("pain", ()))),
                owner=links.get("owner"),
            ),
            quality=tuple(data.get("quality", ())),
        )

    def step(self, step_id: str) -> Step | None:
        """Find a step (at any depth) by id."""
        stack = list(self.trace)
        while stack:
            s = stack.pop(0)
            if s.id == step_id:
                return s
            stack.extend(s.parts)
        return None
