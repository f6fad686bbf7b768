"""Kind `outside-age-range`: age at T below `min_age`, or T at or after `max_age` or (with no
`max_age`) the UK State Pension date; no birth date gives "cannot tell" with `missing_reason`."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, model_validator

from ips_screen.dates import add_years, age_on, uk_state_pension_date
from ips_screen.kinds.base import Id, KindModel, KindSpec
from ips_screen.kinds.context import Context, Finding
from ips_screen.kinds.evidence import AgeBand, AgeEvidence


class OutsideAgeRange(KindModel):
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


def age_band(rule: OutsideAgeRange, birth: date | None, t: date) -> tuple[int | None, AgeBand]:
    """The age at T and the band it falls in: all the finding reads of the birth date."""
    if birth is None:
        return None, "no-birth-date"
    age = age_on(birth, t)
    if t < add_years(birth, rule.min_age):
        return age, "under-min"
    if rule.max_age is not None and t >= add_years(birth, rule.max_age):
        return age, "at-max"
    if (
        rule.max_age is None
        and rule.state_pension_age == "uk"
        and t >= uk_state_pension_date(birth)
    ):
        return age, "pension"
    return age, "working-age"


def outside_age_range(rule: OutsideAgeRange, ctx: Context) -> Finding:
    age, band = age_band(rule, ctx.facts.birth_date, ctx.t)
    evidence = AgeEvidence(age, band, rule.min_age, rule.max_age)
    if band == "no-birth-date":
        return Finding(None, (ctx.facts.ref,), evidence, reason=rule.missing_reason)
    return Finding(band != "working-age", (ctx.facts.ref,), evidence)


SPECS = (KindSpec("outside-age-range", OutsideAgeRange, outside_age_range, birth_key=age_band),)
