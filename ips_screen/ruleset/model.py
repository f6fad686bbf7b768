"""The ruleset file format, as strict pydantic models (unknown keys are errors).

A ruleset is a list of *exclusions* (checked first; any that applies excludes the patient) and
*criteria* (all must pass for a proposal). Each is built from one of the criterion kinds, each
declared once in its own module of `ips_screen.kinds` (the `Criterion` union is built from them)
and documented in README.md ("Criterion kinds"):

    deceased          Patient.deceased[x] on or before T
    outside-age-range age at T below min_age, or T at/after max_age or the UK State Pension date
    records           records coded in a codelist: active at T, within N months, earliest at
                      least N months ago, at least N distinct records, categories
    any-of / all-of   combine other criteria
    referral-open     a referral coded in a codelist in open statuses, or completed recently
    referral-declined a referral revoked, or its review Task rejected/cancelled, recently (a
                      shorter window for deferral reasons such as `not-now`)
    latest-category   the latest dated evidence as of T, mapped to classes that pass or fail,
                      with a staleness flag and a fallback criterion
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, field_validator

from ips_screen.dates import MAX_MONTHS, as_of_date
from ips_screen.kinds.age_range import OutsideAgeRange
from ips_screen.kinds.base import KEBAB, Id, ResourceType, Strict
from ips_screen.kinds.combine import AllOf, AnyOf
from ips_screen.kinds.deceased import Deceased
from ips_screen.kinds.latest_category import EvidenceSource, LatestCategory, Otherwise
from ips_screen.kinds.records import Records
from ips_screen.kinds.referral_declined import Deferral, ReferralDeclined
from ips_screen.kinds.referral_open import ReferralOpen
from ips_screen.kinds.registry import Criterion, windows_of
from ips_screen.ruleset.texts import Texts

__all__ = [
    "KEBAB",
    "AllOf",
    "AnyOf",
    "Criterion",
    "Deceased",
    "Deferral",
    "EvidenceSource",
    "Example",
    "Exclusion",
    "Expect",
    "Id",
    "Inclusion",
    "LatestCategory",
    "Otherwise",
    "OutsideAgeRange",
    "Priority",
    "Proposal",
    "Records",
    "ReferralDeclined",
    "ReferralOpen",
    "ResourceType",
    "Ruleset",
    "Strict",
    "Texts",
]


GENERIC_DECLINE_REASONS = {
    "not-interested": "Patient not interested at present",
    "not-now": "Not the right time; reconsider later",
    "other": "Other reason (see note)",
}


class Exclusion(Strict):
    reason: Id = Field(description="the reason reported when this exclusion applies")
    rule: Criterion


class Inclusion(Strict):
    fail_reason: Id | None = Field(
        None, description="reason when the rule fails (latest-category brings its own)"
    )
    rule: Criterion


class QualityNotes(Strict):
    """Data-quality notes a decision carries, named by the ruleset (each optional)."""

    missing: Id | None = Field(
        None,
        description="note when the proposal's addressed criterion passes but the priority's "
        "latest-category criterion found no evidence at all",
    )
    undated: Id | None = Field(
        None, description="note when some of that latest-category evidence has no date"
    )

    def names(self) -> tuple[str, ...]:
        return tuple(name for name in (self.missing, self.undated) if name)


class Priority(Strict):
    kind: Literal["spell-start"] = "spell-start"
    latest: Id = Field(
        validation_alias=AliasChoices("latest", "employment"),
        description="id of the latest-category criterion giving the evidence (old name: "
        "employment)",
    )
    out_classes: list[str]
    break_classes: list[str]
    also_starts: Records | None = Field(
        None,
        validation_alias=AliasChoices("also_starts", "fit_notes"),
        description="records that also start a spell (old name: fit_notes; optional)",
    )
    early_within_months: int = Field(24, ge=0, le=MAX_MONTHS)
    quality_notes: QualityNotes = Field(default_factory=QualityNotes)

    def windows(self) -> tuple[int, ...]:
        """The "N months" windows the priority compares dates with."""
        also = windows_of(self.also_starts) if self.also_starts else ()
        return (self.early_within_months, *also)


class Proposal(Strict):
    supporting_info: Records = Field(description="records linked as ServiceRequest.supportingInfo")
    reason_criteria: list[Id] = Field(description="criteria whose evidence becomes reasonReference")
    addresses: Id | None = Field(
        None,
        validation_alias=AliasChoices("addresses", "pain_criterion"),
        description="criterion whose Conditions the care plan addresses (old name: "
        "pain_criterion); none: the care plan addresses no Condition",
    )
    request_codelist: str = Field(description="codes for ServiceRequest.code")
    patient_explanation: str
    clinician_summary: str = ""
    decline_reasons: dict[Id, str] = Field(
        default_factory=lambda: dict(GENERIC_DECLINE_REASONS),
        description="code -> display of the reasons a clinician may decline a proposal with "
        "(CodeSystem decline-reason; `other` needs a note)",
    )

    def windows(self) -> tuple[int, ...]:
        """The "N months" windows of the records linked to the proposal."""
        return windows_of(self.supporting_info)


class Expect(Strict):
    outcome: Literal["propose", "not-eligible", "excluded"]
    reasons: list[Id] = Field(default_factory=list)
    flags: list[Id] = Field(default_factory=list)
    priority: Literal["early", "routine"] | None = None


class Example(Strict):
    name: str
    file: str = Field(description="a FHIR file (Bundle or resource), relative to the ruleset")
    patient: str | None = Field(None, description="patient id, when the file holds several")
    as_of: str
    expect: Expect

    @field_validator("as_of")
    @classmethod
    def _date(cls, value: str) -> str:
        as_of_date(value)
        return value


class Ruleset(Strict):
    id: Id
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    title: str
    description: str = ""
    codelists: dict[str, str] = Field(description="name -> CSV path relative to the ruleset")
    exclusions: list[Exclusion] = Field(default_factory=list)
    criteria: list[Inclusion] = Field(min_length=1)
    priority: Priority | None = None
    proposal: Proposal
    texts: Texts = Field(default_factory=Texts, description="words for the outputs")
    examples: list[Example] = Field(default_factory=list)

    @property
    def major_version(self) -> str:
        return self.version.split(".")[0]
