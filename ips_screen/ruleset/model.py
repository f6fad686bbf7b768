"""The ruleset file format, as strict pydantic models (unknown keys are errors).

A ruleset is a list of *exclusions* (checked first; any that applies excludes the patient) and
*criteria* (all must pass for a proposal). Each is built from one of a few reusable criterion
kinds, documented in README.md ("Criterion kinds"):

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

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KEBAB = r"^[a-z0-9]+(-[a-z0-9]+)*$"
Id = Annotated[str, Field(pattern=KEBAB)]
ResourceType = Literal["Condition", "Observation", "Procedure", "DocumentReference"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Base(Strict):
    id: Id
    description: str = ""


class Deceased(_Base):
    kind: Literal["deceased"]


class OutsideAgeRange(_Base):
    kind: Literal["outside-age-range"]
    min_age: int = Field(18, ge=0, le=130)
    max_age: int | None = Field(None, ge=1, le=130, description="a fixed upper age (exclusive)")
    state_pension_age: Literal["uk"] | None = "uk"
    missing_reason: Id = "birth-date-missing"

    @model_validator(mode="after")
    def _upper(self) -> OutsideAgeRange:
        if self.max_age is None and self.state_pension_age is None:
            raise ValueError("give max_age or state_pension_age")
        return self


class Records(_Base):
    """Records coded in a codelist, optionally narrowed by time, status and category."""

    kind: Literal["records"]
    codelist: str
    resource_types: list[ResourceType] = Field(
        default_factory=lambda: ["Condition", "Observation", "Procedure", "DocumentReference"]
    )
    match: Literal["code", "value", "code-or-value"] = "code"
    active_at_as_of: bool = Field(False, description="Conditions must be active at T")
    within_months: int | None = Field(None, ge=0)
    earliest_at_least_months: int | None = Field(None, ge=0)
    categories: list[str] | None = None
    min_count: int = Field(1, ge=1)
    distinct: Literal["record", "day-and-category"] = "record"


class ReferralOpen(_Base):
    kind: Literal["referral-open"]
    codelist: str
    open_statuses: list[str] = Field(default_factory=lambda: ["draft", "active", "on-hold"])
    completed_within_months: int = Field(12, ge=0)


class Deferral(Strict):
    """A decline reason (a coding of the review Task's statusReason) with its own window."""

    system: str = Field(min_length=1)
    code: str = Field(min_length=1)
    within_months: int = Field(ge=0, description="months this reason suppresses new proposals")


class ReferralDeclined(_Base):
    """A declined proposal, dated by its rejected/cancelled review Task alone when it has one,
    else (revoked request) by the request's change date; recent within `within_months`, or
    within the `deferrals` window of the Task's statusReason."""

    kind: Literal["referral-declined"]
    codelist: str
    task_statuses: list[str] = Field(default_factory=lambda: ["rejected", "cancelled"])
    request_statuses: list[str] = Field(default_factory=lambda: ["revoked"])
    within_months: int = Field(12, ge=0)
    deferrals: list[Deferral] = Field(
        default_factory=list, description="decline reasons with a window other than within_months"
    )


class EvidenceSource(Strict):
    """Where categorised evidence comes from."""

    resource_types: list[Literal["Condition", "Observation"]]
    match: Literal["code", "value", "component"]
    question_codelist: str | None = Field(
        None, description="for value/component: the codes of the question that is answered"
    )
    active_at_as_of: bool = False

    @model_validator(mode="after")
    def _question(self) -> EvidenceSource:
        if self.match in ("value", "component") and not self.question_codelist:
            raise ValueError(f"match: {self.match} needs question_codelist")
        return self


class Otherwise(Strict):
    criterion: Criterion
    flag: Id | None = None
    fail_reason: Id


class LatestCategory(_Base):
    kind: Literal["latest-category"]
    codelist: str
    sources: list[EvidenceSource] = Field(min_length=1)
    classes: dict[str, str] = Field(
        description="codelist category -> class; class 'skip' ignores the evidence"
    )
    pass_classes: list[str] = Field(min_length=1)
    fail_reasons: dict[str, Id] = Field(default_factory=dict, description="class -> reason")
    recent_months: int = Field(24, ge=0)
    stale_flag: Id | None = None
    otherwise: Otherwise

    @model_validator(mode="after")
    def _classes(self) -> LatestCategory:
        known = set(self.classes.values()) - {"skip"}
        for name in [*self.pass_classes, *self.fail_reasons]:
            if name not in known:
                raise ValueError(f"class {name!r} is not one of the classes {sorted(known)}")
        return self


class AnyOf(_Base):
    kind: Literal["any-of"]
    criteria: list[Criterion] = Field(min_length=1)


class AllOf(_Base):
    kind: Literal["all-of"]
    criteria: list[Criterion] = Field(min_length=1)


Criterion = Annotated[
    Deceased
    | OutsideAgeRange
    | Records
    | ReferralOpen
    | ReferralDeclined
    | LatestCategory
    | AnyOf
    | AllOf,
    Field(discriminator="kind"),
]


class Exclusion(Strict):
    reason: Id = Field(description="the reason reported when this exclusion applies")
    rule: Criterion


class Inclusion(Strict):
    fail_reason: Id | None = Field(
        None, description="reason when the rule fails (latest-category brings its own)"
    )
    rule: Criterion


class Priority(Strict):
    kind: Literal["spell-start"] = "spell-start"
    employment: Id = Field(description="id of the latest-category criterion giving the evidence")
    out_classes: list[str]
    break_classes: list[str]
    fit_notes: Records = Field(description="records that also start a spell")
    early_within_months: int = Field(24, ge=0)


class Proposal(Strict):
    supporting_info: Records = Field(description="records linked as ServiceRequest.supportingInfo")
    reason_criteria: list[Id] = Field(description="criteria whose evidence becomes reasonReference")
    pain_criterion: Id = Field(description="criterion whose Conditions the care plan addresses")
    request_codelist: str = Field(description="codes for ServiceRequest.code")
    patient_explanation: str
    clinician_summary: str = ""


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
        from datetime import date

        date.fromisoformat(value)
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
    examples: list[Example] = Field(default_factory=list)

    @property
    def major_version(self) -> str:
        return self.version.split(".")[0]


Otherwise.model_rebuild()
AnyOf.model_rebuild()
AllOf.model_rebuild()
Exclusion.model_rebuild()
Inclusion.model_rebuild()
Ruleset.model_rebuild()
