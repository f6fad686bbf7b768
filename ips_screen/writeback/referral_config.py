"""`[referral]` in practice.toml and serve.toml: where an accepted proposal's order goes.

    [referral]
    ips_service = "HealthcareService/ips-north"   # or Organization/<id>: the order's performer

Strict: unknown keys and a reference of another type are errors. Without it accepting is refused
(a one-line configuration error, exit 4), so an order never goes nowhere.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ReferralConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    ips_service: str = Field(
        pattern=r"^(HealthcareService|Organization)/[A-Za-z0-9\-.]{1,64}$",
        description="the practice's IPS service, HealthcareService/<id> or Organization/<id> on "
        "the FHIR server: the performer of the order an accepted proposal creates",
    )
